//! One full GoogLeNet training step (forward, backward, Adam) at batch 16, on the
//! CPU, at 32x32 and at 224x224: `cargo bench`. Prints the median step time and the
//! images per second.

use std::time::{Duration, Instant};

use anyhow::Result;
use googlenet::train::train_step;
use googlenet::{Adam, Device, GoogLeNet, GoogLeNetConfig, Init, Labels, Tensor};

const BATCH: usize = 16;

fn median_step(device: &Device, size: usize, steps: usize) -> Result<Duration> {
    let (net, mut params) =
        GoogLeNet::new(device, GoogLeNetConfig::default(), Init::PyTorchDefault, 0)?;
    let mut adam = Adam::new(&params, 1e-3)?;
    let pixels = (0..BATCH * size * size)
        .map(|i| (i % 251) as f32 / 251.0)
        .collect();
    let images = Tensor::from_vec(device, &[BATCH, 1, size, size], pixels)?;
    let labels = Labels::new(
        device,
        &(0..BATCH as u32).map(|i| i % 10).collect::<Vec<_>>(),
        10,
    )?;
    let mut times = Vec::new();
    // The first step warms the allocator and the thread pool; it is not counted.
    for step in 0..=steps {
        let start = Instant::now();
        train_step(&net, &mut params, &mut adam, &images, &labels, step as u64)?;
        if step > 0 {
            times.push(start.elapsed());
        }
    }
    times.sort();
    Ok(times[times.len() / 2])
}

fn main() -> Result<()> {
    // `cargo test --benches` runs this too; keep that run short.
    let quick = std::env::args().any(|a| a == "--test");
    let device = Device::cpu();
    println!("train step, batch {BATCH}, on {}", device.name());
    for (size, steps) in [(32, 10), (224, 3)] {
        let steps = if quick { 1 } else { steps };
        if quick && size > 32 {
            continue;
        }
        let t = median_step(&device, size, steps)?;
        println!(
            "  {size:>3}x{size:<3}  {:>8.1} ms/step  {:>7.1} images/s  (median of {steps})",
            t.as_secs_f64() * 1e3,
            BATCH as f64 / t.as_secs_f64()
        );
    }
    Ok(())
}
