#include "common.cuh"

// Elementwise addition, used to accumulate gradients, and a constant fill.
// Launch (every kernel here): one thread per element, blocks of 256.

// y[i] = a[i] + b[i]
extern "C" __global__ void add_fwd_f32(const float* a, const float* b, float* y, int len) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < len) y[i] = a[i] + b[i];
}
EMU_REGISTER(add_fwd_f32)

// y[i] = value: a constant tensor (the loss's seed gradient of 1, Adam's zero moments)
// made on the device, so making one is a launch, never a host-to-device copy.
extern "C" __global__ void fill_f32(float* y, int len, float value) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < len) y[i] = value;
}
EMU_REGISTER(fill_f32)
