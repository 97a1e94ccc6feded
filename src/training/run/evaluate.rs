//! Test accuracy and the confusion matrix of a model over a whole split, in
//! evaluation mode.

use anyhow::Result;

use crate::data::Split;
use crate::engine::autograd::{Parameters, Tape};
use crate::engine::device::{argmax, Device, Normalize, View};
use crate::engine::nn::{GoogLeNet, Mode};
use crate::training::settings::TrainConfig;
use crate::training::step::DeviceSplit;

/// The batch evaluation runs at: the training batch, or 64 if that is larger.
pub fn eval_batch_size(train_batch: usize) -> usize {
    train_batch.max(64)
}

/// Test accuracy of the model over a whole split of `classes` classes, in evaluation
/// mode, its inputs normalised by `norm`.
#[allow(clippy::too_many_arguments)]
pub fn evaluate(
    device: &Device,
    net: &GoogLeNet,
    params: &Parameters,
    split: &Split,
    classes: usize,
    config: &TrainConfig,
    norm: Normalize,
    limit: Option<usize>,
) -> Result<(f64, Vec<Vec<u64>>)> {
    let data = DeviceSplit::upload(device, split, limit, classes)?;
    evaluate_split(net, params, &data, config, norm)
}

/// Accuracy and the confusion matrix (`confusion[true][predicted]`).
pub fn evaluate_split(
    net: &GoogLeNet,
    params: &Parameters,
    data: &DeviceSplit,
    config: &TrainConfig,
    norm: Normalize,
) -> Result<(f64, Vec<Vec<u64>>)> {
    let batch = eval_batch_size(config.batch_size);
    let classes = data.classes();
    let order: Vec<u32> = (0..data.len() as u32).collect();
    let mut confusion = vec![vec![0u64; classes]; classes];
    for indices in order.chunks(batch) {
        let views = vec![View::IDENTITY; indices.len()];
        let (images, _) = data.batch(indices, &views, config.image_size, norm, 0.0)?;
        let logits = net.forward(&mut Tape::no_grad(), params, &images, Mode::Eval)?;
        let scores = logits.value.to_vec()?;
        for (&i, row) in indices.iter().zip(scores.chunks(classes)) {
            confusion[data.labels()[i as usize] as usize][argmax(row)] += 1;
        }
    }
    let correct: u64 = (0..classes).map(|c| confusion[c][c]).sum();
    Ok((correct as f64 / data.len() as f64, confusion))
}
