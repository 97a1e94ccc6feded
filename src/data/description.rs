//! What a model trained on a data set must know of it to be fed as it was trained:
//! the class names (label `i` is `classes[i]`), the channels and side its images are
//! stored at, and each channel's pixel mean and standard deviation on the training
//! split. Checkpoints record it; `eval` and `predict` read it back.

use anyhow::{ensure, Result};
use serde::{Deserialize, Serialize};

use super::fashion_mnist::{CLASS_NAMES, IMAGE_SIDE};
use super::folder::MAX_CLASSES;
use super::split::Split;
use crate::engine::device::{Normalize, MAX_CHANNELS};

/// Fashion-MNIST's published training-set pixel mean and standard deviation (the
/// `recommended` and `quick` presets' normalisation since the start).
const FASHION_MNIST_MEAN: f32 = 0.2860;
const FASHION_MNIST_STD: f32 = 0.3530;

/// A data set as a model sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataDescription {
    /// By label.
    pub classes: Vec<String>,
    /// 1 (grey) or 3 (RGB).
    pub channels: usize,
    /// The side of the square images as stored (before a run's own resize).
    pub store_side: usize,
    /// Per channel, of pixel values in [0, 1].
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl DataDescription {
    /// Fashion-MNIST's: ten classes, grey 28x28, its published mean and std. Runs
    /// saved before data sets were described trained on it.
    pub fn fashion_mnist() -> DataDescription {
        DataDescription {
            classes: CLASS_NAMES.iter().map(|c| c.to_string()).collect(),
            channels: 1,
            store_side: IMAGE_SIDE,
            mean: vec![FASHION_MNIST_MEAN],
            std: vec![FASHION_MNIST_STD],
        }
    }

    pub fn is_fashion_mnist(&self) -> bool {
        *self == DataDescription::fashion_mnist()
    }

    /// `classes` and the statistics of `train`, a split of square images: each
    /// channel's mean and (population) standard deviation over every pixel of every
    /// image, from exact integer sums, so the figures do not depend on the threads.
    pub fn measure(classes: Vec<String>, train: &Split) -> Result<DataDescription> {
        ensure!(!train.is_empty(), "no training images to measure");
        ensure!(
            train.rows == train.cols,
            "images of {}x{} are not square",
            train.rows,
            train.cols
        );
        let plane = train.rows * train.cols;
        let mut sums = vec![(0u64, 0u64); train.channels];
        for image in train.images.chunks_exact(train.channels * plane) {
            for (sum, pixels) in sums.iter_mut().zip(image.chunks_exact(plane)) {
                for &p in pixels {
                    sum.0 += p as u64;
                    sum.1 += (p as u64) * (p as u64);
                }
            }
        }
        let n = (train.len() * plane) as f64;
        let (mean, std) = sums
            .iter()
            .map(|&(sum, squares)| {
                let mean = sum as f64 / n / 255.0;
                let square_mean = squares as f64 / n / (255.0 * 255.0);
                (
                    mean as f32,
                    (square_mean - mean * mean).max(0.0).sqrt() as f32,
                )
            })
            .unzip();
        Ok(DataDescription {
            classes,
            channels: train.channels,
            store_side: train.rows,
            mean,
            std,
        })
    }

    /// Fails for a description no data set has (a hand-edited state.json): fewer than
    /// two classes or more than labels name, channels other than 1 or 3, not
    /// a mean and std per channel, or none of its figures finite.
    pub fn validate(&self) -> Result<()> {
        ensure!(
            (2..=MAX_CLASSES).contains(&self.classes.len()),
            "the data description has {} classes: 2 to {MAX_CLASSES} are supported",
            self.classes.len()
        );
        ensure!(
            (self.channels == 1 || self.channels == MAX_CHANNELS)
                && self.mean.len() == self.channels
                && self.std.len() == self.channels,
            "the data description has {} channels, {} means and {} standard deviations: \
             expected 1 or {MAX_CHANNELS} channels and a mean and std for each",
            self.channels,
            self.mean.len(),
            self.std.len()
        );
        ensure!(
            self.store_side > 0,
            "the data description's store side is 0"
        );
        ensure!(
            self.mean
                .iter()
                .chain(&self.std)
                .all(|v| v.is_finite() && *v >= 0.0),
            "the data description's means {:?} and deviations {:?} are not all finite and \
             non-negative",
            self.mean,
            self.std
        );
        Ok(())
    }

    /// The normalisation `(x - mean[c]) / std[c]`; an error when the training images'
    /// pixels do not vary on a channel (a zero deviation).
    pub fn normalization(&self) -> Result<Normalize> {
        self.validate()?;
        ensure!(
            self.std.iter().all(|&s| s > 0.0),
            "the training images' pixels do not vary (standard deviations {:?}), so they \
             cannot be normalised: pass --normalize false",
            self.std
        );
        Normalize::per_channel(&self.mean, &self.std)
    }
}
