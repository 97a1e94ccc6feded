//! Everything that decides what a run computes (`TrainConfig`), each setting with a
//! fixed set of values an enum, and the bounds every numeric setting is checked
//! against before a run starts.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{bail, ensure, Result};
use clap::ValueEnum;
use serde::{Deserialize, Serialize};

use crate::data::DataDescription;
use crate::engine::device::{Normalize, Precision};
use crate::engine::nn::Init;
use crate::training::recipe::{Schedule, ScheduleKind, CALIBRATION_END};

/// Upper bounds of the numeric settings: far beyond any useful run (the source images
/// are 28x28; a GPU fits a few thousand 224x224 images), low enough that every size
/// derived from them fits its integer type. Memory is checked separately (training/memory.rs).
pub const MAX_EPOCHS: usize = 10_000;
pub const MAX_BATCH_SIZE: usize = 4096;
pub const MAX_IMAGE_SIZE: usize = 1024;
pub const MAX_IMAGES: usize = 100_000_000;
pub const MAX_STEPS: usize = 1_000_000_000;
pub const MAX_LR: f64 = 10.0;
/// A week.
pub const MAX_MINUTES: f64 = 10_080.0;

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
    /// `--time-budget`: train for as many steps as fit in this many minutes (at most
    /// `epochs`), planned once the step time is measured (run/budget.rs). None: all
    /// the epochs. Absent from the state.json of runs without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_budget_minutes: Option<f64>,
    /// `--data`: Fashion-MNIST (the default), or a folder of class folders. The fields
    /// below are a folder's (absent for Fashion-MNIST, so its runs write the
    /// state.json they always did): the fraction of each class held out for testing
    /// when the folder has no test split, the side images are decoded to, their
    /// channels, and whether bad image files are left out.
    #[serde(default, skip_serializing_if = "DataSource::is_fashion_mnist")]
    pub data: DataSource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_fraction: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_size: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<Channels>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub skip_bad_images: bool,
}

/// What a run trains on: `fashion-mnist`, or a folder of class folders (its path,
/// made absolute). In a state.json, the word or the path.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DataSource {
    #[default]
    FashionMnist,
    Folder(PathBuf),
}

impl DataSource {
    /// The word `--data` takes for Fashion-MNIST (a folder of that name is
    /// `./fashion-mnist`).
    pub const FASHION_MNIST: &'static str = "fashion-mnist";

    pub fn is_fashion_mnist(&self) -> bool {
        *self == DataSource::FashionMnist
    }
}

impl FromStr for DataSource {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<DataSource> {
        if text == DataSource::FASHION_MNIST {
            return Ok(DataSource::FashionMnist);
        }
        ensure!(
            !text.is_empty(),
            "--data takes a folder or {}",
            DataSource::FASHION_MNIST
        );
        let path = PathBuf::from(text);
        Ok(DataSource::Folder(
            std::path::absolute(&path).unwrap_or(path),
        ))
    }
}

impl TryFrom<String> for DataSource {
    type Error = anyhow::Error;

    fn try_from(text: String) -> Result<DataSource> {
        text.parse()
    }
}

impl From<DataSource> for String {
    fn from(source: DataSource) -> String {
        source.to_string()
    }
}

impl fmt::Display for DataSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataSource::FashionMnist => f.write_str(DataSource::FASHION_MNIST),
            DataSource::Folder(path) => write!(f, "{}", path.display()),
        }
    }
}

/// `--channels`: grey (1) or RGB (3); a number in a state.json.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(try_from = "u8", into = "u8")]
pub enum Channels {
    #[value(name = "1")]
    Grey,
    #[value(name = "3")]
    Rgb,
}

impl Channels {
    pub fn count(self) -> usize {
        match self {
            Channels::Grey => 1,
            Channels::Rgb => 3,
        }
    }

    pub fn from_count(count: usize) -> Result<Channels> {
        match count {
            1 => Ok(Channels::Grey),
            3 => Ok(Channels::Rgb),
            other => bail!("{other} channels: 1 (grey) or 3 (RGB) are supported"),
        }
    }
}

impl TryFrom<u8> for Channels {
    type Error = anyhow::Error;

    fn try_from(count: u8) -> Result<Channels> {
        Channels::from_count(count as usize)
    }
}

impl From<Channels> for u8 {
    fn from(channels: Channels) -> u8 {
        channels.count() as u8
    }
}

/// A folder's test fraction when `--test-fraction` is not given.
pub const DEFAULT_TEST_FRACTION: f64 = 0.1;

fn is_false(value: &bool) -> bool {
    !value
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
    /// The inputs' normalisation on `data`: its per-channel mean and std, or none.
    pub fn normalization(&self, data: &DataDescription) -> Result<Normalize> {
        if self.normalize {
            data.normalization()
        } else {
            Ok(Normalize::NONE)
        }
    }

    /// A fresh run's folder settings with their defaults filled in: the test
    /// fraction, and the store side (the image size). Fashion-MNIST's have none.
    pub fn with_folder_defaults(mut self) -> TrainConfig {
        if !self.data.is_fashion_mnist() {
            self.test_fraction.get_or_insert(DEFAULT_TEST_FRACTION);
            self.store_size.get_or_insert(self.image_size);
        }
        self
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
        self.validate_time_budget()?;
        self.validate_data()
    }

    fn validate_time_budget(&self) -> Result<()> {
        let Some(minutes) = self.time_budget_minutes else {
            return Ok(());
        };
        ensure!(
            minutes > 0.0 && minutes <= MAX_MINUTES,
            "--time-budget must be more than 0 and at most {MAX_MINUTES} minutes, got {minutes}"
        );
        // A cosine schedule's steps after its warm-up depend on the run's length, which
        // the plan fixes only after the step time is measured.
        ensure!(
            self.schedule == ScheduleKind::Constant || self.warmup_steps >= CALIBRATION_END,
            "--time-budget plans the run's length after timing its first {CALIBRATION_END} \
             steps, so a cosine schedule needs --warmup-steps of at least {CALIBRATION_END} \
             (got {}) or --schedule constant",
            self.warmup_steps
        );
        Ok(())
    }

    fn validate_data(&self) -> Result<()> {
        if self.data.is_fashion_mnist() {
            for (flag, given) in [
                ("--test-fraction", self.test_fraction.is_some()),
                ("--store-size", self.store_size.is_some()),
                ("--channels", self.channels.is_some()),
                ("--skip-bad-images", self.skip_bad_images),
            ] {
                ensure!(
                    !given,
                    "{flag} applies to --data DIR (a folder of class folders) only; \
                     Fashion-MNIST has its own test split, 28x28 grey images and checked files"
                );
            }
            return Ok(());
        }
        if let Some(fraction) = self.test_fraction {
            ensure!(
                fraction > 0.0 && fraction < 1.0,
                "--test-fraction must be between 0 and 1 (exclusive), got {fraction}"
            );
        }
        if let Some(side) = self.store_size {
            ensure!(
                (1..=MAX_IMAGE_SIZE).contains(&side),
                "--store-size must be from 1 to {MAX_IMAGE_SIZE}, got {side}"
            );
        }
        Ok(())
    }
}
