//! The named training configurations `train --preset` offers.

use super::config::{DataSource, Preset, TrainConfig};
use crate::engine::device::Precision;
use crate::engine::nn::Init;
use crate::training::recipe::ScheduleKind;

/// `tutorial`: the tutorial's run as written: 224x224, batch 16, Adam lr 0.001
/// (constant), 3 epochs, all data, PyTorch's default initialisation, inputs in [0, 1],
/// no augmentation, plain labels.
/// `recommended`: the same run with Kaiming-normal weights (zero biases), inputs
/// normalised by Fashion-MNIST's mean and std (which lets it start learning at
/// once), and the quick recipe's schedule and label smoothing.
/// `quick`: the recipe measured best at equal wall time on 2 CPU cores
/// (docs/RESULTS.md): 32x32, all 60,000 images, batches of 64 (the CPU's fastest per
/// image of 16, 32 and 64), as many steps as fit in 9.5 minutes (at most 10 epochs),
/// cosine from 3e-3 after 100 warm-up steps down to 3e-5, label smoothing 0.1.
/// Augmentation (--augment true) measured worse at these lengths.
pub fn preset(name: Preset) -> TrainConfig {
    let tutorial = TrainConfig {
        preset: name,
        epochs: 3,
        batch_size: 16,
        lr: 0.001,
        image_size: 224,
        train_limit: None,
        test_limit: None,
        seed: 0,
        log_every: 100,
        init: Init::PyTorchDefault,
        normalize: false,
        save_every: None,
        schedule: ScheduleKind::Constant,
        warmup_steps: 0,
        min_lr_fraction: 0.0,
        augment: false,
        label_smoothing: 0.0,
        no_graph: false,
        // The CPU's; `train` records the device's (tf32 on a GPU) or --precision's.
        precision: Precision::F32,
        time_budget_minutes: None,
        data: DataSource::FashionMnist,
        test_fraction: None,
        store_size: None,
        channels: None,
        skip_bad_images: false,
    };
    match name {
        Preset::Tutorial => tutorial,
        Preset::Recommended => TrainConfig {
            init: Init::KaimingNormal,
            normalize: true,
            ..recipe(tutorial)
        },
        Preset::Quick => TrainConfig {
            epochs: 10,
            batch_size: 64,
            lr: 0.003,
            time_budget_minutes: Some(QUICK_MINUTES),
            image_size: 32,
            init: Init::KaimingNormal,
            normalize: true,
            ..recipe(tutorial)
        },
    }
}

/// The quick preset's time budget: with the program's start and end, the run stays
/// within 10 minutes.
pub const QUICK_MINUTES: f64 = 9.5;

/// The quick recipe's schedule and loss laid over `base`.
fn recipe(base: TrainConfig) -> TrainConfig {
    TrainConfig {
        schedule: ScheduleKind::Cosine,
        warmup_steps: 100,
        min_lr_fraction: 0.01,
        label_smoothing: 0.1,
        ..base
    }
}
