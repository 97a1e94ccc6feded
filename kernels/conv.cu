#include "common.cuh"
#include "divisor.cuh"
#include "mma_gemm.cuh"
#include "tiled_gemm.cuh"

// 2-d convolution (cross-correlation, as nn.Conv2d) of x [n, c_in, h, w] by
// w [c_out, c_in, k, k], stride s, zero padding `pad`, as implicit GEMMs. Each kernel
// comes in three precisions, one body over the GEMM core's accumulator type `Acc`:
// `_f32` on the SIMT core of tiled_gemm.cuh (the reference), `_tf32` and `_bf16` on the
// tensor-core core of mma_gemm.cuh (operands rounded to TF32 / bf16 as they are staged,
// f32 accumulation). Both cores take the same grids and tiles. The im2col matrix is never
// built: the operand functors compute where each of its elements lives in x (or dy).
//
// Index names: a patch row r = (c, ky, kx) runs over c_in·k·k; an output column
// j = (img, oy, ox) runs over n·oh·ow; an input column q = (img, iy, ix) over n·h·w.
// Launch (all GEMMs): 256 threads; grid (⌈cols/64⌉, ⌈rows/64⌉, splits). The `_small`
// kernels (forward and backward data) use 32x32 tiles, grid (⌈cols/32⌉, ⌈rows/32⌉),
// for the products that 64x64 tiles would spread over too few blocks to fill the GPU
// (late stages at small batches).
//
// Output parts. The c_out output channels come in P parts (P = 1, or 3 for the `conv3_`
// kernels): part s owns the next `len` channels of the concatenated output, has its own
// filters and bias, and writes (or, backward, reads its gradient from) channels
// [offset, offset + len) of its own tensor [n, total, oh, ow]. One part with a view is a
// convolution writing straight into its slice of an Inception block's output (no concat
// kernel); three parts are a block's three 1x1 convolutions run as one GEMM over their
// concatenated filters, each landing in its own tensor.
//
// Epilogue: forward stores act(acc + b) with act ReLU when `relu` (clamp_min: NaN stays
// NaN), else the identity. Backward kernels, when `relu`, read the output gradient
// masked by ReLU's backward, dy · [y > 0] with y the forward output through the same view,
// so no ReLU kernel runs in either direction.
//
// Index maps. Splitting a flat index into its parts (r into (c, ky, kx), j into
// (img, oy, ox), q into (img, iy, ix), and the stride test of backward data) divides by
// run-time sizes. Each divisor comes with a multiplier and shift the launch code computed
// (divisor.cuh), so no loader, epilogue or core runs an integer division: a quotient is a
// multiply-high, an add and a shift, a remainder one multiply-subtract more. Chosen over
// stepping (c, ky, kx) incrementally from slice to slice, or making k a template
// parameter, because it keeps the cores' contract (a functor maps any in-range (m, k), in
// any order), so the f32 reference and both tensor-core precisions keep one loader each
// and neither core changes; it needs no per-thread cursors (one per element a thread
// stages, 2 or 4 per operand, in registers: the 64x64 tensor-core kernels already sit
// near 64, the most that keeps four blocks on an SM); and one code path serves every k,
// stride and image size, with no fallback to test apart. Per element it costs about what
// stepping a cursor would (a few integer operations), and as a multiply cannot fault,
// nvcc is free to hoist what depends only on a thread's fixed tile row or column out of
// the k loop.

// Input row (or column) that kernel tap `kt` reads for output position `o`, or -1 in
// the padding.
__device__ inline int conv_source(int o, int kt, int stride, int pad, int len) {
    const int i = o * stride + kt - pad;
    return (i >= 0 && i < len) ? i : -1;
}

// The run-time sizes the index maps divide by.
struct ConvDivisors {
    Divisor k, kk2, positions, ow, plane, wd, stride;  // k·k, oh·ow, h·w
};

// The im2col matrix at patch row r = (c, ky, kx), output column j = (img, oy, ox):
// the input pixel that tap reads, or 0 in the padding. Never stored, only computed.
__device__ inline float im2col_at(const float* x, int r, int j, int c_in, int h, int wd,
                                  int stride, int pad, const ConvDivisors& by) {
    const int c = by.kk2.div(r), tap = by.kk2.rem(r);
    const int ky = by.k.div(tap), kx = by.k.rem(tap);
    const int img = by.positions.div(j), p = by.positions.rem(j);
    const int iy = conv_source(by.ow.div(p), ky, stride, pad, h);
    const int ix = conv_source(by.ow.rem(p), kx, stride, pad, wd);
    return (iy < 0 || ix < 0) ? 0.0f : x[((img * c_in + c) * h + iy) * wd + ix];
}

