//! Elementwise ops and channel copies: kernels/elementwise.cu, relu.cu, dropout.cu
//! and concat.cu.

use anyhow::{ensure, Result};

use super::launch::{int, per_element};
use super::{Arg, Driver};
use crate::device::Buffer;

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

pub(super) fn dropout<D: Driver>(d: &D, x: &Buffer<f32>, p: f32, seed: u64) -> Result<Buffer<f32>> {
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
                Arg::U64(seed),
            ],
        )?;
    }
    Ok(y)
}

/// Each part is copied into its channel range of the output, one launch per part.
pub(super) fn concat_channels<D: Driver>(
    d: &D,
    parts: &[(&Buffer<f32>, usize)],
    n: usize,
    hw: usize,
) -> Result<Buffer<f32>> {
    let total: usize = parts.iter().map(|(_, c)| c).sum();
    let mut y = d.alloc_f32(n * total * hw)?;
    int(n * total * hw, "concat output length")?;
    let mut offset = 0;
    for &(part, c) in parts {
        ensure!(
            part.len() == n * c * hw,
            "concat: a part of {c} channels holds {} elements, expected {}",
            part.len(),
            n * c * hw
        );
        if !part.is_empty() {
            d.launch(
                "concat_fwd_f32",
                per_element(part.len()),
                &mut [
                    Arg::F32(part),
                    Arg::OutF32(&mut y),
                    Arg::I32(int(n, "batch")?),
                    Arg::I32(int(c, "channels")?),
                    Arg::I32(int(total, "channels")?),
                    Arg::I32(int(offset, "channel offset")?),
                    Arg::I32(int(hw, "plane size")?),
                ],
            )?;
        }
        offset += c;
    }
    Ok(y)
}

pub(super) fn slice_channels<D: Driver>(
    d: &D,
    x: &Buffer<f32>,
    n: usize,
    c: usize,
    hw: usize,
    start: usize,
    len: usize,
) -> Result<Buffer<f32>> {
    ensure!(
        start + len <= c,
        "slice {start}..{} is outside {c} channels",
        start + len
    );
    ensure!(
        x.len() == n * c * hw,
        "slice: input holds {} elements, expected {}",
        x.len(),
        n * c * hw
    );
    int(x.len(), "slice input length")?;
    let out_len = n * len * hw;
    let mut y = d.alloc_f32(out_len)?;
    if out_len > 0 {
        d.launch(
            "concat_bwd_f32",
            per_element(out_len),
            &mut [
                Arg::F32(x),
                Arg::OutF32(&mut y),
                Arg::I32(int(n, "batch")?),
                Arg::I32(int(c, "channels")?),
                Arg::I32(int(start, "slice start")?),
                Arg::I32(int(len, "slice length")?),
                Arg::I32(int(hw, "plane size")?),
            ],
        )?;
    }
    Ok(y)
}
