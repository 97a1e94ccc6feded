//! The training loop as a library function: the tutorial's experiment, resumable.
//!
//! One step: cut a batch of indices from the epoch's shuffled order, resize those
//! images on the device, forward, cross-entropy, backward, Adam. Every `log_every`
//! batches and at each epoch end the run reports (to its `Observer` and to
//! `metrics.jsonl`); checkpoints go to `<run_dir>/checkpoints/`.
//!
//! Everything random is keyed by the seed and a counter (the shuffle by the epoch,
//! dropout by the step), so a run resumed from a checkpoint takes exactly the steps
//! the uninterrupted run would have taken.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};

use crate::augment::{batch_views, View};
use crate::batch::DeviceSplit;
use crate::checkpoint;
use crate::data::{epoch_order, FashionMnist, Split};
use crate::device::Words;
use crate::device::{Device, Precision};
use crate::memory;
use crate::metrics::{MetricsLog, Record};
use crate::nn::{GoogLeNet, GoogLeNetConfig, Init, Mode, Parameters};
use crate::ops::{self, Labels, Normalize, Seed};
use crate::optim::Adam;
use crate::reconcile;
use crate::schedule::Schedule;
pub use crate::step_log::{StepLog, StepResult};
use crate::stepper::{BatchSettings, Stepper};
use crate::{Tape, Tensor};

/// Upper bounds of the numeric settings: far beyond any useful run (the source images
/// are 28x28; a GPU fits a few thousand 224x224 images), low enough that every size
/// derived from them fits its integer type. Memory is checked separately (`memory`).
pub const MAX_EPOCHS: usize = 10_000;
pub const MAX_BATCH_SIZE: usize = 4096;
pub const MAX_IMAGE_SIZE: usize = 1024;
pub const MAX_IMAGES: usize = 100_000_000;
pub const MAX_STEPS: usize = 1_000_000_000;
pub const MAX_LR: f64 = 10.0;

/// Everything that decides what a run computes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub preset: String,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub image_size: usize,
    /// Use only the first N training / test images (None: all).
    pub train_limit: Option<usize>,
    pub test_limit: Option<usize>,
    pub seed: u64,
    pub log_every: usize,
    /// "pytorch" (the tutorial's default initialisation) or "kaiming".
    pub init: String,
    /// Normalise inputs by Fashion-MNIST's mean and std (otherwise they stay in [0, 1]).
    pub normalize: bool,
    /// Also checkpoint every N steps (None: only at epoch ends).
    pub save_every: Option<usize>,
    /// The learning rate per step (src/schedule.rs): "constant" (`lr` throughout) or
    /// "cosine" (linear warm-up over `warmup_steps`, then down to `lr · min_lr_fraction`).
    /// Fields below default to the tutorial's when a saved state lacks them.
    #[serde(default = "constant_schedule")]
    pub schedule: String,
    #[serde(default)]
    pub warmup_steps: u64,
    #[serde(default)]
    pub min_lr_fraction: f64,
    /// Random crop with padding and left-right mirror of training images (src/augment.rs).
    #[serde(default)]
    pub augment: bool,
    /// Cross-entropy against `(1 - ε)·onehot + ε / 10` instead of the one-hot labels.
    #[serde(default)]
    pub label_smoothing: f64,
    /// `--no-graph`: on a GPU device, launch every op of every step instead of
    /// recording each batch size's step once and replaying it (a CUDA graph,
    /// src/stepper.rs). The results are the same either way.
    #[serde(default)]
    pub no_graph: bool,
    /// The conv and linear GEMMs' arithmetic (src/device/precision.rs): "tf32", "bf16"
    /// or "f32". Runs saved before the flag existed computed in f32.
    #[serde(default = "f32_precision")]
    pub precision: String,
}

fn constant_schedule() -> String {
    "constant".to_string()
}

fn f32_precision() -> String {
    Precision::F32.to_string()
}

impl TrainConfig {
    pub fn init(&self) -> Result<Init> {
        match self.init.as_str() {
            "pytorch" => Ok(Init::PyTorchDefault),
            "kaiming" => Ok(Init::KaimingNormal),
            other => anyhow::bail!("unknown initialisation {other:?}: expected pytorch or kaiming"),
        }
    }

