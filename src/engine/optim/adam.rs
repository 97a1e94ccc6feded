//! Adam, with PyTorch's defaults and arithmetic (see the CPU kernel for the math).

use anyhow::{ensure, Result};

use crate::engine::autograd::Gradients;
use crate::engine::autograd::Parameters;
use crate::engine::device::geometry::{AdamScalars, AdamStep};
use crate::engine::device::{Buffer, Words};
use crate::engine::optim::StepLog;
use crate::engine::tensor::Tensor;

pub struct Adam {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Steps taken so far.
    step: u64,
    /// First and second moment estimates, one per parameter.
    m: Vec<Tensor>,
    v: Vec<Tensor>,
}

impl Adam {
    /// Adam over `params` with betas (0.9, 0.999) and eps 1e-8, as `torch.optim.Adam`.
    pub fn new(params: &Parameters, lr: f64) -> Result<Adam> {
        let zeros = || {
            params
                .iter()
                .map(|p| Tensor::zeros(p.value.device(), p.value.shape()))
                .collect::<Result<Vec<_>>>()
        };
        Ok(Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            step: 0,
            m: zeros()?,
            v: zeros()?,
        })
    }

    pub fn steps_taken(&self) -> u64 {
        self.step
    }

    /// The first and second moment estimates, in parameter order.
    pub fn moments(&self) -> (&[Tensor], &[Tensor]) {
        (&self.m, &self.v)
    }

    /// Continues from saved state: `steps` taken and the moments after them.
    pub fn restore(&mut self, steps: u64, m: Vec<Tensor>, v: Vec<Tensor>) -> Result<()> {
        ensure!(
            m.len() == self.m.len() && v.len() == self.v.len(),
            "adam: saved state has {} moments, the model has {} parameters",
            m.len(),
            self.m.len()
        );
        for (old, new) in self.m.iter().zip(&m).chain(self.v.iter().zip(&v)) {
            old.ensure_same_shape(new, "adam: saved moment")?;
        }
        self.step = steps;
        self.m = m;
        self.v = v;
        Ok(())
    }

    /// The settings of the next step (`steps_taken() + 1`) at the current `lr`.
    fn next_step(&self) -> AdamStep {
        AdamStep {
            lr: self.lr,
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            step: self.step + 1,
        }
    }

    /// The scalars the next step reads from device memory (`step_with`): a training
    /// step writes them to its step parameters before it runs.
    pub fn next_scalars(&self) -> AdamScalars {
        self.next_step().scalars()
    }

    /// Counts a step the device took without this code: a replay of a recorded step,
    /// which ran the update with the scalars written for it (`next_scalars`).
    pub fn advance(&mut self) {
        self.step += 1;
    }

    /// Updates every parameter that has a gradient, in one device call; a parameter
    /// without one is left alone, state included (as PyTorch skips `grad is None`).
    /// Uploads the step's scalars first (a training step has them in its step
    /// parameters already: `step_unless_diverged`).
    pub fn step(&mut self, params: &mut Parameters, grads: &Gradients) -> Result<()> {
        let Some(first) = params.iter().next() else {
            return Ok(());
        };
        let words = first
            .value
            .device()
            .backend()
            .upload_u32(self.next_scalars().words().to_vec())?;
        self.step_unless(params, grads, Words::whole(&words), None)
    }

    /// As `step`, with the step's scalars (`next_scalars`, as `AdamScalars::words`)
    /// read from `scalars` on the device, and the device leaving everything untouched
    /// once `log` has recorded a NaN or infinite loss: the host need not read the
    /// loss first.
    pub fn step_unless_diverged(
        &mut self,
        params: &mut Parameters,
        grads: &Gradients,
        scalars: Words,
        log: &StepLog,
    ) -> Result<()> {
        self.step_unless(params, grads, scalars, Some(log.diverged_flag()))
    }

    fn step_unless(
        &mut self,
        params: &mut Parameters,
        grads: &Gradients,
        scalars: Words,
        skip: Option<&Buffer<u32>>,
    ) -> Result<()> {
        ensure!(
            grads.0.len() == params.len() && self.m.len() == params.len(),
            "adam: {} gradients and {} moment slots for {} parameters",
            grads.0.len(),
            self.m.len(),
            params.len()
        );
        let hyper = self.next_step();
        self.step += 1;
        let mut p_bufs: Vec<&mut Buffer<f32>> = Vec::new();
        let mut g_bufs: Vec<&Buffer<f32>> = Vec::new();
        let mut m_bufs = Vec::new();
        let mut v_bufs = Vec::new();
        let mut device = None;
        for (((p, g), m), v) in params
            .values_mut()
            .zip(&grads.0)
            .zip(self.m.iter_mut())
            .zip(self.v.iter_mut())
        {
            let Some(g) = g else { continue };
            p.ensure_same_shape(g, "adam: parameter and gradient")?;
            device.get_or_insert_with(|| p.device().clone());
            g_bufs.push(g.buffer());
            m_bufs.push(m.buffer_mut()?);
            v_bufs.push(v.buffer_mut()?);
            p_bufs.push(p.buffer_mut()?);
        }
        let Some(device) = device else { return Ok(()) };
        device.backend().adam_step(
            &mut p_bufs,
            &g_bufs,
            &mut m_bufs,
            &mut v_bufs,
            &hyper,
            scalars,
            skip,
        )
    }
}
