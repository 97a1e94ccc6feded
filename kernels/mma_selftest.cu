// The tensor-core instructions of mma.cuh, each on its own, for tests/emulator.rs to
// check on hand-checkable and random matrices, on the emulator and on a GPU (this file
// is compiled like every kernel file, so ptxas assembles every wrapper for sm_90 and
// sm_80). One warp per block; block b works on case b of its inputs. The emulator-only
// misuses (a partial warp, reads before a wait, ...) are in emu/selftest.cu.
#include "common.cuh"
#include "mma.cuh"

namespace {
// The lane's place in the fragment layouts: g = lane / 4, t = lane % 4.
__device__ __forceinline__ int group_of(int lane) { return lane >> 2; }
__device__ __forceinline__ int thread_of(int lane) { return lane & 3; }

// Writes the lane's accumulator fragment to the row-major 16x8 `d`.
__device__ __forceinline__ void store_accumulator(float* d, const float (&acc)[4], int lane) {
    int g = group_of(lane), t = thread_of(lane);
    d[g * 8 + 2 * t] = acc[0];
    d[g * 8 + 2 * t + 1] = acc[1];
    d[(g + 8) * 8 + 2 * t] = acc[2];
    d[(g + 8) * 8 + 2 * t + 1] = acc[3];
}
}  // namespace

// tf32[i] = to_tf32(x[i]); bf16[i] = pack_bf16x2(x[i], x[n - 1 - i]).
extern "C" __global__ void mma_selftest_convert(const float* x, unsigned* tf32, unsigned* bf16,
                                                int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    tf32[i] = to_tf32(x[i]);
    bf16[i] = pack_bf16x2(x[i], x[n - 1 - i]);
}
EMU_REGISTER(mma_selftest_convert)

// D = A·B + C with mma_tf32_m16n8k8, per block b: A 16x8, B 8x8 (k x n) and C, D 16x8,
// all row-major at offsets 128 b, 64 b, 128 b. The fragments come straight from global
// memory by the layouts of mma.cuh; `round` 0 passes A and B's f32 bits unrounded.
extern "C" __global__ void mma_selftest_tf32(const float* a, const float* b, const float* c,
                                             float* d, int round) {
    int lane = threadIdx.x, g = group_of(lane), t = thread_of(lane);
    a += blockIdx.x * 128;
    b += blockIdx.x * 64;
    c += blockIdx.x * 128;
    d += blockIdx.x * 128;
    float values[6] = {a[g * 8 + t], a[(g + 8) * 8 + t], a[g * 8 + t + 4], a[(g + 8) * 8 + t + 4],
                       b[t * 8 + g], b[(t + 4) * 8 + g]};
    uint32_t bits[6];
    for (int i = 0; i < 6; ++i) bits[i] = round ? to_tf32(values[i]) : __float_as_uint(values[i]);
    const uint32_t fa[4] = {bits[0], bits[1], bits[2], bits[3]};
    const uint32_t fb[2] = {bits[4], bits[5]};
    const float fc[4] = {c[g * 8 + 2 * t], c[g * 8 + 2 * t + 1], c[(g + 8) * 8 + 2 * t],
                         c[(g + 8) * 8 + 2 * t + 1]};
    float acc[4];
    mma_tf32_m16n8k8(acc, fa, fb, fc);
    store_accumulator(d, acc, lane);
}
EMU_REGISTER(mma_selftest_tf32)

