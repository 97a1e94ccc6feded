//! The shapes an op works on, validated once (in `ops`) and handed to every device,
//! so kernels never re-derive or re-check them.

use anyhow::{ensure, Result};

/// Output length of a sliding window: PyTorch's floor-mode formula.
pub fn window_output(input: usize, kernel: usize, stride: usize, pad: usize) -> Result<usize> {
    ensure!(stride > 0, "stride must be positive");
    ensure!(
        input + 2 * pad >= kernel,
        "window of {kernel} (pad {pad}) does not fit an input of {input}"
    );
    Ok((input + 2 * pad - kernel) / stride + 1)
}

/// A 2-d convolution of `x [n, c_in, h, w]` by `w [c_out, c_in, k, k]` with a bias,
/// square kernel, equal stride and zero padding on both axes (all GoogLeNet needs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    pub n: usize,
    pub c_in: usize,
    pub h: usize,
    pub w: usize,
    pub c_out: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
    pub oh: usize,
    pub ow: usize,
}

impl ConvGeometry {
    pub fn new(
        input: [usize; 4],
        c_out: usize,
        k: usize,
        stride: usize,
        pad: usize,
    ) -> Result<Self> {
        let [n, c_in, h, w] = input;
        Ok(ConvGeometry {
            n,
            c_in,
            h,
            w,
            c_out,
            k,
            stride,
            pad,
            oh: window_output(h, k, stride, pad)?,
            ow: window_output(w, k, stride, pad)?,
        })
    }

    pub fn input_shape(&self) -> [usize; 4] {
        [self.n, self.c_in, self.h, self.w]
    }

    pub fn weight_shape(&self) -> [usize; 4] {
        [self.c_out, self.c_in, self.k, self.k]
    }

    pub fn output_shape(&self) -> [usize; 4] {
        [self.n, self.c_out, self.oh, self.ow]
    }

    /// Rows of the im2col matrix: one per (input channel, kernel row, kernel column).
    pub fn patch_len(&self) -> usize {
        self.c_in * self.k * self.k
    }

    /// True when the im2col matrix is the input itself (1x1, stride 1, no padding).
    pub fn is_pointwise(&self) -> bool {
        self.k == 1 && self.stride == 1 && self.pad == 0
    }

    /// Multiply-adds of the forward pass (each backward pass costs the same).
    pub fn macs(&self) -> usize {
        self.n * self.c_out * self.oh * self.ow * self.patch_len()
    }
}

/// Channels `offset .. offset + len` of an NCHW tensor with `total` channels: where one
/// output part of a convolution writes its output (and its backward reads that output's
/// gradient), so that Inception branches fill the block output without a concat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelView {
    pub offset: usize,
    pub len: usize,
    pub total: usize,
}

impl ChannelView {
    /// All `channels` channels of a tensor.
    pub fn whole(channels: usize) -> ChannelView {
        ChannelView {
            offset: 0,
            len: channels,
            total: channels,
        }
    }
}

/// A pooling window over `x [n, c, h, w]`: `kh x kw`, equal stride, padding on both axes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolGeometry {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub pad: usize,
    pub oh: usize,
    pub ow: usize,
}

impl PoolGeometry {
    pub fn new(input: [usize; 4], kh: usize, kw: usize, stride: usize, pad: usize) -> Result<Self> {
        let [n, c, h, w] = input;
        // PyTorch refuses the same: a window that could lie wholly in the padding.
        ensure!(
            2 * pad <= kh && 2 * pad <= kw,
            "pad {pad} must be at most half of the {kh}x{kw} window"
        );
        Ok(PoolGeometry {
            n,
            c,
            h,
            w,
            kh,
            kw,
            stride,
            pad,
            oh: window_output(h, kh, stride, pad)?,
            ow: window_output(w, kw, stride, pad)?,
        })
    }

    pub fn input_shape(&self) -> [usize; 4] {
        [self.n, self.c, self.h, self.w]
    }

    pub fn output_shape(&self) -> [usize; 4] {
        [self.n, self.c, self.oh, self.ow]
    }
}

/// `y [n, out] = x [n, inp] · wᵀ + b`, with `w [out, inp]` as in `nn.Linear`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinearGeometry {
    pub n: usize,
    pub inp: usize,
    pub out: usize,
}

/// Adam's settings for one step; `step` counts from 1 (bias correction uses it).
/// f64, as PyTorch keeps them (Python floats), so the derived constants match its.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamStep {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub step: u64,
}

/// The two scalars of an Adam step that change from step to step, derived in f64 as
/// Python does and rounded to f32 where PyTorch hands them to its f32 kernels: every
/// device reads these same values, so their updates agree bit for bit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamScalars {
    /// `lr / (1 - β1ᵗ)`.
    pub step_size: f32,
    /// `√(1 - β2ᵗ)`.
    pub correction2_sqrt: f32,
}

impl AdamStep {
    pub fn scalars(&self) -> AdamScalars {
        let t = self.step as f64;
        AdamScalars {
            step_size: (self.lr / (1.0 - self.beta1.powf(t))) as f32,
            correction2_sqrt: (1.0 - self.beta2.powf(t)).sqrt() as f32,
        }
    }
}

impl AdamScalars {
    /// As device memory holds them (`Backend::adam_step`'s `scalars`): the f32 bits.
    pub fn words(&self) -> [u32; 2] {
        [self.step_size.to_bits(), self.correction2_sqrt.to_bits()]
    }

    pub fn from_words(words: &[u32]) -> Option<AdamScalars> {
        match *words {
            [step_size, correction2_sqrt] => Some(AdamScalars {
                step_size: f32::from_bits(step_size),
                correction2_sqrt: f32::from_bits(correction2_sqrt),
            }),
            _ => None,
        }
    }
}
