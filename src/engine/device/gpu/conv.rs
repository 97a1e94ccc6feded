//! Convolution: kernels/conv.cu, implicit GEMMs on the shared-memory tile core (f32)
//! or the tensor-core one (tf32, bf16): the device's precision picks the kernels'
//! suffix, nothing else (same grids, tiles and splits).
//!
//! Every op takes one output part or three (the `conv_` or `conv3_` kernels, one code
//! for both): three are an Inception block's 1x1 convolutions run as one GEMM. Each part
//! writes (backward: reads its gradient from) a channel view of its own tensor, so
//! branches fill the block output in place. Forward and backward data are one launch
//! each, with the epilogue (bias, ReLU) in the forward's store and ReLU's backward in
//! the backward GEMMs' loads. Backward filter computes the weight and bias gradients in
//! one GEMM; where its reduction (over every output pixel of the batch) is long next to
//! the weights, it splits it across blocks and sums the splits in a second, fixed-order
//! launch. Forward and backward data run on smaller tiles where the usual ones would
//! not fill the GPU, which keeps them one launch each (no split-K reduction to add).

use anyhow::{bail, ensure, Result};

use super::launch::{check_len, gemm_grid, int, per_element, GEMM_THREADS, GEMM_TILE, GEMM_TILE_K};
use super::{Arg, Driver, Launch};
use crate::engine::device::geometry::{ChannelView, ConvGeometry};
use crate::engine::device::{Buffer, ConvOutput, ConvOutputGrad, Precision};

/// Below this many 64x64 tiles, a forward or backward-data GEMM would leave SMs of a
/// 132-SM GPU idle (late stages at batch 16): it runs on 32x32 tiles instead, four
/// times the blocks, in the same one launch.
const SMALL_GRID_BLOCKS: usize = 132;
const SMALL_TILE: usize = 32;

/// Backward filter aims for about this many blocks (two per SM on a 132-SM GPU), so
/// small weight tensors (conv1's 64 x 49) still fill the GPU.
const FILTER_TARGET_BLOCKS: usize = 256;
/// Each split sums at least this many output pixels, so that writing and re-reading
/// the partial sums stays cheap next to the multiply-adds.
const FILTER_MIN_CHUNK: usize = 1024;

/// The geometry as the kernels' trailing int parameters:
/// `n, c_in, h, w, c_out, k, stride, pad, oh, ow`, then the multiplier and shift of each
/// divisor the kernels' index maps take (kernels/divisor.cuh), in ConvDivisors' order:
/// `k, k·k, oh·ow, ow, h·w, w, stride`; with the input and weight lengths checked.
fn geometry_args(g: &ConvGeometry) -> Result<[i32; 24]> {
    int(g.n * g.c_in * g.h * g.w, "conv input length")?;
    int(g.c_out * (g.patch_len() + 1), "conv weight length")?;
    let [k, kk2, positions, ow, plane, w, stride] = [
        divisor_args(g.k, "kernel size")?,
        divisor_args(g.k * g.k, "kernel taps")?,
        divisor_args(g.oh * g.ow, "output pixels")?,
        divisor_args(g.ow, "output width")?,
        divisor_args(g.h * g.w, "input pixels")?,
        divisor_args(g.w, "input width")?,
        divisor_args(g.stride, "stride")?,
    ];
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
        k[0],
        k[1],
        kk2[0],
        kk2[1],
        positions[0],
        positions[1],
        ow[0],
        ow[1],
        plane[0],
        plane[1],
        w[0],
        w[1],
        stride[0],
        stride[1],
    ])
}

/// Divisor `d` as the kernels take it (kernels/divisor.cuh has the math): the low word
/// of ⌊2^(32+s) / d⌋ + 1, as an int's bits, and s = ⌈log2 d⌉. An empty axis (d = 0)
/// passes zeros: no index is ever divided by it, as nothing lies along it.
fn divisor_args(d: usize, what: &str) -> Result<[i32; 2]> {
    let d = int(d, what)? as u64;
    if d == 0 {
        return Ok([0, 0]);
    }
    let shift = 64 - (d - 1).leading_zeros();
    // < 2^32 as 2^s < 2d; u64 holds 2^32 · (2^s - d) < 2^63.
    let magic = ((1u64 << 32) * ((1u64 << shift) - d) / d + 1) as u32;
    Ok([magic as i32, shift as i32])
}