    pub fn normalization(&self) -> Normalize {
        if self.normalize {
            Normalize::FASHION_MNIST
        } else {
            Normalize::NONE
        }
    }

    pub fn precision(&self) -> Result<Precision> {
        Precision::parse(&self.precision)
    }

    pub fn schedule(&self) -> Result<Schedule> {
        Schedule::parse(&self.schedule, self.warmup_steps, self.min_lr_fraction)
    }

    pub fn validate(&self) -> Result<()> {
        ensure!(self.epochs > 0, "--epochs must be at least 1");
        ensure!(self.batch_size > 0, "--batch-size must be at least 1");
        ensure!(
            self.lr > 0.0 && self.lr.is_finite(),
            "--lr must be a positive number, got {}",
            self.lr
        );
        ensure!(
            self.lr <= MAX_LR,
            "--lr must be at most {MAX_LR} (Adam moves each weight by about lr per step), got {}",
            self.lr
        );
        ensure!(
            self.image_size >= 8,
            "--image-size must be at least 8 (GoogLeNet halves it five times), got {}",
            self.image_size
        );
        ensure!(self.log_every > 0, "--log-every must be at least 1");
        self.precision()?;
        ensure!(
            self.train_limit != Some(0),
            "--train-limit must be at least 1"
        );
        ensure!(
            self.test_limit != Some(0),
            "--test-limit must be at least 1"
        );
        ensure!(
            self.save_every != Some(0),
            "--save-every must be at least 1"
        );
        for (flag, value, max) in [
            ("--epochs", Some(self.epochs), MAX_EPOCHS),
            ("--batch-size", Some(self.batch_size), MAX_BATCH_SIZE),
            ("--image-size", Some(self.image_size), MAX_IMAGE_SIZE),
            ("--train-limit", self.train_limit, MAX_IMAGES),
            ("--test-limit", self.test_limit, MAX_IMAGES),
            ("--log-every", Some(self.log_every), MAX_STEPS),
            ("--save-every", self.save_every, MAX_STEPS),
        ] {
            if let Some(value) = value {
                ensure!(value <= max, "{flag} must be at most {max}, got {value}");
            }
        }
        ensure!(
            (0.0..1.0).contains(&self.label_smoothing),
            "--label-smoothing must be in [0, 1), got {}",
            self.label_smoothing
        );
        self.init()?;
        self.schedule()?;
        Ok(())
    }
}

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
}

/// What the caller sees as the run goes.
pub trait Observer {
    /// After every step, with the loss of the latest step the host has read back
    /// from the device (every `--log-every` steps; `None` before the first).
    fn step(&mut self, _epoch: usize, _batch: usize, _batches: usize, _loss: Option<f64>) {}
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

/// The run directory's layout.
pub fn metrics_path(run_dir: &Path) -> PathBuf {
    run_dir.join("metrics.jsonl")
}

pub fn checkpoints_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("checkpoints")
}

/// A fresh run's state, or a checkpoint's.
pub fn start_state(config: &TrainConfig) -> RunState {
    RunState {
        config: config.clone(),
        epoch: 0,
        batch: 0,
        step: 0,
        epoch_loss_sum: 0.0,
        epoch_correct: 0,
        epoch_seen: 0,
        epoch_seconds: 0.0,
    }
}

/// A per-step dropout seed: the run's seed and the step, mixed.
fn dropout_seed(seed: u64, step: u64) -> u64 {
    seed.rotate_left(32) ^ step.wrapping_mul(0xD1B5_4A32_D192_ED03)
}

