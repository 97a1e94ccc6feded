#include "common.cuh"
#include "tiled_gemm.cuh"

// 2-d convolution (cross-correlation, as nn.Conv2d) of x [n, c_in, h, w] by
// w [c_out, c_in, k, k], stride s, zero padding `pad`, as implicit GEMMs on the
// shared-memory core in tiled_gemm.cuh. The im2col matrix is never built: the
// operand functors compute where each of its elements lives in x (or dy).
//
// Index names: a patch row r = (c, ky, kx) runs over c_in·k·k; an output column
// j = (img, oy, ox) runs over n·oh·ow; an input column q = (img, iy, ix) over n·h·w.
// Launch (all three GEMMs): 256 threads; grid (⌈cols/64⌉, ⌈rows/64⌉, splits).

// Input row (or column) that kernel tap `kt` reads for output position `o`, or -1 in
// the padding.
__device__ inline int conv_source(int o, int kt, int stride, int pad, int len) {
    const int i = o * stride + kt - pad;
    return (i >= 0 && i < len) ? i : -1;
}

// The im2col matrix at patch row r = (c, ky, kx), output column j = (img, oy, ox):
// the input pixel that tap reads, or 0 in the padding. Never stored, only computed.
__device__ inline float im2col_at(const float* x, int r, int j, int c_in, int h, int wd,
                                  int k, int stride, int pad, int ow, int positions) {
    const int kk2 = k * k;
    const int c = r / kk2, ky = (r / k) % k, kx = r % k;
    const int img = j / positions, p = j % positions;
    const int iy = conv_source(p / ow, ky, stride, pad, h);
    const int ix = conv_source(p % ow, kx, stride, pad, wd);
    return (iy < 0 || ix < 0) ? 0.0f : x[((img * c_in + c) * h + iy) * wd + ix];
}

// Forward: y[img, co, oy, ox] = b[co] + Σ_{c, ky, kx} w[co, c, ky, kx] ·
//          x[img, c, oy·s + ky - pad, ox·s + kx - pad]   (zero outside the image)
// as the GEMM Y[co, j] = Σ_r W[co, r] · col[r, j], rows co, cols j, depth r.
extern "C" __global__ void conv_fwd_f32(const float* x, const float* w, const float* b,
                                        float* y, int n, int c_in, int h, int wd, int c_out,
                                        int k, int stride, int pad, int oh, int ow) {
    const int kk2 = k * k, patch = c_in * kk2, positions = oh * ow, cols = n * positions;
    const int m0 = blockIdx.y * tiled::TILE_M, n0 = blockIdx.x * tiled::TILE_N;

    auto load_w = [&](int co, int r) { return w[co * patch + r]; };
    auto load_col = [&](int r, int j) {
        return im2col_at(x, r, j, c_in, h, wd, k, stride, pad, ow, positions);
    };
    float acc[tiled::REG][tiled::REG];
    tiled::gemm_tile<true, false>(c_out, cols, 0, patch, m0, n0, load_w, load_col, acc);

    for (int i = 0; i < tiled::REG; ++i) {
        const int co = tiled::tile_row(m0, i);
        if (co >= c_out) continue;
        for (int jj = 0; jj < tiled::REG; ++jj) {
            const int j = tiled::tile_col(n0, jj);
            if (j >= cols) continue;
            const int img = j / positions, p = j % positions;
            y[(img * c_out + co) * positions + p] = acc[i][jj] + b[co];
        }
    }
}
EMU_REGISTER(conv_fwd_f32)

// Backward data (the transposed convolution, as a gather so no two threads write one
// element): dx[img, c, iy, ix] = Σ_{co, ky, kx} w[co, c, ky, kx] · dy[img, co, oy, ox]
// over the taps with iy = oy·s + ky - pad and ix = ox·s + kx - pad for an output
// (oy, ox) inside dy. As the GEMM dX[c, q] = Σ_{(co,ky,kx)} W[co, c, ky, kx] · D[(co,ky,kx), q],
// where D is dy at (oy, ox) = ((iy + pad - ky) / s, (ix + pad - kx) / s) when those
// divide exactly and land inside dy, else 0. Rows c, cols q, depth c_out·k·k.
extern "C" __global__ void conv_bwd_data_f32(const float* dy, const float* w, float* dx, int n,
                                             int c_in, int h, int wd, int c_out, int k,
                                             int stride, int pad, int oh, int ow) {
    const int kk2 = k * k, depth = c_out * kk2, plane = h * wd, cols = n * plane;
    const int m0 = blockIdx.y * tiled::TILE_M, n0 = blockIdx.x * tiled::TILE_N;

    auto load_w = [&](int c, int t) {
        const int co = t / kk2, tap = t % kk2;
        return w[(co * c_in + c) * kk2 + tap];
    };
    // Output coordinate that input coordinate i reaches through tap kt, or -1.
    auto target = [&](int i, int kt, int len) {
        const int num = i + pad - kt;
        if (num < 0 || num % stride != 0) return -1;
        const int o = num / stride;
        return o < len ? o : -1;
    };
    auto load_dy = [&](int t, int q) {
        const int co = t / kk2, ky = (t / k) % k, kx = t % k;
        const int img = q / plane, pix = q % plane;
        const int oy = target(pix / wd, ky, oh);
        const int ox = target(pix % wd, kx, ow);
        return (oy < 0 || ox < 0) ? 0.0f : dy[((img * c_out + co) * oh + oy) * ow + ox];
    };
    float acc[tiled::REG][tiled::REG];
    tiled::gemm_tile<false, false>(c_in, cols, 0, depth, m0, n0, load_w, load_dy, acc);

    for (int i = 0; i < tiled::REG; ++i) {
        const int c = tiled::tile_row(m0, i);
        if (c >= c_in) continue;
        for (int jj = 0; jj < tiled::REG; ++jj) {
            const int q = tiled::tile_col(n0, jj);
            if (q >= cols) continue;
            const int img = q / plane, pix = q % plane;
            dx[(img * c_in + c) * plane + pix] = acc[i][jj];
        }
    }
}
EMU_REGISTER(conv_bwd_data_f32)

