#include "common.cuh"

// Max and average pooling over x [n, c, h, w] (planes of h·w), window kh x kw,
// stride s, y [n, c, oh, ow]. Backward passes gather: each input element sums, in a
// fixed order, the outputs whose window covers it, so no two threads write one
// element and no atomics are needed; the order (outputs in row-major order) is the
// CPU's scatter order, so results agree with it bit for bit.
// Launch (all four): one thread per output (forward) or input (backward) element,
// blocks of 256.

__device__ inline bool is_nan(float v) { return v != v; }

// First output (along one axis) whose window [o·s - pad, o·s - pad + k) covers input i.
__device__ inline int first_cover(int i, int k, int stride, int pad) {
    const int num = i + pad - k + 1;
    return num <= 0 ? 0 : (num + stride - 1) / stride;
}

// Last output (along one axis, of `len`) whose window covers input i.
__device__ inline int last_cover(int i, int stride, int pad, int len) {
    const int o = (i + pad) / stride;
    return o < len - 1 ? o : len - 1;
}

// Max forward: y[o] = max of x over the window of o clipped to the image (padding
// acts as -inf), argmax[o] = the index iy·w + ix, within the plane, of the element
// taken: the first maximum in row-major window order; a NaN wins and stops the scan
// (PyTorch's rule, as src/engine/device/cpu/pool.rs).
extern "C" __global__ void max_pool_fwd_f32(const float* x, float* y, unsigned int* argmax,
                                            int n, int c, int h, int w, int kh, int kw,
                                            int stride, int pad, int oh, int ow) {
    const int o = blockIdx.x * blockDim.x + threadIdx.x;
    if (o >= n * c * oh * ow) return;
    const int ox = o % ow, oy = (o / ow) % oh, plane = o / (ow * oh);
    const float* xp = x + plane * h * w;

    const int ys = oy * stride - pad, xs = ox * stride - pad;
    const int y0 = ys > 0 ? ys : 0, y1 = ys + kh < h ? ys + kh : h;
    const int x0 = xs > 0 ? xs : 0, x1 = xs + kw < w ? xs + kw : w;
    float best = -INFINITY;
    int best_at = y0 * w + x0;
    for (int iy = y0; iy < y1 && !is_nan(best); ++iy) {
        for (int ix = x0; ix < x1; ++ix) {
            const float v = xp[iy * w + ix];
            if (v > best || is_nan(v)) {
                best = v;
                best_at = iy * w + ix;
                if (is_nan(v)) break;
            }
        }
    }
    y[o] = best;
    argmax[o] = (unsigned int)best_at;
}
EMU_REGISTER(max_pool_fwd_f32)

// Max backward: dx[plane, i] = Σ dy[plane, o] over the outputs o (row-major order)
// whose window covers i and whose argmax[o] is i.
extern "C" __global__ void max_pool_bwd_f32(const float* dy, const unsigned int* argmax,
                                            float* dx, int n, int c, int h, int w, int kh,
                                            int kw, int stride, int pad, int oh, int ow) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n * c * h * w) return;
    const int ix = i % w, iy = (i / w) % h, plane = i / (w * h);
    const int at = iy * w + ix;
    const float* dyp = dy + plane * oh * ow;
    const unsigned int* ap = argmax + plane * oh * ow;

    float sum = 0.0f;
    const int oy_end = last_cover(iy, stride, pad, oh), ox_end = last_cover(ix, stride, pad, ow);
    for (int oy = first_cover(iy, kh, stride, pad); oy <= oy_end; ++oy) {
        for (int ox = first_cover(ix, kw, stride, pad); ox <= ox_end; ++ox) {
            if (ap[oy * ow + ox] == (unsigned int)at) sum += dyp[oy * ow + ox];
        }
    }
    dx[i] = sum;
}
EMU_REGISTER(max_pool_bwd_f32)

// Average forward (no padding): y[o] = (Σ over the window of x, row-major) / (kh·kw).
extern "C" __global__ void avg_pool_fwd_f32(const float* x, float* y, int n, int c, int h,
                                            int w, int kh, int kw, int stride, int oh, int ow) {
    const int o = blockIdx.x * blockDim.x + threadIdx.x;
    if (o >= n * c * oh * ow) return;
    const int ox = o % ow, oy = (o / ow) % oh, plane = o / (ow * oh);
    const float* xp = x + plane * h * w;

    float sum = 0.0f;
    for (int iy = oy * stride; iy < oy * stride + kh; ++iy)
        for (int ix = ox * stride; ix < ox * stride + kw; ++ix) sum += xp[iy * w + ix];
    y[o] = __fdiv_rn(sum, (float)(kh * kw));
}
EMU_REGISTER(avg_pool_fwd_f32)

// Average backward (no padding): dx[plane, i] = Σ dy[plane, o] / (kh·kw) over the
// outputs o (row-major order) whose window covers i; 0 where none does.
extern "C" __global__ void avg_pool_bwd_f32(const float* dy, float* dx, int n, int c, int h,
                                            int w, int kh, int kw, int stride, int oh, int ow) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n * c * h * w) return;
    const int ix = i % w, iy = (i / w) % h, plane = i / (w * h);
    const float* dyp = dy + plane * oh * ow;
    const float divisor = (float)(kh * kw);

    float sum = 0.0f;
    const int oy_end = last_cover(iy, stride, 0, oh), ox_end = last_cover(ix, stride, 0, ow);
    for (int oy = first_cover(iy, kh, stride, 0); oy <= oy_end; ++oy)
        for (int ox = first_cover(ix, kw, stride, 0); ox <= ox_end; ++ox)
            sum += __fdiv_rn(dyp[oy * ow + ox], divisor);
    dx[i] = sum;
}
EMU_REGISTER(avg_pool_bwd_f32)
