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
//!
//! The output channels come in parts (see `ConvOutput`): one, or an Inception block's
//! three 1x1 convolutions. Their filters are stacked into one `W` and their output
//! gradients into one `dY`, so each pass is still one GEMM over the shared `col`; the
//! bias and ReLU go into the scatter to each part's channel view, and ReLU's backward
//! into the gather of `dY`.
//!
//! A 1x1 convolution (stride 1, no padding) on planes of at least `PLANE_GEMM_MIN`
//! positions skips the columns, which would only copy `x`: per image `n`,
//!   forward        `y_n[part] = W_part · x_n`, written straight into the part's view,
//!                  then the bias and ReLU in place
//!   backward data  `dx_n += Σ_part W_partᵀ · dy_n[part]`, straight onto `dx`
//! with `x_n` read as its `[c_in, h*w]` planes. Smaller planes make GEMMs too narrow,
//! so they keep the batched columns. Backward filter on such planes needs no columns
//! either:
//!   backward filt. `dW = Σ_n dY_n · x_nᵀ`, one GEMM per image added on in image order
//!                  (a fixed order: the threads split the output channels, not the sum)
//! with `dY_n` image n's output gradient rows gathered (and ReLU-masked) per thread.
//!
//! A 3x3 convolution (stride 1, padding 1) on planes of 14x14 and larger computes `Y`
//! (forward) and `dx` (backward data) by Winograd's F(2x2, 3x3) instead (winograd.rs),
//! in the same layouts, so the bias, ReLU, views and gathers are the same code.
//!
//! The filter gradient of a k x k convolution (k > 1) with at least `PLANE_GEMM_MIN`
//! output positions needs only one image's columns at a time:
//!   backward filt. `dW[:, rows] = Σ_n dY_n · col_n[rows]ᵀ`, image by image in order,
//! with the threads splitting the patch rows (see `backward_filter_image_columns`).

use std::borrow::Cow;
use std::ops::Range;

use rayon::prelude::*;

use super::fresh::{filled, zeros};
use super::gemm::{gemm, par_product, Mat};
use super::winograd;
use crate::engine::device::geometry::{ChannelView, ConvGeometry};

/// One output part, on host slices (see `ConvOutput`).
pub struct Part<'a> {
    pub w: &'a [f32],
    pub b: &'a [f32],
    pub y: &'a mut [f32],
    pub view: ChannelView,
}

/// One output part's gradient, on host slices (see `ConvOutputGrad`).
pub struct PartGrad<'a> {
    pub dy: &'a [f32],
    pub relu_y: Option<&'a [f32]>,
    pub view: ChannelView,
}

/// The smallest plane (`h * w`) whose 1x1 convolutions run per image, without columns:
/// 14x14, where GoogLeNet's fourth stage runs at 224x224 inputs.
const PLANE_GEMM_MIN: usize = 196;

/// Whether the columns would be `x` itself, on planes large enough for a GEMM each.
fn per_image(g: &ConvGeometry) -> bool {
    g.k == 1 && g.stride == 1 && g.pad == 0 && g.h * g.w >= PLANE_GEMM_MIN
}

/// `bias + v`, then ReLU as PyTorch's clamp_min when `relu`: NaN stays NaN, -0.0
/// stays -0.0.
fn epilogue(v: f32, bias: f32, relu: bool) -> f32 {
    let v = v + bias;
    if relu && v < 0.0 {
        0.0
    } else {
        v
    }
}

/// The parts' filters stacked into one `[c_out, patch]` matrix (borrowed for one part).
fn stacked<'a>(w: &[&'a [f32]]) -> Cow<'a, [f32]> {
    match w {
        [one] => Cow::Borrowed(one),
        many => Cow::Owned(many.concat()),
    }
}

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

/// Row `r = (c, ky, kx)` of the columns: it reads channel `c` at tap `(ky, kx)`, and
/// only the output rows and columns where that tap lands inside the image.
struct ColumnRow {
    c: usize,
    ky: usize,
    kx: usize,
    rows: Range<usize>,
    cols: Range<usize>,
}

impl ColumnRow {
    fn new(r: usize, g: &ConvGeometry) -> Self {
        let (ky, kx) = ((r / g.k) % g.k, r % g.k);
        ColumnRow {
            c: r / (g.k * g.k),
            ky,
            kx,
            rows: inside(ky, g, g.h, g.oh),
            cols: inside(kx, g, g.w, g.ow),
        }
    }

