//! Adam: kernels/adam.cu, one launch over every parameter tensor.
//!
//! The tensors live in separate buffers, so the kernel takes tables of their addresses
//! (`Arg::F32Table`, `Arg::OutF32Table`, which each driver turns into an array of
//! pointers) and two small tables: each tensor's first block and its length, uploaded
//! once and kept (`Runtime::constant_u32`), since they are the same every step. Each
//! tensor gets whole blocks of `BLOCK` threads, so a block finds its tensor with one
//! binary search and never spans two. The two scalars that change every step (step
//! size, bias correction) are read from device memory (`Words`: the step parameters),
//! so every argument of the launch is the same from step to step and a recorded step
//! replays with the next step's scalars.

use anyhow::{ensure, Result};

use super::launch::{int, BLOCK};
use super::{Arg, Driver, Launch, Runtime};
use crate::engine::device::geometry::AdamStep;
use crate::engine::device::{Buffer, Words};

/// The scalars that stay the same from step to step, rounded to f32 as
/// src/engine/device/cpu/adam.rs does.
struct Constants {
    one_minus_beta1: f32,
    one_minus_beta2: f32,
    beta2: f32,
    eps: f32,
}

impl Constants {
    fn new(h: &AdamStep) -> Constants {
        Constants {
            one_minus_beta1: (1.0 - h.beta1) as f32,
            one_minus_beta2: (1.0 - h.beta2) as f32,
            beta2: h.beta2 as f32,
            eps: h.eps as f32,
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn step<D: Driver>(
    d: &Runtime<D>,
    params: &mut [&mut Buffer<f32>],
    grads: &[&Buffer<f32>],
    m: &mut [&mut Buffer<f32>],
    v: &mut [&mut Buffer<f32>],
    hyper: &AdamStep,
    scalars: Words,
    skip: Option<&Buffer<u32>>,
) -> Result<()> {
    ensure!(
        scalars.len == 2,
        "adam: the step's scalars must be two words, got {}",
        scalars.len
    );
    ensure!(
        params.len() == grads.len() && params.len() == m.len() && params.len() == v.len(),
        "adam: parameter, gradient and state lists differ in length"
    );
    // The nonempty tensors (an empty one has nothing to update, and no device memory),
    // each given whole blocks starting at `block_start`.
    let (mut p_table, mut g_table, mut m_table, mut v_table) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut block_start, mut lengths) = (Vec::new(), Vec::new());
    let mut blocks = 0usize;
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
        block_start.push(int(blocks, "Adam's blocks")? as u32);
        lengths.push(int(len, "parameter length")? as u32);
        blocks += len.div_ceil(BLOCK as usize);
        p_table.push(&mut **p);
        g_table.push(*g);
        m_table.push(&mut **m);
        v_table.push(&mut **v);
    }
    if p_table.is_empty() {
        return Ok(());
    }
    let tensors = int(p_table.len(), "parameter tensors")?;
    let launch = Launch {
        grid: [int(blocks, "Adam's blocks")? as u32, 1, 1],
        block: [BLOCK, 1, 1],
    };
    let block_start = d.constant_u32(&block_start)?;
    let lengths = d.constant_u32(&lengths)?;
    // Without a flag, one that is never set.
    let never = match skip {
        Some(_) => None,
        None => Some(d.constant_u32(&[0])?),
    };
    let skip = skip.or(never.as_deref()).expect("a flag either way");
    ensure!(skip.len() == 1, "adam: the skip flag must be one element");
    let c = Constants::new(hyper);
    d.launch(
        "adam_step_f32",
        launch,
        &mut [
            Arg::OutF32Table(p_table),
            Arg::F32Table(g_table),
            Arg::OutF32Table(m_table),
            Arg::OutF32Table(v_table),
            Arg::U32s(&block_start),
            Arg::U32s(&lengths),
            Arg::I32(tensors),
            Arg::U32s(skip),
            Arg::words(scalars, "adam scalars")?,
            Arg::Float(c.one_minus_beta1),
            Arg::Float(c.one_minus_beta2),
            Arg::Float(c.beta2),
            Arg::Float(c.eps),
        ],
    )
}
