#include "common.cuh"
#include "tiled_gemm.cuh"

// The fully connected layer (nn.Linear): x [n, inp], w [out, inp], b [out],
// y [n, out]. The three products run on the shared-memory GEMM core of
// tiled_gemm.cuh. Launch: 256 threads; grid (⌈cols/64⌉, ⌈rows/64⌉) of the product.

// Forward: y[i, o] = b[o] + Σ_k x[i, k] · w[o, k]   (rows i, cols o, depth k).
extern "C" __global__ void linear_fwd_f32(const float* x, const float* w, const float* b,
                                          float* y, int n, int inp, int out) {
    const int m0 = blockIdx.y * tiled::TILE_M, n0 = blockIdx.x * tiled::TILE_N;
    auto load_x = [&](int i, int k) { return x[i * inp + k]; };
    auto load_wt = [&](int k, int o) { return w[o * inp + k]; };
    float acc[tiled::REG][tiled::REG];
    tiled::gemm_tile<true, true>(n, out, 0, inp, m0, n0, load_x, load_wt, acc);

    for (int r = 0; r < tiled::REG; ++r) {
        const int i = tiled::tile_row(m0, r);
        if (i >= n) continue;
        for (int c = 0; c < tiled::REG; ++c) {
            const int o = tiled::tile_col(n0, c);
            if (o < out) y[i * out + o] = acc[r][c] + b[o];
        }
    }
}
EMU_REGISTER(linear_fwd_f32)

// Backward data: dx[i, k] = Σ_o dy[i, o] · w[o, k]   (rows i, cols k, depth o).
extern "C" __global__ void linear_bwd_data_f32(const float* dy, const float* w, float* dx, int n,
                                               int inp, int out) {
    const int m0 = blockIdx.y * tiled::TILE_M, n0 = blockIdx.x * tiled::TILE_N;
    auto load_dy = [&](int i, int o) { return dy[i * out + o]; };
    auto load_w = [&](int o, int k) { return w[o * inp + k]; };
    float acc[tiled::REG][tiled::REG];
    tiled::gemm_tile<true, false>(n, inp, 0, out, m0, n0, load_dy, load_w, acc);

    for (int r = 0; r < tiled::REG; ++r) {
        const int i = tiled::tile_row(m0, r);
        if (i >= n) continue;
        for (int c = 0; c < tiled::REG; ++c) {
            const int k = tiled::tile_col(n0, c);
            if (k < inp) dx[i * inp + k] = acc[r][c];
        }
    }
}
EMU_REGISTER(linear_bwd_data_f32)

// Backward weight: dw[o, k] = Σ_i dy[i, o] · x[i, k]   (rows o, cols k, depth i).
extern "C" __global__ void linear_bwd_weight_f32(const float* x, const float* dy, float* dw,
                                                 int n, int inp, int out) {
    const int m0 = blockIdx.y * tiled::TILE_M, n0 = blockIdx.x * tiled::TILE_N;
    auto load_dyt = [&](int o, int i) { return dy[i * out + o]; };
    auto load_x = [&](int i, int k) { return x[i * inp + k]; };
    float acc[tiled::REG][tiled::REG];
    tiled::gemm_tile<false, false>(out, inp, 0, n, m0, n0, load_dyt, load_x, acc);

    for (int r = 0; r < tiled::REG; ++r) {
        const int o = tiled::tile_row(m0, r);
        if (o >= out) continue;
        for (int c = 0; c < tiled::REG; ++c) {
            const int k = tiled::tile_col(n0, c);
            if (k < inp) dw[o * inp + k] = acc[r][c];
        }
    }
}
EMU_REGISTER(linear_bwd_weight_f32)

// Bias gradient: db[o] = ((dy[0, o] + dy[1, o]) + ...) + dy[n-1, o], rows in order,
// the CPU's summation order (so the two agree bit for bit). The batch is small, so a
// sequential sum per column is cheap. Launch: one thread per output feature.
extern "C" __global__ void linear_bwd_bias_f32(const float* dy, float* db, int n, int out) {
    const int o = blockIdx.x * blockDim.x + threadIdx.x;
    if (o >= out) return;
    float sum = 0.0f;
    for (int i = 0; i < n; ++i) sum += dy[i * out + o];
    db[o] = sum;
}
EMU_REGISTER(linear_bwd_bias_f32)