    /// Image `n`'s part of the row: `out[oy·ow + ox]` becomes input pixel
    /// `x[n, c, oy*s + ky - pad, ox*s + kx - pad]` where that lies inside the image. The
    /// other elements (padding) are left as they are; they are the same for every image.
    fn write(&self, x: &[f32], g: &ConvGeometry, n: usize, out: &mut [f32]) {
        if self.cols.is_empty() {
            return;
        }
        let plane = g.h * g.w;
        let image = &x[(n * g.c_in + self.c) * plane..][..plane];
        for oy in self.rows.clone() {
            let in_row = &image[source(oy, self.ky, g) * g.w..][..g.w];
            let out_row = &mut out[oy * g.ow..][..g.ow];
            if g.stride == 1 {
                let from = source(self.cols.start, self.kx, g);
                out_row[self.cols.clone()].copy_from_slice(&in_row[from..from + self.cols.len()]);
            } else {
                for ox in self.cols.clone() {
                    out_row[ox] = in_row[source(ox, self.kx, g)];
                }
            }
        }
    }
}

fn im2col(x: &[f32], g: &ConvGeometry) -> Vec<f32> {
    let positions = g.oh * g.ow;
    let width = g.n * positions;
    filled(g.patch_len() * width, width, |r, row| {
        let layout = ColumnRow::new(r, g);
        for (n, out) in row.chunks_mut(positions).enumerate() {
            layout.write(x, g, n, out);
        }
    })
}

/// `dY[co, (n, p)] = dy[n, co, p]`, with co running over the parts' channels in order,
/// each read through its part's view and masked by ReLU's backward where it applies.
fn gather_output_grad(grads: &[PartGrad], g: &ConvGeometry) -> Vec<f32> {
    let positions = g.oh * g.ow;
    let rows = output_rows(grads);
    filled(rows.len() * g.n * positions, g.n * positions, |co, row| {
        let (gr, c) = rows[co];
        for (n, dst) in row.chunks_mut(positions).enumerate() {
            output_grad_row(gr, c, n, dst);
        }
    })
}

/// The 1x1 forward per image (see the module's comment).
fn forward_per_image(x: &[f32], parts: &mut [Part], g: &ConvGeometry, relu: bool) {
    let positions = g.h * g.w;
    for part in parts {
        let (view, w, b) = (part.view, part.w, part.b);
        part.y
            .par_chunks_mut(view.total * positions)
            .enumerate()
            .for_each(|(n, y_n)| {
                let x_n = &x[n * g.c_in * positions..(n + 1) * g.c_in * positions];
                let y_n = &mut y_n[view.offset * positions..(view.offset + view.len) * positions];
                gemm(
                    Mat::new(w, view.len, g.c_in),
                    Mat::new(x_n, g.c_in, positions),
                    y_n,
                    0.0,
                );
                for (c, y_row) in y_n.chunks_mut(positions).enumerate() {
                    for v in y_row {
                        *v = epilogue(*v, b[c], relu);
                    }
                }
            });
    }
}

pub fn forward(x: &[f32], parts: &mut [Part], g: &ConvGeometry, relu: bool) {
    if per_image(g) {
        return forward_per_image(x, parts, g, relu);
    }
    let positions = g.oh * g.ow;
    let width = g.n * positions;
    let w: Vec<&[f32]> = parts.iter().map(|p| p.w).collect();
    let w = stacked(&w);
    let out = if winograd::applies(g) {
        winograd::forward(x, &w, g)
    } else {
        let col = im2col(x, g);
        par_product(
            Mat::new(&w, g.c_out, g.patch_len()),
            Mat::new(&col, g.patch_len(), width),
        )
    };
    let mut first = 0;
    for part in parts {
        let (view, b) = (part.view, part.b);
        let out = &out[first * width..(first + view.len) * width];
        part.y
            .par_chunks_mut(view.total * positions)
            .enumerate()
            .for_each(|(n, y_n)| {
                let y_n = &mut y_n[view.offset * positions..(view.offset + view.len) * positions];
                for (c, y_row) in y_n.chunks_mut(positions).enumerate() {
                    let from = c * width + n * positions;
                    for (dst, src) in y_row.iter_mut().zip(&out[from..from + positions]) {
                        *dst = epilogue(*src, b[c], relu);
                    }
                }
            });
        first += view.len;
    }
}