// Backward filter, one split of the reduction: for the output columns j in
// [z·chunk, (z+1)·chunk) with z = blockIdx.z,
//   part[z, co, r] = Σ_j dy[img, co, oy, ox] · x[img, c, oy·s + ky - pad, ox·s + kx - pad]
// (j = (img, oy, ox), r = (c, ky, kx)), the GEMM dW = dY · colᵀ restricted to the split.
// Splitting the long j axis (n·oh·ow) gives small weight tensors enough blocks; the
// splits are summed in a fixed order by conv_bwd_filter_reduce_f32 (no float atomics).
// With one split, `part` is dw itself.
extern "C" __global__ void conv_bwd_filter_f32(const float* x, const float* dy, float* part,
                                               int n, int c_in, int h, int wd, int c_out,
                                               int k, int stride, int pad, int oh, int ow,
                                               int chunk) {
    const int kk2 = k * k, patch = c_in * kk2, positions = oh * ow, depth = n * positions;
    const int m0 = blockIdx.y * tiled::TILE_M, n0 = blockIdx.x * tiled::TILE_N;
    const int j_begin = blockIdx.z * chunk;
    const int j_end = j_begin + chunk < depth ? j_begin + chunk : depth;

    auto load_dy = [&](int co, int j) {
        const int img = j / positions, p = j % positions;
        return dy[(img * c_out + co) * positions + p];
    };
    auto load_col = [&](int j, int r) {
        return im2col_at(x, r, j, c_in, h, wd, k, stride, pad, ow, positions);
    };
    float acc[tiled::REG][tiled::REG];
    tiled::gemm_tile<true, true>(c_out, patch, j_begin, j_end, m0, n0, load_dy, load_col, acc);

    float* out = part + blockIdx.z * c_out * patch;
    for (int i = 0; i < tiled::REG; ++i) {
        const int co = tiled::tile_row(m0, i);
        if (co >= c_out) continue;
        for (int jj = 0; jj < tiled::REG; ++jj) {
            const int r = tiled::tile_col(n0, jj);
            if (r < patch) out[co * patch + r] = acc[i][jj];
        }
    }
}
EMU_REGISTER(conv_bwd_filter_f32)

// Sums the split-K partials of conv_bwd_filter_f32 in split order:
// dw[e] = ((part[0, e] + part[1, e]) + ...) + part[splits-1, e], for e < len.
// Launch: one thread per element of dw.
extern "C" __global__ void conv_bwd_filter_reduce_f32(const float* part, float* dw, int len,
                                                      int splits) {
    const int e = blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= len) return;
    float sum = part[e];
    for (int s = 1; s < splits; ++s) sum += part[s * len + e];
    dw[e] = sum;
}
EMU_REGISTER(conv_bwd_filter_reduce_f32)

constexpr int BIAS_THREADS = 256;  // the block size conv_bwd_bias_f32 is launched with

// Bias gradient: db[co] = Σ_{img, p} dy[img, co, p], one block per channel: each thread
// sums a fixed strided subset, then a fixed-shape tree in shared memory (deterministic).
// Launch: grid (c_out), 256 threads.
extern "C" __global__ void conv_bwd_bias_f32(const float* dy, float* db, int n, int c_out,
                                             int positions) {
    __shared__ float partial[BIAS_THREADS];
    const int co = blockIdx.x, tid = threadIdx.x, len = n * positions;
    float sum = 0.0f;
    for (int j = tid; j < len; j += BIAS_THREADS) {
        const int img = j / positions, p = j % positions;
        sum += dy[(img * c_out + co) * positions + p];
    }
    partial[tid] = sum;
    __syncthreads();
    for (int half = BIAS_THREADS / 2; half > 0; half /= 2) {
        if (tid < half) partial[tid] += partial[tid + half];
        __syncthreads();
    }
    if (tid == 0) db[co] = partial[0];
}
EMU_REGISTER(conv_bwd_bias_f32)
