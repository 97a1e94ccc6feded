// Division by a run-time divisor without a divide instruction: the launch code computes
// each divisor's multiplier and shift once (src/engine/device/gpu/conv.rs, `divisor_args`) and
// passes them with it, so a quotient is a multiply-high, an add and a shift. (The GPU has
// no integer divide unit: ptxas expands each PTX div or rem by a run-time value into a
// float-reciprocal sequence with integer fix-ups, many times that.)
//
// Math (Granlund & Montgomery's round-up method). For a divisor 1 <= d < 2^31 let
// s = ⌈log2 d⌉ and M = ⌊2^(32+s) / d⌋ + 1, so M = 2^(32+s)/d + e with 0 < e <= 1, and
// pass the low word m = M - 2^32 (< 2^32, as 2^(32+s)/d < 2^33). Then for 0 <= a < 2^31
//   ⌊a / d⌋ = ⌊a·M / 2^(32+s)⌋ = (umulhi(a, m) + a) >> s
// exactly: a·M / 2^(32+s) = a/d + a·e / 2^(32+s), and a·e / 2^(32+s) < 2^-(s+1) <= 1/d
// (as d <= 2^s), which never carries a/d's fraction (at most 1 - 1/d) past the next
// integer. umulhi(a, m) + a <= 2a < 2^32 cannot overflow. Every index the kernels divide
// is an int >= 0, so a < 2^31 holds.
//
// No include guard, as tiled_gemm.cuh: the emulator compiles each kernel file in its own
// namespace, each with its own copy.

#include "common.cuh"

struct Divisor {
    int d;
    unsigned magic;  // m above
    int shift;       // s above

    __device__ int div(int a) const {
        return (int)((__umulhi((unsigned)a, magic) + (unsigned)a) >> shift);
    }
    __device__ int rem(int a) const { return a - div(a) * d; }
};
