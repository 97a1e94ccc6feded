//! The op set every device implements, on raw buffers and validated geometry: one
//! method per kernel, forward and backward spelled out. Shape checking happens once,
//! above it, in `ops`.

use std::sync::Arc;

use anyhow::{bail, Result};

use super::buffer::{Buffer, Words};
use super::geometry::{AdamStep, ChannelView, ConvGeometry, LinearGeometry, PoolGeometry};
use super::gpu::Counters;
use super::precision::Precision;
use super::resize::{ImageShape, Normalize};

/// One output part of a convolution: filters `w [view.len, c_in, k, k]` and bias
/// `b [view.len]`, whose output lands in channels `view` of `y [n, view.total, oh, ow]`.
pub struct ConvOutput<'a> {
    pub w: &'a Buffer<f32>,
    pub b: &'a Buffer<f32>,
    pub y: &'a mut Buffer<f32>,
    pub view: ChannelView,
}

/// The gradient of one output part, read in place: channels `view` of
/// `dy [n, view.total, oh, ow]`. When the forward applied ReLU, `relu_y` is its output
/// (the same shape, read through the same view), and the gradient is masked by `y > 0`.
#[derive(Clone, Copy)]
pub struct ConvOutputGrad<'a> {
    pub dy: &'a Buffer<f32>,
    pub relu_y: Option<&'a Buffer<f32>>,
    pub view: ChannelView,
}

/// The op set. Every buffer argument holds exactly the elements its geometry implies.
pub trait Backend: Send + Sync {
    fn name(&self) -> String;

    /// A real GPU: decides the default preset.
    fn is_gpu(&self) -> bool {
        false
    }

    /// The arithmetic of the conv and linear GEMMs (`--precision`); the CPU's is f32.
    fn precision(&self) -> Precision {
        Precision::F32
    }

    /// Chooses it for the ops launched from now on; the CPU refuses anything but f32.
    fn set_precision(&self, precision: Precision) -> Result<()> {
        if precision != Precision::F32 {
            bail!(
                "--precision {precision}: the {} device computes in f32 only (tf32 and bf16 \
                 are for the cuda and emu devices)",
                self.name()
            );
        }
        Ok(())
    }

    /// Waits until every op queued so far has finished. Ops on a GPU return once
    /// launched; on the CPU and the emulator they have finished by then (the default).
    fn synchronize(&self) -> Result<()> {
        Ok(())
    }

    /// The CUDA stream every op of a cuda device runs on, in order; `None` elsewhere.
    fn cuda_stream(&self) -> Option<Arc<cudarc::driver::CudaStream>> {
        None
    }

    /// What a GPU device did since this was last asked (launches, allocations,
    /// memsets, copies, host waits, peak memory; see gpu/runtime.rs); `None` on the CPU.
    fn take_counters(&self) -> Option<Counters> {
        None
    }

    /// Free bytes of the device's own memory; `None` where tensors live in host memory.
    fn memory_free(&self) -> Option<Result<u64>> {
        None
    }

    fn upload_f32(&self, data: Vec<f32>) -> Result<Buffer<f32>>;
    fn upload_u32(&self, data: Vec<u32>) -> Result<Buffer<u32>>;
    fn upload_u8(&self, data: Vec<u8>) -> Result<Buffer<u8>>;
    fn download_f32(&self, buffer: &Buffer<f32>) -> Result<Vec<f32>>;
    fn download_u32(&self, buffer: &Buffer<u32>) -> Result<Vec<u32>>;
    /// Sets every element to zero, in order with the ops (a memset on a GPU).
    fn fill_zeros_u32(&self, buffer: &mut Buffer<u32>) -> Result<()>;
    /// Copies `data` over the whole of `buffer`, in order with the ops (one copy).
    fn write_u32(&self, buffer: &mut Buffer<u32>, data: &[u32]) -> Result<()>;

