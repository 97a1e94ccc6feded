#include "common.cuh"

// Gathers u8 images [count, channels, h, w] (channels 1 to 3, planar) at `indices` and
// resizes each channel plane to size x size floats, as
// F.interpolate(x / 255, size, mode="bilinear", align_corners=False), then normalises
// per channel: out = (value - mean_c) / std_c. Image b is read through its augmentation
// view (src/training/recipe/augment.rs), views[b] = (dy + 128) | (dx + 128) << 8 | flip << 16,
// the same on every channel:
//   x[y, x] = plane[y + dy, (flip ? w - 1 - x : x) + dx], 0 outside the image.
// Per output row oy (columns alike):
//   src = max((oy + 0.5)·(h / size) - 0.5, 0),  y0 = ⌊src⌋ (at most h-1),
//   y1 = min(y0 + 1, h - 1),  ly = src - y0
//   value = (1-ly)·((1-lx)·x[y0,x0] + lx·x[y0,x1]) + ly·((1-lx)·x[y1,x0] + lx·x[y1,x1])
// in exactly src/engine/device/cpu/resize.rs's order, each operation an explicitly rounded
// intrinsic (no FMA contraction, no fast-math division), so the result is
// bit-identical to the CPU's. Output [batch, channels, size, size]. Launch: one thread
// per output pixel, blocks of 256.

// Source index, neighbour and neighbour weight of output coordinate o on an axis.
__device__ inline void bilinear_tap(int o, int input, int output, int* i0, int* i1, float* l) {
    const float scale = __fdiv_rn((float)input, (float)output);
    const float src = fmaxf(__fsub_rn(__fmul_rn(scale, __fadd_rn((float)o, 0.5f)), 0.5f), 0.0f);
    const int lo = (int)src < input - 1 ? (int)src : input - 1;
    *i0 = lo;
    *i1 = lo + 1 < input ? lo + 1 : lo;
    *l = __fsub_rn(src, (float)lo);
}

__device__ inline float lerp_pair(float a, float b, float l) {
    return __fadd_rn(__fmul_rn(__fsub_rn(1.0f, l), a), __fmul_rn(l, b));
}

extern "C" __global__ void resize_fwd_f32(const unsigned char* images, const unsigned int* indices,
                                          const unsigned int* views, float* out, int batch, int channels,
                                          int h, int w, int size, float mean0, float mean1, float mean2,
                                          float std0, float std1, float std2) {
    const int e = blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= batch * channels * size * size) return;
    const int ox = e % size, oy = (e / size) % size, plane = e / (size * size);
    const int c = plane % channels, b = plane / channels;
    const unsigned char* image = images + ((long long)indices[b] * channels + c) * h * w;

    int y0, y1, x0, x1;
    float ly, lx;
    bilinear_tap(oy, h, size, &y0, &y1, &ly);
    bilinear_tap(ox, w, size, &x0, &x1, &lx);
    const unsigned int view = views[b];
    const int dy = (int)(view & 0xffu) - 128, dx = (int)((view >> 8) & 0xffu) - 128;
    const bool flip = (view >> 16) & 1u;
    auto px = [&](int y, int x) {
        const int sy = y + dy, sx = (flip ? w - 1 - x : x) + dx;
        if (sy < 0 || sx < 0 || sy >= h || sx >= w) return 0.0f;
        return __fdiv_rn((float)image[sy * w + sx], 255.0f);
    };
    const float top = lerp_pair(px(y0, x0), px(y0, x1), lx);
    const float bottom = lerp_pair(px(y1, x0), px(y1, x1), lx);
    const float value = lerp_pair(top, bottom, ly);
    const float mean = c == 0 ? mean0 : (c == 1 ? mean1 : mean2);
    const float stddev = c == 0 ? std0 : (c == 1 ? std1 : std2);
    out[e] = __fdiv_rn(__fsub_rn(value, mean), stddev);
}
EMU_REGISTER(resize_fwd_f32)

// The labels of a batch: out[i] = labels[indices[i]], from the whole split's labels
// (uploaded once, like its images). Launch: one thread per batch entry, blocks of 256.
extern "C" __global__ void gather_labels_u32(const unsigned int* labels,
                                             const unsigned int* indices, unsigned int* out,
                                             int batch) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= batch) return;
    out[i] = labels[indices[i]];
}
EMU_REGISTER(gather_labels_u32)
