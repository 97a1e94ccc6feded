//! Elementwise ops: kernels/elementwise.cu, relu.cu and dropout.cu.

use anyhow::{ensure, Result};

use super::launch::{int, per_element};
use super::{Arg, Driver};
use crate::engine::device::{Buffer, Words};

pub(super) fn add<D: Driver>(d: &D, a: &Buffer<f32>, b: &Buffer<f32>) -> Result<Buffer<f32>> {
    ensure!(
        a.len() == b.len(),
        "add: lengths {} and {} differ",
        a.len(),
        b.len()
    );
    let len = a.len();
    let mut y = d.alloc_f32(len)?;
    if len > 0 {
        d.launch(
            "add_fwd_f32",
            per_element(len),
            &mut [
                Arg::F32(a),
                Arg::F32(b),
                Arg::OutF32(&mut y),
                Arg::I32(int(len, "add length")?),
            ],
        )?;
    }
    Ok(y)
}

pub(super) fn fill<D: Driver>(d: &D, len: usize, value: f32) -> Result<Buffer<f32>> {
    let mut y = d.alloc_f32(len)?;
    if len > 0 {
        d.launch(
            "fill_f32",
            per_element(len),
            &mut [
                Arg::OutF32(&mut y),
                Arg::I32(int(len, "fill length")?),
                Arg::Float(value),
            ],
        )?;
    }
    Ok(y)
}

pub(super) fn relu_fwd<D: Driver>(d: &D, x: &Buffer<f32>) -> Result<Buffer<f32>> {
    let len = x.len();
    let mut y = d.alloc_f32(len)?;
    if len > 0 {
        d.launch(
            "relu_fwd_f32",
            per_element(len),
            &mut [
                Arg::F32(x),
                Arg::OutF32(&mut y),
                Arg::I32(int(len, "relu length")?),
            ],
        )?;
    }
    Ok(y)
}

pub(super) fn relu_bwd<D: Driver>(d: &D, y: &Buffer<f32>, dy: &Buffer<f32>) -> Result<Buffer<f32>> {
    ensure!(
        y.len() == dy.len(),
        "relu backward: lengths {} and {} differ",
        y.len(),
        dy.len()
    );
    let len = y.len();
    let mut dx = d.alloc_f32(len)?;
    if len > 0 {
        d.launch(
            "relu_bwd_f32",
            per_element(len),
            &mut [
                Arg::F32(y),
                Arg::F32(dy),
                Arg::OutF32(&mut dx),
                Arg::I32(int(len, "relu length")?),
            ],
        )?;
    }
    Ok(dx)
}

/// The seed is read from device memory (two words), so a replayed step draws the
/// mask of the seed written for it.
pub(super) fn dropout<D: Driver>(
    d: &D,
    x: &Buffer<f32>,
    p: f32,
    seed: Words,
) -> Result<Buffer<f32>> {
    ensure!(
        seed.len == 2,
        "dropout: the seed must be two words, got {}",
        seed.len
    );
    let len = x.len();
    let mut y = d.alloc_f32(len)?;
    if len > 0 {
        d.launch(
            "dropout_fwd_f32",
            per_element(len),
            &mut [
                Arg::F32(x),
                Arg::OutF32(&mut y),
                Arg::I32(int(len, "dropout length")?),
                Arg::Float(p),
                Arg::words(seed, "dropout seed")?,
            ],
        )?;
    }
    Ok(y)
}
