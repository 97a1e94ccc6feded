// The CUDA execution model on the CPU, so the real kernels in kernels/*.cu run in CI,
// which has no GPU. A kernel file compiles unchanged as host C++17 when GOOGLENET_EMU
// is defined (common.cuh then includes this header); build.rs compiles all of them,
// with cuda_emu.cpp (and its fibers, fiber.h), as one translation unit, and
// src/engine/device/emu/driver.rs launches them through `emu_launch`, the emulator's cuLaunchKernel.
//
// The model, and how each part is emulated:
//
// * A launch is a grid of blocks; each block is a group of up to 1024 threads
//   (CUDA's launch limits are checked). Blocks are independent, so they run one
//   after another (x fastest, then y, z). A big launch shares its blocks with a
//   helper OS thread (GOOGLENET_EMU_THREADS OS threads in all, default 2; 1 runs
//   every block on the calling thread), each OS thread running one block at a time.
//   Races *between* blocks therefore stay mostly hidden, unless the order check
//   (GOOGLENET_EMU_CHECK=order, below) shuffles the blocks.
//
// * The threads of a block are fibers (user-level threads on their own stacks, all
//   on one OS thread), switched cooperatively, so `__syncthreads()` is a real
//   barrier: a thread that reaches it is suspended until every thread of the block
//   has reached it. Warp operations (shuffles, votes, `__syncwarp`) are barriers
//   over the 32 threads of a warp (lanes 32w .. 32w+31 of the block's linear thread
//   index) that also exchange values.
//
// * Fast path: most kernels have no barrier at all. The block's threads start as
//   plain function calls, one after another, on a single fiber. Only when a thread
//   reaches its first barrier does the block switch to one fiber per thread: the
//   waiting thread keeps the fiber it runs on, the threads not yet started get
//   fresh ones, and the threads already finished count as exited. So a barrier-free
//   kernel costs one function call per thread.
//
// * A barrier that cannot complete is an error, never a hang or a crash: when every
//   live thread of the block waits and no barrier can be released (some threads
//   exited, or wait at another __syncthreads, or at a mismatched warp operation),
//   the launch fails with a message naming the kernel, the block, and who waits
//   where. CUDA calls these cases undefined behaviour; real GPUs hang or corrupt.
//
// * `threadIdx`, `blockIdx`, `blockDim`, `gridDim` are thread-locals of the OS
//   thread, set by the scheduler before it resumes each emulated thread.
//
// * `__shared__` is `static thread_local`: one copy per OS thread, and an OS thread
//   runs one block at a time, so the copy is shared by exactly that block's threads.
//   Like on a GPU it is not cleared between blocks. There is no dynamic shared
//   memory (`extern __shared__`): size shared arrays statically.
//
// * Global memory is host memory; device pointers are host pointers. Atomics are
//   real (relaxed) atomics, since blocks may run on two OS threads.
//
// The checks, like compute-sanitizer's, for any run (GOOGLENET_EMU_CHECK=race,init,
// order or =all, read by src/engine/device/emu/checks.rs); AddressSanitizer (build.rs's
// GOOGLENET_EMU_ASAN=1) stands in for memcheck, the divergence errors above for
// synccheck:
// * race: shared-memory hazards between the threads of a block, warp-synchronous code
//   included, and shared indices out of bounds (see "The race check" below).
// * init: kernels that read, and downloads of, device memory that no upload, memset
//   or kernel wrote (src/engine/device/emu/checked.rs).
// * order: blocks that depend on each other: the results of a launch with its blocks
//   shuffled and shared between OS threads must be bit-identical to the in-order
//   ones (the same file).
//
// Differences a kernel author should know:
// * Fast intrinsics (`__expf`, `__fdividef`, ...) compute the precise function, and
//   the host does not contract a*b+c into an FMA as nvcc does: results may differ
//   from the GPU's in the last bits. `__CUDA_ARCH__` is not defined.
// * Threads of a block run in order between barriers, so a spin-wait on another
//   thread of the same block (without a barrier) never ends. Don't.
// * `__activemask()` returns every lane of the warp that exists: the emulator does
//   not track branch divergence.
// * All kernel files share one translation unit, each wrapped in its own namespace
//   (so file-local helpers may share names), but macros are shared: prefer
//   `constexpr` constants to `#define`, or `#undef` them at the end of the file.
// * Every kernel needs `EMU_REGISTER(name)` after its definition, or launching it
//   fails with "unknown kernel".
#pragma once

#ifndef GOOGLENET_EMU
#error "cuda_emu.h is the host emulation of CUDA; include common.cuh and define GOOGLENET_EMU"
#endif

// The standard headers a kernel file might include itself: included here, before
// build.rs wraps each kernel file in a namespace, their include guards make the
// kernel's own #include a no-op instead of declaring the library inside it.
#include <assert.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>

// ---------------------------------------------------------------------------------
// Qualifiers. Host C++ has one kind of function and one kind of memory.

