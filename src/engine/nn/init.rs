//! How fresh weights are drawn: PyTorch's default or Kaiming-normal, from a seeded
//! generator.

use std::fmt;

use anyhow::Result;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

use crate::engine::autograd::{ParamId, Parameters};
use crate::engine::device::Device;
use crate::engine::tensor::Tensor;

/// How fresh weights are drawn; `--init` and checkpoints name them `pytorch` and
/// `kaiming`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum Init {
    /// PyTorch's Conv2d/Linear default: weights and biases uniform in ±1/√fan_in
    /// (kaiming_uniform with a = √5).
    #[serde(rename = "pytorch")]
    #[value(name = "pytorch")]
    PyTorchDefault,
    /// Kaiming-normal for ReLU (std √(2/fan_in)), biases zero.
    #[serde(rename = "kaiming")]
    #[value(name = "kaiming")]
    KaimingNormal,
}

impl Init {
    /// The name `--init` takes.
    pub fn name(self) -> &'static str {
        match self {
            Init::PyTorchDefault => "pytorch",
            Init::KaimingNormal => "kaiming",
        }
    }
}

impl fmt::Display for Init {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Creates parameters on a device, drawing them from a seeded generator.
pub struct ParamBuilder {
    device: Device,
    rng: StdRng,
    init: Init,
    params: Parameters,
}

impl ParamBuilder {
    pub fn new(device: &Device, seed: u64, init: Init) -> Self {
        ParamBuilder {
            device: device.clone(),
            rng: StdRng::seed_from_u64(seed),
            init,
            params: Parameters::default(),
        }
    }

    /// A weight of `shape` and a bias of `[shape[0]]`, named `<prefix>.weight` and
    /// `<prefix>.bias`; `fan_in` is the product of the other weight dimensions.
    pub fn weight_and_bias(&mut self, prefix: &str, shape: &[usize]) -> Result<(ParamId, ParamId)> {
        let fan_in: usize = shape[1..].iter().product();
        let numel: usize = shape.iter().product();
        let (weights, biases) = match self.init {
            Init::PyTorchDefault => {
                let bound = 1.0 / (fan_in as f32).sqrt();
                let mut uniform =
                    |n| -> Vec<f32> { (0..n).map(|_| self.rng.gen_range(-bound..bound)).collect() };
                (uniform(numel), uniform(shape[0]))
            }
            Init::KaimingNormal => {
                let normal = Normal::new(0.0, (2.0 / fan_in as f32).sqrt())?;
                let weights = (0..numel).map(|_| normal.sample(&mut self.rng)).collect();
                (weights, vec![0.0; shape[0]])
            }
        };
        let weight = self.push(format!("{prefix}.weight"), shape, weights)?;
        let bias = self.push(format!("{prefix}.bias"), &[shape[0]], biases)?;
        Ok((weight, bias))
    }

    fn push(&mut self, name: String, shape: &[usize], data: Vec<f32>) -> Result<ParamId> {
        let value = Tensor::from_vec(&self.device, shape, data)?;
        self.params.push(&name, value)
    }

    pub fn finish(self) -> Parameters {
        self.params
    }
}
