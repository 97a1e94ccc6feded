#include "common.cuh"

// Channel concatenation and its inverse on NCHW data, with the spatial plane
// flattened to hw. Launch (both kernels): one thread per element of the part, blocks of 256.

// Forward (one part of the concatenation): y[img, offset + c, p] = part[img, c, p]
// for c < c_part, with y holding c_total channels. The host launches it once per part.
extern "C" __global__ void concat_fwd_f32(const float* part, float* y, int n, int c_part,
                                          int c_total, int offset, int hw) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n * c_part * hw) return;
    const int p = i % hw, c = (i / hw) % c_part, img = i / (hw * c_part);
    y[(img * c_total + offset + c) * hw + p] = part[i];
}
EMU_REGISTER(concat_fwd_f32)

// Backward (channel slice): part[img, c, p] = x[img, start + c, p] for c < len, x holding
// c_total channels. Serves concatenation's backward and slice_channels.
extern "C" __global__ void concat_bwd_f32(const float* x, float* part, int n, int c_total,
                                          int start, int len, int hw) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n * len * hw) return;
    const int p = i % hw, c = (i / hw) % len, img = i / (hw * len);
    part[i] = x[(img * c_total + start + c) * hw + p];
}
EMU_REGISTER(concat_bwd_f32)
