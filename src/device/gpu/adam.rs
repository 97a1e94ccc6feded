//! Adam: kernels/adam.cu, one launch per parameter tensor.
//!
//! Why not one launch over every parameter: the tensors live in separate buffers, and
//! a single launch would need a device-side table of their addresses, which `Driver`
//! does not expose (and which the emulator's buffers would have to mimic). GoogLeNet
//! has about 120 parameter tensors, so a step costs about 120 small launches (well
//! under a millisecond); capturing the step as a CUDA graph, or keeping all parameters
//! in one buffer, are the ways to remove that later.

use anyhow::{ensure, Result};

use super::launch::{int, per_element};
use super::{Arg, Driver};
use crate::device::geometry::AdamStep;
use crate::device::Buffer;

/// The scalars of one step, derived exactly as src/device/cpu/adam.rs does (in f64,
/// rounded to f32 where PyTorch hands them to its kernels), so both devices compute
/// the same update bit for bit.
struct Scalars {
    step_size: f32,
    correction2_sqrt: f32,
    one_minus_beta1: f32,
    one_minus_beta2: f32,
    beta2: f32,
    eps: f32,
}

impl Scalars {
    fn new(h: &AdamStep) -> Scalars {
        let t = h.step as f64;
        Scalars {
            step_size: (h.lr / (1.0 - h.beta1.powf(t))) as f32,
            correction2_sqrt: (1.0 - h.beta2.powf(t)).sqrt() as f32,
            one_minus_beta1: (1.0 - h.beta1) as f32,
            one_minus_beta2: (1.0 - h.beta2) as f32,
            beta2: h.beta2 as f32,
            eps: h.eps as f32,
        }
    }
}

pub(super) fn step<D: Driver>(
    d: &D,
    params: &mut [&mut Buffer<f32>],
    grads: &[&Buffer<f32>],
    m: &mut [&mut Buffer<f32>],
    v: &mut [&mut Buffer<f32>],
    hyper: &AdamStep,
) -> Result<()> {
    ensure!(
        params.len() == grads.len() && params.len() == m.len() && params.len() == v.len(),
        "adam: parameter, gradient and state lists differ in length"
    );
    let s = Scalars::new(hyper);
    for (((p, g), m), v) in params
        .iter_mut()
        .zip(grads)
        .zip(m.iter_mut())
        .zip(v.iter_mut())
    {
        let len = p.len();
        ensure!(
            g.len() == len && m.len() == len && v.len() == len,
            "adam: a parameter of {len} elements has gradient and state of {}, {} and {}",
            g.len(),
            m.len(),
            v.len()
        );
        if len == 0 {
            continue;
        }
        d.launch(
            "adam_step_f32",
            per_element(len),
            &mut [
                Arg::OutF32(p),
                Arg::F32(g),
                Arg::OutF32(m),
                Arg::OutF32(v),
                Arg::I32(int(len, "parameter length")?),
                Arg::Float(s.step_size),
                Arg::Float(s.correction2_sqrt),
                Arg::Float(s.one_minus_beta1),
                Arg::Float(s.one_minus_beta2),
                Arg::Float(s.beta2),
                Arg::Float(s.eps),
            ],
        )?;
    }
    Ok(())
}
