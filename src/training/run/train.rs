//! The training loop as a library function: the tutorial's experiment, resumable.
//!
//! `train` reads as its phases: start (or resume) the run, check its memory, upload
//! the data, then per epoch its steps, the evaluation and the checkpoint; then finish.
//! A run with a time budget plans its length after timing its first steps, and ends
//! with its planned steps (recipe/budget.rs).
//!
//! One step: cut a batch of indices from the epoch's shuffled order, resize those
//! images on the device, forward, cross-entropy, backward, Adam. Every `log_every`
//! batches and at each epoch end the run reports (to its `Observer` and to
//! `metrics.jsonl`); checkpoints go to `<run_dir>/checkpoints/`.
//!
//! Everything random is keyed by the seed and a counter (the shuffle by the epoch,
//! dropout by the step), so a run resumed from a checkpoint takes exactly the steps
//! the uninterrupted run would have taken.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};

use super::evaluate::{eval_batch_size, evaluate_split};
use super::observer::{Observer, Outcome};
use crate::data::{epoch_order, DataDescription, DataSet};
use crate::engine::autograd::Parameters;
use crate::engine::device::{Device, Normalize, View};
use crate::engine::nn::GoogLeNet;
use crate::engine::optim::{Adam, StepLog};
use crate::training::checkpoint::{self, RunState};
use crate::training::memory::{self, DataShape, Workload};
use crate::training::metrics::{MetricsLog, Record};
use crate::training::model::model_config;
use crate::training::recipe::{
    batch_views, deadline_seconds, planned_steps, PlanInputs, Schedule, CALIBRATION_END,
    CALIBRATION_START,
};
use crate::training::run_dir::{checkpoints_dir, metrics_path};
use crate::training::settings::{resume_config, same_data, TrainConfig};
use crate::training::step::{BatchSettings, DeviceSplit, Stepper};

/// Trains from a fresh start (`resume_from` None, with `fresh`) or from a checkpoint
/// (whose settings `fresh` may extend but not contradict) to the end of the configured
/// epochs, unless `stop` is raised or the loss diverges.
pub fn train(
    device: &Device,
    data: &DataSet,
    run_dir: &Path,
    resume_from: Option<&Path>,
    fresh: &TrainConfig,
    stop: &AtomicBool,
    observer: &mut dyn Observer,
) -> Result<Outcome> {
    let mut run = start_or_resume(device, resume_from, fresh, &data.description)?;
    check_memory(device, &run, data)?;
    let mut session = Session::open(device, data, run_dir, &run.state, stop, observer)?;
    while !run.state.finished() {
        if let Some(outcome) = session.train_epoch(&mut run)? {
            return Ok(outcome);
        }
        session.evaluate_epoch(&mut run)?;
        session.save_epoch(&mut run)?;
        if stop.load(Ordering::SeqCst) && !run.state.finished() {
            return Ok(Outcome::Interrupted {
                checkpoint: run.last_checkpoint.expect("the epoch was just saved"),
            });
        }
    }
    Ok(Outcome::Finished {
        test_accuracy: run.test_accuracy,
    })
}

/// What a run's memory estimate measures: `config`'s sizes with `net` (of
/// `param_count` scalars), on `data`.
pub fn workload<'a>(
    net: &'a GoogLeNet,
    param_count: usize,
    config: &TrainConfig,
    data: DataShape,
    on_gpu: bool,
) -> Workload<'a> {
    Workload {
        net,
        param_count,
        image_size: config.image_size,
        batch_size: config.batch_size,
        eval_batch_size: eval_batch_size(config.batch_size),
        on_gpu,
        data,
    }
}

/// The shape of a data set of `train` and `test` images of `image_bytes` each as
/// `config`'s run holds it: both splits read, the images within the limits uploaded.
pub fn data_shape(
    train: usize,
    test: usize,
    image_bytes: usize,
    config: &TrainConfig,
) -> DataShape {
    let used = |len: usize, limit: Option<usize>| limit.map_or(len, |l| l.min(len));
    DataShape {
        images_read: train + test,
        image_bytes,
        images_used: used(train, config.train_limit) + used(test, config.test_limit),
    }
}

