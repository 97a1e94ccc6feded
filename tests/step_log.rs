//! The step log (src/engine/optim/step_log.rs): a step's loss and correct count kept on the device
//! and read back later, and the divergence flag that stops Adam, on every device.

mod common;

use anyhow::Result;
use googlenet::engine::ops;
use googlenet::engine::optim::StepLog;
use googlenet::training::step::StepParams;
use googlenet::Parameters;
use googlenet::{Adam, Device, Gradients, Labels, Tensor};

/// Three steps' losses and logits go in; the same values and counts come out, in
/// order, and the log is empty after a read.
fn steps_read_back_in_order(device: Device) -> Result<()> {
    let mut log = StepLog::new(&device, 3)?;
    let labels = Labels::new(&device, &[2, 0, 1], 3)?;
    let mut expected = Vec::new();
    for step in 0..3 {
        let logits = common::random_tensor(&device, &[3, 3], -1.0, 1.0, step)?;
        let loss = Tensor::full(&device, &[1], 0.5 + step as f32)?;
        log.record(&loss, &logits, &labels)?;
        expected.push((0.5 + step as f32, ops::correct_count(&logits, &labels)?));
    }
    assert!(log.is_full());
    assert!(
        log.record(
            &Tensor::full(&device, &[1], 0.0)?,
            &common::random_tensor(&device, &[3, 3], -1.0, 1.0, 9)?,
            &labels
        )
        .is_err(),
        "a full log refuses more"
    );
    let read: Vec<(f32, usize)> = log.read()?.iter().map(|r| (r.loss, r.correct)).collect();
    assert_eq!(read, expected);
    assert!(log.read()?.is_empty());
    Ok(())
}

/// After a NaN loss is recorded, Adam leaves every parameter and moment alone, in
/// that step and the ones after, without the host reading anything.
fn a_nan_loss_stops_adam_on_the_device(device: Device) -> Result<()> {
    let mut params = Parameters::default();
    let start = vec![1.0, -2.0, 3.0, -4.0];
    params.push("w", Tensor::from_vec(&device, &[4], start.clone())?)?;
    let mut adam = Adam::new(&params, 0.1)?;
    let labels = Labels::new(&device, &[1], 2)?;
    let logits = Tensor::from_vec(&device, &[1, 2], vec![0.0, 1.0])?;
    let mut log = StepLog::new(&device, 3)?;
    let mut step_params = StepParams::new(&device, 1)?;
    let mut step = |params: &mut Parameters, loss: f32| -> Result<Vec<f32>> {
        log.record(&Tensor::full(&device, &[1], loss)?, &logits, &labels)?;
        let grad = Tensor::from_vec(&device, &[4], vec![0.5, -0.5, 0.25, 1.0])?;
        // Adam's scalars from step parameters, as in training (the batch is unused).
        step_params.write(0, adam.next_scalars(), &[0], &[0])?;
        adam.step_unless_diverged(
            params,
            &Gradients(vec![Some(grad)]),
            step_params.adam(),
            &log,
        )?;
        params.iter().next().unwrap().value.to_vec()
    };
    let after_good = step(&mut params, 0.7)?;
    assert_ne!(after_good, start, "a good step updates");
    assert_eq!(step(&mut params, f32::NAN)?, after_good);
    assert_eq!(step(&mut params, 0.7)?, after_good, "the flag stays set");
    let (m, v) = adam.moments();
    let moments_after_good = (m[0].to_vec()?, v[0].to_vec()?);
    let losses: Vec<f32> = log.read()?.iter().map(|r| r.loss).collect();
    assert_eq!(losses[0], 0.7);
    assert!(losses[1].is_nan());
    // The moments are those of the one good step: m = 0.1·g.
    assert_eq!(
        moments_after_good.0,
        [0.05, -0.05, 0.025, 0.1].map(|g: f32| g)
    );
    Ok(())
}

device_tests!(
    steps_read_back_in_order,
    a_nan_loss_stops_adam_on_the_device
);
