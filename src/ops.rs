//! The op set on tensors: shapes checked here, once, then handed to the device.
//!
//! Each function is one kernel call (forward or backward); the tape composes them.

use std::sync::Arc;

use anyhow::{ensure, Result};

use crate::augment::View;
use crate::device::geometry::{ConvGeometry, LinearGeometry, PoolGeometry};
use crate::device::{Buffer, Device};
use crate::tensor::Tensor;

/// Class labels on a device, each checked to be below `classes`, as cross-entropy's
/// targets: one-hot, or smoothed to `(1 - ε)·onehot + ε / classes`
/// (`nn.CrossEntropyLoss(label_smoothing=ε)`). Clones share the data.
#[derive(Clone)]
pub struct Labels {
    buffer: Arc<Buffer<u32>>,
    len: usize,
    classes: usize,
    smoothing: f32,
}

impl Labels {
    pub fn new(device: &Device, values: &[u32], classes: usize) -> Result<Labels> {
        if let Some((i, bad)) = values
            .iter()
            .enumerate()
            .find(|(_, &l)| l as usize >= classes)
        {
            anyhow::bail!(
                "label {bad} at position {i} is out of range: there are {classes} classes"
            );
        }
        Ok(Labels {
            buffer: Arc::new(device.backend().upload_u32(values.to_vec())?),
            len: values.len(),
            classes,
            smoothing: 0.0,
        })
    }

    /// The same labels as targets smoothed by `epsilon`, in [0, 1].
    pub fn smoothed(self, epsilon: f32) -> Result<Labels> {
        ensure!(
            (0.0..=1.0).contains(&epsilon),
            "label smoothing must be in [0, 1], got {epsilon}"
        );
        Ok(Labels {
            smoothing: epsilon,
            ..self
        })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn check_logits(&self, logits: &Tensor, what: &str) -> Result<[usize; 2]> {
        let [n, classes] = logits.dims2(what)?;
        ensure!(
            n == self.len && classes == self.classes,
            "{what}: logits of shape {:?} do not match {} labels over {} classes",
            logits.shape(),
            self.len,
            self.classes
        );
        Ok([n, classes])
    }
}

/// `x -> (x - mean) / std`, applied to freshly resized images.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Normalize {
    pub mean: f32,
    pub std: f32,
}

impl Normalize {
    /// The identity: inputs stay in [0, 1].
    pub const NONE: Normalize = Normalize {
        mean: 0.0,
        std: 1.0,
    };
    /// Fashion-MNIST's training-set pixel mean and standard deviation.
    pub const FASHION_MNIST: Normalize = Normalize {
        mean: 0.2860,
        std: 0.3530,
    };
}

/// A set of u8 grey images `[count, h, w]` kept on a device, from which batches are cut.
pub struct ByteImages {
    buffer: Buffer<u8>,
    count: usize,
    h: usize,
    w: usize,
    device: Device,
}

impl ByteImages {
    pub fn new(device: &Device, pixels: Vec<u8>, count: usize, h: usize, w: usize) -> Result<Self> {
        ensure!(
            pixels.len() == count * h * w,
            "{count} images of {h}x{w} need {} bytes, got {}",
            count * h * w,
            pixels.len()
        );
        Ok(ByteImages {
            buffer: device.backend().upload_u8(pixels)?,
            count,
            h,
            w,
            device: device.clone(),
        })
    }

    pub fn count(&self) -> usize {
        self.count
    }

    /// Images `indices`, bilinearly resized to `size x size`, as a `[B, 1, size, size]`
    /// batch of floats in [0, 1].
    pub fn resize_batch(&self, indices: &[u32], size: usize) -> Result<Tensor> {
        self.resize_batch_normalized(indices, size, Normalize::NONE)
    }

    /// As `resize_batch`, then `(x - mean) / std` (torchvision's Normalize).
    pub fn resize_batch_normalized(
        &self,
        indices: &[u32],
        size: usize,
        norm: Normalize,
    ) -> Result<Tensor> {
        let views = vec![View::IDENTITY; indices.len()];
        self.resize_batch_augmented(indices, &views, size, norm)
    }

