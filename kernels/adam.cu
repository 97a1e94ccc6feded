#include "common.cuh"

// Adam in PyTorch's arithmetic (torch.optim.Adam, single-tensor path), as
// src/engine/device/cpu/adam.rs, over every parameter tensor at once, in place:
//   m = m + (1-β1)·(g - m)
//   v = β2·v + (1-β2)·g²
//   p = p + (-step_size) · (m / (√v / correction2_sqrt + ε))
// with step_size = lr / (1-β1ᵗ) and correction2_sqrt = √(1-β2ᵗ) derived on the host
// (in f64, as Python does), rounded to f32 and read from device memory as their bits,
// `scalars[0]` and `scalars[1]` (the step parameters, src/training/step/params.rs): every
// launch argument is then the same from step to step, so a recorded step (a CUDA
// graph) replays with each step's own scalars. Every operation is an explicitly
// rounded intrinsic so nvcc cannot fuse a multiply and an add into an FMA: the update
// is then bit-identical to the CPU's.
//
// Launch: ONE launch for all `tensors` tensors (none of them empty), blocks of 256.
// The tensors live in separate buffers, so `param`, `grad`, `m` and `v` are device
// tables of their addresses. Each tensor gets its own whole blocks: `block_start[t]`
// is the first block of tensor t (an exclusive prefix sum of ⌈len/256⌉; the grid has
// block_start[tensors-1] + ⌈len[tensors-1]/256⌉ blocks), so a block never spans two tensors. A block finds its
// tensor by binary search over `block_start` (uniform across the block, ~7 steps for
// GoogLeNet's ~116 tensors, from L1/L2), then each thread updates one element; at
// most 255 threads per tensor idle, in the tensor's last block.
//
// `skip[0]` nonzero (a NaN or infinite loss was recorded, see record_step_f32 in
// loss.cu) leaves everything untouched: the weights stay those of the last good step.
extern "C" __global__ void adam_step_f32(float** param, const float** grad, float** m, float** v,
                                         const unsigned* block_start, const unsigned* len,
                                         int tensors, const unsigned* skip,
                                         const unsigned* scalars,
                                         float one_minus_beta1, float one_minus_beta2,
                                         float beta2, float eps) {
    if (skip[0] != 0) return;
    const float step_size = __uint_as_float(scalars[0]);
    const float correction2_sqrt = __uint_as_float(scalars[1]);
    const unsigned block = blockIdx.x;
    // The last tensor t with block_start[t] <= block (tensors are nonempty, so the
    // starts strictly increase).
    int lo = 0, hi = tensors - 1;
    while (lo < hi) {
        const int mid = (lo + hi + 1) / 2;
        if (block_start[mid] <= block) lo = mid;
        else hi = mid - 1;
    }
    const int t = lo;
    const unsigned i = (block - block_start[t]) * blockDim.x + threadIdx.x;
    if (i >= len[t]) return;
    float* const p = param[t];
    float* const mt = m[t];
    float* const vt = v[t];
    const float g = grad[t][i];
    const float m_new = __fadd_rn(mt[i], __fmul_rn(one_minus_beta1, __fsub_rn(g, mt[i])));
    const float v_new = __fadd_rn(__fmul_rn(beta2, vt[i]), __fmul_rn(one_minus_beta2, __fmul_rn(g, g)));
    const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(v_new), correction2_sqrt), eps);
    p[i] = __fadd_rn(p[i], __fmul_rn(-step_size, __fdiv_rn(m_new, denom)));
    mt[i] = m_new;
    vt[i] = v_new;
}
EMU_REGISTER(adam_step_f32)
