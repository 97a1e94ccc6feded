//! `cargo run --release --bin predict -- CHECKPOINT IMAGE...`: the three most likely
//! classes of each image file (by the names the checkpoint's data set gave them), with
//! their probabilities.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use googlenet::training::checkpoint;
use googlenet::training::model::model_config;
use googlenet::training::predict::{
    checkpoint_settings, class_probabilities, load_image, prepare_as_trained, top_k, Invert,
};
use googlenet::{Device, GoogLeNet, Init};
use serde_json::json;

/// Classifies images with a trained checkpoint. Any size, colour or grey, in PNG,
/// JPEG, BMP, GIF, WebP, TIFF, PNM, TGA or ICO, prepared as the checkpoint's training
/// images were: for a run on a folder (--data DIR), its channels, the shorter side
/// resized to its stored side and the centre cropped; for a Fashion-MNIST run, made
/// grey and fitted into 28x28 on a dark background (as Fashion-MNIST was made). Then
/// resized and normalised as the checkpoint's run did.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// A checkpoint directory (from `train`) or its model.safetensors.
    checkpoint: PathBuf,
    /// Image files to classify.
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// Fashion-MNIST checkpoints: negate intensities: auto (when the border is light)
    /// | yes | no
    #[arg(long, default_value = "auto")]
    invert: String,
    /// Print one JSON document instead of text.
    #[arg(long)]
    json: bool,
    #[arg(long, default_value = "auto")]
    device: String,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(all_read) if all_read => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// Whether every image could be read (errors about the checkpoint or flags are `Err`).
fn run(args: Args) -> Result<bool> {
    let invert = Invert::parse(&args.invert)?;
    let device = Device::parse(&args.device)?;
    let (config, data) = checkpoint_settings(&args.checkpoint)?;
    config.validate()?;
    anyhow::ensure!(
        config.data.is_fashion_mnist() || invert == Invert::Auto,
        "--invert applies to Fashion-MNIST checkpoints; {} was trained on {}, whose \
         images are prepared as its training images were",
        args.checkpoint.display(),
        config.data
    );
    let (net, mut params) = GoogLeNet::new(&device, model_config(&data), Init::PyTorchDefault, 0)?;
    checkpoint::load_weights(&args.checkpoint, &mut params)?;

    // Read every file first, so the model runs once over all the good ones.
    let mut prepared = Vec::new();
    let mut results = Vec::new();
    for path in &args.images {
        let prepared_image = load_image(path).and_then(|image| {
            let ready = prepare_as_trained(&image, &config, &data, invert)?;
            Ok((image.width(), image.height(), ready))
        });
        match prepared_image {
            Ok((w, h, ready)) => {
                results.push(Ok((w, h, ready.inverted)));
                prepared.push(ready.pixels);
            }
            Err(err) => results.push(Err(err)),
        }
    }
    let mut probabilities =
        class_probabilities(&net, &params, &config, &data, &prepared)?.into_iter();

    let mut documents = Vec::new();
    let mut all_read = true;
    for (path, result) in args.images.iter().zip(results) {
        let name = path.display().to_string();
        let (w, h, inverted) = match result {
            Ok(info) => info,
            Err(err) => {
                all_read = false;
                eprintln!("error: {name}: {err:#}");
                documents.push(json!({ "file": name, "error": format!("{err:#}") }));
                continue;
            }
        };
        let top = top_k(&probabilities.next().expect("one per image read"), 3);
        if args.json {
            let top: Vec<_> = top
                .iter()
                .map(|&(class, p)| json!({ "class": class, "name": data.classes[class], "probability": p }))
                .collect();
            documents.push(json!({
                "file": name, "width": w, "height": h, "inverted": inverted, "top": top
            }));
        } else {
            let how = if inverted { ", inverted" } else { "" };
            println!("{name} ({w}x{h}{how}):");
            for (class, p) in top {
                println!("  {:>6.2}%  {class} {}", 100.0 * p, data.classes[class]);
            }
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&documents)?);
    }
    Ok(all_read)
}