    /// As `resize_batch_normalized`, each image read through its view (a shift and a
    /// mirror, src/augment.rs) before it is resized.
    pub fn resize_batch_augmented(
        &self,
        indices: &[u32],
        views: &[View],
        size: usize,
        norm: Normalize,
    ) -> Result<Tensor> {
        ensure!(size > 0, "image size must be positive");
        ensure!(
            views.len() == indices.len(),
            "{} augmentation views for {} images",
            views.len(),
            indices.len()
        );
        if let Some(bad) = views.iter().find(|v| v.dy.abs() > 127 || v.dx.abs() > 127) {
            anyhow::bail!("augmentation view {bad:?} shifts by more than 127 pixels");
        }
        if let Some(&bad) = indices.iter().find(|&&i| i as usize >= self.count) {
            anyhow::bail!(
                "image index {bad} is out of range: the set holds {}",
                self.count
            );
        }
        let backend = self.device.backend();
        let indices_buffer = backend.upload_u32(indices.to_vec())?;
        let views_buffer = backend.upload_u32(views.iter().map(|v| v.word()).collect())?;
        let data = backend.resize_images(
            &self.buffer,
            self.h,
            self.w,
            &indices_buffer,
            &views_buffer,
            size,
            norm,
        )?;
        Ok(Tensor::from_buffer(
            &self.device,
            &[indices.len(), 1, size, size],
            data,
        ))
    }
}

/// Where each max-pool output came from, kept for backward.
pub struct Argmax(Buffer<u32>);

fn same_device(a: &Tensor, b: &Tensor, what: &str) -> Result<()> {
    ensure!(
        a.device().name() == b.device().name(),
        "{what}: tensors live on different devices ({} and {})",
        a.device().name(),
        b.device().name()
    );
    Ok(())
}

/// The geometry of `conv2d(x, w, b)` after checking every shape against the others.
pub fn conv2d_geometry(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    stride: usize,
    pad: usize,
) -> Result<ConvGeometry> {
    let input = x.dims4("conv2d input")?;
    let [c_out, c_in, kh, kw] = w.dims4("conv2d weight")?;
    ensure!(
        kh == kw,
        "conv2d: only square kernels are supported, got {kh}x{kw}"
    );
    ensure!(
        c_in == input[1],
        "conv2d: input {:?} has {} channels but weight {:?} expects {c_in}",
        x.shape(),
        input[1],
        w.shape()
    );
    ensure!(
        b.shape() == [c_out],
        "conv2d: bias shape {:?} does not match weight {:?} (expected [{c_out}])",
        b.shape(),
        w.shape()
    );
    same_device(x, w, "conv2d")?;
    ConvGeometry::new(input, c_out, kh, stride, pad)
}

pub fn conv2d(x: &Tensor, w: &Tensor, b: &Tensor, g: &ConvGeometry) -> Result<Tensor> {
    let y = x
        .device()
        .backend()
        .conv2d_fwd(x.buffer(), w.buffer(), b.buffer(), g)?;
    Ok(Tensor::from_buffer(x.device(), &g.output_shape(), y))
}

fn check_output_grad(dy: &Tensor, expected: &[usize], what: &str) -> Result<()> {
    ensure!(
        dy.shape() == expected,
        "{what}: gradient of shape {:?} does not match the output shape {expected:?}",
        dy.shape()
    );
    Ok(())
}

pub fn conv2d_bwd_data(dy: &Tensor, w: &Tensor, g: &ConvGeometry) -> Result<Tensor> {
    check_output_grad(dy, &g.output_shape(), "conv2d backward")?;
    let dx = dy
        .device()
        .backend()
        .conv2d_bwd_data(dy.buffer(), w.buffer(), g)?;
    Ok(Tensor::from_buffer(dy.device(), &g.input_shape(), dx))
}

/// Returns `(dw, db)`.
pub fn conv2d_bwd_filter(x: &Tensor, dy: &Tensor, g: &ConvGeometry) -> Result<(Tensor, Tensor)> {
    check_output_grad(dy, &g.output_shape(), "conv2d backward")?;
    let (dw, db) = dy
        .device()
        .backend()
        .conv2d_bwd_filter(x.buffer(), dy.buffer(), g)?;
    Ok((
        Tensor::from_buffer(dy.device(), &g.weight_shape(), dw),
        Tensor::from_buffer(dy.device(), &[g.c_out], db),
    ))
}