    /// Whether this device can record a step and replay it (`begin_graph`): the GPU
    /// devices (cuda's stream capture, the emulator's launch list); not the CPU.
    fn records_graphs(&self) -> bool {
        false
    }
    /// From now until `end_graph`, ops are recorded instead of run. Nothing recorded
    /// may allocate device memory, memset or copy from the host, or wait: a recording
    /// follows a warm-up run of the same ops, which leaves the caching allocator with
    /// every buffer they take and uploads every table they use.
    fn begin_graph(&self) -> Result<()> {
        bail!("{} cannot record a graph of its ops", self.name())
    }
    /// Ends the recording; returns its id for `replay_graph`. The buffers the recorded
    /// ops took stay the graph's until `drop_graph`.
    fn end_graph(&self) -> Result<u64> {
        bail!("{} cannot record a graph of its ops", self.name())
    }
    /// Runs the recorded ops again, on the buffers they were recorded with: one call.
    fn replay_graph(&self, _id: u64) -> Result<()> {
        bail!("{} cannot replay a graph of its ops", self.name())
    }
    fn drop_graph(&self, _id: u64) {}

    /// `len` copies of `value`, made on the device (no upload).
    fn full_f32(&self, len: usize, value: f32) -> Result<Buffer<f32>>;

    /// `a + b`, elementwise.
    fn add(&self, a: &Buffer<f32>, b: &Buffer<f32>) -> Result<Buffer<f32>>;

    /// A buffer of `len` elements whose contents are unspecified: for outputs that ops
    /// fill completely (an Inception block's output, which its branches write in parts).
    fn alloc_f32(&self, len: usize) -> Result<Buffer<f32>>;

    /// Convolution with its epilogue: each output part gets `conv(x, part.w) + part.b`,
    /// then ReLU when `relu`, stored in its view of `part.y`. `g.c_out` is the parts'
    /// total; there is one part, or three (an Inception block's fused 1x1 convolutions).
    fn conv2d_fwd(
        &self,
        x: &Buffer<f32>,
        parts: &mut [ConvOutput],
        g: &ConvGeometry,
        relu: bool,
    ) -> Result<()>;
    /// The input gradient from every part's output gradient (`w[i]` is part i's filters),
    /// added to `into` (the gradient gathered so far) when given, else in a new buffer.
    fn conv2d_bwd_data(
        &self,
        grads: &[ConvOutputGrad],
        w: &[&Buffer<f32>],
        g: &ConvGeometry,
        into: Option<Buffer<f32>>,
    ) -> Result<Buffer<f32>>;
    /// Returns `(dw, db)` of every part.
    fn conv2d_bwd_filter(
        &self,
        x: &Buffer<f32>,
        grads: &[ConvOutputGrad],
        g: &ConvGeometry,
    ) -> Result<Vec<(Buffer<f32>, Buffer<f32>)>>;

    fn relu_fwd(&self, x: &Buffer<f32>) -> Result<Buffer<f32>>;
    /// `dx = dy` where the forward output `y` is positive, else 0.
    fn relu_bwd(&self, y: &Buffer<f32>, dy: &Buffer<f32>) -> Result<Buffer<f32>>;

    /// Returns the output and, per output element, the index (`h * w + w`, within its
    /// plane) of the input element it took.
    fn max_pool_fwd(&self, x: &Buffer<f32>, g: &PoolGeometry)
        -> Result<(Buffer<f32>, Buffer<u32>)>;
    fn max_pool_bwd(
        &self,
        dy: &Buffer<f32>,
        argmax: &Buffer<u32>,
        g: &PoolGeometry,
    ) -> Result<Buffer<f32>>;

    /// Average pooling without padding (divisor `kh * kw`).
    fn avg_pool_fwd(&self, x: &Buffer<f32>, g: &PoolGeometry) -> Result<Buffer<f32>>;
    fn avg_pool_bwd(&self, dy: &Buffer<f32>, g: &PoolGeometry) -> Result<Buffer<f32>>;

    /// `x * mask / (1 - p)`, the mask drawn by `dropout_keeps(seed, index, p)`, the
    /// seed read from two words in device memory (low, high; see `seed_words`).
    /// Forward and backward are the same map, so one method serves both.
    fn dropout(&self, x: &Buffer<f32>, p: f32, seed: Words) -> Result<Buffer<f32>>;

