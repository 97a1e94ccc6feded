//! The named training configurations `train --preset` offers.

use anyhow::{bail, Result};

use crate::train::TrainConfig;

pub const PRESETS: [&str; 3] = ["tutorial", "recommended", "quick"];

/// `tutorial`: the tutorial's run as written: 224x224, batch 16, Adam lr 0.001,
/// 3 epochs, all data, PyTorch's default initialisation, inputs in [0, 1].
/// `recommended`: the same run with Kaiming-normal weights (zero biases) and inputs
/// normalised by Fashion-MNIST's mean and std, which lets it start learning at once.
/// `quick`: `recommended`'s settings at 32x32 on half the training set for one
/// epoch: minutes on a CPU.
pub fn preset(name: &str) -> Result<TrainConfig> {
    let tutorial = TrainConfig {
        preset: name.to_string(),
        epochs: 3,
        batch_size: 16,
        lr: 0.001,
        image_size: 224,
        train_limit: None,
        test_limit: None,
        seed: 0,
        log_every: 100,
        init: "pytorch".to_string(),
        normalize: false,
        save_every: None,
        schedule: "constant".to_string(),
        warmup_steps: 0,
        min_lr_fraction: 0.0,
        augment: false,
        label_smoothing: 0.0,
    };
    Ok(match name {
        "tutorial" => tutorial,
        "recommended" => TrainConfig {
            init: "kaiming".to_string(),
            normalize: true,
            ..tutorial
        },
        "quick" => TrainConfig {
            epochs: 1,
            image_size: 32,
            train_limit: Some(30_000),
            init: "kaiming".to_string(),
            normalize: true,
            ..tutorial
        },
        other => bail!(
            "unknown preset {other:?}: expected one of {}",
            PRESETS.join(", ")
        ),
    })
}
