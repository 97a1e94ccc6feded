#include "common.cuh"

// Elementwise addition, used to accumulate gradients.
// Launch (every kernel here): one thread per element, blocks of 256.

// y[i] = a[i] + b[i]
extern "C" __global__ void add_fwd_f32(const float* a, const float* b, float* y, int len) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < len) y[i] = a[i] + b[i];
}
EMU_REGISTER(add_fwd_f32)