    fn linear_fwd(
        &self,
        x: &Buffer<f32>,
        w: &Buffer<f32>,
        b: &Buffer<f32>,
        g: &LinearGeometry,
    ) -> Result<Buffer<f32>>;
    fn linear_bwd_data(
        &self,
        dy: &Buffer<f32>,
        w: &Buffer<f32>,
        g: &LinearGeometry,
    ) -> Result<Buffer<f32>>;
    /// Returns `(dw, db)`.
    fn linear_bwd_weight(
        &self,
        x: &Buffer<f32>,
        dy: &Buffer<f32>,
        g: &LinearGeometry,
    ) -> Result<(Buffer<f32>, Buffer<f32>)>;

    /// Mean softmax cross-entropy of `logits [n, classes]` against targets
    /// `(1 - smoothing)·onehot(labels) + smoothing / classes`: returns the one-element
    /// loss and the softmax probabilities (kept for backward).
    fn cross_entropy_fwd(
        &self,
        logits: &Buffer<f32>,
        labels: &Buffer<u32>,
        n: usize,
        classes: usize,
        smoothing: f32,
    ) -> Result<(Buffer<f32>, Buffer<f32>)>;
    /// `dlogits = dloss * (probs - targets) / n`, the targets as in the forward.
    #[allow(clippy::too_many_arguments)]
    fn cross_entropy_bwd(
        &self,
        probs: &Buffer<f32>,
        labels: &Buffer<u32>,
        dloss: &Buffer<f32>,
        n: usize,
        classes: usize,
        smoothing: f32,
    ) -> Result<Buffer<f32>>;
    /// How many rows have their (first) largest logit at the label.
    fn correct_count(
        &self,
        logits: &Buffer<f32>,
        labels: &Buffer<u32>,
        n: usize,
        classes: usize,
    ) -> Result<usize>;

    /// Records a training step without the host waiting for it: with `slot` =
    /// `cursor[0]` (then advanced by one), `losses[slot]` = the one-element `loss` and
    /// `correct[slot]` = the correct count of `logits`; `diverged[0]` = 1 when the loss
    /// is NaN or infinite (it stays 1). A slot past the end is not written.
    #[allow(clippy::too_many_arguments)]
    fn record_step(
        &self,
        loss: &Buffer<f32>,
        logits: &Buffer<f32>,
        labels: &Buffer<u32>,
        n: usize,
        classes: usize,
        cursor: &mut Buffer<u32>,
        losses: &mut Buffer<f32>,
        correct: &mut Buffer<u32>,
        diverged: &mut Buffer<u32>,
    ) -> Result<()>;

    /// `labels[indices[i]]` for each index: a batch's labels from its split's.
    fn gather_labels(&self, labels: &Buffer<u32>, indices: Words) -> Result<Buffer<u32>>;

    /// Gathers u8 images of `shape` (`[count, channels, h, w]`) at `indices`, reads
    /// each through its augmentation view (`views`, one `View::word` per index),
    /// resizes each channel plane to `size x size` floats in [0, 1] (bilinear,
    /// align_corners=False), then normalises them: `(x - mean[c]) / std[c]`.
    fn resize_images(
        &self,
        images: &Buffer<u8>,
        shape: ImageShape,
        indices: Words,
        views: Words,
        size: usize,
        norm: Normalize,
    ) -> Result<Buffer<f32>>;

    /// One Adam step over every parameter, in place; none at all while `skip` (a
    /// one-element flag on the device, `record_step`'s `diverged`) is nonzero. The
    /// step's own scalars come from device memory: `scalars` holds
    /// `AdamScalars::words` (from `hyper.scalars()`); of `hyper` only the betas and
    /// eps are read.
    #[allow(clippy::too_many_arguments)]
    fn adam_step(
        &self,
        params: &mut [&mut Buffer<f32>],
        grads: &[&Buffer<f32>],
        m: &mut [&mut Buffer<f32>],
        v: &mut [&mut Buffer<f32>],
        hyper: &AdamStep,
        scalars: Words,
        skip: Option<&Buffer<u32>>,
    ) -> Result<()>;
}
