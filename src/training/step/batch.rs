//! A split on the device, from which training batches are cut.
//!
//! Its images and labels are uploaded once; a batch uploads only its indices and its
//! augmentation views, from which the device gathers (augments and resizes) the images
//! and gathers the labels. A training step's batch reads them from its step
//! parameters (`gather`), written with the step's other values in one copy.

use anyhow::{bail, ensure, Result};

use super::params::StepParams;
use crate::data::Split;
use crate::engine::device::{view_words, Buffer, Device, ImageShape, Normalize, View, Words};
use crate::engine::ops::Labels;
use crate::engine::tensor::Tensor;

pub struct DeviceSplit {
    device: Device,
    images: Buffer<u8>,
    shape: ImageShape,
    classes: usize,
    labels: Vec<u32>,
    device_labels: Buffer<u32>,
}

impl DeviceSplit {
    /// The first `limit` samples of `split` (all without a limit), of `classes`
    /// classes, on `device`.
    pub fn upload(
        device: &Device,
        split: &Split,
        limit: Option<usize>,
        classes: usize,
    ) -> Result<DeviceSplit> {
        let split = split.truncated(limit.unwrap_or(usize::MAX));
        let labels: Vec<u32> = split.labels.iter().map(|&l| l as u32).collect();
        // Every label is checked once, here, so that gathered batches need no check.
        if let Some((i, bad)) = labels
            .iter()
            .enumerate()
            .find(|(_, &l)| l as usize >= classes)
        {
            bail!("label {bad} of sample {i} is out of range: there are {classes} classes");
        }
        ensure!(
            split.images.len() == split.len() * split.shape().image_bytes(),
            "a split of {} images of {:?} holds {} bytes",
            split.len(),
            split.shape(),
            split.images.len()
        );
        let backend = device.backend();
        let shape = split.shape();
        Ok(DeviceSplit {
            device: device.clone(),
            // The cut copy itself: on the CPU it is the device's buffer, no third copy.
            images: backend.upload_u8(split.images)?,
            shape,
            classes,
            device_labels: backend.upload_u32(labels.clone())?,
            labels,
        })
    }

    pub fn classes(&self) -> usize {
        self.classes
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The labels, on the host.
    pub fn labels(&self) -> &[u32] {
        &self.labels
    }

    /// Fails unless every index names a sample of the split: the device gathers
    /// without checking.
    pub fn check_indices(&self, indices: &[u32]) -> Result<()> {
        if let Some(&bad) = indices.iter().find(|&&i| i as usize >= self.len()) {
            bail!(
                "sample index {bad} is out of range: the split holds {}",
                self.len()
            );
        }
        Ok(())
    }

    /// The batch at `indices`: its images, each read through its view (a shift and a
    /// mirror, src/training/recipe/augment.rs; `View::IDENTITY` for none), resized to `size x size` and
    /// normalised, and its labels, smoothed by `smoothing`. Two uploads (the indices and
    /// the views), two launches.
    pub fn batch(
        &self,
        indices: &[u32],
        views: &[View],
        size: usize,
        norm: Normalize,
        smoothing: f32,
    ) -> Result<(Tensor, Labels)> {
        let words = view_words(views, indices.len())?;
        self.check_indices(indices)?;
        let backend = self.device.backend();
        let indices = backend.upload_u32(indices.to_vec())?;
        let views = backend.upload_u32(words)?;
        self.cut(
            Words::whole(&indices),
            Words::whole(&views),
            size,
            norm,
            smoothing,
        )
    }

    /// The batch a training step's parameters name (written with indices this split
    /// checked, `check_indices`): as `batch`, with no upload.
    pub fn gather(
        &self,
        params: &StepParams,
        size: usize,
        norm: Normalize,
        smoothing: f32,
    ) -> Result<(Tensor, Labels)> {
        self.cut(params.indices(), params.views(), size, norm, smoothing)
    }

    /// Two launches: the images, then the labels.
    fn cut(
        &self,
        indices: Words,
        views: Words,
        size: usize,
        norm: Normalize,
        smoothing: f32,
    ) -> Result<(Tensor, Labels)> {
        ensure!(size > 0, "image size must be positive");
        let backend = self.device.backend();
        let images = backend.resize_images(&self.images, self.shape, indices, views, size, norm)?;
        let shape = [indices.len, self.shape.channels, size, size];
        let images = Tensor::from_buffer(&self.device, &shape, images);
        let labels = backend.gather_labels(&self.device_labels, indices)?;
        Labels::from_device(labels, self.classes)
            .smoothed(smoothing)
            .map(|labels| (images, labels))
    }
}
