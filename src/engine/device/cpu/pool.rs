//! Max and average pooling on the CPU, one (image, channel) plane per rayon task.
//!
//! Max:  `y[o] = max over the window of x`, padding counting as -inf; the first
//!       maximum in row-major window order wins ties and NaN propagates (as PyTorch).
//!       Backward: `dx[argmax[o]] += dy[o]`.
//! Avg:  `y[o] = Σ window x / (kh·kw)` (no padding); backward spreads `dy[o] / (kh·kw)`.

use multiversion::multiversion;
use rayon::prelude::*;

use super::fresh::{filled, zeros};
use super::strided::PhaseColumns;
use crate::engine::device::geometry::PoolGeometry;

/// Rows (or columns) `start..end` of the window at output position `o`, clipped to the input.
fn window(o: usize, stride: usize, pad: usize, k: usize, len: usize) -> (usize, usize) {
    let start = (o * stride) as isize - pad as isize;
    let end = (start + k as isize).min(len as isize);
    (start.max(0) as usize, end as usize)
}

/// No tap has won yet: the argmax is then the window's first element.
const NO_TAP: u32 = u32::MAX;

/// One tap's pass over a plane's outputs on the wide grid (see `max_forward`): output
/// `o` reads `inputs[o]`, and the running (best, won) go from `from` to `to`. Branch-free
/// and into other buffers, so the compiler vectorises it with plain stores (updating in
/// place becomes masked stores, which are slow on AMD's cores). Inlined into
/// `max_plane`, whose AVX2 version it then shares.
#[inline(always)]
fn max_tap(from: (&[f32], &[u32]), to: (&mut [f32], &mut [u32]), inputs: &[f32], tap: u32) {
    let running = from.0.iter().zip(from.1).zip(inputs);
    for ((b, w), ((&b0, &w0), &v)) in to.0.iter_mut().zip(to.1.iter_mut()).zip(running) {
        let take = ((v > b0) | v.is_nan()) & !b0.is_nan();
        *b = if take { v } else { b0 };
        // As bits, so that the compiler blends rather than loading `w0` under a mask.
        let keep = u32::from(take).wrapping_sub(1);
        *w = (w0 & keep) | (tap & !keep);
    }
}

/// How `max_forward` lays a plane out for its passes: `s·s` phase planes of
/// `rows x cols`, with `rows = oh + (kh-1)/s` (plus one for the wide grid's overrun) and
/// `cols = ow + (kw-1)/s`.
struct Phases {
    rows: usize,
    cols: usize,
}

impl Phases {
    fn new(g: &PoolGeometry) -> Self {
        Phases {
            rows: g.oh + (g.kh - 1) / g.stride + 1,
            cols: g.ow + (g.kw - 1) / g.stride,
        }
    }

    fn len(&self) -> usize {
        self.rows * self.cols
    }

    /// Phase (py, px) of plane `x_p`: `phase[i, j] = x[s·i + py - pad, s·j + px - pad]`,
    /// -inf outside the plane.
    #[inline(always)]
    fn fill(&self, phase: &mut [f32], x_p: &[f32], g: &PoolGeometry, py: usize, px: usize) {
        let s = g.stride;
        let columns = PhaseColumns::new(g.w, s, px, g.pad);
        for (i, row) in phase.chunks_mut(self.cols).enumerate() {
            let iy = (s * i + py).checked_sub(g.pad).filter(|&iy| iy < g.h);
            let src = iy.map(|iy| &x_p[iy * g.w..][..g.w]);
            columns.write(row, src, f32::NEG_INFINITY);
        }
    }
}

