//! Convolution on the CPU: im2col + GEMM, one image per rayon task.
//!
//! For image `n`, `col[r, p]` holds input pixel `x[c, oy*s + ky - pad, ox*s + kx - pad]`
//! (0 outside the image) for row `r = (c, ky, kx)` and output position `p = (oy, ox)`.
//! Then, with `W` read as `[c_out, r]`:
//!   forward        `y_n = W · col + b`
//!   backward data  `dcol = Wᵀ · dy_n`, scattered back onto `dx_n` (col2im)
//!   backward filt. `dW = Σ_n dy_n · col_nᵀ`,  `db = Σ_n Σ_p dy_n[:, p]`
//! A 1x1 stride-1 unpadded convolution uses the input itself as `col`.

use rayon::prelude::*;

use super::gemm::{gemm, Mat};
use crate::device::geometry::ConvGeometry;

fn im2col(x: &[f32], g: &ConvGeometry, col: &mut [f32]) {
    let positions = g.oh * g.ow;
    for c in 0..g.c_in {
        let plane = &x[c * g.h * g.w..(c + 1) * g.h * g.w];
        for ky in 0..g.k {
            for kx in 0..g.k {
                let row = (c * g.k + ky) * g.k + kx;
                let out = &mut col[row * positions..(row + 1) * positions];
                for oy in 0..g.oh {
                    let iy = (oy * g.stride + ky) as isize - g.pad as isize;
                    let out_row = &mut out[oy * g.ow..(oy + 1) * g.ow];
                    if iy < 0 || iy >= g.h as isize {
                        out_row.fill(0.0);
                        continue;
                    }
                    let in_row = &plane[iy as usize * g.w..(iy as usize + 1) * g.w];
                    for (ox, o) in out_row.iter_mut().enumerate() {
                        let ix = (ox * g.stride + kx) as isize - g.pad as isize;
                        *o = if ix >= 0 && ix < g.w as isize {
                            in_row[ix as usize]
                        } else {
                            0.0
                        };
                    }
                }
            }
        }
    }
}

fn col2im(col: &[f32], g: &ConvGeometry, dx: &mut [f32]) {
    let positions = g.oh * g.ow;
    dx.fill(0.0);
    for c in 0..g.c_in {
        let plane = &mut dx[c * g.h * g.w..(c + 1) * g.h * g.w];
        for ky in 0..g.k {
            for kx in 0..g.k {
                let row = (c * g.k + ky) * g.k + kx;
                let src = &col[row * positions..(row + 1) * positions];
                for oy in 0..g.oh {
                    let iy = (oy * g.stride + ky) as isize - g.pad as isize;
                    if iy < 0 || iy >= g.h as isize {
                        continue;
                    }
                    let in_row = &mut plane[iy as usize * g.w..(iy as usize + 1) * g.w];
                    for ox in 0..g.ow {
                        let ix = (ox * g.stride + kx) as isize - g.pad as isize;
                        if ix >= 0 && ix < g.w as isize {
                            in_row[ix as usize] += src[oy * g.ow + ox];
                        }
                    }
                }
            }
        }
    }
}

/// Runs `f` with image `n`'s im2col matrix (borrowed straight from `x` when pointwise).
fn with_col<R>(x: &[f32], g: &ConvGeometry, n: usize, f: impl FnOnce(&[f32]) -> R) -> R {
    let image = &x[n * g.c_in * g.h * g.w..(n + 1) * g.c_in * g.h * g.w];
    if g.is_pointwise() {
        f(image)
    } else {
        let mut col = vec![0.0; g.patch_len() * g.oh * g.ow];
        im2col(image, g, &mut col);
        f(&col)
    }
}

pub fn forward(x: &[f32], w: &[f32], b: &[f32], g: &ConvGeometry) -> Vec<f32> {
    let positions = g.oh * g.ow;
    let mut y = vec![0.0; g.n * g.c_out * positions];
    let weights = Mat::new(w, g.c_out, g.patch_len());
    y.par_chunks_mut(g.c_out * positions)
        .enumerate()
        .for_each(|(n, y_n)| {
            for (co, row) in y_n.chunks_mut(positions).enumerate() {
                row.fill(b[co]);
            }
            with_col(x, g, n, |col| {
                gemm(weights, Mat::new(col, g.patch_len(), positions), y_n, 1.0)
            });
        });
    y
}

pub fn backward_data(dy: &[f32], w: &[f32], g: &ConvGeometry) -> Vec<f32> {
    let positions = g.oh * g.ow;
    let image_len = g.c_in * g.h * g.w;
    let mut dx = vec![0.0; g.n * image_len];
    let weights_t = Mat::new(w, g.c_out, g.patch_len()).t();
    dx.par_chunks_mut(image_len)
        .enumerate()
        .for_each(|(n, dx_n)| {
            let dy_n = Mat::new(
                &dy[n * g.c_out * positions..(n + 1) * g.c_out * positions],
                g.c_out,
                positions,
            );
            if g.is_pointwise() {
                gemm(weights_t, dy_n, dx_n, 0.0);
            } else {
                let mut dcol = vec![0.0; g.patch_len() * positions];
                gemm(weights_t, dy_n, &mut dcol, 0.0);
                col2im(&dcol, g, dx_n);
            }
        });
    dx
}

pub fn backward_filter(x: &[f32], dy: &[f32], g: &ConvGeometry) -> (Vec<f32>, Vec<f32>) {
    let positions = g.oh * g.ow;
    let weight_len = g.c_out * g.patch_len();
    // One partial per image, summed below in image order: the result does not
    // depend on how rayon scheduled the images.
    let partials: Vec<Vec<f32>> = (0..g.n)
        .into_par_iter()
        .map(|n| {
            let dy_n = Mat::new(
                &dy[n * g.c_out * positions..(n + 1) * g.c_out * positions],
                g.c_out,
                positions,
            );
            let mut dw_n = vec![0.0; weight_len];
            with_col(x, g, n, |col| {
                gemm(
                    dy_n,
                    Mat::new(col, g.patch_len(), positions).t(),
                    &mut dw_n,
                    0.0,
                )
            });
            dw_n
        })
        .collect();
    let mut dw = vec![0.0; weight_len];
    for partial in &partials {
        for (acc, v) in dw.iter_mut().zip(partial) {
            *acc += v;
        }
    }
    let mut db = vec![0.0; g.c_out];
    for n in 0..g.n {
        for (co, acc) in db.iter_mut().enumerate() {
            let start = (n * g.c_out + co) * positions;
            *acc += dy[start..start + positions].iter().sum::<f32>();
        }
    }
    (dw, db)
}
