//! A run's state (`RunState`: its settings and where it stands), saved beside the
//! weights in every checkpoint, and a run's model and optimizer taken back from one.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::files;
use crate::data::DataDescription;
use crate::engine::autograd::Parameters;
use crate::engine::device::Device;
use crate::engine::nn::GoogLeNet;
use crate::engine::optim::Adam;
use crate::training::model::model_config;
use crate::training::settings::TrainConfig;

/// Where a run stands; saved in every checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    pub config: TrainConfig,
    /// 0-based epoch in progress, and batches of it already done.
    pub epoch: usize,
    pub batch: usize,
    /// Optimizer steps taken in the whole run.
    pub step: u64,
    /// Sums over the epoch so far, for its end-of-epoch means.
    pub epoch_loss_sum: f64,
    pub epoch_correct: u64,
    pub epoch_seen: u64,
    /// Seconds spent in the epoch so far (before an interruption).
    pub epoch_seconds: f64,
    /// The data set the run trains on, as the model sees it (class names, channels,
    /// store side, mean and std). Absent for Fashion-MNIST, whose runs write the
    /// state.json they always did, and for the runs saved before it was recorded.
    #[serde(
        default = "DataDescription::fashion_mnist",
        skip_serializing_if = "DataDescription::is_fashion_mnist"
    )]
    pub data: DataDescription,
    /// A run with a time budget: the steps it takes in all, fixed once its step time
    /// was measured (recipe/budget.rs); a resumed run keeps them. Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned_steps: Option<u64>,
}

impl RunState {
    /// Whether the run has taken all its steps: its epochs, or its planned steps.
    pub fn finished(&self) -> bool {
        self.epoch >= self.config.epochs || self.planned_steps.is_some_and(|p| self.step >= p)
    }
}

/// A fresh run's state on `data`, or a checkpoint's.
pub fn start_state(config: &TrainConfig, data: &DataDescription) -> RunState {
    RunState {
        config: config.clone(),
        epoch: 0,
        batch: 0,
        step: 0,
        epoch_loss_sum: 0.0,
        epoch_correct: 0,
        epoch_seen: 0,
        epoch_seconds: 0.0,
        data: data.clone(),
        planned_steps: None,
    }
}

/// Saves a checkpoint of the run; a failure (a full disk) says which checkpoint still holds the
/// run, `last`, and how to continue from it.
pub fn save_run(
    path: &Path,
    params: &Parameters,
    adam: &Adam,
    state: &RunState,
    last: Option<&Path>,
) -> Result<()> {
    let json = serde_json::to_string_pretty(state)?;
    files::save(path, params, adam, &json).map_err(|err| {
        let previous = match last {
            Some(last) => format!(
                "the previous checkpoint, {}, is intact; to continue from it once there \
                 is room: cargo run --release --bin train -- --resume {}",
                last.display(),
                last.display()
            ),
            None => "no earlier checkpoint of this run exists".to_string(),
        };
        anyhow::anyhow!(
            "cannot write checkpoint {}: {err:#}; its temporary files are removed; {previous}",
            path.display()
        )
    })
}

/// Periodic checkpoints are superseded by newer ones: keep only `keep` among them.
pub fn prune_step_checkpoints(dir: &Path, keep: &Path) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = entry?.path();
        let is_step = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("step-"));
        if is_step && path != keep {
            files::remove(&path)?;
        }
    }
    Ok(())
}

/// The model, optimizer and run state saved in a checkpoint directory.
pub fn resume(device: &Device, dir: &Path) -> Result<(RunState, Parameters, GoogLeNet, Adam)> {
    let state_file = dir.join(files::STATE_FILE);
    let json = fs::read_to_string(&state_file).with_context(|| {
        format!(
            "cannot resume: {} is not a checkpoint directory (no {})",
            dir.display(),
            files::STATE_FILE
        )
    })?;
    let state: RunState = serde_json::from_str(&json)
        .with_context(|| format!("cannot resume: {} is not a run state", state_file.display()))?;
    state.config.validate()?;
    state
        .data
        .validate()
        .with_context(|| format!("cannot resume: {}", state_file.display()))?;
    let (net, mut params) = GoogLeNet::new(
        device,
        model_config(&state.data),
        state.config.init,
        state.config.seed,
    )?;
    let loaded = files::load(dir, &mut params)?;
    let mut adam = Adam::new(&params, state.config.lr)?;
    adam.restore(state.step, loaded.exp_avg, loaded.exp_avg_sq)?;
    Ok((state, params, net, adam))
}
