//! `cargo run --release --bin eval -- CHECKPOINT`: test accuracy and the confusion
//! matrix of a saved model, printed and drawn to `confusion.png` beside it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use googlenet::data::{self, DataOptions, CLASS_NAMES};
use googlenet::engine::device::kernels::VERSION;
use googlenet::training::checkpoint;
use googlenet::training::evaluate;
use googlenet::training::metrics::plot_confusion;
use googlenet::training::predict::checkpoint_config;
use googlenet::{Device, GoogLeNet, GoogLeNetConfig, Init, Precision};

/// Evaluates a checkpoint on the Fashion-MNIST test set.
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
    let mut config = checkpoint_config(&args.checkpoint)?;
    config.image_size = args.image_size.unwrap_or(config.image_size);
    config.normalize = args.normalize.unwrap_or(config.normalize);
    config.validate()?;

    let (net, mut params) =
        GoogLeNet::new(&device, GoogLeNetConfig::default(), Init::PyTorchDefault, 0)?;
    checkpoint::load_weights(&args.checkpoint, &mut params)?;
    let data = data::load(&DataOptions {
        data_dir: args.data_dir.clone(),
        verify: !args.no_verify,
        ..DataOptions::default()
    })?;
    println!("data: {} ({})", data.source.display(), data.found_by);
    println!(
        "model: {} on {} ({}), images {s}x{s}, inputs {}",
        checkpoint::model_file(&args.checkpoint).display(),
        device.name(),
        device.precision(),
        if config.normalize {
            "normalised"
        } else {
            "in [0, 1]"
        },
        s = config.image_size
    );
    let (accuracy, confusion) =
        evaluate(&device, &net, &params, &data.test, &config, args.test_limit)?;
    let total: u64 = confusion.iter().flatten().sum();
    println!(
        "test accuracy: {accuracy:.4} ({} of {total} images)",
        (accuracy * total as f64).round()
    );
    println!("\nconfusion matrix (rows: true class, columns: predicted class)");
    print!("{:<15}", "");
    for j in 0..10 {
        print!("{j:>6}");
    }
    println!("{:>9}", "recall");
    for (i, row) in confusion.iter().enumerate() {
        print!("{:<15}", format!("{i} {}", CLASS_NAMES[i]));
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
    plot_confusion(&confusion, &CLASS_NAMES, &png, &title)?;
    println!("\nconfusion matrix drawn to {}", png.display());
    Ok(())
}
