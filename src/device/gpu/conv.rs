//! Convolution: kernels/conv.cu, implicit GEMMs on the shared-memory tile core.
//!
//! Forward and backward data are one GEMM launch each; backward filter splits its long
//! reduction (over every output pixel of the batch) across blocks and sums the splits
//! in a second, fixed-order launch, then computes the bias gradient in a third.

use anyhow::Result;

use super::launch::{check_len, gemm_grid, int, per_element, GEMM_TILE, GEMM_TILE_K};
use super::{Arg, Driver, Launch};
use crate::device::geometry::ConvGeometry;
use crate::device::Buffer;

/// Backward filter aims for about this many blocks (two per SM on a 132-SM GPU), so
/// small weight tensors (conv1's 64 x 49) still fill the GPU.
const FILTER_TARGET_BLOCKS: usize = 256;
/// Each split sums at least this many output pixels, so that writing and re-reading
/// the partial sums stays cheap next to the multiply-adds.
const FILTER_MIN_CHUNK: usize = 1024;
/// The block size conv_bwd_bias_f32 is written for (its BIAS_THREADS).
const BIAS_THREADS: u32 = 256;

/// The geometry as the kernels' leading int parameters:
/// `n, c_in, h, w, c_out, k, stride, pad, oh, ow`, with every buffer length checked.
fn geometry_args(g: &ConvGeometry) -> Result<[i32; 10]> {
    int(g.n * g.c_in * g.h * g.w, "conv input length")?;
    int(g.n * g.c_out * g.oh * g.ow, "conv output length")?;
    int(g.c_out * g.patch_len(), "conv weight length")?;
    Ok([
        int(g.n, "batch")?,
        int(g.c_in, "input channels")?,
        int(g.h, "input height")?,
        int(g.w, "input width")?,
        int(g.c_out, "output channels")?,
        int(g.k, "kernel size")?,
        int(g.stride, "stride")?,
        int(g.pad, "padding")?,
        int(g.oh, "output height")?,
        int(g.ow, "output width")?,
    ])
}

pub(super) fn forward<D: Driver>(
    d: &D,
    x: &Buffer<f32>,
    w: &Buffer<f32>,
    b: &Buffer<f32>,
    g: &ConvGeometry,
) -> Result<Buffer<f32>> {
    check_len(x, g.n * g.c_in * g.h * g.w, "conv input")?;
    check_len(w, g.c_out * g.patch_len(), "conv weight")?;
    check_len(b, g.c_out, "conv bias")?;
    let dims = geometry_args(g)?;
    let columns = g.n * g.oh * g.ow;
    let mut y = d.zeros_f32(g.c_out * columns)?;
    if y.is_empty() {
        return Ok(y);
    }
    let mut args = vec![Arg::F32(x), Arg::F32(w), Arg::F32(b), Arg::OutF32(&mut y)];
    args.extend(dims.map(Arg::I32));
    d.launch("conv_fwd_f32", gemm_grid(g.c_out, columns, 1)?, &mut args)?;
    Ok(y)
}

pub(super) fn backward_data<D: Driver>(
    d: &D,
    dy: &Buffer<f32>,
    w: &Buffer<f32>,
    g: &ConvGeometry,
) -> Result<Buffer<f32>> {
    check_len(dy, g.n * g.c_out * g.oh * g.ow, "conv output gradient")?;
    check_len(w, g.c_out * g.patch_len(), "conv weight")?;
    let dims = geometry_args(g)?;
    // One GEMM column per input pixel: dx is gathered, each element by one thread.
    let columns = g.n * g.h * g.w;
    let mut dx = d.zeros_f32(g.c_in * columns)?;
    if dx.is_empty() {
        return Ok(dx);
    }
    let mut args = vec![Arg::F32(dy), Arg::F32(w), Arg::OutF32(&mut dx)];
    args.extend(dims.map(Arg::I32));
    d.launch(
        "conv_bwd_data_f32",
        gemm_grid(g.c_in, columns, 1)?,
        &mut args,
    )?;
    Ok(dx)
}

