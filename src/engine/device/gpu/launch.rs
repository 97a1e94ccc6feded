//! Launch shapes and argument checks shared by the op families.

use anyhow::{ensure, Result};

use super::Launch;
use crate::engine::device::Buffer;

/// Threads per block of the one-thread-per-element kernels.
pub(super) const BLOCK: u32 = 256;

/// The shared-memory GEMM core of kernels/tiled_gemm.cuh: each block of
/// `GEMM_THREADS` threads computes a `GEMM_TILE x GEMM_TILE` tile of the product,
/// stepping through the reduction `GEMM_TILE_K` at a time.
pub(super) const GEMM_TILE: usize = 64;
pub(super) const GEMM_TILE_K: usize = 16;
pub(super) const GEMM_THREADS: u32 = 256;

/// `value` as a kernel's `int` parameter, or an error naming it: kernels index with
/// 32-bit ints, so every size they see, and every buffer length, must fit one.
/// Errors unless `buffer` holds `expected` elements; `what` names it.
pub(super) fn check_len(buffer: &Buffer<f32>, expected: usize, what: &str) -> Result<()> {
    ensure!(
        buffer.len() == expected,
        "{what} holds {} elements, expected {expected}",
        buffer.len()
    );
    Ok(())
}

pub(super) fn int(value: usize, what: &str) -> Result<i32> {
    ensure!(
        value <= i32::MAX as usize,
        "{what} = {value} is too large for the GPU kernels (they index with 32-bit ints)"
    );
    Ok(value as i32)
}

/// One thread per element.
pub(super) fn per_element(elements: usize) -> Launch {
    Launch::linear(elements, BLOCK)
}

/// A grid of GEMM tiles over a `rows x cols` product, `splits` reduction splits deep.
pub(super) fn gemm_grid(rows: usize, cols: usize, splits: usize) -> Result<Launch> {
    let tiles_x = cols.div_ceil(GEMM_TILE);
    let tiles_y = rows.div_ceil(GEMM_TILE);
    // CUDA limits grid.y and grid.z to 65535 (grid.x to 2³¹ - 1).
    ensure!(
        tiles_y <= 65535 && splits <= 65535,
        "a GEMM of {rows} rows in {splits} splits exceeds the grid's limits"
    );
    Ok(Launch {
        grid: [
            int(tiles_x.max(1), "GEMM tile columns")? as u32,
            tiles_y.max(1) as u32,
            splits.max(1) as u32,
        ],
        block: [GEMM_THREADS, 1, 1],
    })
}
