// Kernels that exercise the emulator's execution model; tests/emulator.rs launches them
// and checks the results. Each is also plain CUDA (nvcc compiles this file as well).
#include "common.cuh"
#include "mma.cuh"

#ifndef GOOGLENET_EMU
#include <cuda_bf16.h>  // the emulator has __half and __nv_bfloat16 built in
#include <cuda_fp16.h>
#endif

// Reverses each block's segment of `in` through shared memory: a thread writes one
// element, then reads the mirror element, written by another thread. Right only if
// __syncthreads really waits for all of them: shared memory still holds the previous
// block's values, as on a GPU. `n` is a multiple of blockDim.x (at most 1024).
extern "C" __global__ void emu_reverse(const float* in, float* out, int n) {
    __shared__ float buffer[1024];
    unsigned t = threadIdx.x;
    unsigned i = blockIdx.x * blockDim.x + t;
    buffer[t] = in[i];
    __syncthreads();
    out[i] = buffer[blockDim.x - 1 - t];
    (void)n;
}
EMU_REGISTER(emu_reverse)

// out[b] = the sum of block b's 256 elements of `in` (0 past n), by a tree reduction in
// shared memory with a barrier per level.
extern "C" __global__ void emu_block_sum(const float* in, float* out, int n) {
    __shared__ float partial[256];
    unsigned t = threadIdx.x;
    unsigned i = blockIdx.x * 256 + t;
    partial[t] = i < (unsigned)n ? in[i] : 0.0f;
    __syncthreads();
    for (unsigned stride = 128; stride > 0; stride /= 2) {
        if (t < stride) partial[t] += partial[t + stride];
        __syncthreads();
    }
    if (t == 0) out[blockIdx.x] = partial[0];
}
EMU_REGISTER(emu_block_sum)

// Warp operations, one element per thread, blocks of 64 (two warps):
//   sums[4i + 0] = the warp's total by a butterfly (__shfl_xor_sync: every lane has it)
//   sums[4i + 1] = the warp's total by __shfl_down_sync (lane 0's), else lane i's partial
//   sums[4i + 2] = the inclusive prefix sum within the warp (__shfl_up_sync)
//   sums[4i + 3] = lane 5's value, and then lane 3's within each group of 8 lanes
//                  (__shfl_sync with width 8), added: x[5] + x[(lane & ~7) + 3]
//   votes[4w + 0..3] = __ballot_sync(x > 0), __any_sync(x > 100), __all_sync(x >= 0),
//                      __activemask(), written by lane 0 of warp w
extern "C" __global__ void emu_warp_ops(const float* x, float* sums, unsigned* votes) {
    const unsigned all = 0xffffffffu;
    unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
    unsigned lane = threadIdx.x % 32;
    float v = x[i];

    float butterfly = v;
    for (int m = 16; m > 0; m /= 2) butterfly += __shfl_xor_sync(all, butterfly, m);

    float down = v;
    for (unsigned d = 16; d > 0; d /= 2) down += __shfl_down_sync(all, down, d);

    float scan = v;
    for (unsigned d = 1; d < 32; d *= 2) {
        float before = __shfl_up_sync(all, scan, d);
        if (lane >= d) scan += before;
    }

    float picked = __shfl_sync(all, v, 5) + __shfl_sync(all, v, 3, 8);

    sums[4 * i + 0] = butterfly;
    sums[4 * i + 1] = down;
    sums[4 * i + 2] = scan;
    sums[4 * i + 3] = picked;

    unsigned ballot = __ballot_sync(all, v > 0.0f);
    int any = __any_sync(all, v > 100.0f);
    int every = __all_sync(all, v >= 0.0f);
    __syncwarp();
    if (lane == 0) {
        unsigned w = i / 32;
        votes[4 * w + 0] = ballot;
        votes[4 * w + 1] = any;
        votes[4 * w + 2] = every;
        votes[4 * w + 3] = __activemask();
    }
}
EMU_REGISTER(emu_warp_ops)