/// The 1x1 input gradient per image (see the module's comment), added onto `dx`.
fn backward_data_per_image(grads: &[PartGrad], w: &[&[f32]], g: &ConvGeometry, dx: &mut [f32]) {
    let positions = g.h * g.w;
    dx.par_chunks_mut(g.c_in * positions)
        .enumerate()
        .for_each(|(n, dx_n)| {
            for (gr, w) in grads.iter().zip(w) {
                let from = (n * gr.view.total + gr.view.offset) * positions;
                let dy = &gr.dy[from..from + gr.view.len * positions];
                let dy: Cow<[f32]> = match gr.relu_y {
                    None => Cow::Borrowed(dy),
                    Some(y) => Cow::Owned(
                        dy.iter()
                            .zip(&y[from..])
                            .map(|(&d, &y)| if y > 0.0 { d } else { 0.0 })
                            .collect(),
                    ),
                };
                gemm(
                    Mat::new(w, gr.view.len, g.c_in).t(),
                    Mat::new(&dy, gr.view.len, positions),
                    dx_n,
                    1.0,
                );
            }
        });
}

/// The input gradient, added onto `into` (the gradient gathered so far) when given.
pub fn backward_data(
    grads: &[PartGrad],
    w: &[&[f32]],
    g: &ConvGeometry,
    into: Option<Vec<f32>>,
) -> Vec<f32> {
    let (positions, plane) = (g.oh * g.ow, g.h * g.w);
    let mut dx = into.unwrap_or_else(|| zeros(g.n * g.c_in * plane));
    if per_image(g) {
        backward_data_per_image(grads, w, g, &mut dx);
        return dx;
    }
    let width = g.n * positions;
    let d_out = gather_output_grad(grads, g);
    if winograd::applies(g) {
        winograd::backward_data(&d_out, &stacked(w), g, &mut dx);
        return dx;
    }
    let dcol = par_product(
        Mat::new(&stacked(w), g.c_out, g.patch_len()).t(),
        Mat::new(&d_out, g.c_out, width),
    );
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

/// The stacked output channels `co` as (part, channel in the part), in order.
fn output_rows<'a>(grads: &'a [PartGrad<'a>]) -> Vec<(&'a PartGrad<'a>, usize)> {
    grads
        .iter()
        .flat_map(|gr| (0..gr.view.len).map(move |c| (gr, c)))
        .collect()
}

/// Row `c` of `gr`'s gradient at image `n` (`positions` long), masked by ReLU's
/// backward where it applies, into `dst`.
fn output_grad_row(gr: &PartGrad, c: usize, n: usize, dst: &mut [f32]) {
    let positions = dst.len();
    let from = (n * gr.view.total + gr.view.offset + c) * positions;
    let src = &gr.dy[from..from + positions];
    match gr.relu_y {
        None => dst.copy_from_slice(src),
        Some(y) => {
            for ((d, &s), &y) in dst.iter_mut().zip(src).zip(&y[from..]) {
                *d = if y > 0.0 { s } else { 0.0 };
            }
        }
    }
}

/// `Σ v` in a fixed order: eight running sums, of the elements `i ≡ l (mod 8)`, added
/// pairwise at the end. The compiler keeps them in one vector register; a single
/// running sum waits for each add to finish.
fn sum(v: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let mut chunks = v.chunks_exact(8);
    for chunk in &mut chunks {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane += x;
        }
    }
    for (lane, &x) in lanes.iter_mut().zip(chunks.remainder()) {
        *lane += x;
    }
    let [a, b, c, d, e, f, g, h] = lanes;
    ((a + b) + (c + d)) + ((e + f) + (g + h))
}

/// The stacked `(dW, db)` of a per-image 1x1 convolution: `dW += dY_n · x_nᵀ` image by
/// image, `n = 0, 1, ...` in that order whatever the thread count (the threads split
/// the output channels), with `dY_n` the gathered, ReLU-masked rows of image `n`.
fn backward_filter_per_image(
    x: &[f32],
    grads: &[PartGrad],
    g: &ConvGeometry,
) -> (Vec<f32>, Vec<f32>) {
    let positions = g.h * g.w;
    let rows = output_rows(grads);
    let mut dw = vec![0.0; g.c_out * g.c_in];
    let mut db = vec![0.0; g.c_out];
    let block = g.c_out.div_ceil(rayon::current_num_threads()).max(1);
    dw.par_chunks_mut(block * g.c_in)
        .zip(db.par_chunks_mut(block))
        .zip(rows.par_chunks(block))
        .for_each(|((dw, db), rows)| {
            let mut dy_n = vec![0.0; rows.len() * positions];
            for n in 0..g.n {
                for (dst, &(gr, c)) in dy_n.chunks_mut(positions).zip(rows) {
                    output_grad_row(gr, c, n, dst);
                }
                let x_n = &x[n * g.c_in * positions..(n + 1) * g.c_in * positions];
                let beta = if n == 0 { 0.0 } else { 1.0 };
                gemm(
                    Mat::new(&dy_n, rows.len(), positions),
                    Mat::new(x_n, g.c_in, positions).t(),
                    dw,
                    beta,
                );
                for (b, row) in db.iter_mut().zip(dy_n.chunks(positions)) {
                    *b += sum(row);
                }
            }
        });
    (dw, db)
}

