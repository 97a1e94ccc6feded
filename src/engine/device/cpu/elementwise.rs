//! Elementwise ops on the CPU.

use rayon::prelude::*;

use crate::engine::device::dropout_keeps;

/// Below this many elements, threads cost more than they save.
const PARALLEL_MIN: usize = 1 << 16;

fn map2(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Sync) -> Vec<f32> {
    if a.len() < PARALLEL_MIN {
        a.iter().zip(b).map(|(&x, &y)| f(x, y)).collect()
    } else {
        a.par_iter().zip(b).map(|(&x, &y)| f(x, y)).collect()
    }
}

pub fn add(a: &[f32], b: &[f32]) -> Vec<f32> {
    map2(a, b, |x, y| x + y)
}

/// `y = max(x, 0)` as PyTorch computes it (`clamp_min(x, 0)`, i.e. `x < 0 ? 0 : x`):
/// NaN stays NaN and -0.0 stays -0.0.
pub fn relu_forward(x: &[f32]) -> Vec<f32> {
    map2(x, x, |v, _| if v < 0.0 { 0.0 } else { v })
}

pub fn relu_backward(y: &[f32], dy: &[f32]) -> Vec<f32> {
    map2(y, dy, |y, d| if y > 0.0 { d } else { 0.0 })
}

pub fn dropout(x: &[f32], p: f32, seed: u64) -> Vec<f32> {
    let scale = 1.0 / (1.0 - p);
    let apply = |(i, &v): (usize, &f32)| {
        if dropout_keeps(seed, i as u64, p) {
            v * scale
        } else {
            0.0
        }
    };
    if x.len() < PARALLEL_MIN {
        x.iter().enumerate().map(apply).collect()
    } else {
        x.par_iter().enumerate().map(apply).collect()
    }
}