// Atomics from every thread of the launch, i < n:
//   counts[0..4]: +1 at i % 4; counts[4]: max of i (as int); counts[5]: min of -i (as
//   int); counts[6]: +1 by a compare-and-swap loop; counts[7]: exchanged to 7;
//   sum[0]: +1.0f.
extern "C" __global__ void emu_atomics(unsigned* counts, float* sum, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    atomicAdd(&counts[i % 4], 1u);
    atomicMax(reinterpret_cast<int*>(&counts[4]), i);
    atomicMin(reinterpret_cast<int*>(&counts[5]), -i);
    unsigned seen = counts[6];
    for (;;) {
        unsigned old = atomicCAS(&counts[6], seen, seen + 1);
        if (old == seen) break;
        seen = old;
    }
    atomicExch(&counts[7], 7u);
    atomicAdd(sum, 1.0f);
}
EMU_REGISTER(emu_atomics)

// out[b] = (count, and, or) of `x > 0` over block b, by the predicate barriers.
extern "C" __global__ void emu_sync_predicates(const float* x, unsigned* out) {
    int positive = x[blockIdx.x * blockDim.x + threadIdx.x] > 0.0f;
    int count = __syncthreads_count(positive);
    int all = __syncthreads_and(positive);
    int any = __syncthreads_or(positive);
    if (threadIdx.x == 0) {
        out[3 * blockIdx.x + 0] = count;
        out[3 * blockIdx.x + 1] = all;
        out[3 * blockIdx.x + 2] = any;
    }
}
EMU_REGISTER(emu_sync_predicates)

// The linear index of this thread in the launch, x fastest at both levels.
__device__ unsigned global_index() {
    unsigned block = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    unsigned thread = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    return block * (blockDim.x * blockDim.y * blockDim.z) + thread;
}

__device__ unsigned pack(uint3 i) { return i.x | i.y << 8 | i.z << 16; }

// out[2g], out[2g + 1] = blockIdx, threadIdx of the thread with global index g, packed
// as x | y << 8 | z << 16.
extern "C" __global__ void emu_index_3d(unsigned* out) {
    unsigned g = global_index();
    out[2 * g + 0] = pack(blockIdx);
    out[2 * g + 1] = pack(threadIdx);
}
EMU_REGISTER(emu_index_3d)

// The same after a barrier and a ballot (which run the threads as fibers), plus
// out[3g + 2] = the ballot of `threadIdx.y is odd` over the thread's warp.
extern "C" __global__ void emu_index_3d_ballot(unsigned* out) {
    unsigned g = global_index();
    __syncthreads();
    unsigned ballot = __ballot_sync(0xffffffffu, threadIdx.y & 1);
    out[3 * g + 0] = pack(blockIdx);
    out[3 * g + 1] = pack(threadIdx);
    out[3 * g + 2] = ballot;
}
EMU_REGISTER(emu_index_3d_ballot)

// Half and bfloat16 conversions of in[i]: bits[2i] = the half's bits, bits[2i + 1] the
// bfloat16's; back[2i], back[2i + 1] = each converted back to float.
extern "C" __global__ void emu_half_convert(const float* in, unsigned* bits, float* back, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    __half h = __float2half(in[i]);
    __nv_bfloat16 b = __float2bfloat16(in[i]);
    bits[2 * i + 0] = __half_as_ushort(h);
    bits[2 * i + 1] = __bfloat16_as_ushort(b);
    back[2 * i + 0] = __half2float(h);
    back[2 * i + 1] = __bfloat162float(b);
}
EMU_REGISTER(emu_half_convert)

// Warp 0 leaves at once; warp 1 shuffles within itself, which is valid CUDA. In the
// emulator the first barrier is met by thread 32, after 32 threads have finished.
extern "C" __global__ void emu_second_warp_shuffles(float* out) {
    if (threadIdx.x < 32) return;
    float v = (float)threadIdx.x;
    out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, v, 1);
}
EMU_REGISTER(emu_second_warp_shuffles)

