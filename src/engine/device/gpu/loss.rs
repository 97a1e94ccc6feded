//! Softmax cross-entropy and the correct count: kernels/loss.cu.

use anyhow::{ensure, Result};

use super::launch::{int, per_element};
use super::{Arg, Driver, Launch};
use crate::engine::device::Buffer;

/// The block size cross_entropy_mean_f32 is written for (its MEAN_THREADS).
const MEAN_THREADS: u32 = 256;

fn check(logits_len: usize, labels: &Buffer<u32>, n: usize, classes: usize) -> Result<[i32; 2]> {
    ensure!(
        logits_len == n * classes && labels.len() == n,
        "cross-entropy: {logits_len} logits and {} labels do not make {n} rows of {classes} classes",
        labels.len()
    );
    int(n * classes, "logits length")?;
    Ok([int(n, "rows")?, int(classes, "classes")?])
}

/// Returns the one-element mean loss and the probabilities: one launch computes each
/// row's probabilities and log-probability at the label, a second (one block) the mean.
pub(super) fn forward<D: Driver>(
    d: &D,
    logits: &Buffer<f32>,
    labels: &Buffer<u32>,
    n: usize,
    classes: usize,
    smoothing: f32,
) -> Result<(Buffer<f32>, Buffer<f32>)> {
    let [rows, cols] = check(logits.len(), labels, n, classes)?;
    ensure!(n > 0 && classes > 0, "cross-entropy of an empty batch");
    let mut probs = d.alloc_f32(n * classes)?;
    let mut term = d.alloc_f32(n)?;
    let mut loss = d.alloc_f32(1)?;
    d.launch(
        "cross_entropy_fwd_f32",
        per_element(n),
        &mut [
            Arg::F32(logits),
            Arg::U32s(labels),
            Arg::OutF32(&mut probs),
            Arg::OutF32(&mut term),
            Arg::I32(rows),
            Arg::I32(cols),
            Arg::Float(smoothing),
        ],
    )?;
    d.launch(
        "cross_entropy_mean_f32",
        Launch {
            grid: [1, 1, 1],
            block: [MEAN_THREADS, 1, 1],
        },
        &mut [Arg::F32(&term), Arg::OutF32(&mut loss), Arg::I32(rows)],
    )?;
    Ok((loss, probs))
}

#[allow(clippy::too_many_arguments)]
pub(super) fn backward<D: Driver>(
    d: &D,
    probs: &Buffer<f32>,
    labels: &Buffer<u32>,
    dloss: &Buffer<f32>,
    n: usize,
    classes: usize,
    smoothing: f32,
) -> Result<Buffer<f32>> {
    let [rows, cols] = check(probs.len(), labels, n, classes)?;
    ensure!(
        dloss.len() == 1,
        "cross-entropy backward: the loss gradient must be one element"
    );
    let mut dz = d.alloc_f32(n * classes)?;
    if !dz.is_empty() {
        d.launch(
            "cross_entropy_bwd_f32",
            per_element(n * classes),
            &mut [
                Arg::F32(probs),
                Arg::U32s(labels),
                Arg::F32(dloss),
                Arg::OutF32(&mut dz),
                Arg::I32(rows),
                Arg::I32(cols),
                Arg::Float(smoothing),
            ],
        )?;
    }
    Ok(dz)
}

/// Counts on the device (an integer atomic per correct row), then downloads the count.
pub(super) fn correct_count<D: Driver>(
    d: &D,
    logits: &Buffer<f32>,
    labels: &Buffer<u32>,
    n: usize,
    classes: usize,
) -> Result<usize> {
    let [rows, cols] = check(logits.len(), labels, n, classes)?;
    if n == 0 || classes == 0 {
        return Ok(0);
    }
    let mut count = d.zeros_u32(1)?;
    d.launch(
        "correct_count_fwd_f32",
        per_element(n),
        &mut [
            Arg::F32(logits),
            Arg::U32s(labels),
            Arg::OutU32s(&mut count),
            Arg::I32(rows),
            Arg::I32(cols),
        ],
    )?;
    Ok(d.download_u32(&count)?[0] as usize)
}

/// Where `record_step` writes: the step log's slots, its cursor (the next slot) and
/// its divergence flag.
pub(super) struct StepLog<'a> {
    pub cursor: &'a mut Buffer<u32>,
    pub losses: &'a mut Buffer<f32>,
    pub correct: &'a mut Buffer<u32>,
    pub diverged: &'a mut Buffer<u32>,
}

/// One launch, no memset and no read: see record_step_f32.
pub(super) fn record_step<D: Driver>(
    d: &D,
    loss: &Buffer<f32>,
    logits: &Buffer<f32>,
    labels: &Buffer<u32>,
    n: usize,
    classes: usize,
    log: StepLog,
) -> Result<()> {
    let [rows, cols] = check(logits.len(), labels, n, classes)?;
    ensure!(
        loss.len() == 1 && log.diverged.len() == 1 && log.cursor.len() == 1,
        "record_step: the loss, the cursor and the divergence flag must be one element each"
    );
    ensure!(
        log.losses.len() == log.correct.len(),
        "record_step: {} loss slots but {} count slots",
        log.losses.len(),
        log.correct.len()
    );
    let capacity = int(log.losses.len(), "step log capacity")?;
    d.launch(
        "record_step_f32",
        Launch {
            grid: [1, 1, 1],
            block: [1, 1, 1],
        },
        &mut [
            Arg::F32(loss),
            Arg::F32(logits),
            Arg::U32s(labels),
            Arg::I32(rows),
            Arg::I32(cols),
            Arg::OutU32s(log.cursor),
            Arg::I32(capacity),
            Arg::OutF32(log.losses),
            Arg::OutU32s(log.correct),
            Arg::OutU32s(log.diverged),
        ],
    )
}
