//! One full GoogLeNet training step (forward, backward, Adam): `cargo bench --bench
//! train_step`. Prints the median step time and the images per second, and, for the
//! GPU devices, what one steady-state step costs the host (kernel launches, device
//! allocations, memsets, copies, host waits) and its peak device memory.
//!
//! The counts come from the GPU layer the cuda and emu devices share, so the
//! emulator's are the GPU's: they are measured on emu at batch 16 and 128, 32x32
//! (the image size changes only the split-K reductions' launches, not the rest), and
//! on cuda:0 at 224x224 when there is one. Peak memory follows the image size: emu's
//! is at 32x32.
//!
//! On a GPU (`cuda:0`): 224x224 at batch 16 and 128, in each precision of the conv and
//! linear GEMMs (`--precisions f32,tf32,bf16`, the default: a row each; the counts
//! are the same in every precision, so they are reported once, at tf32). Without one
//! it says that GPU figures need a GPU. Then the CPU at batch 16, 32x32 and 224x224 (`--gpu-only`
//! skips it). `cargo test --benches` (which passes no `--bench`) runs only the CPU at
//! 32x32, one step. The rows also go to `target/bench-train-step.json` (`--json PATH`).
//!
//! Each step is timed on the host clock from its start until the device has finished
//! it (`Device::synchronize`), after warm-up steps that are not counted.
//!
//! Steps run as the training loop runs them (src/stepper.rs): on the GPU devices each
//! is timed and counted twice, with the step graph (one recorded step replayed) and
//! with its ops launched one by one; `--no-graph` only the latter. Rows say which
//! (`"graph"`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use googlenet::augment::View;
use googlenet::batch::DeviceSplit;
use googlenet::data::Split;
use googlenet::device::cuda;
use googlenet::stepper::{BatchSettings, Stepper};
use googlenet::train::StepLog;
use googlenet::{Adam, Counters, Device, GoogLeNet, GoogLeNetConfig, Init, Normalize, Precision};
use serde_json::{json, Value};

/// The tutorial's batch, the CPU's only one.
const BATCH: usize = 16;

/// `samples` 28x28 images of a few bands, on the device.
fn split(device: &Device, samples: usize) -> Result<DeviceSplit> {
    let split = Split {
        images: (0..samples * 28 * 28)
            .map(|i| ((i * 37) % 251) as u8)
            .collect(),
        labels: (0..samples).map(|i| (i % 10) as u8).collect(),
        rows: 28,
        cols: 28,
    };
    DeviceSplit::upload(device, &split, None)
}

/// A model, its optimizer and a stepper for batches of `batch` at `size`.
fn setup(
    device: &Device,
    batch: usize,
    size: usize,
    graphs: bool,
) -> Result<(GoogLeNet, googlenet::Parameters, Adam, Stepper)> {
    let (net, params) =
        GoogLeNet::new(device, GoogLeNetConfig::default(), Init::PyTorchDefault, 0)?;
    let adam = Adam::new(&params, 1e-3)?;
    let settings = BatchSettings {
        image_size: size,
        norm: Normalize::FASHION_MNIST,
        smoothing: 0.0,
    };
    let stepper = Stepper::new(device, batch, settings, graphs)?;
    Ok((net, params, adam, stepper))
}

fn median_step(
    device: &Device,
    batch: usize,
    size: usize,
    graphs: bool,
    warmup: usize,
    steps: usize,
) -> Result<Duration> {
    let data = split(device, 2 * batch)?;
    let (net, mut params, mut adam, mut stepper) = setup(device, batch, size, graphs)?;
    // With the graph, the first two steps are the warm-up and the recording.
    let warmup = if stepper.uses_graphs() {
        warmup.max(2)
    } else {
        warmup
    };
    let views = vec![View::IDENTITY; batch];
    let mut times = Vec::new();
    // As the training loop runs it: losses stay on the device until the end.
    let mut log = StepLog::new(device, warmup + steps)?;
    // Warm-up steps fill the allocator and the thread pool (and, on a GPU, load the
    // kernels and raise the clocks); they are not counted.
    for step in 0..warmup + steps {
        let indices: Vec<u32> = (0..batch)
            .map(|i| ((step % 2) * batch + i) as u32)
            .collect();
        let start = Instant::now();
        stepper.step(
            &net,
            &mut params,
            &mut adam,
            &data,
            &indices,
            &views,
            step as u64,
            &mut log,
        )?;
        device.synchronize()?;
        if step >= warmup {
            times.push(start.elapsed());
        }
    }
    log.read()?;
    times.sort();
    Ok(times[times.len() / 2])
}

/// What the third of three training steps cost a GPU device (the first is the
/// warm-up that fills the allocator, the second, with the graph, the recording).
fn steady_state_counts(
    device: &Device,
    batch: usize,
    size: usize,
    graphs: bool,
) -> Result<Counters> {
    let data = split(device, 2 * batch)?;
    let (net, mut params, mut adam, mut stepper) = setup(device, batch, size, graphs)?;
    let mut log = StepLog::new(device, 3)?;
    let views = vec![View::IDENTITY; batch];
    let mut counts = None;
    for step in 0..3 {
        let indices: Vec<u32> = (0..batch)
            .map(|i| ((step % 2) * batch + i) as u32)
            .collect();
        device.take_counters();
        stepper.step(
            &net,
            &mut params,
            &mut adam,
            &data,
            &indices,
            &views,
            step as u64,
            &mut log,
        )?;
        counts = device.take_counters();
    }
    log.read()?;
    counts.context("only GPU devices count")
}

