//! Convolution on the CPU: im2col over the whole batch, then one GEMM split by rows.
//!
//! `col[r, j]` holds input pixel `x[n, c, oy*s + ky - pad, ox*s + kx - pad]` (0 outside
//! the image) for row `r = (c, ky, kx)` and column `j = (n, oy, ox)`; `Y[co, j]` is the
//! output in the same column order and `W` is read as `[c_out, r]`. Then
//!   forward        `Y = W · col`, plus the bias, scattered back to NCHW
//!   backward data  `dcol = Wᵀ · dY`, summed back onto `dx` (col2im)
//!   backward filt. `dW = dY · colᵀ`,  `db[co] = Σ_j dY[co, j]`
//! Putting every image in one matrix keeps the GEMM wide even where the planes are
//! tiny (4x4 and below at 32x32 inputs).

use std::ops::Range;

use rayon::prelude::*;

use super::gemm::{par_gemm, Mat};
use crate::device::geometry::ConvGeometry;

/// The output positions `o` whose kernel tap `k` lands inside an input axis of
/// `len` (at `o * stride + k - pad`); the others read padding.
fn inside(k: usize, g: &ConvGeometry, len: usize, out_len: usize) -> Range<usize> {
    let first = g.pad.saturating_sub(k).div_ceil(g.stride).min(out_len);
    let end = (len + g.pad)
        .checked_sub(k + 1)
        .map_or(0, |m| m / g.stride + 1)
        .min(out_len);
    first..end.max(first)
}

/// Input index of output `o`'s tap `k`; `o` must be `inside`.
fn source(o: usize, k: usize, g: &ConvGeometry) -> usize {
    o * g.stride + k - g.pad
}

fn im2col(x: &[f32], g: &ConvGeometry) -> Vec<f32> {
    let (positions, plane) = (g.oh * g.ow, g.h * g.w);
    let width = g.n * positions;
    let mut col = vec![0.0; g.patch_len() * width];
    col.par_chunks_mut(width).enumerate().for_each(|(r, row)| {
        let (c, ky, kx) = (r / (g.k * g.k), (r / g.k) % g.k, r % g.k);
        let (rows, cols) = (inside(ky, g, g.h, g.oh), inside(kx, g, g.w, g.ow));
        if cols.is_empty() {
            return;
        }
        for n in 0..g.n {
            let image = &x[(n * g.c_in + c) * plane..(n * g.c_in + c + 1) * plane];
            let out = &mut row[n * positions..(n + 1) * positions];
            for oy in rows.clone() {
                let in_row = &image[source(oy, ky, g) * g.w..][..g.w];
                let out_row = &mut out[oy * g.ow..][..g.ow];
                if g.stride == 1 {
                    let from = source(cols.start, kx, g);
                    out_row[cols.clone()].copy_from_slice(&in_row[from..from + cols.len()]);
                } else {
                    for ox in cols.clone() {
                        out_row[ox] = in_row[source(ox, kx, g)];
                    }
                }
            }
        }
    });
    col
}

/// `dY[co, (n, p)] = dy[n, co, p]`.
fn gather_output_grad(dy: &[f32], g: &ConvGeometry) -> Vec<f32> {
    let positions = g.oh * g.ow;
    let mut out = vec![0.0; dy.len()];
    out.par_chunks_mut(g.n * positions)
        .enumerate()
        .for_each(|(co, row)| {
            for n in 0..g.n {
                let from = (n * g.c_out + co) * positions;
                row[n * positions..(n + 1) * positions]
                    .copy_from_slice(&dy[from..from + positions]);
            }
        });
    out
}

pub fn forward(x: &[f32], w: &[f32], b: &[f32], g: &ConvGeometry) -> Vec<f32> {
    let positions = g.oh * g.ow;
    let width = g.n * positions;
    let col = im2col(x, g);
    let mut out = vec![0.0; g.c_out * width];
    par_gemm(
        Mat::new(w, g.c_out, g.patch_len()),
        Mat::new(&col, g.patch_len(), width),
        &mut out,
    );
    let mut y = vec![0.0; out.len()];
    y.par_chunks_mut(g.c_out * positions)
        .enumerate()
        .for_each(|(n, y_n)| {
            for (co, y_row) in y_n.chunks_mut(positions).enumerate() {
                let from = co * width + n * positions;
                for (dst, src) in y_row.iter_mut().zip(&out[from..from + positions]) {
                    *dst = src + b[co];
                }
            }
        });
    y
}

pub fn backward_data(dy: &[f32], w: &[f32], g: &ConvGeometry) -> Vec<f32> {
    let (positions, plane) = (g.oh * g.ow, g.h * g.w);
    let width = g.n * positions;
    let d_out = gather_output_grad(dy, g);
    let mut dcol = vec![0.0; g.patch_len() * width];
    par_gemm(
        Mat::new(w, g.c_out, g.patch_len()).t(),
        Mat::new(&d_out, g.c_out, width),
        &mut dcol,
    );
    let mut dx = vec![0.0; g.n * g.c_in * plane];
    dx.par_chunks_mut(plane).enumerate().for_each(|(i, dx_p)| {
        let (n, c) = (i / g.c_in, i % g.c_in);
        for ky in 0..g.k {
            for kx in 0..g.k {
                let r = (c * g.k + ky) * g.k + kx;
                let src = &dcol[r * width + n * positions..r * width + (n + 1) * positions];
                let cols = inside(kx, g, g.w, g.ow);
                for oy in inside(ky, g, g.h, g.oh) {
                    let dx_row = &mut dx_p[source(oy, ky, g) * g.w..][..g.w];
                    let src_row = &src[oy * g.ow..][..g.ow];
                    for ox in cols.clone() {
                        dx_row[source(ox, kx, g)] += src_row[ox];
                    }
                }
            }
        }
    });
    dx
}

pub fn backward_filter(x: &[f32], dy: &[f32], g: &ConvGeometry) -> (Vec<f32>, Vec<f32>) {
    let width = g.n * g.oh * g.ow;
    let col = im2col(x, g);
    let d_out = gather_output_grad(dy, g);
    let mut dw = vec![0.0; g.c_out * g.patch_len()];
    par_gemm(
        Mat::new(&d_out, g.c_out, width),
        Mat::new(&col, g.patch_len(), width).t(),
        &mut dw,
    );
    let db = d_out.chunks(width).map(|row| row.iter().sum()).collect();
    (dw, db)
}
