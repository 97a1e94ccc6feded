//! What the caller of the training loop sees as a run goes, and how a run ended.

use std::path::{Path, PathBuf};

use crate::training::metrics::Record;

/// What the caller sees as the run goes.
pub trait Observer {
    /// After every step, with the loss of the latest step the host has read back
    /// from the device (every `--log-every` steps; `None` before the first).
    fn step(&mut self, _epoch: usize, _batch: usize, _batches: usize, _loss: Option<f64>) {}
    /// A run with a time budget planned `steps` in all, its steps taking
    /// `step_seconds` each as timed.
    fn planned(&mut self, _steps: u64, _step_seconds: f64) {}
    /// Its budget ran out after `step` of the `planned` steps (they ran slower than
    /// timed): the run ends there.
    fn out_of_time(&mut self, _step: u64, _planned: u64) {}
    /// Before evaluating on the test set.
    fn evaluating(&mut self, _epoch: usize) {}
    fn record(&mut self, record: &Record);
    fn checkpoint(&mut self, _path: &Path) {}
}

/// How a run ended.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    Finished {
        test_accuracy: f64,
    },
    /// Stopped on request after a step; the checkpoint resumes it.
    Interrupted {
        checkpoint: PathBuf,
    },
    /// The loss became NaN or infinite; `last_checkpoint` is the newest good one.
    Diverged {
        step: u64,
        loss: f64,
        last_checkpoint: Option<PathBuf>,
    },
}