// A frame of 32 KiB on each thread's (fiber's) stack, live across a barrier.
extern "C" __global__ void emu_big_frame(float* out) {
    volatile float local[8192];
    for (int i = 0; i < 8192; ++i) local[i] = (float)(threadIdx.x + i % 7);
    __syncthreads();
    float sum = 0.0f;
    for (int i = 0; i < 8192; ++i) sum += local[i];
    out[threadIdx.x] = sum;
}
EMU_REGISTER(emu_big_frame)

// ---- Broken kernels: each must fail with a message, not hang. ----

// Thread 0 leaves; the others wait at a barrier it never reaches.
extern "C" __global__ void emu_diverge_exit(float* out) {
    if (threadIdx.x == 0) return;
    __syncthreads();
    out[threadIdx.x] = 1.0f;
}
EMU_REGISTER(emu_diverge_exit)

// In block 2 only, the second warp waits at another __syncthreads than the first.
extern "C" __global__ void emu_diverge_sites(float* out) {
    if (blockIdx.x == 2 && threadIdx.x >= 32) {
        __syncthreads();
    } else {
        __syncthreads();
    }
    out[blockIdx.x * blockDim.x + threadIdx.x] = 1.0f;
}
EMU_REGISTER(emu_diverge_sites)

// Half the warp shuffles while the other half votes.
extern "C" __global__ void emu_diverge_warp(float* out) {
    float v = (float)threadIdx.x;
    if (threadIdx.x < 16) {
        v = __shfl_xor_sync(0xffffffffu, v, 1);
    } else {
        v = (float)__ballot_sync(0xffffffffu, 1);
    }
    out[threadIdx.x] = v;
}
EMU_REGISTER(emu_diverge_warp)

// Every lane but 0 shuffles with a mask (lane 0 alone) that leaves itself out.
extern "C" __global__ void emu_bad_mask(float* out) {
    out[threadIdx.x] = __shfl_sync(0x1u, (float)threadIdx.x, 0);
}
EMU_REGISTER(emu_bad_mask)

// ---- Launch cost: y = a * x, without and with a barrier. ----

extern "C" __global__ void emu_scale(const float* x, float* y, float a, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = a * x[i];
}
EMU_REGISTER(emu_scale)

extern "C" __global__ void emu_scale_sync(const float* x, float* y, float a, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    __syncthreads();
    if (i < n) y[i] = a * x[i];
}
EMU_REGISTER(emu_scale_sync)

// Reads one element past its buffer: under GOOGLENET_EMU_ASAN=1 this must abort.
extern "C" __global__ void emu_out_of_bounds(const float* x, float* y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = x[i + 1];
}
EMU_REGISTER(emu_out_of_bounds)

// ---- The sanitizer checks (GOOGLENET_EMU_CHECK): each planted bug, and its correct
// twin, which differs by the barrier (or the buffer) that makes it right. ----

// Hazards between the threads of a block, one element each: with `synced` 0 the
// barrier that orders them is missing, and the race check must name the hazard.
//   hazard 0, read after write: each thread stores x, then reads its left neighbour's.
//   hazard 1, write after read: each thread reads its right neighbour's element, then
//             overwrites its own with twice that.
//   hazard 2, write after write: thread 0 stores, then thread 1 stores, to element 0.
extern "C" __global__ void emu_race_block(const float* x, float* out, int hazard, int synced) {
    __shared__ float s[256];
    const unsigned t = threadIdx.x, n = blockDim.x;
    const unsigned i = blockIdx.x * n + t;
    if (hazard == 0) {
        s[t] = x[i];
        if (synced) __syncthreads();
        out[i] = s[(t + n - 1) % n];
    } else if (hazard == 1) {
        s[t] = x[i];
        __syncthreads();
        float right = s[(t + 1) % n];
        if (synced) __syncthreads();
        s[t] = 2.0f * right;
        __syncthreads();
        out[i] = s[t];
    } else {
        if (t == 0) s[0] = x[i];
        if (synced) __syncthreads();
        if (t == 1) s[0] = x[i];
        __syncthreads();
        out[i] = s[0];
    }
}
EMU_REGISTER(emu_race_block)