/// One optimizer step: forward in training mode, mean cross-entropy, backward, Adam;
/// the loss and correct count go to `log`, on the device, unread. Once the log has
/// seen a NaN or infinite loss, Adam leaves the weights alone. The seed and Adam's
/// scalars are uploaded for the step; the training loop writes them with its batch
/// instead (src/stepper.rs).
pub fn train_step_logged(
    net: &GoogLeNet,
    params: &mut Parameters,
    adam: &mut Adam,
    images: &Tensor,
    labels: &Labels,
    dropout_seed: u64,
    log: &mut StepLog,
) -> Result<()> {
    let backend = images.device().backend();
    let scalars = backend.upload_u32(adam.next_scalars().words().to_vec())?;
    let seed = Seed::Value(dropout_seed).on(images.device())?;
    step_ops(
        net,
        params,
        adam,
        images,
        labels,
        seed,
        Words::whole(&scalars),
        log,
    )
}

/// The ops of a training step once its batch is on the device, its dropout seed and
/// Adam's scalars (`Adam::next_scalars`) read from device memory: what a recorded
/// step records.
#[allow(clippy::too_many_arguments)]
pub(crate) fn step_ops(
    net: &GoogLeNet,
    params: &mut Parameters,
    adam: &mut Adam,
    images: &Tensor,
    labels: &Labels,
    dropout_seed: Seed,
    adam_scalars: Words,
    log: &mut StepLog,
) -> Result<()> {
    let mut tape = Tape::new();
    let logits = net.forward(&mut tape, params, images, Mode::Train { dropout_seed })?;
    let loss = tape.cross_entropy(&logits, labels)?;
    log.record(&loss.value, &logits.value, labels)?;
    let grads = tape.backward(&loss, params)?;
    adam.step_unless_diverged(params, &grads, adam_scalars, log)
}

/// One step as `train_step_logged`, its loss and correct count read back at once.
/// A NaN or infinite loss is returned without updating anything.
pub fn train_step(
    net: &GoogLeNet,
    params: &mut Parameters,
    adam: &mut Adam,
    images: &Tensor,
    labels: &Labels,
    dropout_seed: u64,
) -> Result<StepResult> {
    let mut log = StepLog::new(images.device(), 1)?;
    train_step_logged(net, params, adam, images, labels, dropout_seed, &mut log)?;
    Ok(log.read()?[0])
}

/// Test accuracy of the model over a whole split, in evaluation mode.
pub fn evaluate(
    device: &Device,
    net: &GoogLeNet,
    params: &Parameters,
    split: &Split,
    config: &TrainConfig,
    limit: Option<usize>,
) -> Result<(f64, Vec<[u64; 10]>)> {
    let data = DeviceSplit::upload(device, split, limit)?;
    evaluate_split(net, params, &data, config)
}

/// Accuracy and the confusion matrix (`confusion[true][predicted]`).
fn evaluate_split(
    net: &GoogLeNet,
    params: &Parameters,
    data: &DeviceSplit,
    config: &TrainConfig,
) -> Result<(f64, Vec<[u64; 10]>)> {
    let batch = config.batch_size.max(64);
    let order: Vec<u32> = (0..data.len() as u32).collect();
    let mut confusion = vec![[0u64; 10]; 10];
    for indices in order.chunks(batch) {
        let views = vec![View::IDENTITY; indices.len()];
        let (images, _) = data.batch(
            indices,
            &views,
            config.image_size,
            config.normalization(),
            0.0,
        )?;
        let logits = net.forward(&mut Tape::no_grad(), params, &images, Mode::Eval)?;
        let scores = logits.value.to_vec()?;
        for (&i, row) in indices.iter().zip(scores.chunks(10)) {
            confusion[data.labels()[i as usize] as usize][ops::argmax(row)] += 1;
        }
    }
    let correct: u64 = (0..10).map(|c| confusion[c][c]).sum();
    Ok((correct as f64 / data.len() as f64, confusion))
}

