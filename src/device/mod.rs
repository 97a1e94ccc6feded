//! Devices and the op set every device implements.
//!
//! `Backend` is the op set at the level of raw buffers and validated geometry: one
//! method per kernel, forward and backward spelled out. Shape checking happens once,
//! above it, in `ops`; the tape and the layers only ever call `ops`.
//! `Device` is the cheap, cloneable handle a tensor carries.

mod cpu;
pub mod cuda;
pub mod emu;
pub mod geometry;
pub mod gpu;

use std::fmt;
use std::sync::Arc;

use anyhow::{bail, Result};

use crate::ops::Normalize;
pub use cpu::CpuBackend;
use cuda::CudaDriver;
use emu::EmuDriver;
use geometry::{AdamStep, ConvGeometry, LinearGeometry, PoolGeometry};
use gpu::GpuBackend;

/// Memory owned by a device: plain vectors on the CPU (and the emulator, whose
/// "device memory" is host memory), device memory on a CUDA GPU.
pub enum Buffer<T> {
    Host(Vec<T>),
    Cuda(cudarc::driver::CudaSlice<T>),
}

impl<T> Buffer<T> {
    pub fn len(&self) -> usize {
        match self {
            Buffer::Host(v) => v.len(),
            Buffer::Cuda(s) => s.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The op set. Every buffer argument holds exactly the elements its geometry implies.
pub trait Backend: Send + Sync {
    fn name(&self) -> String;

    /// A real GPU: decides the default preset.
    fn is_gpu(&self) -> bool {
        false
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

    fn upload_f32(&self, data: Vec<f32>) -> Result<Buffer<f32>>;
    fn upload_u32(&self, data: Vec<u32>) -> Result<Buffer<u32>>;
    fn upload_u8(&self, data: Vec<u8>) -> Result<Buffer<u8>>;
    fn download_f32(&self, buffer: &Buffer<f32>) -> Result<Vec<f32>>;

    /// `a + b`, elementwise.
    fn add(&self, a: &Buffer<f32>, b: &Buffer<f32>) -> Result<Buffer<f32>>;

    fn conv2d_fwd(
        &self,
        x: &Buffer<f32>,
        w: &Buffer<f32>,
        b: &Buffer<f32>,
        g: &ConvGeometry,
    ) -> Result<Buffer<f32>>;
    fn conv2d_bwd_data(
        &self,
        dy: &Buffer<f32>,
        w: &Buffer<f32>,
        g: &ConvGeometry,
    ) -> Result<Buffer<f32>>;
    /// Returns `(dw, db)`.
    fn conv2d_bwd_filter(
        &self,
        x: &Buffer<f32>,
        dy: &Buffer<f32>,
        g: &ConvGeometry,
    ) -> Result<(Buffer<f32>, Buffer<f32>)>;

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

    /// Concatenates `[n, c_i, hw]` inputs along channels into `[n, Σc_i, hw]`.
    fn concat_channels(
        &self,
        parts: &[(&Buffer<f32>, usize)],
        n: usize,
        hw: usize,
    ) -> Result<Buffer<f32>>;
    /// Channels `start .. start + len` of `x [n, c, hw]`, as `[n, len, hw]`.
    fn slice_channels(
        &self,
        x: &Buffer<f32>,
        n: usize,
        c: usize,
        hw: usize,
        start: usize,
        len: usize,
    ) -> Result<Buffer<f32>>;

    /// `x * mask / (1 - p)`, the mask drawn by `dropout_keeps(seed, index, p)`.
    /// Forward and backward are the same map, so one method serves both.
    fn dropout(&self, x: &Buffer<f32>, p: f32, seed: u64) -> Result<Buffer<f32>>;

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

    /// Gathers `images [count, h, w]` (u8) at `indices`, reads each through its
    /// augmentation view (`views`, one `augment::View::word` per index), resizes it
    /// to `size x size` floats in [0, 1] (bilinear, align_corners=False), then
    /// normalises them: `(x - mean) / std`.
    #[allow(clippy::too_many_arguments)]
    fn resize_images(
        &self,
        images: &Buffer<u8>,
        h: usize,
        w: usize,
        indices: &Buffer<u32>,
        views: &Buffer<u32>,
        size: usize,
        norm: Normalize,
    ) -> Result<Buffer<f32>>;

    /// One Adam step over every parameter, in place.
    fn adam_step(
        &self,
        params: &mut [&mut Buffer<f32>],
        grads: &[&Buffer<f32>],
        m: &mut [&mut Buffer<f32>],
        v: &mut [&mut Buffer<f32>],
        hyper: &AdamStep,
    ) -> Result<()>;
}

/// A device handle; cloning it shares the device.
#[derive(Clone)]
pub struct Device(Arc<dyn Backend>);

impl Device {
    pub fn cpu() -> Device {
        Device(Arc::new(CpuBackend))
    }

    /// The CUDA kernels run on the CPU by the emulator (kernels/emu/): slow, for tests.
    pub fn emu() -> Device {
        Device(Arc::new(GpuBackend {
            driver: EmuDriver::new(),
        }))
    }

    /// GPU `ordinal`; an error (never a panic) without a driver, a GPU or kernels.
    pub fn cuda(ordinal: usize) -> Result<Device> {
        Ok(Device(Arc::new(GpuBackend {
            driver: CudaDriver::new(ordinal)?,
        })))
    }

    /// Parses a `--device` value: auto (the first GPU when there is a working one,
    /// else the CPU), cpu, emu, cuda, cuda:N.
    pub fn parse(name: &str) -> Result<Device> {
        match name {
            "cpu" => Ok(Device::cpu()),
            "emu" => Ok(Device::emu()),
            "cuda" => Device::cuda(0),
            "auto" if cuda::device_count() == 0 => Ok(Device::cpu()),
            "auto" => Device::cuda(0).or_else(|err| {
                eprintln!("warning: a GPU is present but unusable ({err:#}); using the CPU");
                Ok(Device::cpu())
            }),
            other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(ordinal)) => Device::cuda(ordinal),
                _ => {
                    bail!("--device {other:?} is unknown: expected auto, cpu, emu, cuda or cuda:N")
                }
            },
        }
    }

    pub fn name(&self) -> String {
        self.0.name()
    }

    pub fn is_gpu(&self) -> bool {
        self.0.is_gpu()
    }

    /// Waits until every op queued on this device so far has finished: on a GPU, ops
    /// return once launched, so host timers must synchronize first. A no-op on the CPU
    /// and the emulator, whose ops have finished when they return.
    pub fn synchronize(&self) -> Result<()> {
        self.0.synchronize()
    }

    /// The stream a cuda device runs every op on (`None` on the CPU and the emulator),
    /// so that benchmarks can time ops with CUDA events recorded on it and run other
    /// libraries' kernels (cuDNN) in the same order on the same GPU.
    pub fn cuda_stream(&self) -> Option<Arc<cudarc::driver::CudaStream>> {
        self.0.cuda_stream()
    }

    pub(crate) fn backend(&self) -> &dyn Backend {
        self.0.as_ref()
    }
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Device({})", self.name())
    }
}

/// The dropout mask, shared by every device so their masks agree bit for bit: a
/// counter-based hash (SplitMix64's finaliser) of the seed and the element index,
/// whose top 24 bits are a uniform draw `u` in [0, 1); the element is kept when `u >= p`.
/// Keyed by (seed, index) rather than a stream, so backward recomputes the mask
/// instead of storing it, and any device or thread order draws the same one.
pub fn dropout_keeps(seed: u64, index: u64, p: f32) -> bool {
    let mut z = seed ^ index.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let u = (z >> 40) as f32 * (1.0 / (1u64 << 24) as f32);
    u >= p
}
