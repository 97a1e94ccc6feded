//! The op set on tensors: shapes checked here, once, then handed to the device.
//!
//! Each function is one kernel call (forward or backward); the tape composes them.

use std::sync::Arc;

use anyhow::{ensure, Context, Result};

use crate::engine::device::geometry::{ChannelView, ConvGeometry, LinearGeometry, PoolGeometry};
use crate::engine::device::{
    seed_words, view_words, Buffer, Device, ImageShape, Normalize, View, Words, MAX_CHANNELS,
};
use crate::engine::tensor::Tensor;

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

    /// Labels already on the device, gathered there from a split whose labels were
    /// checked when it was uploaded.
    pub(crate) fn from_device(buffer: Buffer<u32>, classes: usize) -> Labels {
        Labels {
            len: buffer.len(),
            buffer: Arc::new(buffer),
            classes,
            smoothing: 0.0,
        }
    }

    pub(crate) fn buffer(&self) -> &Buffer<u32> {
        &self.buffer
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

/// A set of u8 images `[count, channels, h, w]` kept on a device, from which batches
/// are cut.
pub struct ByteImages {
    buffer: Buffer<u8>,
    count: usize,
    shape: ImageShape,
    device: Device,
}

impl ByteImages {
    /// `count` grey images of `h x w`.
    pub fn new(device: &Device, pixels: Vec<u8>, count: usize, h: usize, w: usize) -> Result<Self> {
        ByteImages::with_shape(device, pixels, count, ImageShape::grey(h, w))
    }

    /// `count` images of `shape`, each its channel planes one after the other.
    pub fn with_shape(
        device: &Device,
        pixels: Vec<u8>,
        count: usize,
        shape: ImageShape,
    ) -> Result<Self> {
        ensure!(
            (1..=MAX_CHANNELS).contains(&shape.channels),
            "images of {} channels: 1 to {MAX_CHANNELS} are supported",
            shape.channels
        );
        ensure!(
            pixels.len() == count * shape.image_bytes(),
            "{count} images of {}x{}x{} need {} bytes, got {}",
            shape.channels,
            shape.height,
            shape.width,
            count * shape.image_bytes(),
            pixels.len()
        );
        Ok(ByteImages {
            buffer: device.backend().upload_u8(pixels)?,
            count,
            shape,
            device: device.clone(),
        })
    }

    pub fn count(&self) -> usize {
        self.count
    }

    /// Images `indices`, bilinearly resized to `size x size`, as a
    /// `[B, channels, size, size]` batch of floats in [0, 1].
    pub fn resize_batch(&self, indices: &[u32], size: usize) -> Result<Tensor> {
        self.resize_batch_normalized(indices, size, Normalize::NONE)
    }

    /// As `resize_batch`, then `(x - mean[c]) / std[c]` (torchvision's Normalize).
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
    /// mirror, src/training/recipe/augment.rs) before it is resized.
    pub fn resize_batch_augmented(
        &self,
        indices: &[u32],
        views: &[View],
        size: usize,
        norm: Normalize,
    ) -> Result<Tensor> {
        ensure!(size > 0, "image size must be positive");
        let words = view_words(views, indices.len())?;
        if let Some(&bad) = indices.iter().find(|&&i| i as usize >= self.count) {
            anyhow::bail!(
                "image index {bad} is out of range: the set holds {}",
                self.count
            );
        }
        let backend = self.device.backend();
        let indices_buffer = backend.upload_u32(indices.to_vec())?;
        let views_buffer = backend.upload_u32(words)?;
        let data = backend.resize_images(
            &self.buffer,
            self.shape,
            Words::whole(&indices_buffer),
            Words::whole(&views_buffer),
            size,
            norm,
        )?;
        Ok(Tensor::from_buffer(
            &self.device,
            &[indices.len(), self.shape.channels, size, size],
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
    conv2d_parts_geometry(x, &[(w, b)], stride, pad)
}

/// The geometry of a convolution of `x` whose output channels come in parts, each with
/// its filters and bias `(w, b)` (all of one kernel size): `c_out` is their total.
pub fn conv2d_parts_geometry(
    x: &Tensor,
    filters: &[(&Tensor, &Tensor)],
    stride: usize,
    pad: usize,
) -> Result<ConvGeometry> {
    let input = x.dims4("conv2d input")?;
    ensure!(!filters.is_empty(), "conv2d: no filters");
    let mut c_out = 0;
    let mut kernel = None;
    for (w, b) in filters {
        let [out, c_in, kh, kw] = w.dims4("conv2d weight")?;
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
            b.shape() == [out],
            "conv2d: bias shape {:?} does not match weight {:?} (expected [{out}])",
            b.shape(),
            w.shape()
        );
        ensure!(
            *kernel.get_or_insert(kh) == kh,
            "conv2d: parts with different kernel sizes"
        );
        same_device(x, w, "conv2d")?;
        same_device(x, b, "conv2d")?;
        c_out += out;
    }
    ConvGeometry::new(input, c_out, kernel.unwrap_or(1), stride, pad)
}

/// A tensor of `shape` on `device` whose contents are unspecified: for outputs an op
/// fills completely.
pub(crate) fn alloc(device: &Device, shape: &[usize]) -> Result<Tensor> {
    let data = device.backend().alloc_f32(shape.iter().product())?;
    Ok(Tensor::from_buffer(device, shape, data))
}

/// `conv(x, w) + b`, then ReLU when `relu` (the epilogue), as a new tensor.
pub fn conv2d(x: &Tensor, w: &Tensor, b: &Tensor, g: &ConvGeometry, relu: bool) -> Result<Tensor> {
    let mut y = alloc(x.device(), &g.output_shape())?;
    conv2d_into(
        x,
        &mut [ConvPart {
            w,
            b,
            y: &mut y,
            offset: 0,
        }],
        g,
        relu,
    )?;
    Ok(y)
}

/// One output part of a convolution: filters `w` and bias `b`, whose output fills
/// channels `offset .. offset + w.shape()[0]` of `y` (the output's shape but for its
/// channel count).
pub struct ConvPart<'a> {
    pub w: &'a Tensor,
    pub b: &'a Tensor,
    pub y: &'a mut Tensor,
    pub offset: usize,
}

/// The view of `t` (NCHW, with the batch and plane of `g`'s output) that channels
/// `offset .. offset + len` make.
fn output_view(t: &Tensor, offset: usize, len: usize, g: &ConvGeometry) -> Result<ChannelView> {
    let [n, total, h, w] = t.dims4("conv2d output")?;
    ensure!(
        [n, h, w] == [g.n, g.oh, g.ow] && offset + len <= total,
        "conv2d: channels {offset}..{} of {:?} do not fit an output of shape {:?}",
        offset + len,
        t.shape(),
        g.output_shape()
    );
    Ok(ChannelView { offset, len, total })
}

/// Writes each part's `conv(x, w) + b` (then ReLU when `relu`) into its channel slice.
/// `g` is the convolution of all parts together (`conv2d_parts_geometry`).
pub fn conv2d_into(x: &Tensor, parts: &mut [ConvPart], g: &ConvGeometry, relu: bool) -> Result<()> {
    ensure!(
        x.shape() == g.input_shape(),
        "conv2d: input {:?} does not match {:?}",
        x.shape(),
        g.input_shape()
    );
    let mut channels = 0;
    let mut outputs = Vec::with_capacity(parts.len());
    for part in parts.iter_mut() {
        let len = part.w.shape()[0];
        ensure!(
            part.w.shape() == [len, g.c_in, g.k, g.k] && part.b.shape() == [len],
            "conv2d: weight {:?} and bias {:?} do not match {g:?}",
            part.w.shape(),
            part.b.shape()
        );
        same_device(x, part.y, "conv2d")?;
        let view = output_view(part.y, part.offset, len, g)?;
        channels += len;
        outputs.push(crate::engine::device::ConvOutput {
            w: part.w.buffer(),
            b: part.b.buffer(),
            y: part.y.buffer_mut()?,
            view,
        });
    }
    ensure!(
        channels == g.c_out,
        "conv2d: parts of {channels} channels for a convolution of {}",
        g.c_out
    );
    x.device()
        .backend()
        .conv2d_fwd(x.buffer(), &mut outputs, g, relu)
}

/// The gradient of one output part, read in place: channels `offset .. offset + len`
/// of `dy`. When the forward applied ReLU, `relu_y` is its output (`dy`'s shape), and
/// the gradient is masked by `y > 0` as it is read (ReLU's backward, fused).
#[derive(Clone, Copy)]
pub struct ConvGrad<'a> {
    pub dy: &'a Tensor,
    pub relu_y: Option<&'a Tensor>,
    pub offset: usize,
    pub len: usize,
}

impl<'a> ConvGrad<'a> {
    /// All of `dy`, no ReLU.
    pub fn whole(dy: &'a Tensor) -> ConvGrad<'a> {
        ConvGrad {
            dy,
            relu_y: None,
            offset: 0,
            len: dy.shape().get(1).copied().unwrap_or(0),
        }
    }
}

/// The parts' gradients as the device takes them, checked against `g`.
fn output_grads<'a>(
    grads: &[ConvGrad<'a>],
    g: &ConvGeometry,
) -> Result<Vec<crate::engine::device::ConvOutputGrad<'a>>> {
    let mut channels = 0;
    let mut out = Vec::with_capacity(grads.len());
    for gr in grads {
        let view = output_view(gr.dy, gr.offset, gr.len, g)
            .context("conv2d backward: an output gradient")?;
        if let Some(y) = gr.relu_y {
            y.ensure_same_shape(gr.dy, "conv2d backward (ReLU's mask)")?;
        }
        ensure!(
            gr.relu_y.is_some() == grads[0].relu_y.is_some(),
            "conv2d backward: parts disagree on ReLU"
        );
        channels += gr.len;
        out.push(crate::engine::device::ConvOutputGrad {
            dy: gr.dy.buffer(),
            relu_y: gr.relu_y.map(Tensor::buffer),
            view,
        });
    }
    ensure!(
        channels == g.c_out,
        "conv2d backward: gradients of {channels} channels for a convolution of {}",
        g.c_out
    );
    Ok(out)
}

/// The input gradient from every part's output gradient (`w[i]`: part i's filters),
/// added to `into` (the gradient gathered so far for the input) when given.
pub fn conv2d_bwd_data(
    grads: &[ConvGrad],
    w: &[&Tensor],
    g: &ConvGeometry,
    into: Option<Tensor>,
) -> Result<Tensor> {
    ensure!(
        grads.len() == w.len() && !w.is_empty(),
        "conv2d backward: {} gradients for {} filter sets",
        grads.len(),
        w.len()
    );
    let device = grads[0].dy.device();
    let parts = output_grads(grads, g)?;
    let filters: Vec<&Buffer<f32>> = w.iter().map(|w| w.buffer()).collect();
    let into = match into {
        None => None,
        Some(t) => {
            ensure!(
                t.shape() == g.input_shape(),
                "conv2d backward: the gradient to add to has shape {:?}, expected {:?}",
                t.shape(),
                g.input_shape()
            );
            match t.into_buffer() {
                Ok(buffer) => Some(buffer),
                // Shared elsewhere, so not ours to write: add a fresh result to it.
                Err(shared) => return conv2d_bwd_data(grads, w, g, None)?.add(&shared),
            }
        }
    };
    let dx = device
        .backend()
        .conv2d_bwd_data(&parts, &filters, g, into)?;
    Ok(Tensor::from_buffer(device, &g.input_shape(), dx))
}

/// Returns `(dw, db)` of every part.
pub fn conv2d_bwd_filter(
    x: &Tensor,
    grads: &[ConvGrad],
    g: &ConvGeometry,
) -> Result<Vec<(Tensor, Tensor)>> {
    ensure!(
        x.shape() == g.input_shape(),
        "conv2d backward: input {:?} does not match {:?}",
        x.shape(),
        g.input_shape()
    );
    let parts = output_grads(grads, g)?;
    let out = x
        .device()
        .backend()
        .conv2d_bwd_filter(x.buffer(), &parts, g)?;
    Ok(out
        .into_iter()
        .zip(grads)
        .map(|((dw, db), gr)| {
            (
                Tensor::from_buffer(x.device(), &[gr.len, g.c_in, g.k, g.k], dw),
                Tensor::from_buffer(x.device(), &[gr.len], db),
            )
        })
        .collect())
}

fn check_output_grad(dy: &Tensor, expected: &[usize], what: &str) -> Result<()> {
    ensure!(
        dy.shape() == expected,
        "{what}: gradient of shape {:?} does not match the output shape {expected:?}",
        dy.shape()
    );
    Ok(())
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

/// A dropout seed: a value, or two words (`seed_words`) in device memory that hold
/// it (a training step's, in its step parameters, src/training/step/params.rs, so that a
/// replayed step draws the mask of its own seed).
#[derive(Clone)]
pub enum Seed {
    Value(u64),
    Device { words: Arc<Buffer<u32>>, at: usize },
}

impl Seed {
    /// The seed in device memory: a `Value` is uploaded (once, for a forward and its
    /// backward).
    pub fn on(self, device: &Device) -> Result<Seed> {
        match self {
            Seed::Value(seed) => Ok(Seed::Device {
                words: Arc::new(device.backend().upload_u32(seed_words(seed).to_vec())?),
                at: 0,
            }),
            on_device => Ok(on_device),
        }
    }
}

impl From<u64> for Seed {
    fn from(seed: u64) -> Seed {
        Seed::Value(seed)
    }
}

impl std::fmt::Debug for Seed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Seed::Value(seed) => write!(f, "Seed({seed})"),
            Seed::Device { at, .. } => write!(f, "Seed(device words {at}..{})", at + 2),
        }
    }
}

/// Inverted dropout with drop probability `p`; the same call with the same seed
/// applies the same mask (backward uses that). A `Seed::Value` is uploaded first.
pub fn dropout(x: &Tensor, p: f32, seed: impl Into<Seed>) -> Result<Tensor> {
    ensure!(
        (0.0..1.0).contains(&p),
        "dropout probability {p} is not in [0, 1)"
    );
    let backend = x.device().backend();
    let y = match seed.into() {
        Seed::Value(seed) => {
            let words = backend.upload_u32(seed_words(seed).to_vec())?;
            backend.dropout(x.buffer(), p, Words::whole(&words))?
        }
        Seed::Device { words, at } => {
            let words = Words {
                buffer: &words,
                at,
                len: 2,
            };
            backend.dropout(x.buffer(), p, words)?
        }
    };
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

/// Rows whose first largest logit is at the label.
pub fn correct_count(logits: &Tensor, labels: &Labels) -> Result<usize> {
    let [n, classes] = labels.check_logits(logits, "accuracy")?;
    logits
        .device()
        .backend()
        .correct_count(logits.buffer(), &labels.buffer, n, classes)
}
