// Tensor-core instructions for the kernels: TF32 and bf16 conversions, mma.sync,
// ldmatrix and cp.async, each one function. Under nvcc each is one inline PTX
// instruction (sm_80 and up); built for the emulator (GOOGLENET_EMU) each calls the
// emulator, which runs it with the hardware's semantics (kernels/emu/cuda_emu.h,
// "Tensor-core instructions"): warp-collective, every lane of the warp must arrive, the
// fragment layouts below, TF32 operands truncated to their top 19 bits, cp.async copies
// landing at the wait that covers them. Tested on hand-checkable matrices by
// kernels/mma_selftest.cu (tests/emulator/tensor_cores.rs, emu and cuda).
//
// Changes to the agreed API: none. Under the emulator the mma, ldmatrix and cp.async
// functions also take the caller's file and line (defaulted, as __syncthreads does),
// for the error messages; ldmatrix_x1 and ldmatrix_x1_trans are there too.
//
// Fragment layouts, from the PTX ISA ("Matrix Fragments for mma.m16n8k8" with .tf32,
// "Matrix Fragments for mma.m16n8k16 with floating point type" with .bf16). For lane
// l of the warp: g = l >> 2 (groupID), t = l % 4 (threadID_in_group); (row, col).
//
//   mma_tf32_m16n8k8: D (16x8) = A (16x8, row-major) · B (8x8, column-major) + C
//     a[0]: (g, t)      a[1]: (g+8, t)     a[2]: (g, t+4)    a[3]: (g+8, t+4)
//     b[0]: (t, g)      b[1]: (t+4, g)
//     c[0], c[1]: (g, 2t), (g, 2t+1)       c[2], c[3]: (g+8, 2t), (g+8, 2t+1)    (d alike)
//   Each a[i], b[i] is a TF32 value as f32 bits; the hardware ignores the low 13 bits
//   (so round with to_tf32 first, or the operand is truncated).
//
//   mma_bf16_m16n8k16: D (16x8) = A (16x16, row-major) · B (16x8, column-major) + C
//     each register holds two bf16, the first in bits 0..15 (pack_bf16x2(lo, hi)):
//     a[0]: (g, 2t), (g, 2t+1)        a[1]: (g+8, 2t), (g+8, 2t+1)
//     a[2]: (g, 2t+8), (g, 2t+9)      a[3]: (g+8, 2t+8), (g+8, 2t+9)
//     b[0]: (2t, g), (2t+1, g)        b[1]: (2t+8, g), (2t+9, g)
//     c, d: as for tf32.
//
//   ldmatrix (m8n8, 16-bit elements): matrix i of x1/x2/x4 has its 8 rows (16 bytes
//   each, 16-byte aligned, in shared memory) at the addresses lanes 8i .. 8i+7 pass;
//   the other lanes' addresses are not used. Lane l receives in r[i], first element in
//   bits 0..15:
//     plain:  row l/4, columns 2(l%4) and 2(l%4)+1   (an A or row-major fragment)
//     .trans: rows 2(l%4) and 2(l%4)+1 of column l/4  (the matrix transposed)
//   So for bf16 A (16x16, row-major in shared memory), lanes 0-15 pointing at rows
//   0-15 of columns 0-7 and lanes 16-31 at rows 0-15 of columns 8-15, ldmatrix_x4 gives
//   exactly a[0..3] above; for bf16 B stored k-major (B[k][n], rows of 8), lanes 0-15
//   pointing at rows k = 0-15, ldmatrix_x2_trans gives b[0..1]. For TF32 (32-bit
//   elements, each a pair of 16-bit ones), lane l gets word l % 4 of row l / 4: A
//   (16x8, row-major), lanes 0-15 at rows 0-15 of words 0-3 and lanes 16-31 at rows
//   0-15 of words 4-7, ldmatrix_x4 gives a[0..3]; B must be stored n-major
//   (Bt[n][k]): lanes 0-7 at rows n = 0-7 of words 0-3, lanes 8-15 at words 4-7,
//   ldmatrix_x2 gives b[0..1] (.trans would split the words). kernels/mma_selftest.cu
//   does both. Declare the arrays `__shared__ __align__(16) T name[...]`.
//
//   cp.async: `BYTES` (4, 8 or 16) from global `gmem` to shared `smem`, both aligned to
//   BYTES (the emulator checks both, `valid` or not; device buffers start 16-byte
//   aligned, so a 16-byte copy needs an element offset that is a multiple of 4 floats
//   or 8 bf16); with `valid` false the source is not read and BYTES zeros land instead
//   (src-size 0: out-of-bounds tiles cost no branch). The copies since the last commit
//   form a group at cp_async_commit(); cp_async_wait<N>() waits until at most the N
//   newest groups are pending. Only then is the copy in shared memory, and only for
//   the waiting thread: other threads see it after a __syncthreads that follows the
//   wait. A thread must wait for all its groups before it exits.
//
// Include once per kernel file, after common.cuh. No include guard, on purpose, as in
// tiled_gemm.cuh: the emulator compiles every kernel file in one translation unit, each
// inside its own namespace, and each needs its own copy.

