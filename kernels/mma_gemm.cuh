// The tensor-core GEMM core used by conv.cu and linear.cu for --precision tf32 and bf16,
// beside the f32 SIMT core of tiled_gemm.cuh (the reference every kernel built on this
// one is tested against). Same contract as that core: one block of 256 threads computes a
// (16·R)x(16·R) tile of C[m, n] = Σ_{k in [k_begin, k_end)} A(m, k) · B(k, n), R = 4
// (64x64) or 2 (32x32), with the operands read through functors `load_a(m, k)`,
// `load_b(k, n)` that are only called in range (out of range counts as zero), so the
// same grids, tiles and split-K chunks serve both cores and the launch code only picks a
// kernel name.
//
// Math (mma.cuh): each operand is rounded once, on its way into shared memory, to TF32
// (cvt.rna: 10 mantissa bits, round to nearest, ties away) or to bf16 (round to nearest
// even, 7 mantissa bits); products are exact and summed in f32 by `mma.sync` m16n8k8
// (tf32) or m16n8k16 (bf16). The summation order is fixed (k ascending in steps of the
// mma's k, one accumulator per output), so results are deterministic.
//
// Layout. The block's 8 warps form a 2x4 grid over the tile: each warp owns a
// (8·R)x(4·R) piece, (R/2)x(R/2) mma tiles of 16x8. Both operands are staged k-contiguous,
// `a_tile[m][k]` and `b_tile[n][k]`, which is what the row.col mma wants, so every
// fragment is one ldmatrix: A's four 8x8 (16-bit) matrices are rows 0-7 / 8-15 by k words
// 0-3 / 4-7 of a 16x8-word block (tf32: 16x8 elements; bf16: 16x16), B's two are n rows
// 0-7 by k words 0-3 / 4-7; the PTX ISA's fragment layouts for both shapes are exactly
// what ldmatrix hands each lane then. A row of a tile is 16 words of k (tf32: one per
// element; bf16: packed pairs, 8 words) plus 4 words of padding, so a row is 80 (or
// 48) bytes: an odd number of 16-byte units, so the 8 rows one 8x8 matrix reads fall in 8
// different bank groups (no ldmatrix bank conflicts).
//
// Staging is register-staged double buffering, not cp.async: the operands are gathers
// through the functors, which compute padding, ReLU masks and channel views as they load
// (a value, not an address cp.async could copy), and which round to TF32 / bf16. Each
// thread loads its next k slice into registers before the mma's on the current one, and
// stores it into the other shared buffer after them: one barrier per slice.
//
// No include guard, on purpose (see tiled_gemm.cuh): the emulator compiles each kernel
// file in its own namespace, each with its own copy.

#include "common.cuh"
#include "mma.cuh"

namespace tensor {

enum class Math { Tf32, Bf16 };

constexpr int THREADS = 256;  // as tiled::THREADS: the grids are the same
constexpr int TILE_K = 16;    // k per shared-memory slice, as tiled::TILE_K
constexpr int WARPS_M = 2;
constexpr int WARPS_N = 4;
constexpr int MMA_WORDS = 8;  // 32-bit words of k one mma step reads per row (both maths)
constexpr int PAD_WORDS = 4;  // one 16-byte unit: see the layout above

template <Math M>
struct Format;

template <>
struct Format<Math::Tf32> {
    static constexpr int K_WORDS = TILE_K;  // one word per element
    // Elements (k, k+1) = (2 kp, 2 kp + 1) of the slice's row `row`, rounded.
    template <typename Tile>
    static __device__ void pack(Tile& tile, int buf, int row, int kp, float lo, float hi) {
        tile[buf][row][2 * kp] = to_tf32(lo);
        tile[buf][row][2 * kp + 1] = to_tf32(hi);
    }
    static __device__ void mma(float (&acc)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
        mma_tf32_m16n8k8(acc, a, b, acc);
    }
};

template <>
struct Format<Math::Bf16> {
    static constexpr int K_WORDS = TILE_K / 2;  // two elements per word
    template <typename Tile>
    static __device__ void pack(Tile& tile, int buf, int row, int kp, float lo, float hi) {
        tile[buf][row][kp] = pack_bf16x2(lo, hi);
    }
    static __device__ void mma(float (&acc)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
        mma_bf16_m16n8k16(acc, a, b, acc);
    }
};

// One thread's accumulators: for each of its warp's (R/2)x(R/2) mma tiles, the four f32
// values of the m16n8 C fragment (PTX ISA: c0, c1 at row g, columns 2t, 2t+1; c2, c3 at
// row g + 8, with g = lane / 4, t = lane % 4).
template <Math M, int R>
struct Acc {
    static constexpr int TILE = 16 * R;
    static constexpr int WARP_M = TILE / WARPS_M;
    static constexpr int WARP_N = TILE / WARPS_N;
    static constexpr int MT = WARP_M / 16;
    static constexpr int NT = WARP_N / 8;
    static_assert(MT >= 1 && NT >= 1, "a warp needs at least one 16x8 mma tile");
    float v[MT][NT][4];
};

// Where pair `e` of a slice (elements k, k+1 of one row) lives in the tile: with K_FAST
// consecutive pairs walk k (k is the operand's contiguous axis in memory), else rows.
template <bool K_FAST, int TILE>
__device__ inline void pair_slot(int e, int& row, int& kp) {
    constexpr int PAIRS_PER_ROW = TILE_K / 2;
    row = K_FAST ? e / PAIRS_PER_ROW : e % TILE;
    kp = K_FAST ? e % PAIRS_PER_ROW : e / TILE;
}

}  // namespace tensor

