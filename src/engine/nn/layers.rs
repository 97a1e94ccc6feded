//! Conv2d and Linear: parameters plus the op that uses them.

use anyhow::Result;

use super::init::ParamBuilder;
use crate::engine::autograd::{ChannelOutput, Tape, Var};
use crate::engine::autograd::{ParamId, Parameters};
use crate::engine::device::geometry::{window_output, ConvGeometry, PoolGeometry};

/// `nn.Conv2d(c_in, c_out, k, stride, pad)` with a bias.
pub struct Conv2d {
    weight: ParamId,
    bias: ParamId,
    c_out: usize,
    k: usize,
    stride: usize,
    pad: usize,
}

impl Conv2d {
    pub fn new(
        b: &mut ParamBuilder,
        name: &str,
        c_in: usize,
        c_out: usize,
        k: usize,
        stride: usize,
        pad: usize,
    ) -> Result<Self> {
        let (weight, bias) = b.weight_and_bias(name, &[c_out, c_in, k, k])?;
        Ok(Conv2d {
            weight,
            bias,
            c_out,
            k,
            stride,
            pad,
        })
    }

    /// The weight and bias on the tape.
    pub fn vars(&self, tape: &mut Tape, params: &Parameters) -> (Var, Var) {
        (
            tape.param(params, self.weight),
            tape.param(params, self.bias),
        )
    }

    /// Convolution then ReLU, the pairing every GoogLeNet convolution uses (the ReLU
    /// runs in the convolution's store).
    pub fn forward_relu(&self, tape: &mut Tape, params: &Parameters, x: &Var) -> Result<Var> {
        let (w, b) = self.vars(tape, params);
        tape.conv2d(x, &w, &b, self.stride, self.pad, true)
    }

    /// `forward_relu` into the next channels of `out`.
    pub fn forward_relu_into(
        &self,
        tape: &mut Tape,
        params: &Parameters,
        x: &Var,
        out: &mut ChannelOutput,
    ) -> Result<()> {
        let (w, b) = self.vars(tape, params);
        tape.conv2d_into(x, &w, &b, self.stride, self.pad, true, out)
    }

    /// The convolution this layer runs on an input of shape `input`.
    pub fn geometry(&self, input: [usize; 4]) -> Result<ConvGeometry> {
        ConvGeometry::new(input, self.c_out, self.k, self.stride, self.pad)
    }

    pub fn output_shape(&self, [n, _, h, w]: [usize; 4]) -> Result<[usize; 4]> {
        Ok([
            n,
            self.c_out,
            window_output(h, self.k, self.stride, self.pad)?,
            window_output(w, self.k, self.stride, self.pad)?,
        ])
    }
}

/// `nn.Linear(inp, out)`.
pub struct Linear {
    weight: ParamId,
    bias: ParamId,
    out: usize,
}

impl Linear {
    pub fn new(b: &mut ParamBuilder, name: &str, inp: usize, out: usize) -> Result<Self> {
        let (weight, bias) = b.weight_and_bias(name, &[out, inp])?;
        Ok(Linear { weight, bias, out })
    }

    pub fn forward(&self, tape: &mut Tape, params: &Parameters, x: &Var) -> Result<Var> {
        let w = tape.param(params, self.weight);
        let b = tape.param(params, self.bias);
        tape.linear(x, &w, &b)
    }

    pub fn out_features(&self) -> usize {
        self.out
    }
}

/// A layer that runs a convolution or pooling kernel, with its shapes at one input
/// size: what the kernel benchmarks time (each convolution is followed by a ReLU of
/// its output's size).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerGeometry {
    Conv(ConvGeometry),
    MaxPool(PoolGeometry),
    /// The average over each whole plane.
    AvgPool(PoolGeometry),
}
