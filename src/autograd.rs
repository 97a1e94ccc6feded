//! The tape: forward ops record a backward closure each; `backward` runs them in reverse.
//!
//! A `Var` is a tensor plus, when it depends on a parameter and the tape records, the
//! node that will receive its gradient. A closure owns what its backward needs (input
//! tensors, pool indices, probabilities) and adds the input gradients into `Grads`.
//! With recording off (evaluation), no node is made and nothing is kept.

use anyhow::{ensure, Result};

use crate::device::geometry::PoolGeometry;
use crate::nn::{ParamId, Parameters};
use crate::ops::{self, Labels};
use crate::tensor::Tensor;

type NodeId = usize;
type BackwardFn = Box<dyn FnOnce(&Tensor, &mut Grads) -> Result<()>>;

/// A value in the computation and the node its gradient flows to, if any.
#[derive(Clone)]
pub struct Var {
    pub value: Tensor,
    node: Option<NodeId>,
}

impl Var {
    pub fn shape(&self) -> &[usize] {
        self.value.shape()
    }
}

/// Gradients of the nodes, filled in as backward runs.
pub struct Grads(Vec<Option<Tensor>>);

impl Grads {
    fn add(&mut self, node: Option<NodeId>, grad: Tensor) -> Result<()> {
        let Some(node) = node else { return Ok(()) };
        self.0[node] = Some(match self.0[node].take() {
            Some(existing) => existing.add(&grad)?,
            None => grad,
        });
        Ok(())
    }
}

/// The gradient of each parameter (in `Parameters` order); `None` for one the loss
/// does not depend on.
pub struct Gradients(pub Vec<Option<Tensor>>);

pub struct Tape {
    recording: bool,
    node_count: usize,
    entries: Vec<(NodeId, BackwardFn)>,
    param_nodes: Vec<(NodeId, ParamId)>,
}

impl Tape {
    /// A tape that records, for training.
    pub fn new() -> Tape {
        Tape {
            recording: true,
            node_count: 0,
            entries: Vec::new(),
            param_nodes: Vec::new(),
        }
    }

    /// A tape that records nothing, for evaluation: ops only compute their outputs.
    pub fn no_grad() -> Tape {
        Tape {
            recording: false,
            ..Tape::new()
        }
    }

    pub fn is_recording(&self) -> bool {
        self.recording
    }

    /// An input that needs no gradient (images, for example).
    pub fn constant(&self, value: Tensor) -> Var {
        Var { value, node: None }
    }

    /// A parameter; its gradient is reported by `backward`.
    pub fn param(&mut self, params: &Parameters, id: ParamId) -> Var {
        let value = params.value(id).clone();
        if !self.recording {
            return Var { value, node: None };
        }
        let node = self.new_node();
        self.param_nodes.push((node, id));
        Var {
            value,
            node: Some(node),
        }
    }

    fn new_node(&mut self) -> NodeId {
        self.node_count += 1;
        self.node_count - 1
    }

    /// Wraps an op's output; records `backward` when any input carries a gradient.
    fn record(
        &mut self,
        value: Tensor,
        inputs: &[Option<NodeId>],
        backward: impl FnOnce(&Tensor, &mut Grads) -> Result<()> + 'static,
    ) -> Var {
        if !self.recording || inputs.iter().all(Option::is_none) {
            return Var { value, node: None };
        }
        let node = self.new_node();
        self.entries.push((node, Box::new(backward)));
        Var {
            value,
            node: Some(node),
        }
    }

    pub fn conv2d(&mut self, x: &Var, w: &Var, b: &Var, stride: usize, pad: usize) -> Result<Var> {
        let g = ops::conv2d_geometry(&x.value, &w.value, &b.value, stride, pad)?;
        let y = ops::conv2d(&x.value, &w.value, &b.value, &g)?;
        let (xn, wn, bn) = (x.node, w.node, b.node);
        let (xv, wv) = (x.value.clone(), w.value.clone());
        Ok(self.record(y, &[xn, wn, bn], move |dy, grads| {
            if xn.is_some() {
                grads.add(xn, ops::conv2d_bwd_data(dy, &wv, &g)?)?;
            }
            if wn.is_some() || bn.is_some() {
                let (dw, db) = ops::conv2d_bwd_filter(&xv, dy, &g)?;
                grads.add(wn, dw)?;
                grads.add(bn, db)?;
            }
            Ok(())
        }))
    }

    pub fn relu(&mut self, x: &Var) -> Result<Var> {
        let y = ops::relu(&x.value)?;
        let (xn, yv) = (x.node, y.clone());
        Ok(self.record(y, &[xn], move |dy, grads| {
            grads.add(xn, ops::relu_bwd(&yv, dy)?)
        }))
    }

    /// Max pooling over a `k x k` window; padding counts as -inf.
    pub fn max_pool(&mut self, x: &Var, k: usize, stride: usize, pad: usize) -> Result<Var> {
        let g = PoolGeometry::new(x.value.dims4("max pool")?, k, k, stride, pad)?;
        let (y, argmax) = ops::max_pool(&x.value, &g)?;
        let xn = x.node;
        Ok(self.record(y, &[xn], move |dy, grads| {
            grads.add(xn, ops::max_pool_bwd(dy, &argmax, &g)?)
        }))
    }