/// Trains from `state` (a fresh `start_state` or a loaded checkpoint's) to the end
/// of the configured epochs, unless `stop` is raised or the loss diverges.
pub fn train(
    device: &Device,
    data: &FashionMnist,
    run_dir: &Path,
    resume_from: Option<&Path>,
    fresh: &TrainConfig,
    stop: &AtomicBool,
    observer: &mut dyn Observer,
) -> Result<Outcome> {
    let (mut state, mut params, net, mut adam) = match resume_from {
        Some(dir) => {
            let (mut state, params, net, adam) = resume(device, dir)?;
            fresh.validate()?;
            state.config = reconcile::resume_config(&state.config, fresh)?.0;
            (state, params, net, adam)
        }
        None => {
            fresh.validate()?;
            let (net, params) = GoogLeNet::new(
                device,
                GoogLeNetConfig::default(),
                fresh.init()?,
                fresh.seed,
            )?;
            let adam = Adam::new(&params, fresh.lr)?;
            (start_state(fresh), params, net, adam)
        }
    };
    let config = state.config.clone();
    // The recorded precision is the run's: a resumed run adopts its checkpoint's.
    device.set_precision(config.precision()?)?;
    ensure!(
        state.epoch < config.epochs,
        "this run already finished its {} epochs; nothing to resume (pass a larger \
         --epochs to extend it)",
        config.epochs
    );
    memory::check(device, &net, &params, &config, data)?;
    let train_set = DeviceSplit::upload(device, &data.train, config.train_limit)?;
    let test_set = DeviceSplit::upload(device, &data.test, config.test_limit)?;
    let batches = train_set.len().div_ceil(config.batch_size);
    // Read at least every --log-every batches and at each epoch's end.
    let mut log = StepLog::new(device, config.log_every.min(batches))?;
    let settings = BatchSettings {
        image_size: config.image_size,
        norm: config.normalization(),
        smoothing: config.label_smoothing as f32,
    };
    let mut stepper = Stepper::new(device, config.batch_size, settings, !config.no_graph)?;
    let schedule = config.schedule()?;
    let total_steps = (batches * config.epochs) as u64;
    let mut metrics = MetricsLog::append(&metrics_path(run_dir))?;
    let checkpoints = checkpoints_dir(run_dir);
    let mut last_checkpoint = resume_from.map(Path::to_path_buf);
    let mut test_accuracy = 0.0;

    while state.epoch < config.epochs {
        let epoch_start = Instant::now() - std::time::Duration::from_secs_f64(state.epoch_seconds);
        let order = epoch_order(train_set.len(), config.seed, state.epoch);
        let (mut window_loss, mut window_correct, mut window_seen) = (0.0f64, 0u64, 0u64);
        let mut latest_loss = None;
        for indices in order.chunks(config.batch_size).skip(state.batch) {
            // The step this batch is, counting those whose results are not read yet.
            let step = state.step + log.pending() as u64;
            let views = if config.augment {
                batch_views(config.seed, step, indices.len())
            } else {
                vec![View::IDENTITY; indices.len()]
            };
            adam.lr = schedule.lr(config.lr, step, total_steps);
            let seed = dropout_seed(config.seed, step);
            stepper.step(
                &net,
                &mut params,
                &mut adam,
                &train_set,
                indices,
                &views,
                seed,
                &mut log,
            )?;
            let batch = state.batch + log.pending();
            state.epoch_seconds = epoch_start.elapsed().as_secs_f64();
            observer.step(state.epoch + 1, batch, batches, latest_loss);

            // The host reads the steps' losses only to log them, at epoch end, and
            // before a checkpoint (which must hold the sums of every step before it).
            let interrupted = stop.load(Ordering::SeqCst);
            let periodic = config.save_every.is_some_and(|every| {
                (state.step + log.pending() as u64).is_multiple_of(every as u64)
            });
            let checkpointing = (interrupted || periodic) && batch < batches;
            let logging = batch % config.log_every == 0;
            if !(logging || checkpointing || batch == batches || log.is_full()) {
                continue;
            }
            for result in log.read()? {
                let loss_value = result.loss as f64;
                if !loss_value.is_finite() {
                    return Ok(Outcome::Diverged {
                        step: state.step + 1,
                        loss: loss_value,
                        last_checkpoint,
                    });
                }
                let (n, correct) = (result.images as u64, result.correct as u64);
                state.step += 1;
                state.batch += 1;
                state.epoch_loss_sum += loss_value * n as f64;
                state.epoch_correct += correct;
                state.epoch_seen += n;
                window_loss += loss_value * n as f64;
                window_correct += correct;
                window_seen += n;
                latest_loss = Some(loss_value);
            }

            if logging {
                let record = Record::Log {
                    epoch: state.epoch + 1,
                    batch: state.batch,
                    step: state.step,
                    loss: window_loss / window_seen as f64,
                    accuracy: window_correct as f64 / window_seen as f64,
                    elapsed_s: state.epoch_seconds,
                    lr: Some(adam.lr),
                };
                metrics.write(&record)?;
                observer.record(&record);
                (window_loss, window_correct, window_seen) = (0.0, 0, 0);
            }
            if checkpointing {
                let path = checkpoints.join(format!("step-{:08}", state.step));
                save(&path, &params, &adam, &state, last_checkpoint.as_deref())?;
                prune_step_checkpoints(&checkpoints, &path)?;
                observer.checkpoint(&path);
                last_checkpoint = Some(path.clone());
                if interrupted {
                    return Ok(Outcome::Interrupted { checkpoint: path });
                }
            }
        }

        observer.evaluating(state.epoch + 1);
        let train_seconds = epoch_start.elapsed().as_secs_f64();
        let (accuracy, _) = evaluate_split(&net, &params, &test_set, &config)?;
        test_accuracy = accuracy;
        let record = Record::Epoch {
            epoch: state.epoch + 1,
            step: state.step,
            train_loss: state.epoch_loss_sum / state.epoch_seen as f64,
            train_accuracy: state.epoch_correct as f64 / state.epoch_seen as f64,
            test_accuracy,
            epoch_time_s: train_seconds,
            images_per_s: state.epoch_seen as f64 / train_seconds.max(1e-9),
        };
        metrics.write(&record)?;
        observer.record(&record);

        state = RunState {
            epoch: state.epoch + 1,
            step: state.step,
            ..start_state(&config)
        };
        let path = checkpoints.join(format!("epoch-{}", state.epoch));
        save(&path, &params, &adam, &state, last_checkpoint.as_deref())?;
        prune_step_checkpoints(&checkpoints, &path)?;
        observer.checkpoint(&path);
        last_checkpoint = Some(path);
        if stop.load(Ordering::SeqCst) && state.epoch < config.epochs {
            return Ok(Outcome::Interrupted {
                checkpoint: last_checkpoint.expect("just saved"),
            });
        }
    }
    Ok(Outcome::Finished { test_accuracy })
}

