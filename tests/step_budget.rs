//! What a steady-state training step costs the host on a GPU device (issue 9): the
//! counts of the shared GPU layer (device/gpu/runtime.rs) over one step, as the
//! training loop runs it, after a warm-up step. The counts do not depend on the GPU,
//! so the emulator's are the cuda device's; at 32x32 they are those of 224x224 but
//! for the backward-filter split-K reductions, which follow the image size.
//!
//! With the step graph (src/training/step/stepper.rs) a steady step is one replay of the recorded
//! step and one copy (the step parameters); the emulator counts the kernels the
//! replay ran, which are held to the same budget. With `--no-graph` it is the same
//! kernels, launched one by one.

mod common;

use anyhow::Result;
use googlenet::data::Split;
use googlenet::engine::optim::StepLog;
use googlenet::training::recipe::batch_views;
use googlenet::training::step::DeviceSplit;
use googlenet::training::step::{BatchSettings, Stepper};
use googlenet::{Adam, Counters, Device, GoogLeNet, GoogLeNetConfig, Init, Normalize};

const BATCH: usize = 16;
const SIZE: usize = 32;

/// Issue 9's budget for a step at batch 16 (tests/launches.rs adds the launches that
/// only 224x224's split-K reductions make, and holds that to the same budget).
const LAUNCH_BUDGET: u64 = 200;

/// 64 28x28 images of a few bands, labels 0..9 in turn.
fn split() -> Split {
    let n = 64;
    Split {
        images: (0..n * 28 * 28).map(|i| ((i * 37) % 251) as u8).collect(),
        labels: (0..n).map(|i| (i % 10) as u8).collect(),
        channels: 1,
        rows: 28,
        cols: 28,
    }
}

/// The counters of `steps` training steps, one entry each, run as the training loop
/// runs them, with the step graph or without.
fn count_steps(device: &Device, steps: usize, graphs: bool) -> Result<Vec<Counters>> {
    let data = DeviceSplit::upload(device, &split(), None, 10)?;
    let (net, mut params) =
        GoogLeNet::new(device, GoogLeNetConfig::default(), Init::KaimingNormal, 0)?;
    let mut adam = Adam::new(&params, 1e-3)?;
    let mut log = StepLog::new(device, steps)?;
    // The quick recipe's batch: augmented, with smoothed labels.
    let settings = BatchSettings {
        image_size: SIZE,
        norm: Normalize::FASHION_MNIST,
        smoothing: 0.1,
    };
    let mut stepper = Stepper::new(device, BATCH, settings, graphs)?;
    device.take_counters();
    let mut counts = Vec::new();
    for step in 0..steps {
        let indices: Vec<u32> = (0..BATCH)
            .map(|i| ((step * BATCH + i) % 64) as u32)
            .collect();
        let views = batch_views(0, step as u64, BATCH);
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
        counts.push(device.take_counters().expect("a GPU device counts"));
    }
    // The steps really ran: their losses are finite.
    for result in log.read()? {
        assert!(result.loss.is_finite(), "{result:?}");
    }
    Ok(counts)
}

/// What every steady-state step, with the graph or without, must hold to.
fn assert_steady(step: &Counters) {
    assert_eq!(step.allocations, 0, "a steady-state step allocates nothing");
    assert_eq!(
        step.host_waits, 0,
        "a steady-state step never waits for the GPU"
    );
    assert_eq!(
        step.copies_to_host, 0,
        "nothing is read back outside log steps"
    );
    assert_eq!(
        step.copies_to_device, 1,
        "only the step parameters (seed, Adam's scalars, indices, views) are uploaded"
    );
    // No kernel of a step needs zeroed memory: every output is written whole, and the
    // step log's slot counter lives on the device.
    assert_eq!(
        step.memsets, 0,
        "a steady-state step needs no zeroed memory"
    );
    assert!(step.peak_bytes > 0 && step.peak_bytes <= step.reserved_bytes);
}

/// One test body on purpose: two emulated runs in parallel threads can deadlock the
/// emulator's helper threads (see the report on kernels/emu/cuda_emu.cpp's Helpers).
fn steady_state_steps_stay_within_budget(device: Device) -> Result<()> {
    let counts = count_steps(&device, 3, false)?;
    let (warm_up, step) = (counts[0], counts[1]);
    eprintln!("--no-graph: warm-up step: {warm_up:?}\nsteady-state step: {step:?}");
    assert!(warm_up.allocations > 0, "the first step fills the pool");
    assert_steady(&step);
    assert_eq!(step.graph_replays, 0);
    assert!(
        step.launches <= LAUNCH_BUDGET,
        "{} launches per step, budget {LAUNCH_BUDGET}",
        step.launches
    );
    // Every steady-state step gets the same buffers in the same order (what a captured
    // CUDA graph replays), and costs the same.
    assert_eq!(counts[1], counts[2]);

    // With the graph: a warm-up, a recorded step (replayed at once), then replays.
    let graphed = count_steps(&device, 4, true)?;
    let (recorded, replayed) = (graphed[1], graphed[2]);
    eprintln!("graph: recorded step: {recorded:?}\nreplayed step: {replayed:?}");
    assert_eq!(
        (graphed[0].launches, graphed[0].graph_replays),
        (step.launches, 0),
        "the warm-up runs as without the graph"
    );
    assert_eq!(
        (recorded.launches, recorded.graph_replays),
        (0, 1),
        "a recorded step launches nothing itself, then replays"
    );
    assert_steady(&replayed);
    assert_eq!(
        (replayed.launches, replayed.graph_replays),
        (0, 1),
        "a steady step is one replay, no launch of its own"
    );
    assert_eq!(
        replayed.replayed_launches, step.launches,
        "the replay runs the kernels the step launches without the graph"
    );
    assert_eq!(graphed[2], graphed[3]);
    Ok(())
}

device_tests!(on [emu, cuda]: steady_state_steps_stay_within_budget);