pub fn relu(x: &Tensor) -> Result<Tensor> {
    let y = x.device().backend().relu_fwd(x.buffer())?;
    Ok(Tensor::from_buffer(x.device(), x.shape(), y))
}

pub fn relu_bwd(y: &Tensor, dy: &Tensor) -> Result<Tensor> {
    y.ensure_same_shape(dy, "relu backward")?;
    let dx = y.device().backend().relu_bwd(y.buffer(), dy.buffer())?;
    Ok(Tensor::from_buffer(y.device(), y.shape(), dx))
}

pub fn max_pool(x: &Tensor, g: &PoolGeometry) -> Result<(Tensor, Argmax)> {
    ensure!(
        x.shape() == g.input_shape(),
        "max pool: input {:?} does not match {:?}",
        x.shape(),
        g.input_shape()
    );
    let (y, argmax) = x.device().backend().max_pool_fwd(x.buffer(), g)?;
    Ok((
        Tensor::from_buffer(x.device(), &g.output_shape(), y),
        Argmax(argmax),
    ))
}

pub fn max_pool_bwd(dy: &Tensor, argmax: &Argmax, g: &PoolGeometry) -> Result<Tensor> {
    check_output_grad(dy, &g.output_shape(), "max pool backward")?;
    let dx = dy
        .device()
        .backend()
        .max_pool_bwd(dy.buffer(), &argmax.0, g)?;
    Ok(Tensor::from_buffer(dy.device(), &g.input_shape(), dx))
}

pub fn avg_pool(x: &Tensor, g: &PoolGeometry) -> Result<Tensor> {
    ensure!(
        x.shape() == g.input_shape(),
        "average pool: input {:?} does not match {:?}",
        x.shape(),
        g.input_shape()
    );
    ensure!(g.pad == 0, "average pool: padding is not supported");
    let y = x.device().backend().avg_pool_fwd(x.buffer(), g)?;
    Ok(Tensor::from_buffer(x.device(), &g.output_shape(), y))
}

pub fn avg_pool_bwd(dy: &Tensor, g: &PoolGeometry) -> Result<Tensor> {
    check_output_grad(dy, &g.output_shape(), "average pool backward")?;
    let dx = dy.device().backend().avg_pool_bwd(dy.buffer(), g)?;
    Ok(Tensor::from_buffer(dy.device(), &g.input_shape(), dx))
}

/// Concatenates NCHW tensors along channels; all must agree on N, H and W.
pub fn concat_channels(xs: &[&Tensor]) -> Result<Tensor> {
    ensure!(!xs.is_empty(), "concat: nothing to concatenate");
    let [n, _, h, w] = xs[0].dims4("concat")?;
    let mut parts = Vec::with_capacity(xs.len());
    for x in xs {
        let [xn, c, xh, xw] = x.dims4("concat")?;
        ensure!(
            [xn, xh, xw] == [n, h, w],
            "concat: shapes {:?} and {:?} differ outside the channel axis",
            xs[0].shape(),
            x.shape()
        );
        parts.push((x.buffer(), c));
    }
    let channels = parts.iter().map(|(_, c)| c).sum();
    let y = xs[0].device().backend().concat_channels(&parts, n, h * w)?;
    Ok(Tensor::from_buffer(xs[0].device(), &[n, channels, h, w], y))
}

/// Channels `start .. start + len` of an NCHW tensor.
pub fn slice_channels(x: &Tensor, start: usize, len: usize) -> Result<Tensor> {
    let [n, c, h, w] = x.dims4("channel slice")?;
    ensure!(
        start + len <= c,
        "channel slice {start}..{} is outside {:?}",
        start + len,
        x.shape()
    );
    let y = x
        .device()
        .backend()
        .slice_channels(x.buffer(), n, c, h * w, start, len)?;
    Ok(Tensor::from_buffer(x.device(), &[n, len, h, w], y))
}