/// Per plane, the input is first split into `s·s` phase planes (see `Phases`; for
/// stride 1 that is one copy padded with -inf), so that tap (ky, kx) of output
/// (oy, ox) — input (s·oy + ky - pad, s·ox + kx - pad) — is element
/// `(oy + ky/s, ox + kx/s)` of phase (ky % s, kx % s). On the "wide grid" of `oh` rows
/// of `cols` outputs (the first `ow` of each are real; the rest are dropped at the end),
/// output `o = oy·cols + ox` then reads tap (ky, kx) at the fixed offset
/// `(ky/s)·cols + kx/s + o` of its phase, so each tap is one long contiguous
/// branch-free pass over the plane. Taps go in the window's row-major order and an
/// output takes a value when `v > best`, or `v` is NaN, while `best` is not NaN: ties
/// thus go to the first maximum and the first NaN wins, as in PyTorch; padding (-inf)
/// never wins.
fn max_forward_wide(x: &[f32], g: &PoolGeometry) -> (Vec<f32>, Vec<u32>) {
    let (in_plane, out_plane) = (g.h * g.w, g.oh * g.ow);
    let layout = Phases::new(g);
    let wide = g.oh * layout.cols;
    let mut y = zeros(g.n * g.c * out_plane);
    let mut argmax = zeros(y.len());
    y.par_chunks_mut(out_plane)
        .zip(argmax.par_chunks_mut(out_plane))
        .enumerate()
        .for_each_init(
            || {
                let running = || (vec![0.0; wide], vec![0u32; wide]);
                let phases = vec![0.0; g.stride * g.stride * layout.len()];
                (phases, running(), running())
            },
            |(phases, current, next), (plane, (y_p, arg_p))| {
                let x_p = &x[plane * in_plane..(plane + 1) * in_plane];
                max_plane(x_p, (y_p, arg_p), phases, (current, next), g, &layout);
            },
        );
    (y, argmax)
}

/// The running maxima of a plane's wide grid, and the taps that won them.
type Running = (Vec<f32>, Vec<u32>);

/// One plane of `max_forward_wide`, with its scratch: the phase planes and two running
/// (best, won) buffers. Compiled for AVX-512 and AVX2 too (with the passes it inlines),
/// picked at run time by what the CPU has; the results do not depend on which.
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn max_plane(
    x_p: &[f32],
    (y_p, arg_p): (&mut [f32], &mut [u32]),
    phases: &mut [f32],
    (current, next): (&mut Running, &mut Running),
    g: &PoolGeometry,
    layout: &Phases,
) {
    let s = g.stride;
    for (p, phase) in phases.chunks_mut(layout.len()).enumerate() {
        layout.fill(phase, x_p, g, p / s, p % s);
    }
    current.0.fill(f32::NEG_INFINITY);
    current.1.fill(NO_TAP);
    for ky in 0..g.kh {
        for kx in 0..g.kw {
            let phase = ((ky % s) * s + kx % s) * layout.len();
            let from = phase + (ky / s) * layout.cols + kx / s;
            // What a win records: the tap's offset in the plane from the window's
            // top-left corner (which may lie in the padding).
            let tap = (ky * g.w + kx) as u32;
            let wide = current.0.len();
            max_tap(
                (&current.0, &current.1),
                (&mut next.0, &mut next.1),
                &phases[from..from + wide],
                tap,
            );
            std::mem::swap(current, next);
        }
    }
    let (best, won) = (&current.0, &current.1);
    let corner = g.pad * g.w + g.pad;
    for (oy, (y_row, arg_row)) in y_p.chunks_mut(g.ow).zip(arg_p.chunks_mut(g.ow)).enumerate() {
        let (y0, _) = window(oy, s, g.pad, g.kh, g.h);
        let row = oy * layout.cols;
        let (best, won) = (&best[row..row + g.ow], &won[row..row + g.ow]);
        y_row.copy_from_slice(best);
        // Branch-free, in u32 arithmetic that wraps: the window's corner can lie in the
        // padding, but a won tap's index is inside the plane.
        let (won_from, first_from) = ((oy * s * g.w).wrapping_sub(corner), y0 * g.w);
        for (ox, (a, &tap)) in arg_row.iter_mut().zip(won).enumerate() {
            let won_at = (won_from as u32)
                .wrapping_add((ox * s) as u32)
                .wrapping_add(tap);
            // No tap won (all -inf): the window's first element inside the plane.
            let first = (first_from + (ox * s).saturating_sub(g.pad)) as u32;
            *a = if tap == NO_TAP { first } else { won_at };
        }
    }
}