/// `data_shape` of a data set read.
pub fn data_set_shape(data: &DataSet, config: &TrainConfig) -> DataShape {
    let image_bytes = data.train.shape().image_bytes();
    data_shape(data.train.len(), data.test.len(), image_bytes, config)
}

/// A run in progress: where it stands, its model and optimizer.
struct Run {
    state: RunState,
    params: Parameters,
    net: GoogLeNet,
    adam: Adam,
    /// The newest checkpoint, which a failed save names as the one to resume from.
    last_checkpoint: Option<PathBuf>,
    test_accuracy: f64,
}

/// A fresh run of `fresh` on `data`, or the one saved in `resume_from` with `fresh`'s
/// allowed changes (on the same data); on the device at the run's precision (a resumed
/// run adopts its own).
fn start_or_resume(
    device: &Device,
    resume_from: Option<&Path>,
    fresh: &TrainConfig,
    data: &DataDescription,
) -> Result<Run> {
    let (state, params, net, adam) = match resume_from {
        Some(dir) => {
            let (mut state, params, net, adam) = checkpoint::resume(device, dir)?;
            fresh.validate()?;
            state.config = resume_config(&state.config, fresh)?.0;
            same_data(&state.data, data)?;
            (state, params, net, adam)
        }
        None => {
            fresh.validate()?;
            data.validate()?;
            // The checkpoint names its data by `config.data` (eval and a resume read it
            // again from there): a run that says Fashion-MNIST must train on it.
            ensure!(
                !fresh.data.is_fashion_mnist() || data.is_fashion_mnist(),
                "the run's settings name Fashion-MNIST (TrainConfig::data), but the data \
                 set has {} classes ({}), {} channel(s) and its own statistics: set \
                 TrainConfig::data to the folder it was read from",
                data.classes.len(),
                data.classes.join(", "),
                data.channels
            );
            let (net, params) = GoogLeNet::new(device, model_config(data), fresh.init, fresh.seed)?;
            let adam = Adam::new(&params, fresh.lr)?;
            (checkpoint::start_state(fresh, data), params, net, adam)
        }
    };
    device.set_precision(state.config.precision)?;
    ensure!(
        state.epoch < state.config.epochs,
        "this run already finished its {} epochs; nothing to resume (pass a larger \
         --epochs to extend it)",
        state.config.epochs
    );
    ensure!(
        !state.finished(),
        "this run already took the {} steps its time budget planned; nothing to resume",
        state.step
    );
    Ok(Run {
        state,
        params,
        net,
        adam,
        last_checkpoint: resume_from.map(Path::to_path_buf),
        test_accuracy: 0.0,
    })
}

/// Refuses a run that cannot fit in the host's (or the GPU's) memory, before anything
/// big is allocated.
fn check_memory(device: &Device, run: &Run, data: &DataSet) -> Result<()> {
    let config = &run.state.config;
    let w = workload(
        &run.net,
        run.params.scalar_count(),
        config,
        data_set_shape(data, config),
        device.is_gpu(),
    );
    memory::check(device, &w)?;
    Ok(())
}

/// What the steps of a run use, made once: the splits on the device, the step log
/// and stepper, the schedule, the metrics file.
struct Session<'a> {
    device: Device,
    config: TrainConfig,
    /// The inputs' normalisation: the data set's, or none.
    norm: Normalize,
    train_set: DeviceSplit,
    test_set: DeviceSplit,
    log: StepLog,
    stepper: Stepper,
    schedule: Schedule,
    /// The steps the schedule spans: the epochs', or the time budget's plan.
    total_steps: u64,
    batches: usize,
    /// Where the time budget's calibration stands (None without a budget).
    budget: Option<Budget>,
    /// When the epoch in progress started (moved back by the time it ran before an
    /// interruption).
    epoch_start: Instant,
    metrics: MetricsLog,
    checkpoints: PathBuf,
    stop: &'a AtomicBool,
    observer: &'a mut dyn Observer,
}

