//! A recorded and replayed training step (src/training/step/stepper.rs, issue 9's CUDA graph) trains
//! exactly as the same steps launched op by op (`--no-graph`): the same losses,
//! correct counts, weights and Adam moments, bit for bit, over three epochs whose last
//! batch is shorter (so it is warmed up, recorded and replayed too), with a learning
//! rate, dropout seed and augmentation views that change every step. On the emulator
//! a replay runs the recorded launch list without the host step code, so a per-step
//! value baked into a launch argument instead of read from the step parameters makes
//! the replayed run differ.

mod common;

use anyhow::Result;
use googlenet::data::{epoch_order, Split};
use googlenet::engine::optim::StepLog;
use googlenet::training::recipe::batch_views;
use googlenet::training::step::DeviceSplit;
use googlenet::training::step::{BatchSettings, Stepper};
use googlenet::{Adam, Device, GoogLeNet, GoogLeNetConfig, Init, Normalize};

/// 40 images: batches of 16, 16 and 8.
const IMAGES: usize = 40;
const BATCH: usize = 16;
const EPOCHS: usize = 3;

fn split() -> Split {
    Split {
        images: (0..IMAGES * 28 * 28)
            .map(|i| ((i * 37) % 251) as u8)
            .collect(),
        labels: (0..IMAGES).map(|i| ((i * 7) % 10) as u8).collect(),
        channels: 1,
        rows: 28,
        cols: 28,
    }
}

/// Everything a run ends with, as bits.
#[derive(Debug, PartialEq)]
struct Run {
    /// Loss bits and correct count of every step, in order.
    log: Vec<(u32, usize)>,
    weights: Vec<u32>,
    moments: Vec<u32>,
    replays: u64,
}

fn train(device: &Device, graphs: bool) -> Result<Run> {
    let data = DeviceSplit::upload(device, &split(), None, 10)?;
    let (net, mut params) =
        GoogLeNet::new(device, GoogLeNetConfig::default(), Init::KaimingNormal, 5)?;
    let mut adam = Adam::new(&params, 1e-3)?;
    let settings = BatchSettings {
        image_size: 16,
        norm: Normalize::FASHION_MNIST,
        smoothing: 0.1,
    };
    let mut stepper = Stepper::new(device, BATCH, settings, graphs)?;
    assert_eq!(stepper.uses_graphs(), graphs, "both GPU devices record");
    let mut log = StepLog::new(device, 4)?;
    let mut results = Vec::new();
    device.take_counters();
    let mut step = 0u64;
    for epoch in 0..EPOCHS {
        for indices in epoch_order(IMAGES, 11, epoch).chunks(BATCH) {
            // A rate, a seed and views of each step's own.
            adam.lr = 1e-3 / (1.0 + step as f64);
            let views = batch_views(2, step, indices.len());
            stepper.step(
                &net,
                &mut params,
                &mut adam,
                &data,
                indices,
                &views,
                0x5eed ^ step,
                &mut log,
            )?;
            step += 1;
            // Read between replays, as the training loop does every --log-every steps.
            if step.is_multiple_of(3) {
                results.extend(log.read()?);
            }
        }
    }
    results.extend(log.read()?);
    assert_eq!(adam.steps_taken(), step);
    let replays = device.take_counters().map_or(0, |c| c.graph_replays);
    let bits = |tensors: &[googlenet::Tensor]| -> Result<Vec<u32>> {
        let mut out = Vec::new();
        for t in tensors {
            out.extend(t.to_vec()?.iter().map(|v| v.to_bits()));
        }
        Ok(out)
    };
    let weights: Vec<googlenet::Tensor> = params.iter().map(|p| p.value.clone()).collect();
    let (m, v) = adam.moments();
    Ok(Run {
        log: results
            .iter()
            .map(|r| (r.loss.to_bits(), r.correct))
            .collect(),
        weights: bits(&weights)?,
        moments: [bits(m)?, bits(v)?].concat(),
        replays,
    })
}

/// One body: two emulated runs in parallel threads can deadlock the emulator's helper
/// threads (see tests/step_budget.rs).
fn replayed_steps_train_like_launched_ones(device: Device) -> Result<()> {
    let launched = train(&device, false)?;
    let replayed = train(&device, true)?;
    assert_eq!(launched.replays, 0, "--no-graph replays nothing");
    // Full batches: warm-up, then recorded (and replayed) at the second step, replayed
    // at the 3 after; the short batch: warm-up, recorded, replayed in the third epoch.
    assert_eq!(replayed.replays, 5 + 2, "the steps that replay a recording");
    assert_eq!(replayed.log.len(), 3 * EPOCHS);
    assert!(
        replayed
            .log
            .iter()
            .all(|&(loss, _)| f32::from_bits(loss).is_finite()),
        "{:?}",
        replayed.log
    );
    assert_eq!(replayed.log, launched.log, "losses and correct counts");
    assert!(replayed.weights == launched.weights, "weights differ");
    assert!(
        replayed.moments == launched.moments,
        "Adam's moments differ"
    );
    Ok(())
}

device_tests!(on [emu, cuda]: replayed_steps_train_like_launched_ones);