/// The plain version: each output scans its window, in row-major order. The reference
/// `max_forward_wide` is tested against, and the faster one on small planes, where the
/// wide version's set-up per plane outweighs its passes.
fn max_forward_scan(x: &[f32], g: &PoolGeometry) -> (Vec<f32>, Vec<u32>) {
    let (in_plane, out_plane) = (g.h * g.w, g.oh * g.ow);
    let mut y = zeros(g.n * g.c * out_plane);
    let mut argmax = zeros(y.len());
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

/// The smallest output plane that takes `max_forward_wide`: GoogLeNet's 7x7 at 224x224
/// inputs; its 4x4 and smaller ones at 32x32 are faster scanned.
const WIDE_MIN: usize = 49;

pub fn max_forward(x: &[f32], g: &PoolGeometry) -> (Vec<f32>, Vec<u32>) {
    if g.oh * g.ow >= WIDE_MIN {
        max_forward_wide(x, g)
    } else {
        max_forward_scan(x, g)
    }
}

pub fn max_backward(dy: &[f32], argmax: &[u32], g: &PoolGeometry) -> Vec<f32> {
    let (in_plane, out_plane) = (g.h * g.w, g.oh * g.ow);
    filled(g.n * g.c * in_plane, in_plane, |plane, dx_p| {
        let range = plane * out_plane..(plane + 1) * out_plane;
        for (d, &at) in dy[range.clone()].iter().zip(&argmax[range]) {
            dx_p[at as usize] += d;
        }
    })
}

pub fn avg_forward(x: &[f32], g: &PoolGeometry) -> Vec<f32> {
    let (in_plane, out_plane) = (g.h * g.w, g.oh * g.ow);
    let divisor = (g.kh * g.kw) as f32;
    filled(g.n * g.c * out_plane, out_plane, |plane, y_p| {
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
    })
}

pub fn avg_backward(dy: &[f32], g: &PoolGeometry) -> Vec<f32> {
    let (in_plane, out_plane) = (g.h * g.w, g.oh * g.ow);
    let divisor = (g.kh * g.kw) as f32;
    filled(g.n * g.c * in_plane, in_plane, |plane, dx_p| {
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wide passes against the plain scan, bit for bit and index for index, on
    /// planes large and small, with ties (few distinct values), -inf (once a whole
    /// window of it) and NaNs (one alone, two side by side).
    #[test]
    fn wide_passes_match_the_scan() {
        for (shape, k, stride, pad) in [
            ([2, 3, 9, 11], 3, 1, 1),
            ([1, 2, 4, 4], 3, 1, 1),
            ([2, 2, 15, 13], 3, 2, 1),
            ([1, 3, 8, 6], 2, 2, 0),
            ([1, 2, 10, 9], 3, 2, 0),
            ([1, 1, 1, 1], 3, 2, 1),
            ([1, 2, 11, 10], 3, 3, 1),
            // Window (1, 1) is all -inf: no tap wins, the argmax is its first element.
            ([1, 1, 12, 12], 3, 3, 0),
        ] {
            let g = PoolGeometry::new(shape, k, k, stride, pad).unwrap();
            let mut x: Vec<f32> = (0..shape.iter().product::<usize>())
                .map(|i| ((i * 7919) % 5) as f32 - 2.0)
                .collect();
            for (at, v) in [
                (5, f32::NAN),
                (17, f32::NEG_INFINITY),
                (30, f32::NAN),
                (31, f32::NAN),
            ] {
                if at < x.len() {
                    x[at] = v;
                }
            }
            if shape == [1, 1, 12, 12] {
                for at in [39, 40, 41, 51, 52, 53, 63, 64, 65] {
                    x[at] = f32::NEG_INFINITY;
                }
            }
            let (y_scan, arg_scan) = max_forward_scan(&x, &g);
            let (y_wide, arg_wide) = max_forward_wide(&x, &g);
            let bits = |y: &[f32]| y.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&y_wide),
                bits(&y_scan),
                "{shape:?} k{k} s{stride} p{pad}: values"
            );
            assert_eq!(
                arg_wide, arg_scan,
                "{shape:?} k{k} s{stride} p{pad}: argmax"
            );
        }
    }
}
