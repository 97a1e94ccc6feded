//! `cargo run --release --bin predict -- CHECKPOINT IMAGE...`: the three most likely
//! Fashion-MNIST classes of each image file, with their probabilities.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use googlenet::data::CLASS_NAMES;
use googlenet::training::checkpoint;
use googlenet::training::predict::{
    checkpoint_config, class_probabilities, load_image, prepare, top_k, Invert,
};
use googlenet::{Device, GoogLeNet, GoogLeNetConfig, Init};
use serde_json::json;

/// Classifies images with a trained checkpoint. Any size, colour or grey, in PNG,
/// JPEG, BMP, GIF, WebP, PNM, TGA or ICO: each is made grey, fitted into 28x28 on a
/// dark background (as Fashion-MNIST was made), then resized and normalised as the
/// checkpoint's run did.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// A checkpoint directory (from `train`) or its model.safetensors.
    checkpoint: PathBuf,
    /// Image files to classify.
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// Negate intensities: auto (when the border is light) | yes | no
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
    let config = checkpoint_config(&args.checkpoint)?;
    config.validate()?;
    let (net, mut params) =
        GoogLeNet::new(&device, GoogLeNetConfig::default(), Init::PyTorchDefault, 0)?;
    checkpoint::load_weights(&args.checkpoint, &mut params)?;

    // Read every file first, so the model runs once over all the good ones.
    let mut prepared = Vec::new();
    let mut results = Vec::new();
    for path in &args.images {
        match load_image(path) {
            Ok(image) => {
                let (grey, inverted) = prepare(&image, invert);
                results.push(Ok((image.width(), image.height(), inverted)));
                prepared.push(grey);
            }
            Err(err) => results.push(Err(err)),
        }
    }
    let mut probabilities = class_probabilities(&net, &params, &config, &prepared)?.into_iter();

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
                .map(|&(class, p)| json!({ "class": class, "name": CLASS_NAMES[class], "probability": p }))
                .collect();
            documents.push(json!({
                "file": name, "width": w, "height": h, "inverted": inverted, "top": top
            }));
        } else {
            let how = if inverted { ", inverted" } else { "" };
            println!("{name} ({w}x{h}{how}):");
            for (class, p) in top {
                println!("  {:>6.2}%  {class} {}", 100.0 * p, CLASS_NAMES[class]);
            }
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&documents)?);
    }
    Ok(all_read)
}