// D = A·B + C with mma_bf16_m16n8k16, per block b: A 16x16, B 16x8 (k x n), C and D
// 16x8, row-major at offsets 256 b, 128 b, 128 b; A and B are rounded to bf16 here.
extern "C" __global__ void mma_selftest_bf16(const float* a, const float* b, const float* c,
                                             float* d) {
    int lane = threadIdx.x, g = group_of(lane), t = thread_of(lane);
    a += blockIdx.x * 256;
    b += blockIdx.x * 128;
    c += blockIdx.x * 128;
    d += blockIdx.x * 128;
    const uint32_t fa[4] = {
        pack_bf16x2(a[g * 16 + 2 * t], a[g * 16 + 2 * t + 1]),
        pack_bf16x2(a[(g + 8) * 16 + 2 * t], a[(g + 8) * 16 + 2 * t + 1]),
        pack_bf16x2(a[g * 16 + 2 * t + 8], a[g * 16 + 2 * t + 9]),
        pack_bf16x2(a[(g + 8) * 16 + 2 * t + 8], a[(g + 8) * 16 + 2 * t + 9]),
    };
    const uint32_t fb[2] = {
        pack_bf16x2(b[(2 * t) * 8 + g], b[(2 * t + 1) * 8 + g]),
        pack_bf16x2(b[(2 * t + 8) * 8 + g], b[(2 * t + 9) * 8 + g]),
    };
    const float fc[4] = {c[g * 8 + 2 * t], c[g * 8 + 2 * t + 1], c[(g + 8) * 8 + 2 * t],
                         c[(g + 8) * 8 + 2 * t + 1]};
    float acc[4];
    mma_bf16_m16n8k16(acc, fa, fb, fc);
    store_accumulator(d, acc, lane);
}
EMU_REGISTER(mma_selftest_bf16)

// Every ldmatrix form on four 8x8 matrices of 16-bit values: `in` holds them as 128
// words, matrix m's row r at words 16 m + 4 r .. +3 (the first value of each word in
// its low half). They are staged in shared memory with rows 32 bytes apart (rows need
// not be contiguous); lane l supplies row l % 8 of matrix l / 8. Form f (x1, x2, x4,
// then .trans of each) writes lane l's register i to out[(32 f + l) * 4 + i].
extern "C" __global__ void mma_selftest_ldmatrix(const unsigned* in, unsigned* out) {
    __shared__ __align__(16) unsigned short rows[32][16];
    int lane = threadIdx.x;
    for (int w = 0; w < 4; ++w) {
        unsigned word = in[lane * 4 + w];
        rows[lane][2 * w] = (unsigned short)(word & 0xffff);
        rows[lane][2 * w + 1] = (unsigned short)(word >> 16);
        rows[lane][8 + 2 * w] = 0xdead;  // not a matrix element: never loaded
        rows[lane][9 + 2 * w] = 0xbeef;
    }
    __syncwarp();
    const void* row = &rows[lane][0];
    uint32_t r1[1], r2[2], r4[4];
    out += lane * 4;
    ldmatrix_x1(r1, row);
    out[0 * 128] = r1[0];
    ldmatrix_x2(r2, row);
    for (int i = 0; i < 2; ++i) out[1 * 128 + i] = r2[i];
    ldmatrix_x4(r4, row);
    for (int i = 0; i < 4; ++i) out[2 * 128 + i] = r4[i];
    ldmatrix_x1_trans(r1, row);
    out[3 * 128] = r1[0];
    ldmatrix_x2_trans(r2, row);
    for (int i = 0; i < 2; ++i) out[4 * 128 + i] = r2[i];
    ldmatrix_x4_trans(r4, row);
    for (int i = 0; i < 4; ++i) out[5 * 128 + i] = r4[i];
}
EMU_REGISTER(mma_selftest_ldmatrix)

// cp.async of each size, with zero fill and two groups, one block of 32 threads:
// thread t copies src[4t .. 4t+3] with one 16-byte copy (group 0), then
// src[128 + 2t .. +1] with one 8-byte copy and src[192 + t] with one 4-byte copy, the
// 4-byte one zero-filled for odd t (group 1). After wait<1> only group 0 has landed:
// thread t reads it back at once (its own copy). After wait<0> and a __syncthreads,
// thread t reads the copies of thread 31 - t. out[0 .. 128) = group 0 as each thread
// read it; out[128 .. 224) = the 8- and 4-byte copies read through the mirror thread.
extern "C" __global__ void mma_selftest_cp_async(const float* src, float* out) {
    __shared__ __align__(16) float wide[128];
    __shared__ __align__(16) float pairs[64];
    __shared__ __align__(16) float singles[32];
    int t = threadIdx.x, mirror = 31 - t;
    cp_async<16>(&wide[4 * t], &src[4 * t], true);
    cp_async_commit();
    cp_async<8>(&pairs[2 * t], &src[128 + 2 * t], true);
    cp_async<4>(&singles[t], &src[192 + t], t % 2 == 0);
    cp_async_commit();
    cp_async_wait<1>();
    for (int i = 0; i < 4; ++i) out[4 * t + i] = wide[4 * t + i];
    cp_async_wait<0>();
    __syncthreads();
    out[128 + 2 * t] = pairs[2 * mirror];
    out[128 + 2 * t + 1] = pairs[2 * mirror + 1];
    out[192 + t] = singles[mirror];
}
EMU_REGISTER(mma_selftest_cp_async)