#define __global__
#define __device__
#define __host__
#define __constant__
#define __forceinline__ inline __attribute__((always_inline))
#define __launch_bounds__(...)
// `__shared__ __align__(16) T a[N];` (ldmatrix and cp.async need 16 bytes). A GNU
// attribute, as in CUDA's headers: C++'s alignas cannot follow `static thread_local`.
#define __align__(n) __attribute__((aligned(n)))
// __restrict__ is a g++ keyword already. __noinline__ cannot be a macro here: the
// standard library spells its own attribute __attribute__((__noinline__)).

// One copy per OS thread = one copy per block (see the top of this file).
#define __shared__ static thread_local

// ---------------------------------------------------------------------------------
// Index types and the built-in variables.

struct uint3 {
    unsigned x, y, z;
};

struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

// Set by the scheduler for the emulated thread that runs (defined in cuda_emu.cpp).
extern thread_local uint3 threadIdx;
extern thread_local uint3 blockIdx;
extern thread_local dim3 blockDim;
extern thread_local dim3 gridDim;
constexpr int warpSize = 32;

// Vector types, with CUDA's alignment (a float4 load is one 16-byte access there).
struct alignas(8) float2 {
    float x, y;
};
struct alignas(16) float4 {
    float x, y, z, w;
};
struct alignas(8) int2 {
    int x, y;
};
struct alignas(16) int4 {
    int x, y, z, w;
};
struct alignas(8) uint2 {
    unsigned x, y;
};
struct alignas(16) uint4 {
    unsigned x, y, z, w;
};
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline int2 make_int2(int x, int y) { return {x, y}; }
inline int4 make_int4(int x, int y, int z, int w) { return {x, y, z, w}; }
inline uint2 make_uint2(unsigned x, unsigned y) { return {x, y}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }
inline uint3 make_uint3(unsigned x, unsigned y, unsigned z) { return {x, y, z}; }

// ---------------------------------------------------------------------------------
// The scheduler's interface (cuda_emu.cpp). Barrier calls record where they were
// made (file and line, through default arguments) for the divergence messages.

namespace emu {

enum class BlockOp : uint8_t { Sync, Count, And, Or };
enum class WarpOp : uint8_t {
    Sync, ShflIdx, ShflUp, ShflDown, ShflXor, Ballot, Any, All,
    // The tensor-core instructions of kernels/mma.cuh: collective over all 32 lanes.
    MmaTf32, MmaBf16,
    LdmatrixX1, LdmatrixX2, LdmatrixX4, LdmatrixX1Trans, LdmatrixX2Trans, LdmatrixX4Trans,
};

// Suspends the calling thread until every thread of its block arrives; returns the
// count of nonzero predicates (Count), or whether all / any were nonzero (And / Or).
int block_barrier(BlockOp op, int predicate, const char* file, int line);

// Suspends the calling lane until every live lane named in `mask` arrives at a warp
// operation of the same kind with the same mask, then returns its result: for a
// shuffle, the 8-byte `value` of the source lane given by `arg` and `width`; for a
// vote, the ballot of nonzero `value`s (or any / all of them).
uint64_t warp_barrier(WarpOp op, unsigned mask, uint64_t value, long long arg, int width,
                      const char* file, int line);

// The lanes of the calling thread's warp that exist in the block.
unsigned warp_lanes();

// The tensor-core instructions (kernels/mma.cuh; see "Tensor-core instructions" below).
// mma: op MmaTf32 or MmaBf16, the lane's fragments. ldmatrix: op Ldmatrix*, the row
// this lane supplies, its destination registers.
void mma(WarpOp op, float* d, const uint32_t* a, const uint32_t* b, const float* c,
         const char* file, int line);
void ldmatrix(WarpOp op, uint32_t* r, const void* row, const char* file, int line);
void cp_async(void* smem, const void* gmem, int bytes, bool valid, const char* file, int line);
void cp_async_commit(const char* file, int line);
void cp_async_wait(int n, const char* file, int line);

// Registers a kernel under `name`: `run` calls it with arguments unpacked from
// `args`; `parameters` lists its parameter types (see describe_type below). Each
// kernel is registered twice: as written (`race_checked` false), and from the copy of
// its file whose shared arrays are `Shared` (true, see below).
struct Registration {
    Registration(const char* name, void (*run)(void** args), std::string parameters,
                 bool race_checked);
};

}  // namespace emu


// ---------------------------------------------------------------------------------
// Synchronisation.

inline void __syncthreads(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    emu::block_barrier(emu::BlockOp::Sync, 0, file, line);
}
inline int __syncthreads_count(int predicate, const char* file = __builtin_FILE(),
                               int line = __builtin_LINE()) {
    return emu::block_barrier(emu::BlockOp::Count, predicate, file, line);
}
inline int __syncthreads_and(int predicate, const char* file = __builtin_FILE(),
                             int line = __builtin_LINE()) {
    return emu::block_barrier(emu::BlockOp::And, predicate, file, line);
}
inline int __syncthreads_or(int predicate, const char* file = __builtin_FILE(),
                            int line = __builtin_LINE()) {
    return emu::block_barrier(emu::BlockOp::Or, predicate, file, line);
}
inline void __syncwarp(unsigned mask = 0xffffffffu, const char* file = __builtin_FILE(),
                       int line = __builtin_LINE()) {
    emu::warp_barrier(emu::WarpOp::Sync, mask, 0, 0, 32, file, line);
}
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

