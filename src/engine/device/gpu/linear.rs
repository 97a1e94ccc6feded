//! The fully connected layer: kernels/linear.cu, three GEMM launches (in the device's
//! precision) and a bias sum (f32).

use anyhow::Result;

use super::launch::{check_len, gemm_grid, int, per_element};
use super::{Arg, Driver};
use crate::engine::device::geometry::LinearGeometry;
use crate::engine::device::{Buffer, Precision};

/// `n, inp, out` as kernel ints, with every buffer length checked.
fn dims(g: &LinearGeometry) -> Result<[i32; 3]> {
    int(g.n * g.inp, "linear input length")?;
    int(g.n * g.out, "linear output length")?;
    int(g.out * g.inp, "linear weight length")?;
    Ok([
        int(g.n, "batch")?,
        int(g.inp, "input features")?,
        int(g.out, "output features")?,
    ])
}

pub(super) fn forward<D: Driver>(
    d: &D,
    precision: Precision,
    x: &Buffer<f32>,
    w: &Buffer<f32>,
    b: &Buffer<f32>,
    g: &LinearGeometry,
) -> Result<Buffer<f32>> {
    check_len(x, g.n * g.inp, "linear input")?;
    check_len(w, g.out * g.inp, "linear weight")?;
    check_len(b, g.out, "linear bias")?;
    let dims = dims(g)?;
    let mut y = d.alloc_f32(g.n * g.out)?;
    if !y.is_empty() {
        let mut args = vec![Arg::F32(x), Arg::F32(w), Arg::F32(b), Arg::OutF32(&mut y)];
        args.extend(dims.map(Arg::I32));
        d.launch(
            &format!("linear_fwd_{precision}"),
            gemm_grid(g.n, g.out, 1)?,
            &mut args,
        )?;
    }
    Ok(y)
}

pub(super) fn backward_data<D: Driver>(
    d: &D,
    precision: Precision,
    dy: &Buffer<f32>,
    w: &Buffer<f32>,
    g: &LinearGeometry,
) -> Result<Buffer<f32>> {
    check_len(dy, g.n * g.out, "linear output gradient")?;
    check_len(w, g.out * g.inp, "linear weight")?;
    let dims = dims(g)?;
    let mut dx = d.alloc_f32(g.n * g.inp)?;
    if !dx.is_empty() {
        let mut args = vec![Arg::F32(dy), Arg::F32(w), Arg::OutF32(&mut dx)];
        args.extend(dims.map(Arg::I32));
        d.launch(
            &format!("linear_bwd_data_{precision}"),
            gemm_grid(g.n, g.inp, 1)?,
            &mut args,
        )?;
    }
    Ok(dx)
}

pub(super) fn backward_weight<D: Driver>(
    d: &D,
    precision: Precision,
    x: &Buffer<f32>,
    dy: &Buffer<f32>,
    g: &LinearGeometry,
) -> Result<(Buffer<f32>, Buffer<f32>)> {
    check_len(x, g.n * g.inp, "linear input")?;
    check_len(dy, g.n * g.out, "linear output gradient")?;
    let dims = dims(g)?;
    let mut dw = d.alloc_f32(g.out * g.inp)?;
    let mut db = d.alloc_f32(g.out)?;
    if !dw.is_empty() {
        let mut args = vec![Arg::F32(x), Arg::F32(dy), Arg::OutF32(&mut dw)];
        args.extend(dims.map(Arg::I32));
        d.launch(
            &format!("linear_bwd_weight_{precision}"),
            gemm_grid(g.out, g.inp, 1)?,
            &mut args,
        )?;
    }
    if !db.is_empty() {
        d.launch(
            "linear_bwd_bias_f32",
            per_element(g.out),
            &mut [
                Arg::F32(dy),
                Arg::OutF32(&mut db),
                Arg::I32(dims[0]),
                Arg::I32(dims[2]),
            ],
        )?;
    }
    Ok((dw, db))
}