// acc = the calling thread's part of the tile at (m0, n0) of A·B over [k_begin, k_end),
// A `rows x ·`, B `· x cols`. Every thread of the block must call this (it synchronises).
template <bool A_K_FAST, bool B_K_FAST, tensor::Math M, int R, typename LoadA, typename LoadB>
__device__ void gemm_into(tensor::Acc<M, R>& acc, int rows, int cols, int k_begin, int k_end,
                          int m0, int n0, LoadA load_a, LoadB load_b) {
    using namespace tensor;
    using F = Format<M>;
    using A = Acc<M, R>;
    constexpr int TILE = A::TILE;
    constexpr int ROW = F::K_WORDS + PAD_WORDS;
    constexpr int PAIRS = TILE * TILE_K / 2 / THREADS;  // pairs of each operand a thread stages
    static_assert(PAIRS * 2 * THREADS == TILE * TILE_K, "staging must cover the slice exactly");
    // 16-byte aligned, as ldmatrix's row addresses must be.
    __shared__ __align__(16) uint32_t a_tile[2][TILE][ROW];
    __shared__ __align__(16) uint32_t b_tile[2][TILE][ROW];

    const int tid = threadIdx.x;
    const int lane = tid % 32, warp = tid / 32;
    const int wm = (warp / WARPS_N) * A::WARP_M, wn = (warp % WARPS_N) * A::WARP_N;

    UNROLL
    for (int i = 0; i < A::MT; ++i)
        UNROLL
        for (int j = 0; j < A::NT; ++j)
            UNROLL
            for (int c = 0; c < 4; ++c) acc.v[i][j][c] = 0.0f;

    // The next slice, in registers: pair l of each operand.
    float a_next[PAIRS][2], b_next[PAIRS][2];
    auto fetch = [&](int k0) {
        UNROLL
        for (int l = 0; l < PAIRS; ++l) {
            int row, kp;
            pair_slot<A_K_FAST, TILE>(tid + THREADS * l, row, kp);
            const int m = m0 + row, k = k0 + 2 * kp;
            a_next[l][0] = (m < rows && k < k_end) ? load_a(m, k) : 0.0f;
            a_next[l][1] = (m < rows && k + 1 < k_end) ? load_a(m, k + 1) : 0.0f;
        }
        UNROLL
        for (int l = 0; l < PAIRS; ++l) {
            int row, kp;
            pair_slot<B_K_FAST, TILE>(tid + THREADS * l, row, kp);
            const int n = n0 + row, k = k0 + 2 * kp;
            b_next[l][0] = (n < cols && k < k_end) ? load_b(k, n) : 0.0f;
            b_next[l][1] = (n < cols && k + 1 < k_end) ? load_b(k + 1, n) : 0.0f;
        }
    };
    auto stage = [&](int buf) {
        UNROLL
        for (int l = 0; l < PAIRS; ++l) {
            int row, kp;
            pair_slot<A_K_FAST, TILE>(tid + THREADS * l, row, kp);
            F::pack(a_tile, buf, row, kp, a_next[l][0], a_next[l][1]);
            pair_slot<B_K_FAST, TILE>(tid + THREADS * l, row, kp);
            F::pack(b_tile, buf, row, kp, b_next[l][0], b_next[l][1]);
        }
    };

    if (k_begin >= k_end) return;  // the same for every thread: no barrier is skipped
    fetch(k_begin);
    stage(0);
    __syncthreads();
    int buf = 0;
    for (int k0 = k_begin; k0 < k_end; k0 += TILE_K) {
        const bool more = k0 + TILE_K < k_end;
        if (more) fetch(k0 + TILE_K);  // global loads in flight during the mma's
        UNROLL
        for (int s = 0; s < F::K_WORDS / MMA_WORDS; ++s) {
            const int word = MMA_WORDS * s;
            uint32_t a[A::MT][4], b[A::NT][2];
            UNROLL
            for (int i = 0; i < A::MT; ++i)
                ldmatrix_x4(a[i], &a_tile[buf][wm + 16 * i + lane % 16][word + (lane / 16) * 4]);
            UNROLL
            for (int j = 0; j < A::NT; ++j)
                ldmatrix_x2(b[j], &b_tile[buf][wn + 8 * j + lane % 8][word + (lane / 8 % 2) * 4]);
            UNROLL
            for (int i = 0; i < A::MT; ++i)
                UNROLL
                for (int j = 0; j < A::NT; ++j) F::mma(acc.v[i][j], a[i], b[j]);
        }
        // The other buffer was last read before the previous barrier: free to fill.
        if (more) stage(buf ^ 1);
        __syncthreads();
        buf ^= 1;
    }
}

// Calls `store(row, col, value)` for each in-range output the calling thread holds.
template <tensor::Math M, int R, typename Store>
__device__ void for_each_output(const tensor::Acc<M, R>& acc, int m0, int n0, int rows, int cols,
                                Store store) {
    using A = tensor::Acc<M, R>;
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const int g = lane / 4, t = lane % 4;
    const int row0 = m0 + (warp / tensor::WARPS_N) * A::WARP_M + g;
    const int col0 = n0 + (warp % tensor::WARPS_N) * A::WARP_N + 2 * t;
    UNROLL
    for (int i = 0; i < A::MT; ++i)
        UNROLL
        for (int j = 0; j < A::NT; ++j)
            UNROLL
            for (int c = 0; c < 4; ++c) {
                const int row = row0 + 16 * i + 8 * (c / 2), col = col0 + 8 * j + c % 2;
                if (row < rows && col < cols) store(row, col, acc.v[i][j][c]);
            }
}
