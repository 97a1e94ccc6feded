//! Everything that decides what a run computes (`TrainConfig`), each setting with a
//! fixed set of values an enum, and the bounds every numeric setting is checked
//! against before a run starts.

use std::fmt;

use anyhow::{ensure, Result};
use clap::ValueEnum;
use serde::{Deserialize, Serialize};

use crate::engine::device::{Normalize, Precision};
use crate::engine::nn::Init;
use crate::training::recipe::{Schedule, ScheduleKind};

/// Upper bounds of the numeric settings: far beyond any useful run (the source images
/// are 28x28; a GPU fits a few thousand 224x224 images), low enough that every size
/// derived from them fits its integer type. Memory is checked separately (training/memory.rs).
pub const MAX_EPOCHS: usize = 10_000;
pub const MAX_BATCH_SIZE: usize = 4096;
pub const MAX_IMAGE_SIZE: usize = 1024;
pub const MAX_IMAGES: usize = 100_000_000;
pub const MAX_STEPS: usize = 1_000_000_000;
pub const MAX_LR: f64 = 10.0;

/// Everything that decides what a run computes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub preset: Preset,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub image_size: usize,
    /// Use only the first N training / test images (None: all).
    pub train_limit: Option<usize>,
    pub test_limit: Option<usize>,
    pub seed: u64,
    pub log_every: usize,
    /// `pytorch` (the tutorial's default initialisation) or `kaiming`.
    pub init: Init,
    /// Normalise inputs by Fashion-MNIST's mean and std (otherwise they stay in [0, 1]).
    pub normalize: bool,
    /// Also checkpoint every N steps (None: only at epoch ends).
    pub save_every: Option<usize>,
    /// The learning rate per step (recipe/schedule.rs): `constant` (`lr` throughout) or
    /// `cosine` (linear warm-up over `warmup_steps`, then down to `lr · min_lr_fraction`).
    /// Fields below default to the tutorial's when a saved state lacks them.
    #[serde(default)]
    pub schedule: ScheduleKind,
    #[serde(default)]
    pub warmup_steps: u64,
    #[serde(default)]
    pub min_lr_fraction: f64,
    /// Random crop with padding and left-right mirror of training images
    /// (recipe/augment.rs).
    #[serde(default)]
    pub augment: bool,
    /// Cross-entropy against `(1 - ε)·onehot + ε / 10` instead of the one-hot labels.
    #[serde(default)]
    pub label_smoothing: f64,
    /// `--no-graph`: on a GPU device, launch every op of every step instead of
    /// recording each batch size's step once and replaying it (a CUDA graph,
    /// step/stepper.rs). The results are the same either way.
    #[serde(default)]
    pub no_graph: bool,
    /// The conv and linear GEMMs' arithmetic (engine/device/precision.rs): `tf32`,
    /// `bf16` or `f32`. Runs saved before the flag existed computed in f32.
    #[serde(default = "f32_precision")]
    pub precision: Precision,
}

/// The named configurations (presets.rs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    Tutorial,
    Recommended,
    Quick,
}

impl Preset {
    pub const ALL: [Preset; 3] = [Preset::Tutorial, Preset::Recommended, Preset::Quick];

    /// The name `--preset` takes, and run directories start with.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Tutorial => "tutorial",
            Preset::Recommended => "recommended",
            Preset::Quick => "quick",
        }
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

fn f32_precision() -> Precision {
    Precision::F32
}

impl TrainConfig {
    pub fn normalization(&self) -> Normalize {
        if self.normalize {
            Normalize::FASHION_MNIST
        } else {
            Normalize::NONE
        }
    }

    pub fn schedule(&self) -> Result<Schedule> {
        Schedule::new(self.schedule, self.warmup_steps, self.min_lr_fraction)
    }

    pub fn validate(&self) -> Result<()> {
        ensure!(self.epochs > 0, "--epochs must be at least 1");
        ensure!(self.batch_size > 0, "--batch-size must be at least 1");
        ensure!(
            self.lr > 0.0 && self.lr.is_finite(),
            "--lr must be a positive number, got {}",
            self.lr
        );
        ensure!(
            self.lr <= MAX_LR,
            "--lr must be at most {MAX_LR} (Adam moves each weight by about lr per step), got {}",
            self.lr
        );
        ensure!(
            self.image_size >= 8,
            "--image-size must be at least 8 (GoogLeNet halves it five times), got {}",
            self.image_size
        );
        ensure!(self.log_every > 0, "--log-every must be at least 1");
        ensure!(
            self.train_limit != Some(0),
            "--train-limit must be at least 1"
        );
        ensure!(
            self.test_limit != Some(0),
            "--test-limit must be at least 1"
        );
        ensure!(
            self.save_every != Some(0),
            "--save-every must be at least 1"
        );
        for (flag, value, max) in [
            ("--epochs", Some(self.epochs), MAX_EPOCHS),
            ("--batch-size", Some(self.batch_size), MAX_BATCH_SIZE),
            ("--image-size", Some(self.image_size), MAX_IMAGE_SIZE),
            ("--train-limit", self.train_limit, MAX_IMAGES),
            ("--test-limit", self.test_limit, MAX_IMAGES),
            ("--log-every", Some(self.log_every), MAX_STEPS),
            ("--save-every", self.save_every, MAX_STEPS),
        ] {
            if let Some(value) = value {
                ensure!(value <= max, "{flag} must be at most {max}, got {value}");
            }
        }
        ensure!(
            (0.0..1.0).contains(&self.label_smoothing),
            "--label-smoothing must be in [0, 1), got {}",
            self.label_smoothing
        );
        self.schedule()?;
        Ok(())
    }
}