// ---------------------------------------------------------------------------------
// Warp shuffles and votes. A shuffle moves any value of up to 8 bytes (int, float,
// double, __half, ...). Reading a lane that does not take part (it exited, or is not
// in the mask) gives all-one bits (NaN for a float): on a GPU the value is undefined.

namespace emu {
template <typename T>
T shuffle(WarpOp op, unsigned mask, T value, long long arg, int width, const char* file,
          int line) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>,
                  "a warp shuffle moves a value of at most 8 bytes");
    uint64_t bits = 0;
    memcpy(&bits, &value, sizeof(T));
    bits = warp_barrier(op, mask, bits, arg, width, file, line);
    memcpy(&value, &bits, sizeof(T));
    return value;
}
}  // namespace emu

template <typename T>
T __shfl_sync(unsigned mask, T var, int src_lane, int width = warpSize,
              const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    return emu::shuffle(emu::WarpOp::ShflIdx, mask, var, src_lane, width, file, line);
}
template <typename T>
T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = warpSize,
                 const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    return emu::shuffle(emu::WarpOp::ShflUp, mask, var, delta, width, file, line);
}
template <typename T>
T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize,
                   const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    return emu::shuffle(emu::WarpOp::ShflDown, mask, var, delta, width, file, line);
}
template <typename T>
T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = warpSize,
                  const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    return emu::shuffle(emu::WarpOp::ShflXor, mask, var, lane_mask, width, file, line);
}

inline unsigned __ballot_sync(unsigned mask, int predicate, const char* file = __builtin_FILE(),
                              int line = __builtin_LINE()) {
    return (unsigned)emu::warp_barrier(emu::WarpOp::Ballot, mask, predicate != 0, 0, 32, file,
                                       line);
}
inline int __any_sync(unsigned mask, int predicate, const char* file = __builtin_FILE(),
                      int line = __builtin_LINE()) {
    return (int)emu::warp_barrier(emu::WarpOp::Any, mask, predicate != 0, 0, 32, file, line);
}
inline int __all_sync(unsigned mask, int predicate, const char* file = __builtin_FILE(),
                      int line = __builtin_LINE()) {
    return (int)emu::warp_barrier(emu::WarpOp::All, mask, predicate != 0, 0, 32, file, line);
}
// No branch divergence is tracked: every lane of the warp that exists is "active".
inline unsigned __activemask() { return emu::warp_lanes(); }

// ---------------------------------------------------------------------------------
// Atomics: relaxed, like CUDA's; each returns the old value.

inline int atomicAdd(int* p, int v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
inline unsigned atomicAdd(unsigned* p, unsigned v) {
    return __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}
inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) {
    return __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}
