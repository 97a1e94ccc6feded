//! The step parameters: every value a training step's kernels read that changes from
//! one step to the next (the dropout seed, Adam's step size and bias correction, the
//! batch's image indices and augmentation views), in one device buffer that stays at
//! one place for the whole run, written by one host-to-device copy before each step.
//!
//! The kernels read these values from memory rather than from their launch arguments,
//! so every argument of every launch of a step is the same from step to step: a step
//! recorded once (a CUDA graph, src/training/step/stepper.rs) replays with each step's own values.
//!
//! Layout, in u32 words, for batches of up to `capacity` images:
//!   [0, 2)                           the dropout seed, low and high half (`seed_words`)
//!   [2, 4)                           Adam's step size and √(1-β2ᵗ), f32 bits
//!   [4, 4 + capacity)                the batch's image indices (the first `batch`)
//!   [4 + capacity, 4 + 2·capacity)   their augmentation views (`View::word`)

use std::sync::Arc;

use anyhow::{anyhow, ensure, Result};

use crate::engine::device::geometry::AdamScalars;
use crate::engine::device::{seed_words, Buffer, Device, Words};
use crate::engine::ops::Seed;

const SEED: usize = 0;
const ADAM: usize = 2;
const INDICES: usize = 4;

pub struct StepParams {
    device: Device,
    /// Shared with the tape's dropout seeds (`seed`) while a step runs.
    words: Arc<Buffer<u32>>,
    capacity: usize,
    /// The batch size of the last write.
    batch: usize,
    /// The words as the host last wrote them.
    host: Vec<u32>,
}

impl StepParams {
    /// Room for batches of up to `capacity` images.
    pub fn new(device: &Device, capacity: usize) -> Result<StepParams> {
        ensure!(
            capacity > 0,
            "step parameters need room for at least one image"
        );
        let host = vec![0; INDICES + 2 * capacity];
        Ok(StepParams {
            device: device.clone(),
            words: Arc::new(device.backend().upload_u32(host.clone())?),
            capacity,
            batch: 0,
            host,
        })
    }

    /// Writes a step's values: one copy to the device, queued before the step's ops.
    /// `views` are the batch's view words (`augment::view_words`), one per index.
    pub fn write(
        &mut self,
        dropout_seed: u64,
        adam: AdamScalars,
        indices: &[u32],
        views: &[u32],
    ) -> Result<()> {
        let batch = indices.len();
        ensure!(
            batch > 0 && batch <= self.capacity,
            "a batch of {batch} images in step parameters for up to {}",
            self.capacity
        );
        ensure!(
            views.len() == batch,
            "{} views for a batch of {batch}",
            views.len()
        );
        self.host[SEED..SEED + 2].copy_from_slice(&seed_words(dropout_seed));
        self.host[ADAM..ADAM + 2].copy_from_slice(&adam.words());
        self.host[INDICES..INDICES + batch].copy_from_slice(indices);
        let views_at = self.views_at();
        self.host[views_at..views_at + batch].copy_from_slice(views);
        let words = Arc::get_mut(&mut self.words).ok_or_else(|| {
            anyhow!("step parameters written while a step still holds them (its tape is alive)")
        })?;
        self.device.backend().write_u32(words, &self.host)?;
        self.batch = batch;
        Ok(())
    }

    /// The batch size of the last write.
    pub fn batch(&self) -> usize {
        self.batch
    }

    fn views_at(&self) -> usize {
        INDICES + self.capacity
    }

    /// The dropout seed, as the step's kernels read it.
    pub fn seed(&self) -> Seed {
        Seed::Device {
            words: self.words.clone(),
            at: SEED,
        }
    }

    /// Adam's scalars (`Backend::adam_step`'s `scalars`).
    pub fn adam(&self) -> Words<'_> {
        Words {
            buffer: &self.words,
            at: ADAM,
            len: 2,
        }
    }

    /// The batch's image indices.
    pub fn indices(&self) -> Words<'_> {
        Words {
            buffer: &self.words,
            at: INDICES,
            len: self.batch,
        }
    }

    /// The batch's augmentation views.
    pub fn views(&self) -> Words<'_> {
        Words {
            buffer: &self.words,
            at: self.views_at(),
            len: self.batch,
        }
    }
}
