//! One full GoogLeNet training step (forward, backward, Adam): `cargo bench --bench
//! train_step`. Prints the median step time and the images per second.
//!
//! On a GPU (`cuda:0`): 224x224 at batch 16 and 128. Without one it says that GPU
//! figures need a GPU. Then the CPU at batch 16, 32x32 and 224x224 (`--gpu-only`
//! skips it). `cargo test --benches` (which passes no `--bench`) runs only the CPU at
//! 32x32, one step. The rows also go to `target/bench-train-step.json` (`--json PATH`).
//!
//! Each step is timed on the host clock from its start until the device has finished
//! it (`Device::synchronize`), after warm-up steps that are not counted.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use googlenet::device::cuda;
use googlenet::train::train_step;
use googlenet::{Adam, Device, GoogLeNet, GoogLeNetConfig, Init, Labels, Tensor};
use serde_json::{json, Value};

/// The tutorial's batch, the CPU's only one.
const BATCH: usize = 16;

fn median_step(
    device: &Device,
    batch: usize,
    size: usize,
    warmup: usize,
    steps: usize,
) -> Result<Duration> {
    let (net, mut params) =
        GoogLeNet::new(device, GoogLeNetConfig::default(), Init::PyTorchDefault, 0)?;
    let mut adam = Adam::new(&params, 1e-3)?;
    let pixels = (0..batch * size * size)
        .map(|i| (i % 251) as f32 / 251.0)
        .collect();
    let images = Tensor::from_vec(device, &[batch, 1, size, size], pixels)?;
    let labels = Labels::new(
        device,
        &(0..batch as u32).map(|i| i % 10).collect::<Vec<_>>(),
        10,
    )?;
    let mut times = Vec::new();
    // Warm-up steps fill the allocator and the thread pool (and, on a GPU, load the
    // kernels and raise the clocks); they are not counted.
    for step in 0..warmup + steps {
        let start = Instant::now();
        train_step(&net, &mut params, &mut adam, &images, &labels, step as u64)?;
        device.synchronize()?;
        if step >= warmup {
            times.push(start.elapsed());
        }
    }
    times.sort();
    Ok(times[times.len() / 2])
}

fn report(
    rows: &mut Vec<Value>,
    device: &Device,
    batch: usize,
    size: usize,
    steps: usize,
    t: Duration,
) {
    let images_per_s = batch as f64 / t.as_secs_f64();
    println!(
        "  batch {batch:>3}  {size:>3}x{size:<3}  {:>8.1} ms/step  {images_per_s:>8.1} images/s  \
         (median of {steps})",
        t.as_secs_f64() * 1e3,
    );
    rows.push(json!({
        "device": device.name(),
        "batch": batch,
        "image_size": size,
        "ms_per_step": t.as_secs_f64() * 1e3,
        "images_per_s": images_per_s,
        "steps_timed": steps,
    }));
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = !args.iter().any(|a| a == "--bench");
    let gpu_only = args.iter().any(|a| a == "--gpu-only");
    let json_path = match args.iter().position(|a| a == "--json") {
        Some(i) => PathBuf::from(args.get(i + 1).context("--json needs a path")?),
        None => PathBuf::from("target/bench-train-step.json"),
    };
    let mut rows = Vec::new();

    let gpu = if !cuda::driver_present() {
        Err("no CUDA driver found".to_string())
    } else {
        Device::cuda(0).map_err(|err| format!("cuda:0 is unusable: {err:#}"))
    };
    match &gpu {
        Ok(gpu) => {
            println!("train step on {}", gpu.name());
            for (batch, steps) in [(16, 20), (128, 10)] {
                let t = median_step(gpu, batch, 224, 3, steps)?;
                report(&mut rows, gpu, batch, 224, steps, t);
            }
        }
        Err(why) => println!("GPU figures need a GPU ({why})"),
    }

    if !gpu_only {
        let device = Device::cpu();
        println!("train step on {}", device.name());
        for (size, steps) in [(32, 10), (224, 3)] {
            let steps = if quick { 1 } else { steps };
            if quick && size > 32 {
                continue;
            }
            let t = median_step(&device, BATCH, size, 1, steps)?;
            report(&mut rows, &device, BATCH, size, steps, t);
        }
    }

    if let Some(dir) = json_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let doc = json!({
        "gpu": gpu.is_ok(),
        "timing": "host clock from a step's start until the device finished it; median",
        "rows": rows,
    });
    std::fs::write(&json_path, serde_json::to_string_pretty(&doc)? + "\n")
        .with_context(|| format!("writing {}", json_path.display()))?;
    println!("rows written to {}", json_path.display());
    Ok(())
}