/// How backward filter splits its reduction over `depth` output pixels: returns
/// `(chunk, splits)`, each split summing `chunk` pixels (a multiple of the GEMM's
/// k step) and the last one what is left.
fn filter_splits(g: &ConvGeometry) -> (usize, usize) {
    let depth = g.n * g.oh * g.ow;
    let tiles = g.c_out.div_ceil(GEMM_TILE) * g.patch_len().div_ceil(GEMM_TILE);
    let wanted = FILTER_TARGET_BLOCKS.div_ceil(tiles.max(1));
    let splits = wanted.min(depth / FILTER_MIN_CHUNK).max(1);
    let chunk = depth.div_ceil(splits).next_multiple_of(GEMM_TILE_K);
    (chunk, depth.div_ceil(chunk).max(1))
}

pub(super) fn backward_filter<D: Driver>(
    d: &D,
    x: &Buffer<f32>,
    dy: &Buffer<f32>,
    g: &ConvGeometry,
) -> Result<(Buffer<f32>, Buffer<f32>)> {
    check_len(x, g.n * g.c_in * g.h * g.w, "conv input")?;
    check_len(dy, g.n * g.c_out * g.oh * g.ow, "conv output gradient")?;
    let dims = geometry_args(g)?;
    let weights = g.c_out * g.patch_len();
    let mut dw = d.zeros_f32(weights)?;
    let mut db = d.zeros_f32(g.c_out)?;
    let positions = g.oh * g.ow;
    if weights == 0 || g.n * positions == 0 {
        // Nothing to sum over (or nothing to sum into): the gradients are zero.
        return Ok((dw, db));
    }

    let (chunk, splits) = filter_splits(g);
    int(splits * weights, "filter partial sums length")?;
    // With one split the GEMM writes dw itself; with more, each split writes its own
    // partial sums, which a second launch adds up in split order.
    let mut part = if splits > 1 {
        Some(d.zeros_f32(splits * weights)?)
    } else {
        None
    };
    let target = part.as_mut().unwrap_or(&mut dw);
    let mut args = vec![Arg::F32(x), Arg::F32(dy), Arg::OutF32(target)];
    args.extend(dims.map(Arg::I32));
    args.push(Arg::I32(int(chunk, "filter split length")?));
    d.launch(
        "conv_bwd_filter_f32",
        gemm_grid(g.c_out, g.patch_len(), splits)?,
        &mut args,
    )?;
    if let Some(part) = &part {
        d.launch(
            "conv_bwd_filter_reduce_f32",
            per_element(weights),
            &mut [
                Arg::F32(part),
                Arg::OutF32(&mut dw),
                Arg::I32(int(weights, "weight length")?),
                Arg::I32(int(splits, "filter splits")?),
            ],
        )?;
    }

    d.launch(
        "conv_bwd_bias_f32",
        Launch {
            grid: [int(g.c_out, "output channels")? as u32, 1, 1],
            block: [BIAS_THREADS, 1, 1],
        },
        &mut [
            Arg::F32(dy),
            Arg::OutF32(&mut db),
            Arg::I32(dims[0]),
            Arg::I32(dims[4]),
            Arg::I32(int(positions, "output plane")?),
        ],
    )?;
    Ok((dw, db))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geometry(
        n: usize,
        c_in: usize,
        hw: usize,
        c_out: usize,
        k: usize,
        s: usize,
        p: usize,
    ) -> ConvGeometry {
        ConvGeometry::new([n, c_in, hw, hw], c_out, k, s, p).unwrap()
    }

    #[test]
    fn filter_splits_cover_the_reduction() {
        for g in [
            geometry(1, 3, 7, 5, 3, 1, 1),
            geometry(2, 2, 32, 4, 3, 1, 1),
            geometry(128, 1, 64, 64, 7, 2, 3),
            geometry(128, 832, 7, 384, 1, 1, 0),
        ] {
            let depth = g.n * g.oh * g.ow;
            let (chunk, splits) = filter_splits(&g);
            assert_eq!(chunk % GEMM_TILE_K, 0);
            assert!(chunk * splits >= depth, "{g:?}: splits miss pixels");
            assert!(chunk * (splits - 1) < depth, "{g:?}: an empty split");
        }
        // Large batches of small weights split; tiny problems do not.
        assert!(filter_splits(&geometry(128, 1, 64, 64, 7, 2, 3)).1 > 1);
        assert_eq!(filter_splits(&geometry(1, 3, 7, 5, 3, 1, 1)).1, 1);
    }
}