#include "common.cuh"

#ifndef GOOGLENET_EMU
#include <stdint.h>
#endif

#ifdef GOOGLENET_EMU
// The caller's site, for the emulator's messages: after other parameters, or alone.
#define MMA_SITE_FIRST const char *file = __builtin_FILE(), int line = __builtin_LINE()
#define MMA_SITE , MMA_SITE_FIRST
#else
#define MMA_SITE_FIRST
#define MMA_SITE
#endif

// TF32 rounding: cvt.rna.tf32.f32 (round to nearest, ties away from zero, to 10
// mantissa bits); the result as f32 bits with the low 13 bits zero. Infinities stay;
// a finite value that rounds past the largest TF32 becomes infinity; a NaN stays a NaN
// (which NaN is not specified).
__device__ __forceinline__ uint32_t to_tf32(float x) {
#ifdef GOOGLENET_EMU
    return ::emu::tf32_round(x);
#else
    uint32_t r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
    return r;
#endif
}

// Two floats to bf16, round to nearest even (cvt.rn.bf16x2.f32), packed: `lo` in bits
// 0..15, `hi` in 16..31. (The instruction's first source goes to the high half.)
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
#ifdef GOOGLENET_EMU
    return (uint32_t)__float2bfloat16_rn(lo).__x | (uint32_t)__float2bfloat16_rn(hi).__x << 16;
#else
    uint32_t r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
#endif
}

// D = A·B + C over the warp (layouts above); d may be c.
__device__ __forceinline__ void mma_tf32_m16n8k8(float (&d)[4], const uint32_t (&a)[4],
                                                 const uint32_t (&b)[2],
                                                 const float (&c)[4] MMA_SITE) {
#ifdef GOOGLENET_EMU
    ::emu::mma(::emu::WarpOp::MmaTf32, d, a, b, c, file, line);
#else
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9}, {%10, %11, %12, %13};"
        : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]),
          "f"(c[1]), "f"(c[2]), "f"(c[3]));
#endif
}

__device__ __forceinline__ void mma_bf16_m16n8k16(float (&d)[4], const uint32_t (&a)[4],
                                                  const uint32_t (&b)[2],
                                                  const float (&c)[4] MMA_SITE) {
#ifdef GOOGLENET_EMU
    ::emu::mma(::emu::WarpOp::MmaBf16, d, a, b, c, file, line);
#else
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, "
        "%7}, {%8, %9}, {%10, %11, %12, %13};"
        : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]),
          "f"(c[1]), "f"(c[2]), "f"(c[3]));
#endif
}

