// The shared-memory GEMM core used by conv.cu and linear.cu.
//
// One block of 256 threads computes a 64x64 tile of C[m, n] = Σ_k A(m, k) · B(k, n),
// stepping through k 16 at a time: the block stages a 64x16 slice of A and a 16x64
// slice of B in shared memory, then each thread multiplies them into its own 4x4
// register tile. With R = 2 outputs per thread per side (the `acc` array's size picks
// it) the tile is 32x32: four times the blocks, for products too small to fill the GPU
// with 64x64 tiles. Operands are read through functors (`load_a(m, k)`, `load_b(k, n)`),
// so the same core serves plain matrices (linear) and implicit im2col matrices (conv)
// that are never materialised. The core does all bounds checks: a functor is only
// called for in-range (m, k) / (k, n), and out-of-range elements count as zero, so
// any size works, tile multiple or not.
//
// Thread (tx, ty) = (tid % 16, tid / 16) owns C rows `m0 + ty + 16 i` and columns
// `n0 + tx + 16 j` (i, j < R): strided rather than blocked, so that the threads of a
// warp read consecutive shared-memory words (no bank conflicts) and write consecutive
// columns of C (coalesced when n is C's contiguous axis).
//
// Summation order is fixed (k ascending within the range, one accumulator per
// output), so results are deterministic; it differs from the CPU's GEMM, so
// comparisons against the CPU need a tolerance.
//
// No include guard, on purpose: the emulator compiles every kernel file into one
// translation unit, each inside its own namespace, so each file that includes this
// header (once) needs its own copy of it.

#include "common.cuh"

namespace tiled {

constexpr int TILE_K = 16;
constexpr int SIDE = 16;                   // threads per tile side
constexpr int THREADS = SIDE * SIDE;       // the block size every GEMM kernel is launched with
constexpr int REG = 4;                     // the usual 4x4 outputs per thread
constexpr int TILE_M = SIDE * REG;         // and so 64x64 tiles
constexpr int TILE_N = SIDE * REG;

// Computes `acc[i][j] = Σ_{k in [k_begin, k_end)} A(m0 + ty + 16 i, k) · B(k, n0 + tx + 16 j)`
// for the calling thread, where A is `rows x ·` and B is `· x cols`, on a tile of side
// 16·R.
// A_K_FAST / B_K_FAST choose which index consecutive threads walk when staging an
// operand: k when k is the operand's contiguous axis in memory, m (or n) otherwise.
// Every thread of the block must call this (it synchronises).
template <bool A_K_FAST, bool B_K_FAST, int R, typename LoadA, typename LoadB>
__device__ void gemm_tile(int rows, int cols, int k_begin, int k_end, int m0, int n0,
                          LoadA load_a, LoadB load_b, float (&acc)[R][R]) {
    constexpr int TILE = SIDE * R;
    constexpr int LOADS = TILE * TILE_K / THREADS;  // elements of each operand one thread stages
    static_assert(TILE * TILE_K == LOADS * THREADS, "staging must cover the slice exactly");
    // +1 column: staging stores walk down a column in the k-fast case, and a row
    // stride of 65 (or 33) words puts consecutive k in different banks.
    __shared__ float a_tile[TILE_K][TILE + 1];
    __shared__ float b_tile[TILE_K][TILE + 1];

    const int tid = threadIdx.x;
    const int tx = tid % SIDE;
    const int ty = tid / SIDE;

    for (int i = 0; i < R; ++i)
        for (int j = 0; j < R; ++j) acc[i][j] = 0.0f;

    for (int k0 = k_begin; k0 < k_end; k0 += TILE_K) {
        for (int l = 0; l < LOADS; ++l) {
            const int e = tid + THREADS * l;
            const int kk = A_K_FAST ? e % TILE_K : e / TILE;
            const int mm = A_K_FAST ? e / TILE_K : e % TILE;
            const int m = m0 + mm, k = k0 + kk;
            a_tile[kk][mm] = (m < rows && k < k_end) ? load_a(m, k) : 0.0f;
        }
        for (int l = 0; l < LOADS; ++l) {
            const int e = tid + THREADS * l;
            const int kk = B_K_FAST ? e % TILE_K : e / TILE;
            const int nn = B_K_FAST ? e / TILE_K : e % TILE;
            const int n = n0 + nn, k = k0 + kk;
            b_tile[kk][nn] = (n < cols && k < k_end) ? load_b(k, n) : 0.0f;
        }
        __syncthreads();

        for (int kk = 0; kk < TILE_K; ++kk) {
            float a[R], b[R];
            for (int i = 0; i < R; ++i) a[i] = a_tile[kk][ty + SIDE * i];
            for (int j = 0; j < R; ++j) b[j] = b_tile[kk][tx + SIDE * j];
            for (int i = 0; i < R; ++i)
                for (int j = 0; j < R; ++j) acc[i][j] += a[i] * b[j];
        }
        // The next iteration overwrites the tiles: everyone must be done reading.
        __syncthreads();
    }
}

// Row and column of C that `acc[i][j]` holds, for the calling thread.
__device__ inline int tile_row(int m0, int i) { return m0 + threadIdx.x / SIDE + SIDE * i; }
__device__ inline int tile_col(int n0, int j) { return n0 + threadIdx.x % SIDE + SIDE * j; }

// One thread's accumulators, for kernels written once over this core and the tensor-core
// one (mma_gemm.cuh), through `gemm_into` and `for_each_output` below.
template <int R>
struct Acc {
    static constexpr int TILE = SIDE * R;
    float v[R][R];
};

}  // namespace tiled

// `gemm_tile` into `acc` (the same arguments, in the same order as mma_gemm.cuh's).
template <bool A_K_FAST, bool B_K_FAST, int R, typename LoadA, typename LoadB>
__device__ void gemm_into(tiled::Acc<R>& acc, int rows, int cols, int k_begin, int k_end, int m0,
                          int n0, LoadA load_a, LoadB load_b) {
    tiled::gemm_tile<A_K_FAST, B_K_FAST, R>(rows, cols, k_begin, k_end, m0, n0, load_a, load_b,
                                            acc.v);
}

// Calls `store(row, col, value)` for each in-range output the calling thread holds.
template <int R, typename Store>
__device__ void for_each_output(const tiled::Acc<R>& acc, int m0, int n0, int rows, int cols,
                                Store store) {
    UNROLL
    for (int i = 0; i < R; ++i) {
        const int row = tiled::tile_row(m0, i);
        if (row >= rows) continue;
        UNROLL
        for (int j = 0; j < R; ++j) {
            const int col = tiled::tile_col(n0, j);
            if (col < cols) store(row, col, acc.v[i][j]);
        }
    }
}