/// The stacked `dW` of a k x k convolution (k > 1) on planes of at least
/// `PLANE_GEMM_MIN` outputs, from the gathered `dY`, image by image: `dW[:, rows] = Σ_n dY_n · col_n[rows]ᵀ`,
/// `n = 0, 1, ...` in that order, with the threads splitting the patch rows `rows`.
/// Each thread builds its rows of one image's columns at a time, in one buffer (the
/// padding's zeros are the same for every image), so the batch's columns, hundreds of
/// megabytes at 224x224, are never written out. `dY_n` is read in place from `dY`.
fn backward_filter_image_columns(x: &[f32], d_out: &[f32], g: &ConvGeometry) -> Vec<f32> {
    let positions = g.oh * g.ow;
    let (width, patch) = (g.n * positions, g.patch_len());
    let block = patch.div_ceil(rayon::current_num_threads());
    let blocks: Vec<Vec<f32>> = (0..patch.div_ceil(block))
        .into_par_iter()
        .map(|b| {
            let rows = b * block..patch.min((b + 1) * block);
            let layout: Vec<ColumnRow> = rows.clone().map(|r| ColumnRow::new(r, g)).collect();
            let mut col = vec![0.0; rows.len() * positions];
            let mut dw = vec![0.0; g.c_out * rows.len()];
            for n in 0..g.n {
                for (row, out) in layout.iter().zip(col.chunks_mut(positions)) {
                    row.write(x, g, n, out);
                }
                let dy_n = Mat {
                    row_stride: width,
                    ..Mat::new(&d_out[n * positions..], g.c_out, positions)
                };
                let beta = if n == 0 { 0.0 } else { 1.0 };
                gemm(
                    dy_n,
                    Mat::new(&col, rows.len(), positions).t(),
                    &mut dw,
                    beta,
                );
            }
            dw
        })
        .collect();
    filled(g.c_out * patch, patch, |co, row| {
        for (b, part) in blocks.iter().enumerate() {
            let len = part.len() / g.c_out;
            row[b * block..][..len].copy_from_slice(&part[co * len..][..len]);
        }
    })
}

/// The stacked `dW` from the gathered `dY` and the batched columns (see the module's
/// comment).
fn backward_filter_columns(x: &[f32], d_out: &[f32], g: &ConvGeometry) -> Vec<f32> {
    let width = g.n * g.oh * g.ow;
    let patch = g.patch_len();
    // Not by Winograd: its transforms lose a few more bits on the filter gradient, and
    // Adam turns entries near zero into full-size steps (tests/pytorch_parity.rs's update
    // norms went from 6e-6 to 7e-5 against PyTorch, over their bound).
    let col = im2col(x, g);
    par_product(
        Mat::new(d_out, g.c_out, width),
        Mat::new(&col, patch, width).t(),
    )
}

/// `(dw, db)` of every part.
pub fn backward_filter(
    x: &[f32],
    grads: &[PartGrad],
    g: &ConvGeometry,
) -> Vec<(Vec<f32>, Vec<f32>)> {
    let (dw, db) = if per_image(g) {
        backward_filter_per_image(x, grads, g)
    } else {
        let d_out = gather_output_grad(grads, g);
        let dw = if g.oh * g.ow >= PLANE_GEMM_MIN {
            backward_filter_image_columns(x, &d_out, g)
        } else {
            backward_filter_columns(x, &d_out, g)
        };
        (dw, d_out.par_chunks(g.n * g.oh * g.ow).map(sum).collect())
    };
    let patch = g.patch_len();
    let mut first = 0;
    grads
        .iter()
        .map(|gr| {
            let rows = first..first + gr.view.len;
            first += gr.view.len;
            (
                dw[rows.start * patch..rows.end * patch].to_vec(),
                db[rows].to_vec(),
            )
        })
        .collect()
}
