//! The loss and correct count of each training step, kept on the device until the
//! host asks for them, so a step never waits for the GPU: reading a loss right after
//! the forward pass would drain the GPU's queue before backward is even queued.
//!
//! Each step writes the next slot (`Backend::record_step`, one launch; the slot comes
//! from a cursor in device memory, so a captured step can be replayed); the host reads
//! the slots every `--log-every` steps and at epoch end, and zeroes the cursor. A NaN
//! or infinite loss also raises a flag on the device that Adam checks, so the weights
//! stay those of the last good step until the host sees the loss and stops the run.

use anyhow::{ensure, Result};

use crate::engine::device::{Buffer, Device};
use crate::engine::ops::Labels;
use crate::engine::tensor::Tensor;

/// What one training step measured on its batch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepResult {
    /// Mean cross-entropy over the batch.
    pub loss: f32,
    /// Images whose largest logit is at their label.
    pub correct: usize,
    /// Images in the batch.
    pub images: usize,
}

pub struct StepLog {
    device: Device,
    cursor: Buffer<u32>,
    losses: Buffer<f32>,
    correct: Buffer<u32>,
    diverged: Buffer<u32>,
    /// The batch size of each step recorded since the last read, oldest first.
    pending: Vec<usize>,
}

impl StepLog {
    /// Room for `capacity` steps between reads.
    pub fn new(device: &Device, capacity: usize) -> Result<StepLog> {
        ensure!(capacity > 0, "a step log needs room for at least one step");
        let backend = device.backend();
        Ok(StepLog {
            device: device.clone(),
            cursor: backend.upload_u32(vec![0])?,
            losses: backend.upload_f32(vec![0.0; capacity])?,
            correct: backend.upload_u32(vec![0; capacity])?,
            diverged: backend.upload_u32(vec![0])?,
            pending: Vec::with_capacity(capacity),
        })
    }

    pub fn capacity(&self) -> usize {
        self.losses.len()
    }

    /// Steps recorded since the last read.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    pub fn is_full(&self) -> bool {
        self.pending() == self.capacity()
    }

    /// Records a step's one-element `loss` and the correct count of its `logits`;
    /// nothing is read back.
    pub fn record(&mut self, loss: &Tensor, logits: &Tensor, labels: &Labels) -> Result<()> {
        ensure!(
            !self.is_full(),
            "the step log is full: read it at least every {} steps",
            self.capacity()
        );
        ensure!(
            loss.numel() == 1,
            "record_step: the loss must be one element"
        );
        let [n, classes] = logits.dims2("record_step")?;
        ensure!(
            n == labels.len(),
            "record_step: {n} rows of logits for {} labels",
            labels.len()
        );
        self.device.backend().record_step(
            loss.buffer(),
            logits.buffer(),
            labels.buffer(),
            n,
            classes,
            &mut self.cursor,
            &mut self.losses,
            &mut self.correct,
            &mut self.diverged,
        )?;
        self.pending.push(n);
        Ok(())
    }

    /// Notes a step of `images` that a replayed recording (src/training/step/stepper.rs) recorded on
    /// the device: its `record_step` launch ran inside the replay.
    pub fn replayed(&mut self, images: usize) -> Result<()> {
        ensure!(
            !self.is_full(),
            "the step log is full: read it at least every {} steps",
            self.capacity()
        );
        self.pending.push(images);
        Ok(())
    }

    /// The one-element flag Adam checks (see `Adam::step_unless_diverged`).
    pub(crate) fn diverged_flag(&self) -> &Buffer<u32> {
        &self.diverged
    }

    /// The steps recorded since the last read, oldest first, and empties the log: the
    /// host waits for the device here (two reads), and only here.
    pub fn read(&mut self) -> Result<Vec<StepResult>> {
        if self.pending.is_empty() {
            return Ok(Vec::new());
        }
        let backend = self.device.backend();
        let losses = backend.download_f32(&self.losses)?;
        let correct = backend.download_u32(&self.correct)?;
        backend.fill_zeros_u32(&mut self.cursor)?;
        let results = self
            .pending
            .drain(..)
            .enumerate()
            .map(|(slot, images)| StepResult {
                loss: losses[slot],
                correct: correct[slot] as usize,
                images,
            })
            .collect();
        Ok(results)
    }
}