// The three together, as a tensor-core GEMM uses them, D = A·B (16x8) in TF32: A (16x8,
// row-major) and B as n-major (bt[n][k] = B[k][n], 8x8) copied to shared memory by
// cp.async, then each fragment by one ldmatrix (32-bit elements as pairs of 16-bit
// ones: lane l gets word l % 4 of row l / 4, which is the A layout of mma.cuh), rounded
// to TF32 in registers. One block of 32 threads.
extern "C" __global__ void mma_selftest_staged_tf32(const float* a, const float* bt, float* d) {
    __shared__ __align__(16) float as[16][8];
    __shared__ __align__(16) float bs[8][8];
    int lane = threadIdx.x;
    // 16 bytes a thread: A is 32 chunks of 4 floats, B 16.
    cp_async<16>(&as[lane / 2][4 * (lane % 2)], &a[4 * lane], true);
    if (lane < 16) cp_async<16>(&bs[lane / 2][4 * (lane % 2)], &bt[4 * lane], true);
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();
    // A: matrices (rows 0-7, k 0-3), (rows 8-15, k 0-3), (rows 0-7, k 4-7), (8-15, 4-7)
    // give a[0..3]; B: (n 0-7, k 0-3), (n 0-7, k 4-7) give b[0], b[1].
    uint32_t fa[4], fb[2];
    ldmatrix_x4(fa, &as[lane % 16][4 * (lane / 16)]);
    ldmatrix_x2(fb, &bs[lane % 8][4 * ((lane / 8) % 2)]);
    for (uint32_t& x : fa) x = to_tf32(__uint_as_float(x));
    for (uint32_t& x : fb) x = to_tf32(__uint_as_float(x));
    const float zero[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    float acc[4];
    mma_tf32_m16n8k8(acc, fa, fb, zero);
    store_accumulator(d, acc, lane);
}
EMU_REGISTER(mma_selftest_staged_tf32)

// The same in bf16, D = A·B (16x8): A (16x16) and B (16x8, k-major) as bf16 pairs
// (the first of each pair in the low half), row-major, copied to shared memory by
// cp.async; A's fragments by ldmatrix_x4 (lane l supplies row l % 16 of columns
// 8 (l / 16) ..), B's by ldmatrix_x2_trans (lane l supplies row l % 16 of B). One block
// of 32 threads.
extern "C" __global__ void mma_selftest_staged_bf16(const unsigned* a, const unsigned* b,
                                                    float* d) {
    __shared__ __align__(16) unsigned short as[16][16];
    __shared__ __align__(16) unsigned short bs[16][8];
    int lane = threadIdx.x;
    // 16 bytes (8 bf16) a thread: A is 32 chunks, B 16.
    cp_async<16>(&as[lane / 2][8 * (lane % 2)], &a[4 * lane], true);
    if (lane < 16) cp_async<16>(&bs[lane][0], &b[4 * lane], true);
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();
    uint32_t fa[4], fb[2];
    ldmatrix_x4(fa, &as[lane % 16][8 * (lane / 16)]);
    ldmatrix_x2_trans(fb, &bs[lane % 16][0]);
    const float zero[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    float acc[4];
    mma_bf16_m16n8k16(acc, fa, fb, zero);
    store_accumulator(d, acc, lane);
}
EMU_REGISTER(mma_selftest_staged_bf16)
