//! Max and average pooling on the CPU, one (image, channel) plane per rayon task.
//!
//! Max:  `y[o] = max over the window of x`, padding counting as -inf; the first
//!       maximum in row-major window order wins ties and NaN propagates (as PyTorch).
//!       Backward: `dx[argmax[o]] += dy[o]`.
//! Avg:  `y[o] = Σ window x / (kh·kw)` (no padding); backward spreads `dy[o] / (kh·kw)`.

use rayon::prelude::*;

use crate::device::geometry::PoolGeometry;

/// Rows (or columns) `start..end` of the window at output position `o`, clipped to the input.
fn window(o: usize, stride: usize, pad: usize, k: usize, len: usize) -> (usize, usize) {
    let start = (o * stride) as isize - pad as isize;
    let end = (start + k as isize).min(len as isize);
    (start.max(0) as usize, end as usize)
}

pub fn max_forward(x: &[f32], g: &PoolGeometry) -> (Vec<f32>, Vec<u32>) {
    let (in_plane, out_plane) = (g.h * g.w, g.oh * g.ow);
    let mut y = vec![0.0; g.n * g.c * out_plane];
    let mut argmax = vec![0u32; y.len()];
    y.par_chunks_mut(out_plane)
        .zip(argmax.par_chunks_mut(out_plane))
        .enumerate()
        .for_each(|(plane, (y_p, arg_p))| {
            let x_p = &x[plane * in_plane..(plane + 1) * in_plane];
            for oy in 0..g.oh {
                let (y0, y1) = window(oy, g.stride, g.pad, g.kh, g.h);
                for ox in 0..g.ow {
                    let (x0, x1) = window(ox, g.stride, g.pad, g.kw, g.w);
                    let mut best = f32::NEG_INFINITY;
                    let mut best_at = y0 * g.w + x0;
                    for iy in y0..y1 {
                        for ix in x0..x1 {
                            let v = x_p[iy * g.w + ix];
                            if v > best || v.is_nan() {
                                best = v;
                                best_at = iy * g.w + ix;
                                if v.is_nan() {
                                    break;
                                }
                            }
                        }
                        if best.is_nan() {
                            break;
                        }
                    }
                    y_p[oy * g.ow + ox] = best;
                    arg_p[oy * g.ow + ox] = best_at as u32;
                }
            }
        });
    (y, argmax)
}

pub fn max_backward(dy: &[f32], argmax: &[u32], g: &PoolGeometry) -> Vec<f32> {
    let (in_plane, out_plane) = (g.h * g.w, g.oh * g.ow);
    let mut dx = vec![0.0; g.n * g.c * in_plane];
    dx.par_chunks_mut(in_plane)
        .enumerate()
        .for_each(|(plane, dx_p)| {
            let range = plane * out_plane..(plane + 1) * out_plane;
            for (d, &at) in dy[range.clone()].iter().zip(&argmax[range]) {
                dx_p[at as usize] += d;
            }
        });
    dx
}

pub fn avg_forward(x: &[f32], g: &PoolGeometry) -> Vec<f32> {
    let (in_plane, out_plane) = (g.h * g.w, g.oh * g.ow);
    let divisor = (g.kh * g.kw) as f32;
    let mut y = vec![0.0; g.n * g.c * out_plane];
    y.par_chunks_mut(out_plane)
        .enumerate()
        .for_each(|(plane, y_p)| {
            let x_p = &x[plane * in_plane..(plane + 1) * in_plane];
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    let mut sum = 0.0;
                    for iy in oy * g.stride..oy * g.stride + g.kh {
                        for ix in ox * g.stride..ox * g.stride + g.kw {
                            sum += x_p[iy * g.w + ix];
                        }
                    }
                    y_p[oy * g.ow + ox] = sum / divisor;
                }
            }
        });
    y
}

pub fn avg_backward(dy: &[f32], g: &PoolGeometry) -> Vec<f32> {
    let (in_plane, out_plane) = (g.h * g.w, g.oh * g.ow);
    let divisor = (g.kh * g.kw) as f32;
    let mut dx = vec![0.0; g.n * g.c * in_plane];
    dx.par_chunks_mut(in_plane)
        .enumerate()
        .for_each(|(plane, dx_p)| {
            let dy_p = &dy[plane * out_plane..(plane + 1) * out_plane];
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    let share = dy_p[oy * g.ow + ox] / divisor;
                    for iy in oy * g.stride..oy * g.stride + g.kh {
                        for ix in ox * g.stride..ox * g.stride + g.kw {
                            dx_p[iy * g.w + ix] += share;
                        }
                    }
                }
            }
        });
    dx
}