// One warp sums its 32 elements by a tree in shared memory, relying on warp-synchronous
// order: lane t < d adds element t + d to element t, d = 16, 8, .., 1. Only a warp
// operation of the lanes between the steps orders them: `order` 0 has none (the race
// check must report it), 1 a __syncwarp, 2 a shuffle. out[0] = the sum.
extern "C" __global__ void emu_race_warp(const float* x, float* out, int order) {
    __shared__ float s[32];
    const unsigned t = threadIdx.x;
    s[t] = x[t];
    __syncwarp();
    float token = 0.0f;
    for (unsigned d = 16; d > 0; d /= 2) {
        if (t < d) s[t] += s[t + d];
        if (order == 1) __syncwarp();
        if (order == 2) token += __shfl_xor_sync(0xffffffffu, token, 1);
    }
    if (t == 0) out[0] = s[0] + token;
}
EMU_REGISTER(emu_race_warp)

// Indexes one element past its shared array: the race-check build must stop it.
extern "C" __global__ void emu_shared_out_of_bounds(float* out) {
    __shared__ float s[32];
    s[threadIdx.x + 1] = 1.0f;
    __syncthreads();
    out[threadIdx.x] = s[threadIdx.x];
}
EMU_REGISTER(emu_shared_out_of_bounds)

// y[i] += x[i], i < n: right only if y already holds something (the init check's
// planted bug is a y that nothing wrote).
extern "C" __global__ void emu_accumulate(const float* x, float* y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] += x[i];
}
EMU_REGISTER(emu_accumulate)

// out[b] for block b of a 1-d grid (thread 0 writes it): with `chained` 1, one more
// than the previous block's (block 0: 1), a dependency between blocks that the order
// check must report; with 0, b + 1 directly, the same values with independent blocks.
extern "C" __global__ void emu_block_chain(float* out, int chained) {
    if (threadIdx.x != 0) return;
    const unsigned b = blockIdx.x;
    out[b] = chained && b > 0 ? out[b - 1] + 1.0f : (float)(b + 1);
}
EMU_REGISTER(emu_block_chain)

// ---- Misuses of the tensor-core instructions (mma.cuh), each with its correct twin
// (`how` 0). mma_selftest.cu has the instructions' results. ----

