//! `cargo run --release --bin eval -- CHECKPOINT`: test accuracy and the confusion
//! matrix of a saved model on its data set's test split, printed with the class names
//! and drawn to `confusion.png` beside it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use googlenet::data::DataOptions;
use googlenet::engine::device::kernels::VERSION;
use googlenet::training::checkpoint;
use googlenet::training::evaluate;
use googlenet::training::metrics::plot_confusion;
use googlenet::training::model::model_config;
use googlenet::training::predict::checkpoint_settings;
use googlenet::training::settings::DataSource;
use googlenet::training::source::load_test_split;
use googlenet::{Device, GoogLeNet, Init, Precision};

/// Evaluates a checkpoint on the test split of the data set it was trained on
/// (Fashion-MNIST's, or the folder's).
#[derive(Parser, Debug)]
#[command(version = VERSION)]
struct Args {
    /// A checkpoint directory (from `train`) or its model.safetensors.
    checkpoint: PathBuf,
    /// Image size (default: the run's, from the checkpoint; 224 for a bare model file).
    #[arg(long)]
    image_size: Option<usize>,
    /// Normalise inputs (default: as the run did; false for a bare model file).
    #[arg(long)]
    normalize: Option<bool>,
    /// Evaluate on the first N test images only.
    #[arg(long)]
    test_limit: Option<usize>,
    #[arg(long, default_value = "auto")]
    device: String,
    /// The conv and linear GEMMs' arithmetic (default: tf32 on a GPU, f32 on the CPU,
    /// which has no other).
    #[arg(long, value_enum)]
    precision: Option<Precision>,
    /// A folder-trained checkpoint: read its images from this folder instead of the
    /// one the run read (it must have the same classes).
    #[arg(long, value_name = "DIR")]
    data: Option<DataSource>,
    /// Fashion-MNIST: the directory with its four files.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[arg(long)]
    no_verify: bool,
    /// Where to draw the confusion matrix (default: confusion.png in the checkpoint
    /// directory, or beside the model file).
    #[arg(long)]
    out: Option<PathBuf>,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<()> {
    let device = Device::parse_at(&args.device, args.precision)?;
    let (mut config, data) = checkpoint_settings(&args.checkpoint)?;
    config.image_size = args.image_size.unwrap_or(config.image_size);
    config.normalize = args.normalize.unwrap_or(config.normalize);
    if let Some(source) = &args.data {
        anyhow::ensure!(
            !config.data.is_fashion_mnist(),
            "--data: {} was trained on Fashion-MNIST, whose files --data-dir names",
            args.checkpoint.display()
        );
        config.data = source.clone();
    }
    config.validate()?;

    let (net, mut params) = GoogLeNet::new(&device, model_config(&data), Init::PyTorchDefault, 0)?;
    checkpoint::load_weights(&args.checkpoint, &mut params)?;
    let fashion = DataOptions {
        data_dir: args.data_dir.clone(),
        verify: !args.no_verify,
        ..DataOptions::default()
    };
    let test = load_test_split(&config, &data, &fashion, &mut |line| println!("{line}"))?;
    let norm = config.normalization(&data)?;
    println!(
        "model: {} on {} ({}), {} classes, {} channel(s), images {s}x{s}, inputs {}",
        checkpoint::model_file(&args.checkpoint).display(),
        device.name(),
        device.precision(),
        data.classes.len(),
        data.channels,
        if config.normalize {
            "normalised"
        } else {
            "in [0, 1]"
        },
        s = config.image_size
    );
    let (accuracy, confusion) = evaluate(
        &device,
        &net,
        &params,
        &test,
        data.classes.len(),
        &config,
        norm,
        args.test_limit,
    )?;
    let total: u64 = confusion.iter().flatten().sum();
    println!(
        "test accuracy: {accuracy:.4} ({} of {total} images)",
        (accuracy * total as f64).round()
    );
    let width = data
        .classes
        .iter()
        .map(|c| c.chars().count())
        .max()
        .unwrap_or(0)
        + 4;
    println!("\nconfusion matrix (rows: true class, columns: predicted class)");
    print!("{:<width$}", "");
    for j in 0..data.classes.len() {
        print!("{j:>6}");
    }
    println!("{:>9}", "recall");
    for (i, row) in confusion.iter().enumerate() {
        print!("{:<width$}", format!("{i} {}", data.classes[i]));
        for count in row {
            print!("{count:>6}");
        }
        let n: u64 = row.iter().sum();
        let recall = if n > 0 { row[i] as f64 / n as f64 } else { 0.0 };
        println!("{recall:>9.3}");
    }
    let png = match &args.out {
        Some(path) => path.clone(),
        None if args.checkpoint.is_dir() => args.checkpoint.join("confusion.png"),
        None => args.checkpoint.with_file_name("confusion.png"),
    };
    let title = format!("Confusion matrix, test accuracy {accuracy:.4}");
    plot_confusion(&confusion, &data.classes, &png, &title)?;
    println!("\nconfusion matrix drawn to {}", png.display());
    Ok(())
}