    /// Average pooling over a `kh x kw` window, no padding.
    pub fn avg_pool(&mut self, x: &Var, kh: usize, kw: usize, stride: usize) -> Result<Var> {
        let g = PoolGeometry::new(x.value.dims4("average pool")?, kh, kw, stride, 0)?;
        let y = ops::avg_pool(&x.value, &g)?;
        let xn = x.node;
        Ok(self.record(y, &[xn], move |dy, grads| {
            grads.add(xn, ops::avg_pool_bwd(dy, &g)?)
        }))
    }

    /// Average over each whole plane: `[n, c, h, w] -> [n, c, 1, 1]`.
    pub fn global_avg_pool(&mut self, x: &Var) -> Result<Var> {
        let [_, _, h, w] = x.value.dims4("global average pool")?;
        self.avg_pool(x, h, w, 1)
    }

    pub fn concat_channels(&mut self, xs: &[&Var]) -> Result<Var> {
        let values: Vec<&Tensor> = xs.iter().map(|x| &x.value).collect();
        let y = ops::concat_channels(&values)?;
        let parts: Vec<(Option<NodeId>, usize)> =
            xs.iter().map(|x| (x.node, x.shape()[1])).collect();
        let nodes: Vec<Option<NodeId>> = parts.iter().map(|p| p.0).collect();
        Ok(self.record(y, &nodes, move |dy, grads| {
            let mut start = 0;
            for (node, channels) in parts {
                if node.is_some() {
                    grads.add(node, ops::slice_channels(dy, start, channels)?)?;
                }
                start += channels;
            }
            Ok(())
        }))
    }

    /// Inverted dropout (drop probability `p`, mask keyed by `seed`).
    pub fn dropout(&mut self, x: &Var, p: f32, seed: u64) -> Result<Var> {
        let y = ops::dropout(&x.value, p, seed)?;
        let xn = x.node;
        Ok(self.record(y, &[xn], move |dy, grads| {
            grads.add(xn, ops::dropout(dy, p, seed)?)
        }))
    }

    /// `[n, ...] -> [n, rest]`.
    pub fn flatten(&mut self, x: &Var) -> Result<Var> {
        let shape = x.value.shape().to_vec();
        ensure!(!shape.is_empty(), "flatten of a 0-d tensor");
        let y = x.value.reshape(&[shape[0], shape[1..].iter().product()])?;
        let xn = x.node;
        Ok(self.record(y, &[xn], move |dy, grads| {
            grads.add(xn, dy.reshape(&shape)?)
        }))
    }

    pub fn linear(&mut self, x: &Var, w: &Var, b: &Var) -> Result<Var> {
        let g = ops::linear_geometry(&x.value, &w.value, &b.value)?;
        let y = ops::linear(&x.value, &w.value, &b.value, &g)?;
        let (xn, wn, bn) = (x.node, w.node, b.node);
        let (xv, wv) = (x.value.clone(), w.value.clone());
        Ok(self.record(y, &[xn, wn, bn], move |dy, grads| {
            if xn.is_some() {
                grads.add(xn, ops::linear_bwd_data(dy, &wv, &g)?)?;
            }
            if wn.is_some() || bn.is_some() {
                let (dw, db) = ops::linear_bwd_weight(&xv, dy, &g)?;
                grads.add(wn, dw)?;
                grads.add(bn, db)?;
            }
            Ok(())
        }))
    }

    /// Mean softmax cross-entropy of `logits [n, classes]` against `labels`.
    pub fn cross_entropy(&mut self, logits: &Var, labels: &Labels) -> Result<Var> {
        let (loss, probs) = ops::cross_entropy(&logits.value, labels)?;
        let ln = logits.node;
        let labels = labels.clone();
        Ok(self.record(loss, &[ln], move |dloss, grads| {
            grads.add(ln, ops::cross_entropy_bwd(&probs, &labels, dloss)?)
        }))
    }

    /// Runs the recorded closures in reverse from `loss` (a one-element var) and
    /// returns every parameter's gradient. Consumes the tape.
    pub fn backward(self, loss: &Var, params: &Parameters) -> Result<Gradients> {
        ensure!(self.recording, "backward on a no-grad tape");
        ensure!(
            loss.value.numel() == 1,
            "backward needs a one-element loss, got shape {:?}",
            loss.shape()
        );
        let mut grads = Grads(vec![None; self.node_count]);
        if let Some(node) = loss.node {
            grads.0[node] = Some(Tensor::full(loss.value.device(), loss.shape(), 1.0)?);
        }
        for (node, backward) in self.entries.into_iter().rev() {
            if let Some(dy) = grads.0[node].take() {
                backward(&dy, &mut grads)?;
            }
        }
        let mut out = vec![None; params.len()];
        for (node, id) in self.param_nodes {
            if let Some(g) = grads.0[node].take() {
                out[id.index()] = Some(match out[id.index()].take() {
                    Some(existing) => g.add(&existing)?,
                    None => g,
                });
            }
        }
        Ok(Gradients(out))
    }
}

impl Default for Tape {
    fn default() -> Self {
        Tape::new()
    }
}