inline int atomicSub(int* p, int v) { return __atomic_fetch_sub(p, v, __ATOMIC_RELAXED); }
inline unsigned atomicSub(unsigned* p, unsigned v) {
    return __atomic_fetch_sub(p, v, __ATOMIC_RELAXED);
}
inline int atomicCAS(int* p, int compare, int v) {
    __atomic_compare_exchange_n(p, &compare, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
    return compare;  // on failure the builtin stored the current value here
}
inline unsigned atomicCAS(unsigned* p, unsigned compare, unsigned v) {
    __atomic_compare_exchange_n(p, &compare, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
    return compare;
}
inline unsigned long long atomicCAS(unsigned long long* p, unsigned long long compare,
                                    unsigned long long v) {
    __atomic_compare_exchange_n(p, &compare, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
    return compare;
}
inline int atomicExch(int* p, int v) { return __atomic_exchange_n(p, v, __ATOMIC_RELAXED); }
inline unsigned atomicExch(unsigned* p, unsigned v) {
    return __atomic_exchange_n(p, v, __ATOMIC_RELAXED);
}
inline unsigned long long atomicExch(unsigned long long* p, unsigned long long v) {
    return __atomic_exchange_n(p, v, __ATOMIC_RELAXED);
}
inline float atomicExch(float* p, float v) {
    float old;
    __atomic_exchange(p, &v, &old, __ATOMIC_RELAXED);
    return old;
}

// Float adds by compare-and-swap on the bits, as CUDA did before it had them natively.
inline float atomicAdd(float* p, float v) {
    float old = *p;
    float next;
    do {
        next = old + v;
    } while (!__atomic_compare_exchange(p, &old, &next, false, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED));
    return old;
}
inline double atomicAdd(double* p, double v) {
    double old = *p;
    double next;
    do {
        next = old + v;
    } while (!__atomic_compare_exchange(p, &old, &next, false, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED));
    return old;
}

namespace emu {
template <typename T>
T atomic_max(T* p, T v) {
    T old = __atomic_load_n(p, __ATOMIC_RELAXED);
    while (old < v &&
           !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
    return old;
}
template <typename T>
T atomic_min(T* p, T v) {
    T old = __atomic_load_n(p, __ATOMIC_RELAXED);
    while (v < old &&
           !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
    return old;
}
}  // namespace emu

inline int atomicMax(int* p, int v) { return emu::atomic_max(p, v); }
inline unsigned atomicMax(unsigned* p, unsigned v) { return emu::atomic_max(p, v); }
inline int atomicMin(int* p, int v) { return emu::atomic_min(p, v); }
inline unsigned atomicMin(unsigned* p, unsigned v) { return emu::atomic_min(p, v); }
inline int atomicAnd(int* p, int v) { return __atomic_fetch_and(p, v, __ATOMIC_RELAXED); }
inline unsigned atomicAnd(unsigned* p, unsigned v) {
    return __atomic_fetch_and(p, v, __ATOMIC_RELAXED);
}
inline int atomicOr(int* p, int v) { return __atomic_fetch_or(p, v, __ATOMIC_RELAXED); }
inline unsigned atomicOr(unsigned* p, unsigned v) {
    return __atomic_fetch_or(p, v, __ATOMIC_RELAXED);
}
inline int atomicXor(int* p, int v) { return __atomic_fetch_xor(p, v, __ATOMIC_RELAXED); }
inline unsigned atomicXor(unsigned* p, unsigned v) {
    return __atomic_fetch_xor(p, v, __ATOMIC_RELAXED);
}

// ---------------------------------------------------------------------------------
// Math that CUDA has and C++ lacks. expf, logf, sqrtf, fmaxf, floorf, powf, ... come
// from <math.h> as they are. Intrinsics are computed precisely (see the top).

inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float __expf(float x) { return expf(x); }
inline float __exp10f(float x) { return powf(10.0f, x); }
inline float __logf(float x) { return logf(x); }
inline float __log2f(float x) { return log2f(x); }
inline float __log10f(float x) { return log10f(x); }
inline float __powf(float x, float y) { return powf(x, y); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __tanf(float x) { return tanf(x); }
inline float __fdividef(float x, float y) { return x / y; }
inline float fdividef(float x, float y) { return x / y; }
// Correctly rounded: IEEE division and square root round to nearest even, as these do.
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return sqrtf(x); }
inline float __fadd_rn(float x, float y) { return x + y; }
inline float __fsub_rn(float x, float y) { return x - y; }
inline float __fmul_rn(float x, float y) { return x * y; }
inline float __fdiv_rn(float x, float y) { return x / y; }
inline float __fmaf_rn(float x, float y, float z) { return fmaf(x, y, z); }
inline float __saturatef(float x) { return x > 0.0f ? (x < 1.0f ? x : 1.0f) : 0.0f; }  // NaN→0

namespace emu {
// CUDA's float→int conversions saturate, and NaN gives 0 (a C cast would be UB).
inline int saturate_to_int(float rounded) {
    if (rounded != rounded) return 0;
    if (rounded >= 2147483648.0f) return INT_MAX;
    if (rounded < -2147483648.0f) return INT_MIN;
    return (int)rounded;
}
inline unsigned saturate_to_uint(float rounded) {
    if (rounded != rounded || rounded <= 0.0f) return 0;
    if (rounded >= 4294967296.0f) return UINT_MAX;
    return (unsigned)rounded;
}
}  // namespace emu

inline int __float2int_rd(float x) { return emu::saturate_to_int(floorf(x)); }
inline int __float2int_ru(float x) { return emu::saturate_to_int(ceilf(x)); }
inline int __float2int_rz(float x) { return emu::saturate_to_int(truncf(x)); }
inline int __float2int_rn(float x) { return emu::saturate_to_int(nearbyintf(x)); }
inline unsigned __float2uint_rd(float x) { return emu::saturate_to_uint(floorf(x)); }
inline unsigned __float2uint_ru(float x) { return emu::saturate_to_uint(ceilf(x)); }
inline unsigned __float2uint_rz(float x) { return emu::saturate_to_uint(truncf(x)); }
inline unsigned __float2uint_rn(float x) { return emu::saturate_to_uint(nearbyintf(x)); }
inline float __int2float_rn(int x) { return (float)x; }
inline float __uint2float_rn(unsigned x) { return (float)x; }

inline int __float_as_int(float x) {
    int i;
    memcpy(&i, &x, 4);
    return i;
}
inline unsigned __float_as_uint(float x) {
    unsigned u;
    memcpy(&u, &x, 4);
    return u;
}
inline float __int_as_float(int i) {
    float x;
    memcpy(&x, &i, 4);
    return x;
}
inline float __uint_as_float(unsigned u) {
    float x;
    memcpy(&x, &u, 4);
    return x;
}

inline unsigned __umulhi(unsigned a, unsigned b) {
    return (unsigned)(((unsigned long long)a * b) >> 32);
}
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned)x); }
inline int __clzll(long long x) { return x == 0 ? 64 : __builtin_clzll((unsigned long long)x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline unsigned __brev(unsigned x) {
    x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
    x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
    x = ((x >> 4) & 0x0f0f0f0fu) | ((x & 0x0f0f0f0fu) << 4);
    return __builtin_bswap32(x);
}

// The read-only cache load is an ordinary load here.
template <typename T>
T __ldg(const T* p) {
    return *p;
}

// CUDA's integer and float min/max (C++ has only std::min / std::max).
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
// Mixed signedness compares as unsigned, as CUDA's overloads do.
inline unsigned min(int a, unsigned b) { return min((unsigned)a, b); }
inline unsigned min(unsigned a, int b) { return min(a, (unsigned)b); }
inline unsigned max(int a, unsigned b) { return max((unsigned)a, b); }
inline unsigned max(unsigned a, int b) { return max(a, (unsigned)b); }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline unsigned long long min(unsigned long long a, unsigned long long b) { return a < b ? a : b; }
inline unsigned long long max(unsigned long long a, unsigned long long b) { return a > b ? a : b; }
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }
inline unsigned umin(unsigned a, unsigned b) { return min(a, b); }
inline unsigned umax(unsigned a, unsigned b) { return max(a, b); }

// ---------------------------------------------------------------------------------
// Half precision (IEEE binary16) and bfloat16, stored as their bits. Conversions round
// to nearest even and give exactly CUDA's bits, NaN included (a float NaN becomes the
// canonical 0x7fff; a half NaN becomes the float 0x7fffffff).

struct __half {
    unsigned short __x;
};
struct __nv_bfloat16 {
    unsigned short __x;
};
typedef __half half;
typedef __nv_bfloat16 nv_bfloat16;

namespace emu {
// Rounds the top bits of `bits` kept by a right shift of `shift` (1..31) to nearest
// even, from the bits shifted out.
inline uint32_t shift_right_round_even(uint32_t bits, unsigned shift) {
    uint32_t kept = bits >> shift;
    uint32_t rest = bits & ((1u << shift) - 1);
    uint32_t half = 1u << (shift - 1);
    return kept + (rest > half || (rest == half && (kept & 1)));
}
}  // namespace emu

inline __half __float2half_rn(float f) {
    uint32_t x = __float_as_uint(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t magnitude = x & 0x7fffffff;
    uint16_t bits;
    if (magnitude > 0x7f800000) {
        bits = 0x7fff;  // NaN, sign dropped
    } else if (magnitude >= 0x38800000) {
        // Normal in half (>= 2^-14): rebias the exponent (127 → 15) and round away 13
        // mantissa bits. A carry out of the mantissa correctly bumps the exponent; past
        // 65504 (or for infinity) the result saturates to infinity.
        uint32_t rounded = emu::shift_right_round_even(magnitude - 0x38000000, 13);
        bits = (uint16_t)(sign | (rounded >= 0x7c00 ? 0x7c00 : rounded));
    } else if (magnitude >= 0x33000000) {
        // Subnormal in half (or rounds to the smallest one / zero): the value is
        // m * 2^-24 with m = mantissa (hidden 1 included) shifted by the exponent.
        unsigned exponent = magnitude >> 23;  // 102 ..= 112
        uint32_t mantissa = (magnitude & 0x7fffff) | 0x800000;
        bits = (uint16_t)(sign | emu::shift_right_round_even(mantissa, 126 - exponent));
    } else {
        bits = sign;  // below half the smallest subnormal: ±0
    }
    return __half{bits};
}
inline __half __float2half(float f) { return __float2half_rn(f); }

inline float __half2float(__half h) {
    uint32_t sign = (uint32_t)(h.__x & 0x8000) << 16;
    uint32_t exponent = (h.__x >> 10) & 0x1f;
    uint32_t mantissa = h.__x & 0x3ff;
    if (exponent == 0x1f) {
        return __uint_as_float(mantissa ? 0x7fffffffu : (sign | 0x7f800000u));
    }
    if (exponent == 0) {
        // Zero or subnormal: exactly mantissa * 2^-24, which a float holds.
        float value = (float)mantissa * 0x1p-24f;
        return __uint_as_float(sign | __float_as_uint(value));
    }
    return __uint_as_float(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

inline __nv_bfloat16 __float2bfloat16_rn(float f) {
    uint32_t x = __float_as_uint(f);
    if ((x & 0x7fffffff) > 0x7f800000) return __nv_bfloat16{0x7fff};  // NaN
    // bfloat16 is the top half of a float: round away the low 16 bits (a carry may
    // reach infinity, which is right).
    return __nv_bfloat16{(unsigned short)emu::shift_right_round_even(x, 16)};
}
inline __nv_bfloat16 __float2bfloat16(float f) { return __float2bfloat16_rn(f); }
inline float __bfloat162float(__nv_bfloat16 b) { return __uint_as_float((uint32_t)b.__x << 16); }

inline unsigned short __half_as_ushort(__half h) { return h.__x; }
inline __half __ushort_as_half(unsigned short bits) { return __half{bits}; }
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 b) { return b.__x; }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short bits) { return __nv_bfloat16{bits}; }

// ---------------------------------------------------------------------------------
// Tensor-core instructions: what kernels/mma.cuh's functions do on the emulator, where
// that file's comment gives the fragment layouts. Each checks what the hardware leaves
// undefined and fails the launch with a message naming the thread and the call site.
//
// * mma (mma.sync m16n8k8 tf32, m16n8k16 bf16) and ldmatrix are warp-collective, like
//   the shuffles: each lane waits until all 32 lanes of its warp arrive at the same
//   instruction. A warp with fewer than 32 threads, a lane that exited, or lanes at
//   another instruction (or another shape) is barrier divergence. Then the scheduler
//   gathers the fragments of all 32 lanes into A, B and C and scatters D.
// * mma's arithmetic: a TF32 operand is its f32 bits with the low 13 bits dropped
//   (truncated: the hardware ignores them, so a kernel that skips to_tf32 gets the
//   hardware's operand, not a better one); a bf16 operand is exact in f32. Products of
//   either are exact in f32, so D[i][j] = C[i][j], then fmaf(A[i][k], B[k][j], D[i][j])
//   for k ascending: one rounding per k. The hardware's order and rounding of that sum
//   are not documented; results agree with it to a few ulps of the largest term, not
//   bit for bit (exactly, where every partial sum is exact: small integers).
// * ldmatrix: the lanes whose addresses are used (8 per matrix) must point into shared
//   memory, 16-byte aligned; each lane's row is a shared read of that lane (the race
//   check sees it), made when it arrives.
// * cp.async: both addresses aligned to the size, the destination in shared memory,
//   the source read at the call (AddressSanitizer checks it like any global read; not
//   read when !valid, as src-size 0 reads nothing). The copy lands at the
//   cp_async_wait that covers its group, not before: a thread that reads the
//   destination earlier reads the old contents, as a GPU may. Under the race check the
//   destination's elements are pending from the call to the landing: any access to
//   them (another cp.async into them included) fails the launch, and the landing is a
//   write by the waiting thread, so other threads need a __syncthreads after the wait.
//   A thread that exits with copies not waited for fails the launch.
// * "Shared memory" is the thread-local storage that `__shared__` declares: an address
//   in a kernel's local variables or in a device buffer is refused.

namespace emu {
// cvt.rna.tf32.f32: to nearest with ties away from zero at bit 13 (adding half a unit
// of the last kept bit to the magnitude, then dropping 13 bits; a carry into the
// exponent is right, and the largest finite floats round up to infinity's bits). An
// infinity keeps its bits; a NaN gives the canonical 0x7fffffff (the PTX ISA leaves
// which NaN unspecified).
inline uint32_t tf32_round(float x) {
    uint32_t bits = __float_as_uint(x);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return 0x7fffffffu;
    return (bits + 0x1000u) & 0xffffe000u;
}
}  // namespace emu

// ---------------------------------------------------------------------------------
// The race check (GOOGLENET_EMU_CHECK=race). build.rs compiles every kernel file a
// second time from a copy (build/emu_shared.rs) in which each `__shared__` declaration
// `__shared__ T name[A][B];` reads `static thread_local emu::Shared<T[A][B]> name{...};`
// and `extern "C"` is dropped (the copies live in namespaces of their own). Launches
// with the check run that copy; every other launch runs the kernels as written, so the
// check costs nothing when it is off.
//
// `Shared` stores the array and, per element, the last write and up to two reads of
// the current *epoch*: the stretch of the block's run between two __syncthreads. An
// access conflicts with a recorded one of the same epoch by another thread unless a
// warp operation orders them: two lanes of one warp are ordered when a __syncwarp,
// shuffle or vote that both took part in lies between the two accesses (the scheduler
// keeps a vector clock per lane over its warp). A conflict (read after write, write
// after read, write after write) fails the launch with the array, the element and both
// threads. Indices are checked against the extents too.
//
// Limits: an element's proxy (`SharedRef`) converts to and from T, so `float v = s[i]`,
// `s[i] += v`, `s[i] = s[j]` all work, but `auto v = s[i]` keeps a reference. Elements
// of class type other than __half / __nv_bfloat16 (float4, ...) and accesses through a
// pointer taken from the array (`&s[i]`, as atomics do, or a decayed `s`) are not
// checked, except those of ldmatrix and cp.async, which find the array by address.
// `sizeof(s)` is that of the wrapper.

namespace emu {

// One recorded access: the epoch (unique per block run and barrier interval of the OS
// thread, 0 = none), the block's linear thread index, and that thread's own clock.
struct SharedAccess {
    uint64_t epoch;
    uint32_t thread;
    uint32_t clock;
};
struct SharedCell {
    SharedAccess write;
    SharedAccess read[2];
    uint32_t pending;  // cp.async copies into the element that have not landed
};

// What a checked array is, for the messages.
struct SharedSite {
    const char* declaration;  // "float partial[256]"
    const char* file;
    int line;
    const size_t* extents;
    int rank;
};

// Zeroed cells for the array at `data` (`count` elements of `element_bytes`) of the
// calling OS thread, kept until it exits; the address range is remembered, so that
// accesses by address (ldmatrix, cp.async) find the cells.
SharedCell* shared_cells(size_t count, const void* data, size_t element_bytes,
                         const SharedSite& site);
// Checks one access of the running thread to `element` (a flat index) and records it;
// fails the launch on a conflict.
void shared_access(SharedCell& cell, const SharedSite& site, size_t element, bool write);
// Fails the launch: index `index` on dimension `dimension` is past the array's extent.
[[noreturn]] void shared_out_of_bounds(const SharedSite& site, int dimension, long long index);

template <typename T>
constexpr bool kCheckedElement = std::is_arithmetic_v<T> || std::is_same_v<T, __half> ||
                                 std::is_same_v<T, __nv_bfloat16>;

// One element of a checked array: reads and writes through it are recorded.
template <typename T>
class SharedRef {
public:
    SharedRef(T* p, SharedCell* cell, const SharedSite* site, size_t element)
        : p_(p), cell_(cell), site_(site), element_(element) {}

    operator T() const {
        shared_access(*cell_, *site_, element_, false);
        return *p_;
    }
    const SharedRef& operator=(const T& value) const {
        shared_access(*cell_, *site_, element_, true);
        *p_ = value;
        return *this;
    }
    const SharedRef& operator=(const SharedRef& other) const { return *this = T(other); }

#define EMU_SHARED_COMPOUND(op)                           \
    template <typename U>                                 \
    const SharedRef& operator op(const U& value) const {  \
        T x = *this;                                      \
        x op value;                                       \
        return *this = x;                                 \
    }
    EMU_SHARED_COMPOUND(+=)
    EMU_SHARED_COMPOUND(-=)
    EMU_SHARED_COMPOUND(*=)
    EMU_SHARED_COMPOUND(/=)
    EMU_SHARED_COMPOUND(%=)
    EMU_SHARED_COMPOUND(&=)
    EMU_SHARED_COMPOUND(|=)
    EMU_SHARED_COMPOUND(^=)
    EMU_SHARED_COMPOUND(<<=)
    EMU_SHARED_COMPOUND(>>=)
#undef EMU_SHARED_COMPOUND

    const SharedRef& operator++() const { return *this += 1; }
    const SharedRef& operator--() const { return *this -= 1; }
    T operator++(int) const {
        T old = *this;
        *this += 1;
        return old;
    }
    T operator--(int) const {
        T old = *this;
        *this -= 1;
        return old;
    }

    // The raw address: accesses through it (atomics) are not checked.
    T* operator&() const { return p_; }

private:
    T* p_;
    SharedCell* cell_;
    const SharedSite* site_;
    size_t element_;
};

// A sub-array of a checked array (A = T[N]...), indexed like the array.
template <typename A>
class SharedView {
    using Inner = std::remove_extent_t<A>;

public:
    SharedView(A* p, SharedCell* cells, const SharedSite* site, size_t first, int dimension)
        : p_(p), cells_(cells), site_(site), first_(first), dimension_(dimension) {}

    template <typename I>
    decltype(auto) operator[](I index) const {
        static_assert(std::is_integral_v<I>, "a shared array takes an integer index");
        constexpr size_t extent = std::extent_v<A>;
        bool negative = false;
        if constexpr (std::is_signed_v<I>) negative = index < 0;
        if (negative || (unsigned long long)index >= extent) {
            shared_out_of_bounds(*site_, dimension_, (long long)index);
        }
        constexpr size_t inner = sizeof(Inner) / sizeof(std::remove_all_extents_t<A>);
        size_t first = first_ + (size_t)index * inner;
        Inner* element = &(*p_)[index];
        if constexpr (std::is_array_v<Inner>) {
            return SharedView<Inner>(element, cells_, site_, first, dimension_ + 1);
        } else if constexpr (kCheckedElement<Inner>) {
            return SharedRef<Inner>(element, &cells_[first], site_, first);
        } else {
            return static_cast<Inner&>(*element);  // not checked (see above)
        }
    }

    // The decayed pointer, as the array itself gives: not checked.
    operator std::decay_t<A>() const { return *p_; }

private:
    A* p_;
    SharedCell* cells_;
    const SharedSite* site_;
    size_t first_;
    int dimension_;
};

// A `__shared__ T name[...]` (or a scalar `__shared__ T name`) of the race-check build.
template <typename A>
class Shared {
    using Element = std::remove_all_extents_t<A>;
    static constexpr size_t kCount = sizeof(A) / sizeof(Element);

    template <size_t... I>
    static constexpr std::array<size_t, sizeof...(I) + 1> extents_of(std::index_sequence<I...>) {
        return {std::extent_v<A, I>..., 0};
    }
    static constexpr auto kExtents = extents_of(std::make_index_sequence<std::rank_v<A>>{});

public:
    constexpr Shared(const char* declaration, const char* file, int line)
        : data_{}, site_{declaration, file, line, kExtents.data(), (int)std::rank_v<A>} {}
    Shared(const Shared&) = delete;

    // Arrays: indexed like the array.
    template <typename I, typename B = A, std::enable_if_t<std::is_array_v<B>, int> = 0>
    decltype(auto) operator[](I index) {
        return SharedView<A>(&data_, cells(), &site_, 0, 0)[index];
    }
    template <typename B = A, std::enable_if_t<std::is_array_v<B>, int> = 0>
    operator std::decay_t<B>() {
        cells();  // so that accesses by address through the pointer find the array
        return data_;
    }

    // Scalars: used like the variable.
    template <typename B = A, std::enable_if_t<!std::is_array_v<B>, int> = 0>
    SharedRef<B> ref() {
        return SharedRef<B>(&data_, &cells()[0], &site_, 0);
    }
    template <typename B = A, std::enable_if_t<!std::is_array_v<B>, int> = 0>
    operator B() {
        return ref();
    }
    template <typename U, typename B = A, std::enable_if_t<!std::is_array_v<B>, int> = 0>
    Shared& operator=(const U& value) {
        ref() = (B)value;
        return *this;
    }
#define EMU_SHARED_SCALAR_COMPOUND(op)                                               \
    template <typename U, typename B = A, std::enable_if_t<!std::is_array_v<B>, int> = 0> \
    Shared& operator op(const U& value) {                                           \
        ref() op value;                                                             \
        return *this;                                                               \
    }
    EMU_SHARED_SCALAR_COMPOUND(+=)
    EMU_SHARED_SCALAR_COMPOUND(-=)
    EMU_SHARED_SCALAR_COMPOUND(*=)
    EMU_SHARED_SCALAR_COMPOUND(/=)
    EMU_SHARED_SCALAR_COMPOUND(|=)
    EMU_SHARED_SCALAR_COMPOUND(&=)
#undef EMU_SHARED_SCALAR_COMPOUND
    template <typename B = A, std::enable_if_t<!std::is_array_v<B>, int> = 0>
    B* operator&() {
        return &data_;
    }

private:
    SharedCell* cells() {
        if (!cells_) cells_ = shared_cells(kCount, &data_, sizeof(Element), site_);
        return cells_;
    }

    A data_;
    SharedSite site_;
    SharedCell* cells_ = nullptr;
};

}  // namespace emu

// ---------------------------------------------------------------------------------
// Registration. EMU_REGISTER(name) after a kernel's definition makes it launchable by
// name. Arguments arrive as cuLaunchKernel's kernelParams do: `args[i]` points to the
// value of parameter i. `run_kernel<kernel>` unpacks them by the kernel's own
// parameter types, and `describe_parameters` lists those types so the Rust side can
// check an argument list before launching (a mismatch would otherwise be read as
// garbage, silently, on the GPU too).

namespace emu {

template <typename... P, std::size_t... I>
void call_unpacked(void (*kernel)(P...), void** args, std::index_sequence<I...>) {
    (void)args;  // unused by a kernel without parameters
    kernel(*static_cast<P*>(args[I])...);
}

template <typename... P>
void call_with(void (*kernel)(P...), void** args) {
    call_unpacked(kernel, args, std::index_sequence_for<P...>{});
}

// One instance per kernel, so the kernel is a direct (inlinable) call.
template <auto Kernel>
void run_kernel(void** args) {
    call_with(Kernel, args);
}

// The spelling shared with src/engine/device/emu/driver.rs, which maps each `Arg` to one of these.
template <typename T>
std::string describe_type() {
    if constexpr (std::is_pointer_v<T>) {
        using Pointee = std::remove_pointer_t<T>;
        return std::string(std::is_const_v<Pointee> ? "const " : "") +
               describe_type<std::remove_cv_t<Pointee>>() + "*";
    } else if constexpr (std::is_same_v<T, float>) {
        return "float";
    } else if constexpr (std::is_same_v<T, double>) {
        return "double";
    } else if constexpr (std::is_same_v<T, int>) {
        return "int32";
    } else if constexpr (std::is_same_v<T, unsigned>) {
        return "uint32";
    } else if constexpr (std::is_same_v<T, long> || std::is_same_v<T, long long>) {
        return "int64";
    } else if constexpr (std::is_same_v<T, unsigned long> ||
                         std::is_same_v<T, unsigned long long>) {
        return "uint64";
    } else if constexpr (std::is_same_v<T, unsigned char>) {
        return "uint8";
    } else if constexpr (std::is_same_v<T, __half>) {
        return "half";
    } else if constexpr (std::is_same_v<T, __nv_bfloat16>) {
        return "bfloat16";
    } else {
        return "unsupported type of " + std::to_string(sizeof(T)) + " bytes";
    }
}

// "const float*,float*,int32" for kernel(const float*, float*, int).
template <typename... P>
std::string describe_parameters(void (*)(P...)) {
    std::string out;
    ((out += (out.empty() ? "" : ","), out += describe_type<P>()), ...);
    return out;
}

}  // namespace emu

// build.rs defines EMU_RACECHECK_PASS to 1 for the race-check copies of the kernels.
#ifndef EMU_RACECHECK_PASS
#define EMU_RACECHECK_PASS 0
#endif

// Written without a semicolon after it, as the nvcc build defines it to nothing.
#define EMU_REGISTER(kernel)                                                   \
    static const ::emu::Registration emu_registration_##kernel(                \
        #kernel, &::emu::run_kernel<kernel>, ::emu::describe_parameters(kernel), \
        EMU_RACECHECK_PASS != 0);