/// The kernel `conv_<op>_<precision>` for one part, `conv3_<op>_<precision>` for three.
fn kernel(op: &str, parts: usize, precision: Precision) -> Result<String> {
    match parts {
        1 => Ok(format!("conv_{op}_{precision}")),
        3 => Ok(format!("conv3_{op}_{precision}")),
        other => bail!("conv: the GPU kernels take 1 or 3 output parts, got {other}"),
    }
}

/// The kernel `conv_<op>` (or `conv3_<op>`) and its grid for a `rows x cols` product, on
/// 64x64 tiles, or on 32x32 tiles (the `_small` kernels) where 64x64 ones are too few.
fn tiled(
    op: &str,
    parts: usize,
    precision: Precision,
    rows: usize,
    cols: usize,
) -> Result<(String, Launch)> {
    if rows.div_ceil(GEMM_TILE) * cols.div_ceil(GEMM_TILE) >= SMALL_GRID_BLOCKS {
        return Ok((kernel(op, parts, precision)?, gemm_grid(rows, cols, 1)?));
    }
    let tiles_y = rows.div_ceil(SMALL_TILE).max(1);
    ensure!(
        tiles_y <= 65535,
        "a GEMM of {rows} rows exceeds the grid's limits"
    );
    let launch = Launch {
        grid: [
            int(cols.div_ceil(SMALL_TILE).max(1), "GEMM tile columns")? as u32,
            tiles_y as u32,
            1,
        ],
        block: [GEMM_THREADS, 1, 1],
    };
    Ok((kernel(&format!("{op}_small"), parts, precision)?, launch))
}

/// Checks that `buffer` is an output-shaped tensor of `view.total` channels holding the
/// view, and returns the view as the kernels' `len, offset, total`.
fn view_args(buffer: &Buffer<f32>, view: ChannelView, g: &ConvGeometry) -> Result<[i32; 3]> {
    ensure!(
        view.offset + view.len <= view.total,
        "conv: channels {}..{} are outside a tensor of {}",
        view.offset,
        view.offset + view.len,
        view.total
    );
    check_len(
        buffer,
        g.n * view.total * g.oh * g.ow,
        "conv output (or its gradient)",
    )?;
    int(buffer.len(), "conv output length")?;
    Ok([
        int(view.len, "part channels")?,
        int(view.offset, "channel offset")?,
        int(view.total, "channels")?,
    ])
}

/// Checks the parts' views against `g` (their channels sum to `c_out`); returns the
/// ReLU flag, which all parts share.
fn check_grads(grads: &[ConvOutputGrad], g: &ConvGeometry) -> Result<bool> {
    let relu = grads.first().is_some_and(|gr| gr.relu_y.is_some());
    let mut channels = 0;
    for gr in grads {
        view_args(gr.dy, gr.view, g)?;
        ensure!(
            gr.relu_y.is_some() == relu,
            "conv backward: parts disagree on ReLU"
        );
        if let Some(y) = gr.relu_y {
            check_len(y, gr.dy.len(), "conv output (ReLU's mask)")?;
        }
        channels += gr.view.len;
    }
    ensure!(
        channels == g.c_out,
        "conv backward: parts of {channels} channels for {} output channels",
        g.c_out
    );
    Ok(relu)
}

/// A part's output gradient, ReLU mask (the gradient itself when there is none: the
/// kernels then never read it) and view.
fn grad_args<'a>(gr: &ConvOutputGrad<'a>, g: &ConvGeometry) -> Result<[Arg<'a>; 5]> {
    let [len, offset, total] = view_args(gr.dy, gr.view, g)?;
    Ok([
        Arg::F32(gr.dy),
        Arg::F32(gr.relu_y.unwrap_or(gr.dy)),
        Arg::I32(len),
        Arg::I32(offset),
        Arg::I32(total),
    ])
}

