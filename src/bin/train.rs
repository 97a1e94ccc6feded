//! `cargo run --release --bin train`: trains GoogLeNet on Fashion-MNIST, or on a
//! folder of class folders (`--data DIR`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use googlenet::data::folder::Plan;
use googlenet::data::{DataDescription, DataOptions};
use googlenet::engine::device::kernels::VERSION;
use googlenet::engine::nn::format_summary;
use googlenet::training::checkpoint::{self, Leftover};
use googlenet::training::metrics::{format_duration, plot_metrics, read_records, Record, Summary};
use googlenet::training::model::model_config;
use googlenet::training::recipe::ScheduleKind;
use googlenet::training::run::{data_set_shape, workload};
use googlenet::training::run_dir::{checkpoints_dir, create_run_dir, metrics_path, RunLock};
use googlenet::training::settings::{
    preset, resume_config, Channels, DataSource, Preset, TrainConfig,
};
use googlenet::training::source::{folder_options, load_for_training};
use googlenet::training::{memory, train, Observer, Outcome};
use googlenet::{Device, GoogLeNet, Init, Precision};
use indicatif::{ProgressBar, ProgressStyle};

/// Trains the tutorial's GoogLeNet on Fashion-MNIST, or on your own images (--data
/// DIR). With no flags: the `recommended` preset on a GPU (PyTorch's own model does not
/// learn from the tutorial's settings in 2,000 steps), `quick` on the CPU. Every preset
/// setting can be overridden.
#[derive(Parser, Debug)]
#[command(version = VERSION)]
struct Args {
    /// The named configuration (default: recommended on a GPU, quick on the CPU).
    #[arg(long, value_enum)]
    preset: Option<Preset>,
    /// Epochs to train (with a preset's time budget, the most it may take; given
    /// alone, it replaces that budget: the run takes exactly these epochs).
    #[arg(long)]
    epochs: Option<usize>,
    #[arg(long)]
    batch_size: Option<usize>,
    #[arg(long)]
    lr: Option<f64>,
    /// Images are resized to SIZE x SIZE.
    #[arg(long)]
    image_size: Option<usize>,
    /// Train on the first N training images only.
    #[arg(long)]
    train_limit: Option<usize>,
    /// Evaluate on the first N test images only.
    #[arg(long)]
    test_limit: Option<usize>,
    #[arg(long)]
    seed: Option<u64>,
    /// Log loss and accuracy every N batches.
    #[arg(long)]
    log_every: Option<usize>,
    /// Weight initialisation: pytorch (the tutorial's) or kaiming.
    #[arg(long, value_enum)]
    init: Option<Init>,
    /// Normalise inputs by Fashion-MNIST's mean and std (true | false).
    #[arg(long)]
    normalize: Option<bool>,
    /// Also write a checkpoint every N steps (one is always written at each epoch end).
    #[arg(long)]
    save_every: Option<usize>,
    /// Learning rate per step: constant, or cosine (warm-up, then cosine decay).
    #[arg(long, value_enum)]
    schedule: Option<ScheduleKind>,
    /// cosine: steps of linear warm-up to --lr.
    #[arg(long)]
    warmup_steps: Option<u64>,
    /// cosine: the last step's rate as a fraction of --lr.
    #[arg(long)]
    min_lr_fraction: Option<f64>,
    /// Random crop (padding 2) and left-right mirror of training images (true | false).
    #[arg(long)]
    augment: Option<bool>,
    /// Train against (1 - ε)·onehot + ε/10 targets (0: the plain labels).
    #[arg(long, value_name = "ε")]
    label_smoothing: Option<f64>,
    /// Train for as many steps as fit in this many minutes (at most --epochs): the run
    /// times its first steps, then plans its length (and the learning-rate schedule's).
    /// `off`: no budget, all --epochs (quick's default is 9.5).
    #[arg(long, value_name = "MINUTES|off", value_parser = parse_time_budget)]
    time_budget: Option<TimeBudget>,
    /// Launch every op of every step, instead of recording each batch size's step once
    /// and replaying it (a CUDA graph; the results are the same).
    #[arg(long)]
    no_graph: bool,
    /// auto (a working GPU, else the CPU) | cpu | cuda | cuda:N
    #[arg(long, default_value = "auto")]
    device: String,
    /// The conv and linear GEMMs' arithmetic (default: tf32 on a GPU, f32 on the CPU,
    /// which has no other).
    #[arg(long, value_enum)]
    precision: Option<Precision>,
    /// What to train on: fashion-mnist (the default), or a folder DIR of class
    /// folders (DIR/<class>/*.png|jpg|...), or of DIR/train/<class>/ and
    /// DIR/test/<class>/ (or val/) (docs/DATA.md).
    #[arg(long, value_name = "DIR|fashion-mnist")]
    data: Option<DataSource>,
    /// --data DIR without a test/ folder: the fraction of each class held out for
    /// testing, picked by --seed (default 0.1).
    #[arg(long)]
    test_fraction: Option<f64>,
    /// --data DIR: the side images are decoded to and kept at in memory (default:
    /// --image-size).
    #[arg(long, value_name = "SIDE")]
    store_size: Option<usize>,
    /// --data DIR: 1 (grey) or 3 (RGB) channels (default: 3 if any training image has
    /// colour, else 1).
    #[arg(long, value_enum)]
    channels: Option<Channels>,
    /// --data DIR: leave out files that are not readable images (naming the first
    /// few) instead of refusing the data set.
    #[arg(long)]
    skip_bad_images: bool,
    /// Directory with the four Fashion-MNIST files (gz or raw).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Skip the MD5 check of the data files (for other IDX data sets of the same shape).
    #[arg(long)]
    no_verify: bool,
    /// Where metrics, the plot and checkpoints go (default: runs/<preset>-<time>).
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// Continue the run saved in this checkpoint directory (its settings are used).
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Print the model's stages, output shapes and parameter counts, and exit.
    #[arg(long)]
    summary: bool,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// `--time-budget`'s value.
#[derive(Clone, Copy, Debug, PartialEq)]
enum TimeBudget {
    Off,
    Minutes(f64),
}

fn parse_time_budget(text: &str) -> Result<TimeBudget, String> {
    if text == "off" {
        return Ok(TimeBudget::Off);
    }
    text.parse()
        .map(TimeBudget::Minutes)
        .map_err(|_| format!("expected a number of minutes or `off`, got `{text}`"))
}

/// The preset a run without `--preset` takes, and why.
fn default_preset(on_gpu: bool) -> (Preset, &'static str) {
    if on_gpu {
        (
            Preset::Recommended,
            "a GPU is present; the tutorial's own settings, which PyTorch's model does not \
             learn from in 2,000 steps, are --preset tutorial",
        )
    } else {
        (
            Preset::Quick,
            "no GPU, and the tutorial's 224x224 run takes about 6 hours on 2 CPU cores; pass \
             --preset tutorial to run it anyway",
        )
    }
}

/// The preset with every flag the user gave laid over it, a folder's defaults filled
/// in.
fn config_from(args: &Args, name: Preset) -> Result<TrainConfig> {
    let mut config = overlay(args, preset(name))?.with_folder_defaults();
    // `--epochs N` alone asks for N epochs, not for a preset's budget capped at N.
    if args.epochs.is_some() && args.time_budget.is_none() {
        config.time_budget_minutes = None;
    }
    config.validate()?;
    Ok(config)
}

/// `c` with every flag the user gave laid over it.
fn overlay(args: &Args, mut c: TrainConfig) -> Result<TrainConfig> {
    let limit = |v: Option<usize>, current: Option<usize>| v.map(Some).unwrap_or(current);
    c.epochs = args.epochs.unwrap_or(c.epochs);
    c.batch_size = args.batch_size.unwrap_or(c.batch_size);
    c.lr = args.lr.unwrap_or(c.lr);
    c.image_size = args.image_size.unwrap_or(c.image_size);
    c.train_limit = limit(args.train_limit, c.train_limit);
    c.test_limit = limit(args.test_limit, c.test_limit);
    c.seed = args.seed.unwrap_or(c.seed);
    c.log_every = args.log_every.unwrap_or(c.log_every);
    c.init = args.init.unwrap_or(c.init);
    c.normalize = args.normalize.unwrap_or(c.normalize);
    c.save_every = args.save_every.or(c.save_every);
    c.schedule = args.schedule.unwrap_or(c.schedule);
    c.warmup_steps = args.warmup_steps.unwrap_or(c.warmup_steps);
    c.min_lr_fraction = args.min_lr_fraction.unwrap_or(c.min_lr_fraction);
    c.augment = args.augment.unwrap_or(c.augment);
    c.label_smoothing = args.label_smoothing.unwrap_or(c.label_smoothing);
    c.time_budget_minutes = match args.time_budget {
        Some(TimeBudget::Off) => None,
        Some(TimeBudget::Minutes(minutes)) => Some(minutes),
        None => c.time_budget_minutes,
    };
    c.no_graph |= args.no_graph;
    c.precision = args.precision.unwrap_or(c.precision);
    c.data = args.data.clone().unwrap_or(c.data);
    c.test_fraction = args.test_fraction.or(c.test_fraction);
    c.store_size = args.store_size.or(c.store_size);
    c.channels = args.channels.or(c.channels);
    c.skip_bad_images |= args.skip_bad_images;
    if !c.data.is_fashion_mnist() {
        for (flag, given) in [
            ("--data-dir", args.data_dir.is_some()),
            ("--no-verify", args.no_verify),
        ] {
            anyhow::ensure!(
                !given,
                "{flag} applies to Fashion-MNIST's files, not to --data {}",
                c.data
            );
        }
    }
    c.validate()?;
    Ok(c)
}

fn describe(c: &TrainConfig) -> String {
    let limit = |l: Option<usize>| l.map_or("all".to_string(), |n| n.to_string());
    let lr = match c.schedule {
        ScheduleKind::Cosine => format!(
            "lr {} (cosine: {} warm-up steps, down to {}x)",
            c.lr, c.warmup_steps, c.min_lr_fraction
        ),
        ScheduleKind::Constant => format!("lr {} (constant)", c.lr),
    };
    let data = match &c.data {
        DataSource::FashionMnist => String::new(),
        DataSource::Folder(dir) => format!(
            "data {} (test fraction {} if it has no test/ folder, stored at {s}x{s}, channels {}{}), ",
            dir.display(),
            c.test_fraction.unwrap_or_default(),
            c.channels
                .map_or("from the images".to_string(), |ch| ch.count().to_string()),
            if c.skip_bad_images { ", bad images skipped" } else { "" },
            s = c.store_size.unwrap_or(c.image_size),
        ),
    };
    let epochs = match c.time_budget_minutes {
        Some(minutes) => format!(
            "as many steps as fit in {minutes} minutes, at most {} epoch(s)",
            c.epochs
        ),
        None => format!("{} epoch(s)", c.epochs),
    };
    format!(
        "{data}image {s}x{s}, batch {}, {lr}, {epochs}, train images {}, test images {}, init {}, inputs {}, augmentation {}, label smoothing {}, seed {}, precision {}, step graph {}",
        c.batch_size,
        limit(c.train_limit),
        limit(c.test_limit),
        c.init,
        if c.normalize { "normalised" } else { "in [0, 1]" },
        if c.augment { "crop+flip" } else { "none" },
        c.label_smoothing,
        c.seed,
        c.precision,
        if c.no_graph { "off" } else { "on (GPU devices)" },
        s = c.image_size,
    )
}

fn run(args: Args) -> Result<ExitCode> {
    let started = Instant::now();
    let device = Device::parse_at(&args.device, args.precision)?;
    let on_gpu = device.is_gpu();
    let (name, why) = match args.preset {
        Some(name) => (name, "chosen with --preset"),
        None => default_preset(on_gpu),
    };

    if args.summary {
        let config = config_from(&args, name)?;
        // A folder's classes and channels, from its files' names and headers.
        let described = match folder_options(&config) {
            None => DataDescription::fashion_mnist(),
            Some(options) => {
                let plan = Plan::new(&options)?;
                DataDescription {
                    classes: plan.classes,
                    channels: plan.channels,
                    store_side: plan.store_side,
                    mean: vec![0.0; plan.channels],
                    std: vec![1.0; plan.channels],
                }
            }
        };
        let (net, params) =
            GoogLeNet::new(&device, model_config(&described), Init::PyTorchDefault, 0)?;
        let rows = net.summary(&params, config.image_size)?;
        print!(
            "{}",
            format_summary(&rows, config.image_size, described.channels)
        );
        return Ok(ExitCode::SUCCESS);
    }

    let (mut config, run_dir) = match &args.resume {
        Some(dir) => {
            let (state, ..) = checkpoint::resume(&device, dir)?;
            let run_dir = Some(
                args.run_dir
                    .clone()
                    .unwrap_or_else(|| run_dir_of_checkpoint(dir)),
            );
            println!(
                "resuming {} at epoch {}, batch {} (step {}); its saved settings are used",
                dir.display(),
                state.epoch + 1,
                state.batch,
                state.step
            );
            let mut requested = overlay(&args, state.config.clone())?;
            requested.preset = args.preset.unwrap_or(requested.preset);
            let (config, changes) = resume_config(&state.config, &requested)?;
            for change in changes {
                println!("{change}");
            }
            (config, run_dir)
        }
        None => {
            println!("preset: {name} ({why})");
            let mut config = config_from(&args, name)?;
            // The device's: --precision's, else its default.
            config.precision = device.precision();
            (config, args.run_dir.clone())
        }
    };
    println!("device: {}", device.name());
    println!("settings: {}", describe(&config));

    let fashion = DataOptions {
        data_dir: args.data_dir.clone(),
        verify: !args.no_verify,
        ..DataOptions::default()
    };
    let data = load_for_training(&device, &mut config, &fashion, &mut |line| {
        println!("{line}")
    })?;
    if config.data.is_fashion_mnist() {
        println!(
            "data: {} ({}; {} training, {} test images, {})",
            data.source.display(),
            data.found_by,
            data.train.len(),
            data.test.len(),
            if args.no_verify {
                "not verified"
            } else {
                "verified"
            }
        );
    }
    // A fresh run's directory is made only now, so a run that cannot start leaves none.
    let run_dir = match run_dir {
        Some(dir) => dir,
        None => create_run_dir(Path::new("runs"), config.preset.name())?,
    };
    println!("run directory: {}", run_dir.display());
    let lock = RunLock::acquire(&run_dir)?;
    if let Some(pid) = lock.stale_pid {
        println!(
            "{}: taking over the lock of process {pid}, which is no longer running",
            lock.path().display()
        );
    }
    for leftover in checkpoint::clear_leftovers(&checkpoints_dir(&run_dir))? {
        match leftover {
            Leftover::Removed(path) => println!(
                "removed {}, left by a checkpoint save that did not finish",
                path.display()
            ),
            Leftover::Restored(path) => println!(
                "restored {}, which a checkpoint save that did not finish had moved aside",
                path.display()
            ),
        }
    }
    let (net, params) = GoogLeNet::new(
        &Device::cpu(),
        model_config(&data.description),
        Init::PyTorchDefault,
        0,
    )?;
    let estimate = memory::estimate(&workload(
        &net,
        params.scalar_count(),
        &config,
        data_set_shape(&data, &config),
        device.is_gpu(),
    ))?;
    println!("memory: {}", memory::describe(&estimate));
    drop((net, params));

    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            eprintln!("\nsecond interrupt: exiting without a checkpoint");
            std::process::exit(130);
        }
        eprintln!("\ninterrupt: stopping after this step and writing a checkpoint (press again to quit at once)");
    })
    .context("cannot install the Ctrl-C handler")?;

    let mut observer = Console::new();
    let outcome = train(
        &device,
        &data,
        &run_dir,
        args.resume.as_deref(),
        &config,
        &stop,
        &mut observer,
    )?;
    observer.finish();
    let title = match &config.data {
        DataSource::FashionMnist => "GoogLeNet on Fashion-MNIST".to_string(),
        DataSource::Folder(dir) => format!(
            "GoogLeNet on {}",
            dir.file_name().unwrap_or(dir.as_os_str()).to_string_lossy()
        ),
    };
    let plot = plot_run(&run_dir, &title);
    match outcome {
        Outcome::Finished { test_accuracy } => {
            println!("finished: test accuracy {test_accuracy:.4}");
            let records = read_records(&metrics_path(&run_dir))?;
            if let Some(s) = Summary::from_records(&records) {
                println!(
                    "best test accuracy {:.4} (epoch {}); total time {}, training {:.1} images/s",
                    s.best_test_accuracy,
                    s.best_epoch,
                    format_duration(started.elapsed().as_secs_f64()),
                    s.images_per_s
                );
                let best = checkpoints_dir(&run_dir).join(format!("epoch-{}", s.best_epoch));
                println!("best checkpoint: {}", best.display());
            }
            println!("metrics: {}", metrics_path(&run_dir).display());
            report_plot(plot);
            Ok(ExitCode::SUCCESS)
        }
        Outcome::Interrupted { checkpoint } => {
            println!(
                "stopped; to continue: cargo run --release --bin train -- --resume {}",
                checkpoint.display()
            );
            report_plot(plot);
            Ok(ExitCode::from(130))
        }
        Outcome::Diverged {
            step,
            loss,
            last_checkpoint,
        } => {
            eprintln!("error: the loss became {loss} at step {step}: training diverged (try a lower --lr, or --init kaiming with --normalize true)");
            match last_checkpoint {
                Some(path) => eprintln!("the last good checkpoint is {}", path.display()),
                None => eprintln!("no checkpoint was written before that"),
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `<run>/checkpoints/<name>` belongs to `<run>`.
fn run_dir_of_checkpoint(checkpoint: &Path) -> PathBuf {
    checkpoint
        .parent()
        .and_then(Path::parent)
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn plot_run(run_dir: &Path, title: &str) -> Result<PathBuf> {
    let records = read_records(&metrics_path(run_dir))?;
    let png = run_dir.join("curves.png");
    plot_metrics(&records, &png, title)?;
    Ok(png)
}

fn report_plot(plot: Result<PathBuf>) {
    match plot {
        Ok(path) => println!("plot: {}", path.display()),
        Err(err) => eprintln!("warning: no plot: {err:#}"),
    }
}

/// Prints the run: a progress bar with ETA on a terminal, plain lines otherwise.
struct Console {
    bar: Option<ProgressBar>,
}

impl Console {
    fn new() -> Console {
        Console { bar: None }
    }

    fn line(&self, text: &str) {
        match &self.bar {
            Some(bar) if !bar.is_hidden() => bar.println(text),
            _ => println!("{text}"),
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Observer for Console {
    fn step(&mut self, epoch: usize, batch: usize, batches: usize, loss: Option<f64>) {
        let bar = self.bar.get_or_insert_with(|| {
            let bar = ProgressBar::new(batches as u64);
            bar.set_style(
                ProgressStyle::with_template(
                    "epoch {prefix} [{bar:30}] {pos}/{len} batches, {per_sec}, ETA {eta} {msg}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar
        });
        bar.set_prefix(epoch.to_string());
        bar.set_position(batch as u64);
        if let Some(loss) = loss {
            bar.set_message(format!("loss {loss:.4}"));
        }
    }

    fn planned(&mut self, steps: u64, step_seconds: f64) {
        self.line(&format!(
            "time budget: {steps} steps in all ({:.0} ms a step, as timed)",
            step_seconds * 1e3
        ));
    }

    fn out_of_time(&mut self, step: u64, planned: u64) {
        self.line(&format!(
            "time budget: spent at step {step} of the {planned} planned (the steps ran \
             slower than timed); ending here"
        ));
    }

    fn evaluating(&mut self, epoch: usize) {
        self.finish();
        println!("epoch {epoch}: evaluating on the test set...");
    }

    fn record(&mut self, record: &Record) {
        match record {
            Record::Log { epoch, batch, step, loss, accuracy, elapsed_s, .. } => self.line(&format!(
                "epoch {epoch} batch {batch:>5} (step {step:>6})  loss {loss:.4}  accuracy {accuracy:.4}  {elapsed_s:>8.1}s"
            )),
            Record::Epoch { epoch, train_loss, train_accuracy, test_accuracy, epoch_time_s, images_per_s, .. } => {
                self.line(&format!(
                    "epoch {epoch} done: train loss {train_loss:.4}, train accuracy {train_accuracy:.4}, test accuracy {test_accuracy:.4}, {epoch_time_s:.1}s, {images_per_s:.1} images/s"
                ))
            }
        }
    }

    fn checkpoint(&mut self, path: &Path) {
        self.line(&format!("checkpoint: {}", path.display()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gpu_run_without_flags_learns_and_names_the_tutorial_preset() {
        let (preset, why) = default_preset(true);
        assert_eq!(preset, Preset::Recommended);
        assert!(why.contains("--preset tutorial"), "{why}");
        assert_eq!(default_preset(false).0, Preset::Quick);
    }

    fn quick_with(flags: &[&str]) -> TrainConfig {
        let args =
            Args::try_parse_from(std::iter::once("train").chain(flags.iter().copied())).unwrap();
        config_from(&args, Preset::Quick).unwrap()
    }

    #[test]
    fn quick_keeps_its_time_budget_unless_epochs_or_off_replace_it() {
        let quick = preset(Preset::Quick).time_budget_minutes;
        assert!(quick.is_some());
        assert_eq!(quick_with(&[]).time_budget_minutes, quick);
        assert_eq!(
            quick_with(&["--batch-size", "32"]).time_budget_minutes,
            quick
        );
        let epochs = quick_with(&["--epochs", "4"]);
        assert_eq!((epochs.epochs, epochs.time_budget_minutes), (4, None));
        let both = quick_with(&["--epochs", "4", "--time-budget", "3"]);
        assert_eq!((both.epochs, both.time_budget_minutes), (4, Some(3.0)));
        assert_eq!(
            quick_with(&["--time-budget", "off"]).time_budget_minutes,
            None
        );
        let err = Args::try_parse_from(["train", "--time-budget", "soon"]).unwrap_err();
        assert!(err.to_string().contains("`off`, got `soon`"), "{err}");
    }
}
