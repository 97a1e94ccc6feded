//! The fully connected layer on the CPU, as three GEMMs:
//!   `y = x · Wᵀ + b`,  `dx = dy · W`,  `dW = dyᵀ · x`,  `db = Σ_rows dy`.

use super::gemm::{gemm, Mat};
use crate::engine::device::geometry::LinearGeometry;

pub fn forward(x: &[f32], w: &[f32], b: &[f32], g: &LinearGeometry) -> Vec<f32> {
    let mut y: Vec<f32> = (0..g.n).flat_map(|_| b.iter().copied()).collect();
    gemm(
        Mat::new(x, g.n, g.inp),
        Mat::new(w, g.out, g.inp).t(),
        &mut y,
        1.0,
    );
    y
}

pub fn backward_data(dy: &[f32], w: &[f32], g: &LinearGeometry) -> Vec<f32> {
    let mut dx = vec![0.0; g.n * g.inp];
    gemm(
        Mat::new(dy, g.n, g.out),
        Mat::new(w, g.out, g.inp),
        &mut dx,
        0.0,
    );
    dx
}

pub fn backward_weight(x: &[f32], dy: &[f32], g: &LinearGeometry) -> (Vec<f32>, Vec<f32>) {
    let mut dw = vec![0.0; g.out * g.inp];
    gemm(
        Mat::new(dy, g.n, g.out).t(),
        Mat::new(x, g.n, g.inp),
        &mut dw,
        0.0,
    );
    let mut db = vec![0.0; g.out];
    for row in dy.chunks(g.out) {
        for (acc, d) in db.iter_mut().zip(row) {
            *acc += d;
        }
    }
    (dw, db)
}