pub(super) fn forward<D: Driver>(
    d: &D,
    precision: Precision,
    x: &Buffer<f32>,
    parts: &mut [ConvOutput],
    g: &ConvGeometry,
    relu: bool,
) -> Result<()> {
    check_len(x, g.n * g.c_in * g.h * g.w, "conv input")?;
    let columns = g.n * g.oh * g.ow;
    let (name, grid) = tiled("fwd", parts.len(), precision, g.c_out, columns)?;
    let mut channels = 0;
    for part in parts.iter() {
        check_len(part.w, part.view.len * g.patch_len(), "conv weight")?;
        check_len(part.b, part.view.len, "conv bias")?;
        channels += part.view.len;
    }
    ensure!(
        channels == g.c_out,
        "conv: parts of {channels} channels for {} output channels",
        g.c_out
    );
    let dims = geometry_args(g)?;
    let mut args = vec![Arg::F32(x)];
    for part in parts.iter_mut() {
        let view = view_args(part.y, part.view, g)?;
        args.extend([
            Arg::F32(part.w),
            Arg::F32(part.b),
            Arg::OutF32(&mut *part.y),
        ]);
        args.extend(view.map(Arg::I32));
    }
    if g.c_out * columns == 0 {
        return Ok(());
    }
    args.push(Arg::I32(relu.into()));
    args.extend(dims.map(Arg::I32));
    d.launch(&name, grid, &mut args)
}

pub(super) fn backward_data<D: Driver>(
    d: &D,
    precision: Precision,
    grads: &[ConvOutputGrad],
    w: &[&Buffer<f32>],
    g: &ConvGeometry,
    into: Option<Buffer<f32>>,
) -> Result<Buffer<f32>> {
    ensure!(
        grads.len() == w.len(),
        "conv backward: {} output gradients for {} filter sets",
        grads.len(),
        w.len()
    );
    let relu = check_grads(grads, g)?;
    let dims = geometry_args(g)?;
    // One GEMM column per input pixel: dx is gathered, each element by one thread.
    let columns = g.n * g.h * g.w;
    let (name, grid) = tiled("bwd_data", grads.len(), precision, g.c_in, columns)?;
    let accumulate = into.is_some();
    let mut dx = match into {
        Some(dx) => {
            check_len(&dx, g.c_in * columns, "conv input gradient")?;
            dx
        }
        // Every element is written by the kernel.
        None => d.alloc_f32(g.c_in * columns)?,
    };
    if dx.is_empty() {
        return Ok(dx);
    }
    let mut args = Vec::new();
    for (gr, &w) in grads.iter().zip(w) {
        check_len(w, gr.view.len * g.patch_len(), "conv weight")?;
        args.push(Arg::F32(w));
        args.extend(grad_args(gr, g)?);
    }
    args.extend([
        Arg::OutF32(&mut dx),
        Arg::I32(relu.into()),
        Arg::I32(accumulate.into()),
    ]);
    args.extend(dims.map(Arg::I32));
    d.launch(&name, grid, &mut args)?;
    Ok(dx)
}

/// How backward filter splits its reduction over `depth` output pixels: returns
/// `(chunk, splits)`, each split summing `chunk` pixels (a multiple of the GEMM's
/// k step) and the last one what is left.
fn filter_splits(g: &ConvGeometry) -> (usize, usize) {
    let depth = g.n * g.oh * g.ow;
    let tiles = g.c_out.div_ceil(GEMM_TILE) * (g.patch_len() + 1).div_ceil(GEMM_TILE);
    let wanted = FILTER_TARGET_BLOCKS.div_ceil(tiles.max(1));
    let splits = wanted.min(depth / FILTER_MIN_CHUNK).max(1);
    let chunk = depth.div_ceil(splits).next_multiple_of(GEMM_TILE_K);
    (chunk, depth.div_ceil(chunk).max(1))
}

/// Kernel launches of `backward_filter` on `g`: one, or two where the reduction splits.
pub fn backward_filter_launches(g: &ConvGeometry) -> usize {
    if filter_splits(g).1 > 1 {
        2
    } else {
        1
    }
}

