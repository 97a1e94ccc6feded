//! Runs the training loop's steps: each step's values go to the step parameters
//! (src/training/step/params.rs, one copy), then its ops run (the batch's resize and labels,
//! forward, loss, the step log, backward, Adam) — or, on a GPU device with graphs on,
//! a recording of them replays: one call from the host instead of some 170 launches.
//!
//! Per batch size: the first step runs as is (a warm-up that fills the caching
//! allocator and uploads Adam's tables: nothing a recording may do); the second is
//! recorded (`Backend::begin_graph`: a CUDA graph on cuda, the emulator's launch list
//! on emu) and replayed; every later one is replayed. So the last, shorter batch of an
//! epoch gets its own graph too, from the second epoch's on. The recorded ops read
//! every per-step value from the step parameters; only the host's bookkeeping (Adam's
//! step count, the log's pending steps) is redone for a replay. `--no-graph` (or the
//! CPU, which records nothing) runs every step as is.

use std::collections::{HashMap, HashSet};

use anyhow::Result;

use super::batch::DeviceSplit;
use super::ops::step_ops;
use super::params::StepParams;
use crate::engine::autograd::Parameters;
use crate::engine::device::{view_words, Device, Normalize, View};
use crate::engine::nn::GoogLeNet;
use crate::engine::optim::{Adam, StepLog};

/// How a batch's images are made: the same for every step of a run (a recording
/// keeps them).
#[derive(Clone, Copy, Debug)]
pub struct BatchSettings {
    pub image_size: usize,
    pub norm: Normalize,
    pub smoothing: f32,
}

pub struct Stepper {
    device: Device,
    params: StepParams,
    settings: BatchSettings,
    graphs: bool,
    /// Batch sizes that ran once as is, and the recording of each after that.
    warmed: HashSet<usize>,
    recorded: HashMap<usize, u64>,
}

impl Stepper {
    /// Steps of up to `capacity` images; `graphs`: record and replay them where the
    /// device can (false: `--no-graph`).
    pub fn new(
        device: &Device,
        capacity: usize,
        settings: BatchSettings,
        graphs: bool,
    ) -> Result<Stepper> {
        Ok(Stepper {
            device: device.clone(),
            params: StepParams::new(device, capacity)?,
            settings,
            graphs,
            warmed: HashSet::new(),
            recorded: HashMap::new(),
        })
    }

    /// Whether steps are recorded and replayed.
    pub fn uses_graphs(&self) -> bool {
        self.graphs && self.device.backend().records_graphs()
    }

    /// One optimizer step on the batch of `data` at `indices`, each image read through
    /// its view, with dropout keyed by `dropout_seed` and Adam at its current `lr`; the
    /// loss and correct count go to `log`, unread. Every step must come from the same
    /// split (a recording keeps its images' address).
    #[allow(clippy::too_many_arguments)]
    pub fn step(
        &mut self,
        net: &GoogLeNet,
        model: &mut Parameters,
        adam: &mut Adam,
        data: &DeviceSplit,
        indices: &[u32],
        views: &[View],
        dropout_seed: u64,
        log: &mut StepLog,
    ) -> Result<()> {
        let words = view_words(views, indices.len())?;
        data.check_indices(indices)?;
        self.params
            .write(dropout_seed, adam.next_scalars(), indices, &words)?;
        let batch = indices.len();
        if !self.uses_graphs() {
            return self.run(net, model, adam, data, log);
        }
        let backend = self.device.backend();
        if let Some(&id) = self.recorded.get(&batch) {
            backend.replay_graph(id)?;
            adam.advance();
            return log.replayed(batch);
        }
        if self.warmed.insert(batch) {
            return self.run(net, model, adam, data, log);
        }
        backend.begin_graph()?;
        let ran = self.run(net, model, adam, data, log);
        // Ended whatever happened, so the device does not stay recording.
        let id = backend.end_graph();
        ran?;
        let id = id?;
        self.recorded.insert(batch, id);
        // Recording ran nothing: the replay is this step.
        backend.replay_graph(id)
    }

    /// The step's ops, its values read from the step parameters.
    fn run(
        &self,
        net: &GoogLeNet,
        model: &mut Parameters,
        adam: &mut Adam,
        data: &DeviceSplit,
        log: &mut StepLog,
    ) -> Result<()> {
        let s = self.settings;
        let (images, labels) = data.gather(&self.params, s.image_size, s.norm, s.smoothing)?;
        step_ops(
            net,
            model,
            adam,
            &images,
            &labels,
            self.params.seed(),
            self.params.adam(),
            log,
        )
    }
}

impl Drop for Stepper {
    fn drop(&mut self) {
        for (_, id) in self.recorded.drain() {
            self.device.backend().drop_graph(id);
        }
    }
}
