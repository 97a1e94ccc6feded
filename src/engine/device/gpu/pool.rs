//! Max and average pooling: kernels/pool.cu. Forward runs one thread per output,
//! backward one thread per input element (a gather, so no atomics).

use anyhow::{ensure, Result};

use super::launch::{int, per_element};
use super::{Arg, Driver};
use crate::engine::device::geometry::PoolGeometry;
use crate::engine::device::Buffer;

fn lengths(g: &PoolGeometry) -> Result<(usize, usize)> {
    let input = g.n * g.c * g.h * g.w;
    let output = g.n * g.c * g.oh * g.ow;
    int(input, "pool input length")?;
    int(output, "pool output length")?;
    Ok((input, output))
}

/// `n, c, h, w, kh, kw, stride` as kernel ints.
fn window_args(g: &PoolGeometry) -> Result<[i32; 7]> {
    Ok([
        int(g.n, "batch")?,
        int(g.c, "channels")?,
        int(g.h, "height")?,
        int(g.w, "width")?,
        int(g.kh, "window height")?,
        int(g.kw, "window width")?,
        int(g.stride, "stride")?,
    ])
}

fn output_args(g: &PoolGeometry) -> Result<[i32; 2]> {
    Ok([int(g.oh, "output height")?, int(g.ow, "output width")?])
}

pub(super) fn max_forward<D: Driver>(
    d: &D,
    x: &Buffer<f32>,
    g: &PoolGeometry,
) -> Result<(Buffer<f32>, Buffer<u32>)> {
    let (input, output) = lengths(g)?;
    ensure!(
        x.len() == input,
        "max pool: input holds {} elements, expected {input}",
        x.len()
    );
    let mut y = d.alloc_f32(output)?;
    let mut argmax = d.alloc_u32(output)?;
    if output > 0 {
        let mut args = vec![Arg::F32(x), Arg::OutF32(&mut y), Arg::OutU32s(&mut argmax)];
        args.extend(window_args(g)?.map(Arg::I32));
        args.push(Arg::I32(int(g.pad, "padding")?));
        args.extend(output_args(g)?.map(Arg::I32));
        d.launch("max_pool_fwd_f32", per_element(output), &mut args)?;
    }
    Ok((y, argmax))
}

pub(super) fn max_backward<D: Driver>(
    d: &D,
    dy: &Buffer<f32>,
    argmax: &Buffer<u32>,
    g: &PoolGeometry,
) -> Result<Buffer<f32>> {
    let (input, output) = lengths(g)?;
    ensure!(
        dy.len() == output && argmax.len() == output,
        "max pool backward: gradient and argmax hold {} and {} elements, expected {output}",
        dy.len(),
        argmax.len()
    );
    let mut dx = d.alloc_f32(input)?;
    if input > 0 {
        let mut args = vec![Arg::F32(dy), Arg::U32s(argmax), Arg::OutF32(&mut dx)];
        args.extend(window_args(g)?.map(Arg::I32));
        args.push(Arg::I32(int(g.pad, "padding")?));
        args.extend(output_args(g)?.map(Arg::I32));
        d.launch("max_pool_bwd_f32", per_element(input), &mut args)?;
    }
    Ok(dx)
}

pub(super) fn avg_forward<D: Driver>(
    d: &D,
    x: &Buffer<f32>,
    g: &PoolGeometry,
) -> Result<Buffer<f32>> {
    ensure!(g.pad == 0, "average pool: padding is not supported");
    let (input, output) = lengths(g)?;
    ensure!(
        x.len() == input,
        "average pool: input holds {} elements, expected {input}",
        x.len()
    );
    let mut y = d.alloc_f32(output)?;
    if output > 0 {
        let mut args = vec![Arg::F32(x), Arg::OutF32(&mut y)];
        args.extend(window_args(g)?.map(Arg::I32));
        args.extend(output_args(g)?.map(Arg::I32));
        d.launch("avg_pool_fwd_f32", per_element(output), &mut args)?;
    }
    Ok(y)
}

pub(super) fn avg_backward<D: Driver>(
    d: &D,
    dy: &Buffer<f32>,
    g: &PoolGeometry,
) -> Result<Buffer<f32>> {
    ensure!(g.pad == 0, "average pool: padding is not supported");
    let (input, output) = lengths(g)?;
    ensure!(
        dy.len() == output,
        "average pool backward: gradient holds {} elements, expected {output}",
        dy.len()
    );
    let mut dx = d.alloc_f32(input)?;
    if input > 0 {
        let mut args = vec![Arg::F32(dy), Arg::OutF32(&mut dx)];
        args.extend(window_args(g)?.map(Arg::I32));
        args.extend(output_args(g)?.map(Arg::I32));
        d.launch("avg_pool_bwd_f32", per_element(input), &mut args)?;
    }
    Ok(dx)
}