/// Saves a checkpoint; a failure (a full disk) says which checkpoint still holds the
/// run, `last`, and how to continue from it.
fn save(
    path: &Path,
    params: &Parameters,
    adam: &Adam,
    state: &RunState,
    last: Option<&Path>,
) -> Result<()> {
    let json = serde_json::to_string_pretty(state)?;
    checkpoint::save(path, params, adam, &json).map_err(|err| {
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
fn prune_step_checkpoints(dir: &Path, keep: &Path) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = entry?.path();
        let is_step = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("step-"));
        if is_step && path != keep {
            checkpoint::remove(&path)?;
        }
    }
    Ok(())
}

/// The model, optimizer and run state saved in a checkpoint directory.
pub fn resume(device: &Device, dir: &Path) -> Result<(RunState, Parameters, GoogLeNet, Adam)> {
    let state_file = dir.join(checkpoint::STATE_FILE);
    let json = fs::read_to_string(&state_file).with_context(|| {
        format!(
            "cannot resume: {} is not a checkpoint directory (no {})",
            dir.display(),
            checkpoint::STATE_FILE
        )
    })?;
    let state: RunState = serde_json::from_str(&json)
        .with_context(|| format!("cannot resume: {} is not a run state", state_file.display()))?;
    state.config.validate()?;
    let (net, mut params) = GoogLeNet::new(
        device,
        GoogLeNetConfig::default(),
        state.config.init()?,
        state.config.seed,
    )?;
    let loaded = checkpoint::load(dir, &mut params)?;
    let mut adam = Adam::new(&params, state.config.lr)?;
    adam.restore(state.step, loaded.exp_avg, loaded.exp_avg_sq)?;
    Ok((state, params, net, adam))
}
