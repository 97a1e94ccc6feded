//! Named parameters, in creation order, and how they are initialised.

use anyhow::{ensure, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

use crate::device::Device;
use crate::tensor::Tensor;

/// Index of a parameter in its `Parameters`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamId(usize);

impl ParamId {
    pub fn index(self) -> usize {
        self.0
    }
}

pub struct Parameter {
    /// PyTorch's state_dict key, e.g. `inception_3a.branch2_1.weight`.
    pub name: String,
    pub value: Tensor,
}

/// Every parameter of a model, in the order PyTorch's `state_dict` lists them.
#[derive(Default)]
pub struct Parameters {
    list: Vec<Parameter>,
}

impl Parameters {
    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Parameter> {
        self.list.iter()
    }

    pub fn value(&self, id: ParamId) -> &Tensor {
        &self.list[id.0].value
    }

    /// Total number of scalars.
    pub fn scalar_count(&self) -> usize {
        self.list.iter().map(|p| p.value.numel()).sum()
    }

    pub fn find(&self, name: &str) -> Option<ParamId> {
        self.list.iter().position(|p| p.name == name).map(ParamId)
    }

    /// Adds a parameter; its name must be new.
    pub fn push(&mut self, name: &str, value: Tensor) -> Result<ParamId> {
        ensure!(self.find(name).is_none(), "parameter {name} already exists");
        self.list.push(Parameter {
            name: name.to_string(),
            value,
        });
        Ok(ParamId(self.list.len() - 1))
    }

    /// Replaces a parameter's value with one of the same shape.
    pub fn set(&mut self, id: ParamId, value: Tensor) -> Result<()> {
        let slot = &mut self.list[id.0];
        ensure!(
            slot.value.shape() == value.shape(),
            "parameter {}: new value has shape {:?}, expected {:?}",
            slot.name,
            value.shape(),
            slot.value.shape()
        );
        slot.value = value;
        Ok(())
    }

    /// Replaces every value, in order; each must keep its parameter's shape.
    pub fn set_all(&mut self, values: Vec<Tensor>) -> Result<()> {
        ensure!(
            values.len() == self.list.len(),
            "{} values for {} parameters",
            values.len(),
            self.list.len()
        );
        for (i, value) in values.into_iter().enumerate() {
            self.set(ParamId(i), value)?;
        }
        Ok(())
    }

    /// The values, mutable, for the optimizer.
    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut Tensor> {
        self.list.iter_mut().map(|p| &mut p.value)
    }
}

/// How fresh weights are drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Init {
    /// PyTorch's Conv2d/Linear default: weights and biases uniform in ±1/√fan_in
    /// (kaiming_uniform with a = √5).
    PyTorchDefault,
    /// Kaiming-normal for ReLU (std √(2/fan_in)), biases zero.
    KaimingNormal,
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