pub(super) fn backward_filter<D: Driver>(
    d: &D,
    precision: Precision,
    x: &Buffer<f32>,
    grads: &[ConvOutputGrad],
    g: &ConvGeometry,
) -> Result<Vec<(Buffer<f32>, Buffer<f32>)>> {
    check_len(x, g.n * g.c_in * g.h * g.w, "conv input")?;
    let relu = check_grads(grads, g)?;
    let patch = g.patch_len();
    // Nothing to sum over (or nothing to sum into): the gradients are zero. Otherwise
    // the kernels write every element, so the buffers need no zeros.
    let empty = g.c_out == 0 || g.n * g.oh * g.ow == 0;
    let buffer = |len| {
        if empty {
            d.zeros_f32(len)
        } else {
            d.alloc_f32(len)
        }
    };
    let mut out = grads
        .iter()
        .map(|gr| Ok((buffer(gr.view.len * patch)?, buffer(gr.view.len)?)))
        .collect::<Result<Vec<_>>>()?;
    if empty {
        return Ok(out);
    }
    let dims = geometry_args(g)?;
    // One GEMM column per weight of a filter, and one more for the bias.
    let grid = |splits| gemm_grid(g.c_out, patch + 1, splits);
    let (chunk, splits) = filter_splits(g);
    if splits == 1 {
        let mut args = vec![Arg::F32(x)];
        for (gr, (dw, db)) in grads.iter().zip(out.iter_mut()) {
            args.extend(grad_args(gr, g)?);
            args.extend([Arg::OutF32(dw), Arg::OutF32(db)]);
        }
        args.push(Arg::I32(relu.into()));
        args.extend(dims.map(Arg::I32));
        d.launch(
            &kernel("bwd_filter", grads.len(), precision)?,
            grid(1)?,
            &mut args,
        )?;
        return Ok(out);
    }

    // Each split writes its own partial sums, which a second launch adds up in split
    // order into each part's gradients.
    let sums_len = splits * g.c_out * (patch + 1);
    int(sums_len, "filter partial sums length")?;
    let mut sums = d.alloc_f32(sums_len)?;
    let mut args = vec![Arg::F32(x)];
    for gr in grads {
        args.extend(grad_args(gr, g)?);
    }
    args.extend([
        Arg::OutF32(&mut sums),
        Arg::I32(int(chunk, "filter split length")?),
        Arg::I32(relu.into()),
    ]);
    args.extend(dims.map(Arg::I32));
    d.launch(
        &kernel("bwd_filter_split", grads.len(), precision)?,
        grid(splits)?,
        &mut args,
    )?;

    let mut args = vec![Arg::F32(&sums)];
    for (gr, (dw, db)) in grads.iter().zip(out.iter_mut()) {
        args.extend([
            Arg::OutF32(dw),
            Arg::OutF32(db),
            Arg::I32(int(gr.view.len, "part channels")?),
        ]);
    }
    args.extend([
        Arg::I32(dims[4]),
        Arg::I32(int(patch, "patch length")?),
        Arg::I32(int(splits, "filter splits")?),
    ]);
    d.launch(
        // A plain f32 sum in every precision.
        &kernel("bwd_filter_reduce", grads.len(), Precision::F32)?,
        per_element(g.c_out * (patch + 1)),
        &mut args,
    )?;
    Ok(out)
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

    /// What divisor.cuh computes from `divisor_args`: (umulhi(a, m) + a) >> s.
    fn divide(a: u32, d: u32) -> u32 {
        let [magic, shift] = divisor_args(d as usize, "d").unwrap();
        let high = ((u64::from(a) * u64::from(magic as u32)) >> 32) as u32;
        (high + a) >> shift
    }

    #[test]
    fn divisor_args_divide_exactly() {
        let max = i32::MAX as u32;
        let big = [
            1 << 16,
            (1 << 16) + 1,
            (1 << 30) - 1,
            1 << 30,
            (1 << 30) + 1,
            max - 1,
            max,
        ];
        for d in (1..=4096).chain(big) {
            // Each multiple of d below 2^13 and the number before it, and the range's top.
            let near = (0..(1 << 13) / d + 2).flat_map(|q| [q * d, (q * d).saturating_sub(1)]);
            let top = (0..64).map(|i| max - i).chain([max / d * d]);
            for a in near.chain(top).filter(|&a| a <= max) {
                assert_eq!(divide(a, d), a / d, "{a} / {d}");
            }
        }
        assert_eq!(divisor_args(0, "d").unwrap(), [0, 0]);
        assert!(divisor_args(1 << 31, "stride")
            .unwrap_err()
            .to_string()
            .contains("stride"));
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
