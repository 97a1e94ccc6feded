#include "common.cuh"

// ReLU as PyTorch computes it. Launch (both kernels): one thread per element, blocks of 256.

// y[i] = x[i] < 0 ? 0 : x[i]   (clamp_min: NaN stays NaN, -0.0 stays -0.0; fmaxf would
// turn both into +0 or the other operand)
extern "C" __global__ void relu_fwd_f32(const float* x, float* y, int len) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < len) {
        const float v = x[i];
        y[i] = v < 0.0f ? 0.0f : v;
    }
}
EMU_REGISTER(relu_fwd_f32)

// dx[i] = y[i] > 0 ? dy[i] : 0   (y the forward output)
extern "C" __global__ void relu_bwd_f32(const float* y, const float* dy, float* dx, int len) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < len) dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}
EMU_REGISTER(relu_bwd_f32)