// ldmatrix.sync.aligned.m8n8.x{1,2,4}{,.trans}.shared.b16: `smem_row` is the row this
// lane supplies (layouts above). No "memory" clobber, as in CUTLASS: the stores it reads
// are ordered before it by the __syncthreads / __syncwarp the kernel needs anyway.
#ifdef GOOGLENET_EMU
#define MMA_LDMATRIX(name, count, op, ptx)                                     \
    __device__ __forceinline__ void name(uint32_t (&r)[count],                 \
                                         const void* smem_row MMA_SITE) {      \
        ::emu::ldmatrix(::emu::WarpOp::op, r, smem_row, file, line);           \
    }
#else
#define MMA_LDMATRIX_REGS_1 "{%0}, [%1];" : "=r"(r[0])
#define MMA_LDMATRIX_REGS_2 "{%0, %1}, [%2];" : "=r"(r[0]), "=r"(r[1])
#define MMA_LDMATRIX_REGS_4 \
    "{%0, %1, %2, %3}, [%4];" : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
#define MMA_LDMATRIX(name, count, op, ptx)                                            \
    __device__ __forceinline__ void name(uint32_t (&r)[count], const void* smem_row) { \
        uint32_t address = (uint32_t)__cvta_generic_to_shared(smem_row);              \
        asm volatile("ldmatrix.sync.aligned.m8n8." ptx ".shared.b16 "                 \
                     MMA_LDMATRIX_REGS_##count : "r"(address));                       \
    }
#endif
MMA_LDMATRIX(ldmatrix_x1, 1, LdmatrixX1, "x1")
MMA_LDMATRIX(ldmatrix_x2, 2, LdmatrixX2, "x2")
MMA_LDMATRIX(ldmatrix_x4, 4, LdmatrixX4, "x4")
MMA_LDMATRIX(ldmatrix_x1_trans, 1, LdmatrixX1Trans, "x1.trans")
MMA_LDMATRIX(ldmatrix_x2_trans, 2, LdmatrixX2Trans, "x2.trans")
MMA_LDMATRIX(ldmatrix_x4_trans, 4, LdmatrixX4Trans, "x4.trans")
#undef MMA_LDMATRIX
#ifndef GOOGLENET_EMU
#undef MMA_LDMATRIX_REGS_1
#undef MMA_LDMATRIX_REGS_2
#undef MMA_LDMATRIX_REGS_4
#endif

// cp.async.cg (16 bytes: L2 only, the operand tiles are read once per block) or .ca
// (4 or 8) .shared.global, with src-size BYTES or 0 (zero fill).
template <int BYTES>
__device__ __forceinline__ void cp_async(void* smem, const void* gmem, bool valid MMA_SITE) {
    static_assert(BYTES == 4 || BYTES == 8 || BYTES == 16, "cp.async copies 4, 8 or 16 bytes");
#ifdef GOOGLENET_EMU
    ::emu::cp_async(smem, gmem, BYTES, valid, file, line);
#else
    uint32_t address = (uint32_t)__cvta_generic_to_shared(smem);
    int source_bytes = valid ? BYTES : 0;
    if constexpr (BYTES == 16) {
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(address), "l"(gmem),
                     "r"(source_bytes)
                     : "memory");
    } else {
        asm volatile("cp.async.ca.shared.global [%0], [%1], %2, %3;" ::"r"(address), "l"(gmem),
                     "n"(BYTES), "r"(source_bytes)
                     : "memory");
    }
#endif
}

// cp.async.commit_group: the calling thread's copies since the last commit become a group.
__device__ __forceinline__ void cp_async_commit(MMA_SITE_FIRST) {
#ifdef GOOGLENET_EMU
    ::emu::cp_async_commit(file, line);
#else
    asm volatile("cp.async.commit_group;" ::: "memory");
#endif
}

// cp.async.wait_group N: until at most the N newest groups of the calling thread are
// pending; the older ones have landed.
template <int N>
__device__ __forceinline__ void cp_async_wait(MMA_SITE_FIRST) {
    static_assert(N >= 0, "cp.async.wait_group takes a count of groups");
#ifdef GOOGLENET_EMU
    ::emu::cp_async_wait(N, file, line);
#else
    asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
#endif
}

#undef MMA_SITE
#undef MMA_SITE_FIRST
