#include "common.cuh"

// Adam in PyTorch's arithmetic (torch.optim.Adam, single-tensor path), as
// src/device/cpu/adam.rs, over one parameter tensor of `len` elements, in place:
//   m = m + (1-β1)·(g - m)
//   v = β2·v + (1-β2)·g²
//   p = p + (-step_size) · (m / (√v / correction2_sqrt + ε))
// with step_size = lr / (1-β1ᵗ) and correction2_sqrt = √(1-β2ᵗ) derived on the host
// (in f64, as Python does) and passed rounded to f32. Every operation is an explicitly
// rounded intrinsic so nvcc cannot fuse a multiply and an add into an FMA: the update
// is then bit-identical to the CPU's.
// Launch: one thread per element, blocks of 256, once per parameter tensor.
extern "C" __global__ void adam_step_f32(float* param, const float* grad, float* m, float* v,
                                         int len, float step_size, float correction2_sqrt,
                                         float one_minus_beta1, float one_minus_beta2,
                                         float beta2, float eps) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= len) return;
    const float g = grad[i];
    const float m_new = __fadd_rn(m[i], __fmul_rn(one_minus_beta1, __fsub_rn(g, m[i])));
    const float v_new = __fadd_rn(__fmul_rn(beta2, v[i]), __fmul_rn(one_minus_beta2, __fmul_rn(g, g)));
    const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(v_new), correction2_sqrt), eps);
    param[i] = __fadd_rn(param[i], __fmul_rn(-step_size, __fdiv_rn(m_new, denom)));
    m[i] = m_new;
    v[i] = v_new;
}
EMU_REGISTER(adam_step_f32)