// One output part; each kernel fills the fields it uses and leaves the others null.
struct ConvPart {
    const float* w;     // filters [len, c_in, k, k]              (forward, backward data)
    const float* b;     // bias [len]                               (forward)
    float* y;           // output                                   (forward)
    const float* dy;    // output gradient                          (backward)
    const float* fwd_y; // forward output, ReLU's mask              (backward, when relu)
    float* dw;          // weight gradient [len, c_in, k, k]        (backward filter)
    float* db;          // bias gradient [len]                      (backward filter)
    int len, offset, total;

    // Index of element (img, channel `local` of this part, pixel p) in its tensor.
    __device__ int at(int img, int local, int p, int positions) const {
        return (img * total + offset + local) * positions + p;
    }
    // The output gradient there, masked by ReLU's backward when the forward applied it.
    __device__ float grad(int img, int local, int p, int positions, int relu) const {
        const int e = at(img, local, p, positions);
        return (relu && !(fwd_y[e] > 0.0f)) ? 0.0f : dy[e];
    }
};

template <int P>
struct ConvParts {
    ConvPart part[P];
    // The part holding concatenated channel `co`; sets `local` to its channel there.
    // By value, and over constant indices only, so the choice stays in registers:
    // indexing `part` with a run-time index would put the parts in local memory.
    __device__ ConvPart find(int co, int& local) const {
        ConvPart found = part[0];
        bool past = true;  // co lies past the parts looked at so far
        for (int s = 0; s + 1 < P; ++s) {
            past = past && co >= part[s].len;
            if (past) {
                co -= part[s].len;
                found = part[s + 1];
            }
        }
        local = co;
        return found;
    }
};

// The geometry every kernel takes after its buffers, then the divisors, each as its
// multiplier and shift, in ConvDivisors' order (src/engine/device/gpu/conv.rs passes them).
#define CONV_GEOMETRY                                                                     \
    int n, int c_in, int h, int wd, int c_out, int k, int stride, int pad, int oh, int ow
#define CONV_GEOMETRY_ARGS n, c_in, h, wd, c_out, k, stride, pad, oh, ow
#define CONV_DIVISOR(name) int name##_magic, int name##_shift
#define CONV_DIVISOR_PARAMS                                                               \
    CONV_DIVISOR(k), CONV_DIVISOR(kk2), CONV_DIVISOR(positions), CONV_DIVISOR(ow),        \
        CONV_DIVISOR(plane), CONV_DIVISOR(wd), CONV_DIVISOR(stride)
