//! `Tensor`: an f32 array of a given shape (NCHW for images), stored on a device.
//!
//! The data sits behind an `Arc`, so cloning a tensor (as the tape does to keep
//! activations for backward) never copies it.

use std::fmt;
use std::sync::Arc;

use anyhow::{bail, ensure, Context, Result};

use crate::engine::device::{Buffer, Device};

#[derive(Clone)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Arc<Buffer<f32>>,
    device: Device,
}

impl Tensor {
    /// Wraps a buffer the device produced; the caller vouches that it holds `shape`'s elements.
    pub(crate) fn from_buffer(device: &Device, shape: &[usize], data: Buffer<f32>) -> Tensor {
        debug_assert_eq!(data.len(), shape.iter().product::<usize>());
        Tensor {
            shape: shape.to_vec(),
            data: Arc::new(data),
            device: device.clone(),
        }
    }

    pub fn from_vec(device: &Device, shape: &[usize], data: Vec<f32>) -> Result<Tensor> {
        let numel: usize = shape.iter().product();
        ensure!(
            data.len() == numel,
            "shape {shape:?} holds {numel} elements, but {} were given",
            data.len()
        );
        let buffer = device.backend().upload_f32(data)?;
        Ok(Tensor::from_buffer(device, shape, buffer))
    }

    pub fn zeros(device: &Device, shape: &[usize]) -> Result<Tensor> {
        Tensor::full(device, shape, 0.0)
    }

    /// Made on the device: no host-to-device copy, so a training step can make its
    /// constants without one.
    pub fn full(device: &Device, shape: &[usize], value: f32) -> Result<Tensor> {
        let numel = shape.iter().product();
        let buffer = device.backend().full_f32(numel, value)?;
        Ok(Tensor::from_buffer(device, shape, buffer))
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub(crate) fn buffer(&self) -> &Buffer<f32> {
        &self.data
    }

    /// Mutable access for in-place updates (the optimizer); fails while another
    /// tensor (for example a tape that was not dropped) still shares the data.
    pub(crate) fn buffer_mut(&mut self) -> Result<&mut Buffer<f32>> {
        Arc::get_mut(&mut self.data).context(
            "tensor is shared (is a tape still holding it?) and cannot be updated in place",
        )
    }

    /// The buffer itself, when no other tensor shares it (for an op to write into);
    /// else the tensor back.
    pub(crate) fn into_buffer(self) -> Result<Buffer<f32>, Tensor> {
        let Tensor {
            shape,
            data,
            device,
        } = self;
        Arc::try_unwrap(data).map_err(|data| Tensor {
            shape,
            data,
            device,
        })
    }

    pub fn to_vec(&self) -> Result<Vec<f32>> {
        self.device.backend().download_f32(&self.data)
    }

    /// The single value of a one-element tensor (a loss, for example).
    pub fn scalar(&self) -> Result<f32> {
        ensure!(
            self.numel() == 1,
            "expected a one-element tensor, got shape {:?}",
            self.shape
        );
        Ok(self.to_vec()?[0])
    }

    /// The same data under another shape with as many elements.
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        let numel: usize = shape.iter().product();
        ensure!(
            numel == self.numel(),
            "cannot reshape {:?} ({} elements) to {shape:?} ({numel} elements)",
            self.shape,
            self.numel()
        );
        Ok(Tensor {
            shape: shape.to_vec(),
            data: self.data.clone(),
            device: self.device.clone(),
        })
    }

    /// The shape as `[N, C, H, W]`, or an error naming `what` and the actual shape.
    pub fn dims4(&self, what: &str) -> Result<[usize; 4]> {
        match self.shape[..] {
            [n, c, h, w] => Ok([n, c, h, w]),
            _ => bail!(
                "{what} expects a 4-d NCHW tensor, got shape {:?}",
                self.shape
            ),
        }
    }

    /// The shape as `[rows, cols]`, or an error naming `what` and the actual shape.
    pub fn dims2(&self, what: &str) -> Result<[usize; 2]> {
        match self.shape[..] {
            [r, c] => Ok([r, c]),
            _ => bail!("{what} expects a 2-d tensor, got shape {:?}", self.shape),
        }
    }

    /// Errors unless `other` has exactly this tensor's shape; names both shapes.
    pub fn ensure_same_shape(&self, other: &Tensor, what: &str) -> Result<()> {
        ensure!(
            self.shape == other.shape,
            "{what}: shapes differ: {:?} vs {:?}",
            self.shape,
            other.shape
        );
        Ok(())
    }

    /// Elementwise sum; used to accumulate gradients.
    pub fn add(&self, other: &Tensor) -> Result<Tensor> {
        self.ensure_same_shape(other, "add")?;
        let data = self.device.backend().add(&self.data, &other.data)?;
        Ok(Tensor::from_buffer(&self.device, &self.shape, data))
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tensor({:?} on {})", self.shape, self.device.name())
    }
}