/// Prints the counts and adds them to `rows`.
fn report_counts(
    rows: &mut Vec<Value>,
    device: &Device,
    batch: usize,
    size: usize,
    graphs: bool,
) -> Result<()> {
    let c = steady_state_counts(device, batch, size, graphs)?;
    let copies = c.copies_to_device + c.copies_to_host;
    println!(
        "  batch {batch:>3}  {size:>3}x{size:<3}  graph {:<3}  {} launches ({} replays of \
         {} kernels), {} allocations, {} memsets, {copies} copies, {} host waits per step; \
         peak memory {:.1} MiB",
        if graphs { "on" } else { "off" },
        c.launches,
        c.graph_replays,
        c.replayed_launches,
        c.allocations,
        c.memsets,
        c.host_waits,
        c.peak_bytes as f64 / (1 << 20) as f64,
    );
    rows.push(json!({
        "device": device.name(),
        "batch": batch,
        "image_size": size,
        "graph": graphs,
        "launches_per_step": c.launches,
        "graph_replays_per_step": c.graph_replays,
        "replayed_launches_per_step": c.replayed_launches,
        "allocations_per_step": c.allocations,
        "memsets_per_step": c.memsets,
        "copies_per_step": copies,
        "host_waits_per_step": c.host_waits,
        "peak_device_bytes_per_step": c.peak_bytes,
        "measured_over": "the third of three steps (the first fills the allocator, the \
                          second records the graph)",
    }));
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn report(
    rows: &mut Vec<Value>,
    device: &Device,
    batch: usize,
    size: usize,
    graphs: bool,
    steps: usize,
    t: Duration,
) {
    let images_per_s = batch as f64 / t.as_secs_f64();
    println!(
        "  batch {batch:>3}  {size:>3}x{size:<3}  {:>4}  graph {:<3}  {:>8.1} ms/step  \
         {images_per_s:>8.1} images/s  (median of {steps})",
        device.precision(),
        if graphs { "on" } else { "off" },
        t.as_secs_f64() * 1e3,
    );
    rows.push(json!({
        "device": device.name(),
        "precision": device.precision().name(),
        "batch": batch,
        "image_size": size,
        "graph": graphs,
        "ms_per_step": t.as_secs_f64() * 1e3,
        "images_per_s": images_per_s,
        "steps_timed": steps,
    }));
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = !args.iter().any(|a| a == "--bench");
    let gpu_only = args.iter().any(|a| a == "--gpu-only");
    // On the GPU devices: with the step graph and without, or only without.
    let graph_modes: &[bool] = if args.iter().any(|a| a == "--no-graph") {
        &[false]
    } else {
        &[true, false]
    };
    let json_path = match args.iter().position(|a| a == "--json") {
        Some(i) => PathBuf::from(args.get(i + 1).context("--json needs a path")?),
        None => PathBuf::from("target/bench-train-step.json"),
    };
    let precisions = match args.iter().position(|a| a == "--precisions") {
        Some(i) => args
            .get(i + 1)
            .context("--precisions needs a list, e.g. f32,tf32,bf16")?
            .split(',')
            .map(|p| Precision::parse(p.trim()))
            .collect::<Result<Vec<_>>>()?,
        None => Precision::ALL.to_vec(),
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
            for &precision in &precisions {
                gpu.set_precision(precision)?;
                for (batch, steps) in [(16, 20), (128, 10)] {
                    for &graphs in graph_modes {
                        let t = median_step(gpu, batch, 224, graphs, 3, steps)?;
                        report(&mut rows, gpu, batch, 224, graphs, steps, t);
                    }
                }
            }
            gpu.set_precision(Precision::Tf32)?;
            println!("what a steady-state step costs the host on {}", gpu.name());
            for batch in [16, 128] {
                for &graphs in graph_modes {
                    report_counts(&mut rows, gpu, batch, 224, graphs)?;
                }
            }
        }
        Err(why) => println!("GPU figures need a GPU ({why})"),
    }

    if !quick {
        let emu = Device::emu();
        println!("what a steady-state step costs the host on emu (the GPU layer's counts)");
        for batch in [16, 128] {
            for &graphs in graph_modes {
                report_counts(&mut rows, &emu, batch, 32, graphs)?;
            }
        }
    }

    if !gpu_only {
        let device = Device::cpu();
        println!("train step on {}", device.name());
        for (size, steps) in [(32, 10), (224, 3)] {
            let steps = if quick { 1 } else { steps };
            if quick && size > 32 {
                continue;
            }
            // The CPU records no graph.
            let t = median_step(&device, BATCH, size, false, 1, steps)?;
            report(&mut rows, &device, BATCH, size, false, steps, t);
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
