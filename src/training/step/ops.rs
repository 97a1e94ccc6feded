//! The ops of one training step: forward in training mode, mean cross-entropy, the
//! step log, backward, Adam.

use anyhow::Result;

use crate::engine::autograd::{Parameters, Tape};
use crate::engine::device::Words;
use crate::engine::nn::{GoogLeNet, Mode};
use crate::engine::ops::{Labels, Seed};
use crate::engine::optim::{Adam, StepLog, StepResult};
use crate::engine::tensor::Tensor;

/// One optimizer step: forward in training mode, mean cross-entropy, backward, Adam;
/// the loss and correct count go to `log`, on the device, unread. Once the log has
/// seen a NaN or infinite loss, Adam leaves the weights alone. The seed and Adam's
/// scalars are uploaded for the step; the training loop writes them with its batch
/// instead (stepper.rs).
pub fn train_step_logged(
    net: &GoogLeNet,
    params: &mut Parameters,
    adam: &mut Adam,
    images: &Tensor,
    labels: &Labels,
    dropout_seed: u64,
    log: &mut StepLog,
) -> Result<()> {
    let backend = images.device().backend();
    let scalars = backend.upload_u32(adam.next_scalars().words().to_vec())?;
    let seed = Seed::Value(dropout_seed).on(images.device())?;
    step_ops(
        net,
        params,
        adam,
        images,
        labels,
        seed,
        Words::whole(&scalars),
        log,
    )
}

/// The ops of a training step once its batch is on the device, its dropout seed and
/// Adam's scalars (`Adam::next_scalars`) read from device memory: what a recorded
/// step records.
#[allow(clippy::too_many_arguments)]
pub(crate) fn step_ops(
    net: &GoogLeNet,
    params: &mut Parameters,
    adam: &mut Adam,
    images: &Tensor,
    labels: &Labels,
    dropout_seed: Seed,
    adam_scalars: Words,
    log: &mut StepLog,
) -> Result<()> {
    let mut tape = Tape::new();
    let logits = net.forward(&mut tape, params, images, Mode::Train { dropout_seed })?;
    let loss = tape.cross_entropy(&logits, labels)?;
    log.record(&loss.value, &logits.value, labels)?;
    let grads = tape.backward(&loss, params)?;
    adam.step_unless_diverged(params, &grads, adam_scalars, log)
}

/// One step as `train_step_logged`, its loss and correct count read back at once.
/// A NaN or infinite loss is returned without updating anything.
pub fn train_step(
    net: &GoogLeNet,
    params: &mut Parameters,
    adam: &mut Adam,
    images: &Tensor,
    labels: &Labels,
    dropout_seed: u64,
) -> Result<StepResult> {
    let mut log = StepLog::new(images.device(), 1)?;
    train_step_logged(net, params, adam, images, labels, dropout_seed, &mut log)?;
    Ok(log.read()?[0])
}
