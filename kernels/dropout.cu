#include "common.cuh"

// Inverted dropout, mask drawn exactly as `dropout_keeps` in src/engine/device/mod.rs, so the
// mask is bit-identical to the CPU's on every device:
//   z = splitmix64_finalise(seed ^ (i + 1) · 0x9E3779B97F4A7C15),  u = (z >> 40) · 2⁻²⁴,
//   y[i] = u >= p ? x[i] · (1 / (1 - p)) : 0
// Forward and backward are the same map (backward passes dy as x). The products use
// __f*_rn intrinsics: they are exactly rounded whatever the compiler flags (no fast-math
// division), as the CPU's. The seed is read from device memory, `seed_words[0]` its low
// and `seed_words[1]` its high 32 bits (the step parameters, src/training/step/params.rs), so a
// recorded step (a CUDA graph) replays with each step's own seed. Launch: one thread
// per element, blocks of 256.
extern "C" __global__ void dropout_fwd_f32(const float* x, float* y, int len, float p,
                                           const unsigned* seed_words) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= len) return;
    const unsigned long long seed =
        (unsigned long long)seed_words[0] | ((unsigned long long)seed_words[1] << 32);
    unsigned long long z = seed ^ ((unsigned long long)i + 1ull) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    // z >> 40 has 24 bits, so the conversion and the power-of-two product are exact.
    const float u = (float)(z >> 40) * (1.0f / 16777216.0f);
    const float scale = __fdiv_rn(1.0f, __fsub_rn(1.0f, p));
    y[i] = u >= p ? __fmul_rn(x[i], scale) : 0.0f;
}
EMU_REGISTER(dropout_fwd_f32)