/// Inverted dropout with drop probability `p`; the same call with the same seed
/// applies the same mask (backward uses that).
pub fn dropout(x: &Tensor, p: f32, seed: u64) -> Result<Tensor> {
    ensure!(
        (0.0..1.0).contains(&p),
        "dropout probability {p} is not in [0, 1)"
    );
    let y = x.device().backend().dropout(x.buffer(), p, seed)?;
    Ok(Tensor::from_buffer(x.device(), x.shape(), y))
}

pub fn linear_geometry(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<LinearGeometry> {
    let [n, inp] = x.dims2("linear input")?;
    let [out, w_inp] = w.dims2("linear weight")?;
    ensure!(
        inp == w_inp,
        "linear: input {:?} has {inp} features but weight {:?} expects {w_inp}",
        x.shape(),
        w.shape()
    );
    ensure!(
        b.shape() == [out],
        "linear: bias shape {:?} does not match weight {:?} (expected [{out}])",
        b.shape(),
        w.shape()
    );
    same_device(x, w, "linear")?;
    Ok(LinearGeometry { n, inp, out })
}

pub fn linear(x: &Tensor, w: &Tensor, b: &Tensor, g: &LinearGeometry) -> Result<Tensor> {
    let y = x
        .device()
        .backend()
        .linear_fwd(x.buffer(), w.buffer(), b.buffer(), g)?;
    Ok(Tensor::from_buffer(x.device(), &[g.n, g.out], y))
}

pub fn linear_bwd_data(dy: &Tensor, w: &Tensor, g: &LinearGeometry) -> Result<Tensor> {
    check_output_grad(dy, &[g.n, g.out], "linear backward")?;
    let dx = dy
        .device()
        .backend()
        .linear_bwd_data(dy.buffer(), w.buffer(), g)?;
    Ok(Tensor::from_buffer(dy.device(), &[g.n, g.inp], dx))
}

/// Returns `(dw, db)`.
pub fn linear_bwd_weight(x: &Tensor, dy: &Tensor, g: &LinearGeometry) -> Result<(Tensor, Tensor)> {
    check_output_grad(dy, &[g.n, g.out], "linear backward")?;
    let (dw, db) = dy
        .device()
        .backend()
        .linear_bwd_weight(x.buffer(), dy.buffer(), g)?;
    Ok((
        Tensor::from_buffer(dy.device(), &[g.out, g.inp], dw),
        Tensor::from_buffer(dy.device(), &[g.out], db),
    ))
}

/// Softmax probabilities, kept by cross-entropy for its backward.
pub struct Probabilities(Tensor);

/// Mean softmax cross-entropy against the labels' (possibly smoothed) targets: a
/// one-element loss and the probabilities.
pub fn cross_entropy(logits: &Tensor, labels: &Labels) -> Result<(Tensor, Probabilities)> {
    let [n, classes] = labels.check_logits(logits, "cross-entropy")?;
    ensure!(n > 0, "cross-entropy of an empty batch");
    let (loss, probs) = logits.device().backend().cross_entropy_fwd(
        logits.buffer(),
        &labels.buffer,
        n,
        classes,
        labels.smoothing,
    )?;
    Ok((
        Tensor::from_buffer(logits.device(), &[1], loss),
        Probabilities(Tensor::from_buffer(logits.device(), &[n, classes], probs)),
    ))
}

pub fn cross_entropy_bwd(probs: &Probabilities, labels: &Labels, dloss: &Tensor) -> Result<Tensor> {
    let [n, classes] = labels.check_logits(&probs.0, "cross-entropy backward")?;
    ensure!(
        dloss.numel() == 1,
        "cross-entropy backward: the loss gradient must be one element"
    );
    let dz = probs.0.device().backend().cross_entropy_bwd(
        probs.0.buffer(),
        &labels.buffer,
        dloss.buffer(),
        n,
        classes,
        labels.smoothing,
    )?;
    Ok(Tensor::from_buffer(probs.0.device(), &[n, classes], dz))
}

/// Index of the first largest value of a row (torch.argmax's tie rule).
pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (j, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = j;
        }
    }
    best
}

/// Rows whose first largest logit is at the label.
pub fn correct_count(logits: &Tensor, labels: &Labels) -> Result<usize> {
    let [n, classes] = labels.check_logits(logits, "accuracy")?;
    logits
        .device()
        .backend()
        .correct_count(logits.buffer(), &labels.buffer, n, classes)
}