// An mma of zeros (its D to out[4 lane ..]), by: how 0 a full warp; 1 a lane (5) that
// exited first; 2 a block of 16 threads (a partial warp).
extern "C" __global__ void emu_mma_misuse(float* out, int how) {
    if (how == 1 && threadIdx.x == 5) return;
    const uint32_t a[4] = {0, 0, 0, 0}, b[2] = {0, 0};
    const float c[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    float d[4];
    mma_tf32_m16n8k8(d, a, b, c);
    for (int i = 0; i < 4; ++i) out[4 * threadIdx.x + i] = d[i];
}
EMU_REGISTER(emu_mma_misuse)

// ldmatrix_x4 of a shared tile (its registers to out[4 lane ..]) that each lane fills a
// row of, where lane l supplies: how 0 its row of the tile; 1 an address 2 bytes past
// it (misaligned); 2 a row of a local array (not shared memory); 3 the device buffer
// `out`; 4 lanes 16-31 call ldmatrix_x2 instead (another instruction); 5 the next
// lane's row, with no __syncwarp after the rows are written (a race).
extern "C" __global__ void emu_ldmatrix_misuse(unsigned* out, int how) {
    __shared__ __align__(16) unsigned short tile[32][8];
    __align__(16) unsigned short local[32][8];
    unsigned lane = threadIdx.x;
    for (int c = 0; c < 8; ++c) {
        tile[lane][c] = (unsigned short)(8 * lane + c);
        local[lane][c] = (unsigned short)(8 * lane + c);
    }
    if (how != 5) __syncwarp();
    const void* rows[6] = {&tile[lane][0],  &tile[lane][1], &local[lane][0],
                           out,             &tile[lane][0], &tile[(lane + 1) % 32][0]};
    uint32_t r[4] = {0, 0, 0, 0};
    if (how == 4 && lane >= 16) {
        uint32_t r2[2];
        ldmatrix_x2(r2, rows[0]);
        r[0] = r2[0];
        r[1] = r2[1];
    } else {
        ldmatrix_x4(r, rows[how]);
    }
    for (int i = 0; i < 4; ++i) out[4 * lane + i] = r[i];
}
EMU_REGISTER(emu_ldmatrix_misuse)

// cp.async ordering, one block of 32 threads, `s0` and `s1` holding -1 first:
// thread t copies src[t] to s0[t] (group 0), then src[32 + t] to s1[t] (group 1).
// out[t] = s0[t] read after wait<1> (landed); out[32 + t] = s1[t] read after wait<1>
// too, while group 1 is still on its way (the old -1 here, a race on a GPU), unless
// `early` is 0; out[64 + t] = s1[t] after wait<0>.
extern "C" __global__ void emu_cp_async_order(const float* src, float* out, int early) {
    __shared__ __align__(16) float s0[32];
    __shared__ __align__(16) float s1[32];
    unsigned t = threadIdx.x;
    s0[t] = -1.0f;
    s1[t] = -1.0f;
    cp_async<4>(&s0[t], &src[t], true);
    cp_async_commit();
    cp_async<4>(&s1[t], &src[32 + t], true);
    cp_async_commit();
    cp_async_wait<1>();
    out[t] = s0[t];
    if (early) out[32 + t] = s1[t];
    cp_async_wait<0>();
    out[64 + t] = s1[t];
}
EMU_REGISTER(emu_cp_async_order)

// Thread t copies src[t] to s[t], waits, and reads s[31 - t], the copy of another
// thread: right only after a __syncthreads (`synced` 1).
extern "C" __global__ void emu_cp_async_mirror(const float* src, float* out, int synced) {
    __shared__ __align__(16) float s[32];
    unsigned t = threadIdx.x;
    cp_async<4>(&s[t], &src[t], true);
    cp_async_commit();
    cp_async_wait<0>();
    if (synced) __syncthreads();
    out[t] = s[31 - t];
}
EMU_REGISTER(emu_cp_async_mirror)

// A 16-byte cp.async per thread of src[4t ..] to s[4t ..], then out[4t ..] = s[4t ..],
// by: how 0 as it should; 1 a destination 4 bytes off (misaligned); 2 a source 4 bytes
// off; 3 the device buffer `out` as destination (not shared memory); 4 no wait (the
// thread exits with its copy on its way); 5 no commit (a wait covers committed groups
// only); 6 `src` as is, valid only for `valid` (zero fill otherwise).
extern "C" __global__ void emu_cp_async_misuse(const float* src, float* out, int how, int valid) {
    __shared__ __align__(16) float s[132];
    unsigned t = threadIdx.x;
    float* destinations[4] = {&s[4 * t], &s[4 * t + 1], &s[4 * t], out};
    const float* sources[4] = {&src[4 * t], &src[4 * t], &src[4 * t + 1], &src[4 * t]};
    int at = how < 4 ? how : 0;
    cp_async<16>(destinations[at], sources[at], how != 6 || valid);
    if (how != 5) cp_async_commit();
    if (how != 4) cp_async_wait<0>();
    if (how == 4 || how == 5) return;
    for (int i = 0; i < 4; ++i) out[4 * t + i] = s[4 * t + i];
}
EMU_REGISTER(emu_cp_async_misuse)
