//! Named parameters, in creation order: what the tape computes gradients for and Adam
//! updates, under the names PyTorch's `state_dict` gives them.

use anyhow::{ensure, Result};

use crate::engine::tensor::Tensor;

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