#define CONV_KERNEL_GEOMETRY CONV_GEOMETRY, CONV_DIVISOR_PARAMS
#define CONV_DIVISOR_INIT(name, d) \
    { d, (unsigned)name##_magic, name##_shift }
#define CONV_DIVISORS                                                                     \
    ConvDivisors {                                                                        \
        CONV_DIVISOR_INIT(k, k), CONV_DIVISOR_INIT(kk2, k * k),                           \
            CONV_DIVISOR_INIT(positions, oh * ow), CONV_DIVISOR_INIT(ow, ow),             \
            CONV_DIVISOR_INIT(plane, h * wd), CONV_DIVISOR_INIT(wd, wd),                  \
            CONV_DIVISOR_INIT(stride, stride)                                             \
    }

// Forward: y[img, co, oy, ox] = act(b[co] + Σ_{c, ky, kx} w[co, c, ky, kx] ·
//          x[img, c, oy·s + ky - pad, ox·s + kx - pad])   (zero outside the image)
// as the GEMM Y[co, j] = Σ_r W[co, r] · col[r, j], rows co, cols j, depth r; co is
// stored in its part's view.
template <typename Acc, int P>
__device__ void conv_fwd(const float* x, const ConvParts<P>& parts, int relu,
                         const ConvDivisors& by, CONV_GEOMETRY) {
    const int kk2 = k * k, patch = c_in * kk2, positions = oh * ow, cols = n * positions;
    const int m0 = blockIdx.y * Acc::TILE, n0 = blockIdx.x * Acc::TILE;

    auto load_w = [&](int co, int r) {
        int local;
        const ConvPart& part = parts.find(co, local);
        return part.w[local * patch + r];
    };
    auto load_col = [&](int r, int j) {
        return im2col_at(x, r, j, c_in, h, wd, stride, pad, by);
    };
    Acc acc;
    gemm_into<true, false>(acc, c_out, cols, 0, patch, m0, n0, load_w, load_col);

    for_each_output(acc, m0, n0, c_out, cols, [&](int co, int j, float sum) {
        int local;
        const ConvPart& part = parts.find(co, local);
        const float v = sum + part.b[local];
        const int img = by.positions.div(j), p = by.positions.rem(j);
        part.y[part.at(img, local, p, positions)] = (relu && v < 0.0f) ? 0.0f : v;
    });
}

#define CONV_FWD_PART(s) \
    const float *w##s, const float *b##s, float *y##s, int len##s, int offset##s, int total##s
#define CONV_FWD_PART_INIT(s) \
    { w##s, b##s, y##s, nullptr, nullptr, nullptr, nullptr, len##s, offset##s, total##s }

// The accumulators of each precision's core, by tile side 16·R.
template <int R>
using AccF32 = tiled::Acc<R>;
template <int R>
using AccTf32 = tensor::Acc<tensor::Math::Tf32, R>;
template <int R>
using AccBf16 = tensor::Acc<tensor::Math::Bf16, R>;

// One part and three, on 64x64 tiles and (`_small`) 32x32, in precision `prec` (the
// name's suffix) on the core whose accumulators are ACC.
#define CONV_FWD_KERNELS(suffix, R, prec, ACC)                                            \
    extern "C" __global__ void conv_fwd##suffix##prec(const float* x, CONV_FWD_PART(0),   \
                                                      int relu, CONV_KERNEL_GEOMETRY) {   \
        const ConvParts<1> parts = {{CONV_FWD_PART_INIT(0)}};                             \
        conv_fwd<ACC<R>, 1>(x, parts, relu, CONV_DIVISORS, CONV_GEOMETRY_ARGS);           \
    }                                                                                     \
    EMU_REGISTER(conv_fwd##suffix##prec)                                                  \
    extern "C" __global__ void conv3_fwd##suffix##prec(                                   \
        const float* x, CONV_FWD_PART(0), CONV_FWD_PART(1), CONV_FWD_PART(2), int relu,   \
        CONV_KERNEL_GEOMETRY) {                                                           \
        const ConvParts<3> parts = {                                                      \
            {CONV_FWD_PART_INIT(0), CONV_FWD_PART_INIT(1), CONV_FWD_PART_INIT(2)}};       \
        conv_fwd<ACC<R>, 3>(x, parts, relu, CONV_DIVISORS, CONV_GEOMETRY_ARGS);           \
    }                                                                                     \
    EMU_REGISTER(conv3_fwd##suffix##prec)

CONV_FWD_KERNELS(, 4, _f32, AccF32)
CONV_FWD_KERNELS(_small, 2, _f32, AccF32)
CONV_FWD_KERNELS(, 4, _tf32, AccTf32)
CONV_FWD_KERNELS(_small, 2, _tf32, AccTf32)
CONV_FWD_KERNELS(, 4, _bf16, AccBf16)
CONV_FWD_KERNELS(_small, 2, _bf16, AccBf16)

// Backward data (the transposed convolution, as a gather so no two threads write one
// element): dx[img, c, iy, ix] (+)= Σ_{co, ky, kx} w[co, c, ky, kx] · dy[img, co, oy, ox]
// over the taps with iy = oy·s + ky - pad and ix = ox·s + kx - pad for an output
// (oy, ox) inside dy. As the GEMM dX[c, q] = Σ_{(co,ky,kx)} W[co, c, ky, kx] · D[(co,ky,kx), q],
// where D is dy (ReLU-masked when `relu`) at (oy, ox) = ((iy + pad - ky) / s,
// (ix + pad - kx) / s) when those divide exactly and land inside dy, else 0. Rows c,
// cols q, depth c_out·k·k over every part. With `accumulate`, the result is added to
// what dx holds (the gradient gathered so far) instead of replacing it.
template <typename Acc, int P>
__device__ void conv_bwd_data(const ConvParts<P>& parts, float* dx, int relu, int accumulate,
                              const ConvDivisors& by, CONV_GEOMETRY) {
    const int kk2 = k * k, depth = c_out * kk2, plane = h * wd, cols = n * plane;
    const int positions = oh * ow;
    const int m0 = blockIdx.y * Acc::TILE, n0 = blockIdx.x * Acc::TILE;

    auto load_w = [&](int c, int t) {
        int local;
        const ConvPart& part = parts.find(by.kk2.div(t), local);
        return part.w[(local * c_in + c) * kk2 + by.kk2.rem(t)];
    };
    // Output coordinate that input coordinate i reaches through tap kt, or -1.
    auto target = [&](int i, int kt, int len) {
        const int num = i + pad - kt;
        if (num < 0) return -1;
        const int o = by.stride.div(num);
        return (o * stride == num && o < len) ? o : -1;
    };
    auto load_dy = [&](int t, int q) {
        const int tap = by.kk2.rem(t), ky = by.k.div(tap), kx = by.k.rem(tap);
        const int img = by.plane.div(q), pix = by.plane.rem(q);
        const int oy = target(by.wd.div(pix), ky, oh);
        const int ox = target(by.wd.rem(pix), kx, ow);
        if (oy < 0 || ox < 0) return 0.0f;
        int local;
        const ConvPart& part = parts.find(by.kk2.div(t), local);
        return part.grad(img, local, oy * ow + ox, positions, relu);
    };
    Acc acc;
    gemm_into<false, false>(acc, c_in, cols, 0, depth, m0, n0, load_w, load_dy);

    for_each_output(acc, m0, n0, c_in, cols, [&](int c, int q, float sum) {
        const int img = by.plane.div(q), pix = by.plane.rem(q);
        float* out = &dx[(img * c_in + c) * plane + pix];
        *out = accumulate ? *out + sum : sum;
    });
}

#define CONV_GRAD_PART(s) \
    const float *dy##s, const float *y##s, int len##s, int offset##s, int total##s
#define CONV_DATA_PART(s) const float *w##s, CONV_GRAD_PART(s)
#define CONV_DATA_PART_INIT(s) \
    { w##s, nullptr, nullptr, dy##s, y##s, nullptr, nullptr, len##s, offset##s, total##s }

#define CONV_DATA_KERNELS(suffix, R, prec, ACC)                                           \
    extern "C" __global__ void conv_bwd_data##suffix##prec(                               \
        CONV_DATA_PART(0), float* dx, int relu, int accumulate, CONV_KERNEL_GEOMETRY) {   \
        const ConvParts<1> parts = {{CONV_DATA_PART_INIT(0)}};                            \
        conv_bwd_data<ACC<R>, 1>(parts, dx, relu, accumulate, CONV_DIVISORS,              \
                                 CONV_GEOMETRY_ARGS);                                     \
    }                                                                                     \
    EMU_REGISTER(conv_bwd_data##suffix##prec)                                             \
    extern "C" __global__ void conv3_bwd_data##suffix##prec(                              \
        CONV_DATA_PART(0), CONV_DATA_PART(1), CONV_DATA_PART(2), float* dx, int relu,     \
        int accumulate, CONV_KERNEL_GEOMETRY) {                                           \
        const ConvParts<3> parts = {                                                      \
            {CONV_DATA_PART_INIT(0), CONV_DATA_PART_INIT(1), CONV_DATA_PART_INIT(2)}};    \
        conv_bwd_data<ACC<R>, 3>(parts, dx, relu, accumulate, CONV_DIVISORS,              \
                                 CONV_GEOMETRY_ARGS);                                     \
    }                                                                                     \
    EMU_REGISTER(conv3_bwd_data##suffix##prec)

CONV_DATA_KERNELS(, 4, _f32, AccF32)
CONV_DATA_KERNELS(_small, 2, _f32, AccF32)
CONV_DATA_KERNELS(, 4, _tf32, AccTf32)
CONV_DATA_KERNELS(_small, 2, _tf32, AccTf32)
CONV_DATA_KERNELS(, 4, _bf16, AccBf16)
CONV_DATA_KERNELS(_small, 2, _bf16, AccBf16)

// Backward filter and bias, as one GEMM with an extra column: for the output columns j
// in [z·chunk, (z+1)·chunk) with z = blockIdx.z,
//   G[co, r] = Σ_j dy[img, co, oy, ox] · x[img, c, oy·s + ky - pad, ox·s + kx - pad]
//   G[co, patch] = Σ_j dy[img, co, oy, ox]   (a column of ones: the bias gradient)
// (j = (img, oy, ox), r = (c, ky, kx), dy ReLU-masked when `relu`): dW = dY · colᵀ and
// db in one launch. With one split (grid z = 1) G goes straight to each part's dw and
// db; with more, each split writes its own partial G, `part` [splits, c_out, patch + 1],
// and conv_bwd_filter_reduce sums the splits in a fixed order (no float atomics).
// Splitting the long j axis (n·oh·ow) gives small weight tensors enough blocks.
template <typename Acc, int P>
__device__ void conv_bwd_filter(const float* x, const ConvParts<P>& parts, float* part_sums,
                                int chunk, int relu, const ConvDivisors& by, CONV_GEOMETRY) {
    const int kk2 = k * k, patch = c_in * kk2, positions = oh * ow, depth = n * positions;
    const int m0 = blockIdx.y * Acc::TILE, n0 = blockIdx.x * Acc::TILE;
    const int j_begin = blockIdx.z * chunk;
    const int j_end = j_begin + chunk < depth ? j_begin + chunk : depth;

    auto load_dy = [&](int co, int j) {
        int local;
        const ConvPart& part = parts.find(co, local);
        return part.grad(by.positions.div(j), local, by.positions.rem(j), positions, relu);
    };
    auto load_col = [&](int j, int r) {
        return r == patch ? 1.0f : im2col_at(x, r, j, c_in, h, wd, stride, pad, by);
    };
    Acc acc;
    gemm_into<true, true>(acc, c_out, patch + 1, j_begin, j_end, m0, n0, load_dy, load_col);

    for_each_output(acc, m0, n0, c_out, patch + 1, [&](int co, int r, float sum) {
        int local;
        const ConvPart& part = parts.find(co, local);
        if (gridDim.z > 1)
            part_sums[(blockIdx.z * c_out + co) * (patch + 1) + r] = sum;
        else if (r < patch)
            part.dw[local * patch + r] = sum;
        else
            part.db[local] = sum;
    });
}

// Parts of the one-split kernels: where each part's gradients go.
#define CONV_FILTER_PART(s) CONV_GRAD_PART(s), float *dw##s, float *db##s
#define CONV_FILTER_PART_INIT(s) \
    { nullptr, nullptr, nullptr, dy##s, y##s, dw##s, db##s, len##s, offset##s, total##s }
// Parts of the split kernels, which write `part` instead.
#define CONV_SPLIT_PART_INIT(s) \
    { nullptr, nullptr, nullptr, dy##s, y##s, nullptr, nullptr, len##s, offset##s, total##s }

// The filter GEMMs of one precision, on 64x64 tiles: one split and several, one part
// and three.
#define CONV_FILTER_KERNELS(prec, ACC)                                                    \
    extern "C" __global__ void conv_bwd_filter##prec(const float* x, CONV_FILTER_PART(0), \
                                                     int relu, CONV_KERNEL_GEOMETRY) {    \
        const ConvParts<1> parts = {{CONV_FILTER_PART_INIT(0)}};                          \
        conv_bwd_filter<ACC<4>>(x, parts, nullptr, n * oh * ow, relu, CONV_DIVISORS,      \
                                CONV_GEOMETRY_ARGS);                                      \
    }                                                                                     \
    EMU_REGISTER(conv_bwd_filter##prec)                                                   \
    extern "C" __global__ void conv3_bwd_filter##prec(                                    \
        const float* x, CONV_FILTER_PART(0), CONV_FILTER_PART(1), CONV_FILTER_PART(2),    \
        int relu, CONV_KERNEL_GEOMETRY) {                                                 \
        const ConvParts<3> parts = {{CONV_FILTER_PART_INIT(0), CONV_FILTER_PART_INIT(1),  \
                                     CONV_FILTER_PART_INIT(2)}};                          \
        conv_bwd_filter<ACC<4>>(x, parts, nullptr, n * oh * ow, relu, CONV_DIVISORS,      \
                                CONV_GEOMETRY_ARGS);                                      \
    }                                                                                     \
    EMU_REGISTER(conv3_bwd_filter##prec)                                                  \
    extern "C" __global__ void conv_bwd_filter_split##prec(                               \
        const float* x, CONV_GRAD_PART(0), float* part, int chunk, int relu,              \
        CONV_KERNEL_GEOMETRY) {                                                           \
        const ConvParts<1> parts = {{CONV_SPLIT_PART_INIT(0)}};                           \
        conv_bwd_filter<ACC<4>>(x, parts, part, chunk, relu, CONV_DIVISORS,               \
                                CONV_GEOMETRY_ARGS);                                      \
    }                                                                                     \
    EMU_REGISTER(conv_bwd_filter_split##prec)                                             \
    extern "C" __global__ void conv3_bwd_filter_split##prec(                              \
        const float* x, CONV_GRAD_PART(0), CONV_GRAD_PART(1), CONV_GRAD_PART(2),          \
        float* part, int chunk, int relu, CONV_KERNEL_GEOMETRY) {                         \
        const ConvParts<3> parts = {{CONV_SPLIT_PART_INIT(0), CONV_SPLIT_PART_INIT(1),    \
                                     CONV_SPLIT_PART_INIT(2)}};                           \
        conv_bwd_filter<ACC<4>>(x, parts, part, chunk, relu, CONV_DIVISORS,               \
                                CONV_GEOMETRY_ARGS);                                      \
    }                                                                                     \
    EMU_REGISTER(conv3_bwd_filter_split##prec)

CONV_FILTER_KERNELS(_f32, AccF32)
CONV_FILTER_KERNELS(_tf32, AccTf32)
CONV_FILTER_KERNELS(_bf16, AccBf16)

// Sums the split partials of conv_bwd_filter (any precision) in split order, for e = (co, r) < c_out·(patch+1):
// G[e] = ((part[0, e] + part[1, e]) + ...) + part[splits-1, e], stored in co's part as
// dw (r < patch) or db (r = patch). Launch: one thread per element of G.
template <int P>
__device__ void conv_bwd_filter_reduce(const float* part_sums, const ConvParts<P>& parts,
                                       int c_out, int patch, int splits) {
    const int len = c_out * (patch + 1);
    const int e = blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= len) return;
    float sum = part_sums[e];
    for (int s = 1; s < splits; ++s) sum += part_sums[s * len + e];
    const int co = e / (patch + 1), r = e % (patch + 1);
    int local;
    const ConvPart& part = parts.find(co, local);
    if (r < patch)
        part.dw[local * patch + r] = sum;
    else
        part.db[local] = sum;
}

#define CONV_REDUCE_PART(s) float *dw##s, float *db##s, int len##s
#define CONV_REDUCE_PART_INIT(s) \
    { nullptr, nullptr, nullptr, nullptr, nullptr, dw##s, db##s, len##s, 0, 0 }

extern "C" __global__ void conv_bwd_filter_reduce_f32(const float* part, CONV_REDUCE_PART(0),
                                                      int c_out, int patch, int splits) {
    const ConvParts<1> parts = {{CONV_REDUCE_PART_INIT(0)}};
    conv_bwd_filter_reduce(part, parts, c_out, patch, splits);
}
EMU_REGISTER(conv_bwd_filter_reduce_f32)

extern "C" __global__ void conv3_bwd_filter_reduce_f32(const float* part, CONV_REDUCE_PART(0),
                                                       CONV_REDUCE_PART(1),
                                                       CONV_REDUCE_PART(2), int c_out,
                                                       int patch, int splits) {
    const ConvParts<3> parts = {
        {CONV_REDUCE_PART_INIT(0), CONV_REDUCE_PART_INIT(1), CONV_REDUCE_PART_INIT(2)}};
    conv_bwd_filter_reduce(part, parts, c_out, patch, splits);
}
EMU_REGISTER(conv3_bwd_filter_reduce_f32)

// The emulator compiles every kernel file into one translation unit: keep the macros here.
#undef CONV_GEOMETRY
#undef CONV_GEOMETRY_ARGS
#undef CONV_DIVISOR
#undef CONV_DIVISOR_PARAMS
#undef CONV_KERNEL_GEOMETRY
#undef CONV_DIVISOR_INIT
#undef CONV_DIVISORS
#undef CONV_FWD_PART
#undef CONV_FWD_PART_INIT
#undef CONV_FWD_KERNELS
#undef CONV_DATA_KERNELS
#undef CONV_FILTER_KERNELS
#undef CONV_GRAD_PART
#undef CONV_DATA_PART
#undef CONV_DATA_PART_INIT
#undef CONV_FILTER_PART
#undef CONV_FILTER_PART_INIT
#undef CONV_SPLIT_PART_INIT
#undef CONV_REDUCE_PART
#undef CONV_REDUCE_PART_INIT
