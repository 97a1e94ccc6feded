//! Adam on the CPU, in PyTorch's arithmetic (torch.optim.Adam, single-tensor path):
//!   `m = m + (1-β1)(g - m)`          (lerp)
//!   `v = β2·v + (1-β2)·g²`
//!   `p = p - (lr / (1-β1ᵗ)) · m / (√v / √(1-β2ᵗ) + ε)`
//! The scalars are derived in f64, as Python does, and rounded to f32 where PyTorch
//! hands them to its f32 kernels.

use rayon::prelude::*;

use crate::engine::device::geometry::{AdamScalars, AdamStep};

/// `s` is `h.scalars()`, as the step read it from memory (h's lr and step are unused).
pub fn step(
    param: &mut [f32],
    grad: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    h: &AdamStep,
    s: AdamScalars,
) {
    let (step_size, correction2_sqrt) = (s.step_size, s.correction2_sqrt);
    let (one_minus_b1, one_minus_b2) = ((1.0 - h.beta1) as f32, (1.0 - h.beta2) as f32);
    let (beta2, eps) = (h.beta2 as f32, h.eps as f32);
    param
        .par_iter_mut()
        .zip(grad)
        .zip(m.par_iter_mut().zip(v.par_iter_mut()))
        .for_each(|((p, &g), (m, v))| {
            *m += one_minus_b1 * (g - *m);
            *v = beta2 * *v + one_minus_b2 * (g * g);
            let denom = v.sqrt() / correction2_sqrt + eps;
            *p += -step_size * (*m / denom);
        });
}
