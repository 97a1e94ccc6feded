//! What a steady-state training step costs the host on a GPU device (issue 9): the
//! counts of the shared GPU layer (device/gpu/runtime.rs) over one step, as the
//! training loop runs it, after a warm-up step. The counts do not depend on the GPU,
//! so the emulator's are the cuda device's; at 32x32 they are those of 224x224 but
//! for the backward-filter split-K reductions, which follow the image size.

mod common;

use anyhow::Result;
use googlenet::augment::batch_views;
use googlenet::batch::DeviceSplit;
use googlenet::data::Split;
use googlenet::train::{train_step_logged, StepLog};
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
        rows: 28,
        cols: 28,
    }
}

/// The counters of `steps` training steps, one entry each.
fn count_steps(device: &Device, steps: usize) -> Result<Vec<Counters>> {
    let data = DeviceSplit::upload(device, &split(), None)?;
    let (net, mut params) =
        GoogLeNet::new(device, GoogLeNetConfig::default(), Init::KaimingNormal, 0)?;
    let mut adam = Adam::new(&params, 1e-3)?;
    let mut log = StepLog::new(device, steps)?;
    device.take_counters();
    let mut counts = Vec::new();
    for step in 0..steps {
        let indices: Vec<u32> = (0..BATCH)
            .map(|i| ((step * BATCH + i) % 64) as u32)
            .collect();
        // The quick recipe's batch: augmented, with smoothed labels.
        let views = batch_views(0, step as u64, BATCH);
        let (images, labels) = data.batch(&indices, &views, SIZE, Normalize::FASHION_MNIST, 0.1)?;
        train_step_logged(
            &net,
            &mut params,
            &mut adam,
            &images,
            &labels,
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

/// One test body on purpose: two emulated runs in parallel threads can deadlock the
/// emulator's helper threads (see the report on kernels/emu/cuda_emu.cpp's Helpers).
fn steady_state_steps_stay_within_budget(device: Device) -> Result<()> {
    let counts = count_steps(&device, 3)?;
    let (warm_up, step) = (counts[0], counts[1]);
    eprintln!("warm-up step: {warm_up:?}\nsteady-state step: {step:?}");
    assert!(warm_up.allocations > 0, "the first step fills the pool");
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
        step.copies_to_device, 2,
        "only the batch's indices and augmentation views are uploaded"
    );
    assert!(
        step.launches <= LAUNCH_BUDGET,
        "{} launches per step, budget {LAUNCH_BUDGET}",
        step.launches
    );
    // No kernel of a step needs zeroed memory: every output is written whole, and the
    // step log's slot counter lives on the device.
    assert_eq!(
        step.memsets, 0,
        "a steady-state step needs no zeroed memory"
    );
    assert!(step.peak_bytes > 0 && step.peak_bytes <= step.reserved_bytes);
    // Every steady-state step gets the same buffers in the same order (what a captured
    // CUDA graph replays), and costs the same.
    assert_eq!(counts[1], counts[2]);
    Ok(())
}

device_tests!(on [emu, cuda]: steady_state_steps_stay_within_budget);
