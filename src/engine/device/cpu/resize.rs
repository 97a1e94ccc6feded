//! Bilinear resize of u8 images to floats in [0, 1], as
//! `F.interpolate(x.float() / 255, size, mode="bilinear", align_corners=False)`, each
//! channel plane on its own.
//!
//! For output row `oy`: `src = max((oy + 0.5) · in/out - 0.5, 0)`, `y0 = ⌊src⌋`,
//! `y1 = min(y0 + 1, in - 1)`, `ly = src - y0`; the same for columns; then
//! `out = (1-ly)·((1-lx)·x00 + lx·x01) + ly·((1-lx)·x10 + lx·x11)`,
//! evaluated in that order (columns first), as PyTorch's CPU kernel does; then
//! `(out - mean[c]) / std[c]` on channel `c`, as torchvision's Normalize. Each image is read through its
//! augmentation view (src/training/recipe/augment.rs): source pixel `(y, x)` is `image(y + dy, x' + dx)`
//! with `x' = w - 1 - x` when flipped, 0 outside the image.

use rayon::prelude::*;

use crate::engine::device::{ImageShape, Normalize, View};

/// Source index, its neighbour and the neighbour's weight, per output coordinate.
pub fn bilinear_taps(input: usize, output: usize) -> Vec<(usize, usize, f32)> {
    let scale = input as f32 / output as f32;
    (0..output)
        .map(|o| {
            let src = (scale * (o as f32 + 0.5) - 0.5).max(0.0);
            let i0 = (src as usize).min(input - 1);
            let i1 = if i0 + 1 < input { i0 + 1 } else { i0 };
            (i0, i1, src - i0 as f32)
        })
        .collect()
}

/// `images` (of `shape`) at `indices`, each read through its view word, resized to
/// `size x size` and normalised: `[indices.len(), channels, size, size]`.
pub fn resize(
    images: &[u8],
    shape: ImageShape,
    indices: &[u32],
    views: &[u32],
    size: usize,
    norm: Normalize,
) -> Vec<f32> {
    let (channels, h, w) = (shape.channels, shape.height, shape.width);
    let rows = bilinear_taps(h, size);
    let cols = bilinear_taps(w, size);
    let mut out = vec![0.0; indices.len() * channels * size * size];
    out.par_chunks_mut(size * size)
        .enumerate()
        .for_each(|(plane_index, plane)| {
            let (b, channel) = (plane_index / channels, plane_index % channels);
            let start = (indices[b] as usize * channels + channel) * h * w;
            let image = &images[start..start + h * w];
            let view = View::from_word(views[b]);
            let (mean, std) = (norm.mean[channel], norm.std[channel]);
            let px = |y: usize, x: usize| {
                let sy = y as i64 + view.dy as i64;
                let sx = if view.flip { w - 1 - x } else { x } as i64 + view.dx as i64;
                if sy < 0 || sx < 0 || sy >= h as i64 || sx >= w as i64 {
                    return 0.0;
                }
                image[sy as usize * w + sx as usize] as f32 / 255.0
            };
            for (oy, &(y0, y1, ly)) in rows.iter().enumerate() {
                for (ox, &(x0, x1, lx)) in cols.iter().enumerate() {
                    let top = (1.0 - lx) * px(y0, x0) + lx * px(y0, x1);
                    let bottom = (1.0 - lx) * px(y1, x0) + lx * px(y1, x1);
                    let value = (1.0 - ly) * top + ly * bottom;
                    plane[oy * size + ox] = (value - mean) / std;
                }
            }
        });
    out
}