/// A time budget and how far its calibration is.
struct Budget {
    seconds: f64,
    /// When the run started, and when the timed steps did.
    started: Instant,
    timed_from: Option<Instant>,
    /// Seconds after `started` at which the run ends, planned steps taken or not; set
    /// by the plan (a resumed run, whose start is not this process's, takes its
    /// planned steps).
    deadline: Option<f64>,
}

/// Sums over the steps since the last log line.
#[derive(Default)]
struct Window {
    loss: f64,
    correct: u64,
    seen: u64,
}

impl<'a> Session<'a> {
    /// Uploads the splits (once: batches are gathered on the device) and opens what
    /// the steps write to.
    fn open(
        device: &Device,
        data: &DataSet,
        run_dir: &Path,
        state: &RunState,
        stop: &'a AtomicBool,
        observer: &'a mut dyn Observer,
    ) -> Result<Session<'a>> {
        let config = &state.config;
        let classes = data.description.classes.len();
        let train_set = DeviceSplit::upload(device, &data.train, config.train_limit, classes)?;
        let test_set = DeviceSplit::upload(device, &data.test, config.test_limit, classes)?;
        let norm = config.normalization(&data.description)?;
        let batches = train_set.len().div_ceil(config.batch_size);
        // Read at least every --log-every batches and at each epoch's end.
        let log = StepLog::new(device, config.log_every.min(batches))?;
        let settings = BatchSettings {
            image_size: config.image_size,
            norm,
            smoothing: config.label_smoothing as f32,
        };
        let stepper = Stepper::new(device, config.batch_size, settings, !config.no_graph)?;
        Ok(Session {
            device: device.clone(),
            config: config.clone(),
            norm,
            train_set,
            test_set,
            log,
            stepper,
            schedule: config.schedule()?,
            total_steps: state
                .planned_steps
                .unwrap_or((batches * config.epochs) as u64),
            batches,
            budget: config.time_budget_minutes.map(|minutes| Budget {
                seconds: minutes * 60.0,
                started: Instant::now(),
                timed_from: None,
                deadline: None,
            }),
            epoch_start: Instant::now(),
            metrics: MetricsLog::append(&metrics_path(run_dir))?,
            checkpoints: checkpoints_dir(run_dir),
            stop,
            observer,
        })
    }

    /// The rest of the epoch's steps, with their log lines and periodic checkpoints;
    /// the outcome when the run stops in it (interrupted, or diverged).
    fn train_epoch(&mut self, run: &mut Run) -> Result<Option<Outcome>> {
        let config = self.config.clone();
        self.epoch_start = Instant::now() - Duration::from_secs_f64(run.state.epoch_seconds);
        let order = epoch_order(self.train_set.len(), config.seed, run.state.epoch);
        let mut window = Window::default();
        let mut latest_loss = None;
        for indices in order.chunks(config.batch_size).skip(run.state.batch) {
            self.step(run, indices)?;
            self.calibrate(run)?;
            let done = run.state.step + self.log.pending() as u64;
            if let Some(planned) = run.state.planned_steps.filter(|&p| p > done) {
                if self.past_deadline() {
                    // Slower steps than those timed: end here, within the budget.
                    self.observer.out_of_time(done, planned);
                    run.state.planned_steps = Some(done);
                }
            }
            let planned_end = run.state.planned_steps == Some(done);
            let batch = run.state.batch + self.log.pending();
            run.state.epoch_seconds = self.epoch_start.elapsed().as_secs_f64();
            self.observer
                .step(run.state.epoch + 1, batch, self.batches, latest_loss);

            // The host reads the steps' losses only to log them, at epoch end, and
            // before a checkpoint (which must hold the sums of every step before it).
            let interrupted = self.stop.load(Ordering::SeqCst);
            let periodic = config.save_every.is_some_and(|every| {
                (run.state.step + self.log.pending() as u64).is_multiple_of(every as u64)
            });
            let checkpointing = (interrupted || periodic) && batch < self.batches;
            let logging = batch.is_multiple_of(config.log_every);
            let epoch_end = batch == self.batches || planned_end;
            if !(logging || checkpointing || epoch_end || self.log.is_full()) {
                continue;
            }
            if let Some(diverged) = self.read_log(run, &mut window, &mut latest_loss)? {
                return Ok(Some(diverged));
            }
            if logging {
                self.write_log_line(run, &mut window)?;
            }
            if checkpointing {
                let path = self.checkpoints.join(format!("step-{:08}", run.state.step));
                self.save(run, &path)?;
                if interrupted {
                    return Ok(Some(Outcome::Interrupted { checkpoint: path }));
                }
            }
            if planned_end {
                break;
            }
        }
        Ok(None)
    }

    /// With a time budget: times the steps from `CALIBRATION_START` to
    /// `CALIBRATION_END`, then fixes the run's length (and the schedule's).
    fn calibrate(&mut self, run: &mut Run) -> Result<()> {
        let Some(budget) = &mut self.budget else {
            return Ok(());
        };
        if run.state.planned_steps.is_some() {
            return Ok(());
        }
        let done = run.state.step + self.log.pending() as u64;
        if done != CALIBRATION_START && done != CALIBRATION_END {
            return Ok(());
        }
        // A GPU runs behind the host: wait for it at both ends (two host waits a run).
        self.device.synchronize()?;
        if done == CALIBRATION_START {
            budget.timed_from = Some(Instant::now());
            return Ok(());
        }
        let Some(from) = budget.timed_from else {
            // Resumed between the two: time the next run's steps instead.
            return Ok(());
        };
        let step_seconds =
            from.elapsed().as_secs_f64() / (CALIBRATION_END - CALIBRATION_START) as f64;
        let inputs = PlanInputs {
            budget_seconds: budget.seconds,
            elapsed_seconds: budget.started.elapsed().as_secs_f64(),
            steps_done: done,
            step_seconds,
            batch_size: self.config.batch_size,
            batches_per_epoch: self.batches as u64,
            max_steps: (self.batches * self.config.epochs) as u64,
            test_images: self.test_set.len(),
        };
        let planned = planned_steps(&inputs);
        budget.deadline = Some(deadline_seconds(&inputs));
        run.state.planned_steps = Some(planned);
        self.total_steps = planned;
        self.observer.planned(planned, step_seconds);
        Ok(())
    }

    /// Whether a planned run has used its budget up to the last evaluation and save.
    fn past_deadline(&self) -> bool {
        self.budget.as_ref().is_some_and(|budget| {
            budget
                .deadline
                .is_some_and(|deadline| budget.started.elapsed().as_secs_f64() >= deadline)
        })
    }

    /// One optimizer step on the batch at `indices`: its augmentation views, the
    /// learning rate and dropout seed of the step it is.
    fn step(&mut self, run: &mut Run, indices: &[u32]) -> Result<()> {
        let config = &self.config;
        // The step this batch is, counting those whose results are not read yet.
        let step = run.state.step + self.log.pending() as u64;
        let views = if config.augment {
            batch_views(config.seed, step, indices.len())
        } else {
            vec![View::IDENTITY; indices.len()]
        };
        run.adam.lr = self.schedule.lr(config.lr, step, self.total_steps);
        self.stepper.step(
            &run.net,
            &mut run.params,
            &mut run.adam,
            &self.train_set,
            indices,
            &views,
            dropout_seed(config.seed, step),
            &mut self.log,
        )
    }

    /// Reads the steps' results off the device into the run's sums and the window;
    /// the outcome if a loss is NaN or infinite.
    fn read_log(
        &mut self,
        run: &mut Run,
        window: &mut Window,
        latest_loss: &mut Option<f64>,
    ) -> Result<Option<Outcome>> {
        for result in self.log.read()? {
            let loss = result.loss as f64;
            if !loss.is_finite() {
                return Ok(Some(Outcome::Diverged {
                    step: run.state.step + 1,
                    loss,
                    last_checkpoint: run.last_checkpoint.clone(),
                }));
            }
            let (n, correct) = (result.images as u64, result.correct as u64);
            let state = &mut run.state;
            state.step += 1;
            state.batch += 1;
            state.epoch_loss_sum += loss * n as f64;
            state.epoch_correct += correct;
            state.epoch_seen += n;
            window.loss += loss * n as f64;
            window.correct += correct;
            window.seen += n;
            *latest_loss = Some(loss);
        }
        Ok(None)
    }

    /// A log line of the window's means, to metrics.jsonl and the observer.
    fn write_log_line(&mut self, run: &Run, window: &mut Window) -> Result<()> {
        let record = Record::Log {
            epoch: run.state.epoch + 1,
            batch: run.state.batch,
            step: run.state.step,
            loss: window.loss / window.seen as f64,
            accuracy: window.correct as f64 / window.seen as f64,
            elapsed_s: run.state.epoch_seconds,
            lr: Some(run.adam.lr),
        };
        self.record(&record)?;
        *window = Window::default();
        Ok(())
    }

    /// Test accuracy at the epoch's end, and the epoch's record.
    fn evaluate_epoch(&mut self, run: &mut Run) -> Result<()> {
        let state = &run.state;
        self.observer.evaluating(state.epoch + 1);
        let train_seconds = self.epoch_start.elapsed().as_secs_f64();
        let (accuracy, _) = evaluate_split(
            &run.net,
            &run.params,
            &self.test_set,
            &self.config,
            self.norm,
        )?;
        run.test_accuracy = accuracy;
        let record = Record::Epoch {
            epoch: state.epoch + 1,
            step: state.step,
            train_loss: state.epoch_loss_sum / state.epoch_seen as f64,
            train_accuracy: state.epoch_correct as f64 / state.epoch_seen as f64,
            test_accuracy: accuracy,
            epoch_time_s: train_seconds,
            images_per_s: state.epoch_seen as f64 / train_seconds.max(1e-9),
        };
        self.record(&record)
    }

    /// Moves the run to the next epoch and saves it as `epoch-N`.
    fn save_epoch(&mut self, run: &mut Run) -> Result<()> {
        run.state = RunState {
            epoch: run.state.epoch + 1,
            step: run.state.step,
            planned_steps: run.state.planned_steps,
            ..checkpoint::start_state(&self.config, &run.state.data)
        };
        let path = self.checkpoints.join(format!("epoch-{}", run.state.epoch));
        self.save(run, &path)
    }

    /// Saves a checkpoint at `path`, superseding the periodic ones.
    fn save(&mut self, run: &mut Run, path: &Path) -> Result<()> {
        checkpoint::save_run(
            path,
            &run.params,
            &run.adam,
            &run.state,
            run.last_checkpoint.as_deref(),
        )?;
        checkpoint::prune_step_checkpoints(&self.checkpoints, path)?;
        self.observer.checkpoint(path);
        run.last_checkpoint = Some(path.to_path_buf());
        Ok(())
    }

    fn record(&mut self, record: &Record) -> Result<()> {
        self.metrics.write(record)?;
        self.observer.record(record);
        Ok(())
    }
}

/// A per-step dropout seed: the run's seed and the step, mixed.
fn dropout_seed(seed: u64, step: u64) -> u64 {
    seed.rotate_left(32) ^ step.wrapping_mul(0xD1B5_4A32_D192_ED03)
}
