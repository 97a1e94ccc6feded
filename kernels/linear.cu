#include "common.cuh"
#include "mma_gemm.cuh"
#include "tiled_gemm.cuh"

// The fully connected layer (nn.Linear): x [n, inp], w [out, inp], b [out],
// y [n, out]. The three products come in three precisions, one body each over the GEMM
// core's accumulators: `_f32` on the SIMT core of tiled_gemm.cuh (the reference),
// `_tf32` and `_bf16` on the tensor cores (mma_gemm.cuh). Launch: 256 threads; grid
// (⌈cols/64⌉, ⌈rows/64⌉) of the product. The bias gradient is f32 in every precision.

template <int R>
using AccF32 = tiled::Acc<R>;
template <int R>
using AccTf32 = tensor::Acc<tensor::Math::Tf32, R>;
template <int R>
using AccBf16 = tensor::Acc<tensor::Math::Bf16, R>;

// Forward: y[i, o] = b[o] + Σ_k x[i, k] · w[o, k]   (rows i, cols o, depth k).
template <typename Acc>
__device__ void linear_fwd(const float* x, const float* w, const float* b, float* y, int n,
                           int inp, int out) {
    const int m0 = blockIdx.y * Acc::TILE, n0 = blockIdx.x * Acc::TILE;
    auto load_x = [&](int i, int k) { return x[i * inp + k]; };
    auto load_wt = [&](int k, int o) { return w[o * inp + k]; };
    Acc acc;
    gemm_into<true, true>(acc, n, out, 0, inp, m0, n0, load_x, load_wt);
    for_each_output(acc, m0, n0, n, out,
                    [&](int i, int o, float sum) { y[i * out + o] = sum + b[o]; });
}

// Backward data: dx[i, k] = Σ_o dy[i, o] · w[o, k]   (rows i, cols k, depth o).
template <typename Acc>
__device__ void linear_bwd_data(const float* dy, const float* w, float* dx, int n, int inp,
                                int out) {
    const int m0 = blockIdx.y * Acc::TILE, n0 = blockIdx.x * Acc::TILE;
    auto load_dy = [&](int i, int o) { return dy[i * out + o]; };
    auto load_w = [&](int o, int k) { return w[o * inp + k]; };
    Acc acc;
    gemm_into<true, false>(acc, n, inp, 0, out, m0, n0, load_dy, load_w);
    for_each_output(acc, m0, n0, n, inp, [&](int i, int k, float sum) { dx[i * inp + k] = sum; });
}

// Backward weight: dw[o, k] = Σ_i dy[i, o] · x[i, k]   (rows o, cols k, depth i).
template <typename Acc>
__device__ void linear_bwd_weight(const float* x, const float* dy, float* dw, int n, int inp,
                                  int out) {
    const int m0 = blockIdx.y * Acc::TILE, n0 = blockIdx.x * Acc::TILE;
    auto load_dyt = [&](int o, int i) { return dy[i * out + o]; };
    auto load_x = [&](int i, int k) { return x[i * inp + k]; };
    Acc acc;
    gemm_into<false, false>(acc, out, inp, 0, n, m0, n0, load_dyt, load_x);
    for_each_output(acc, m0, n0, out, inp, [&](int o, int k, float sum) { dw[o * inp + k] = sum; });
}

// The three products in precision `prec` on the core whose accumulators are ACC, 64x64
// tiles.
#define LINEAR_KERNELS(prec, ACC)                                                          \
    extern "C" __global__ void linear_fwd##prec(const float* x, const float* w,            \
                                                const float* b, float* y, int n, int inp,  \
                                                int out) {                                 \
        linear_fwd<ACC<4>>(x, w, b, y, n, inp, out);                                       \
    }                                                                                      \
    EMU_REGISTER(linear_fwd##prec)                                                         \
    extern "C" __global__ void linear_bwd_data##prec(const float* dy, const float* w,      \
                                                     float* dx, int n, int inp, int out) { \
        linear_bwd_data<ACC<4>>(dy, w, dx, n, inp, out);                                   \
    }                                                                                      \
    EMU_REGISTER(linear_bwd_data##prec)                                                    \
    extern "C" __global__ void linear_bwd_weight##prec(const float* x, const float* dy,    \
                                                       float* dw, int n, int inp,          \
                                                       int out) {                          \
        linear_bwd_weight<ACC<4>>(x, dy, dw, n, inp, out);                                 \
    }                                                                                      \
    EMU_REGISTER(linear_bwd_weight##prec)

LINEAR_KERNELS(_f32, AccF32)
LINEAR_KERNELS(_tf32, AccTf32)
LINEAR_KERNELS(_bf16, AccBf16)
#undef LINEAR_KERNELS

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
