//! The tape: forward ops record a backward closure each; `backward` runs them in reverse.
//!
//! A `Var` is a tensor plus, when it depends on a parameter and the tape records, the
//! node that will receive its gradient. A closure owns what its backward needs (input
//! tensors, pool indices, probabilities) and adds the input gradients into `Grads`.
//! With recording off (evaluation), no node is made and nothing is kept.
//!
//! An op may have several outputs (the fused 1x1 convolutions), and several ops may
//! write one output in channel slices (an Inception block's output, a `ChannelOutput`):
//! an entry lists the nodes whose gradients it reads, and a node's gradient is kept
//! until the last entry that reads it has run.

use std::cell::OnceCell;
use std::rc::Rc;

use anyhow::{ensure, Context, Result};

use crate::engine::autograd::{ParamId, Parameters};
use crate::engine::device::geometry::{ConvGeometry, PoolGeometry};
use crate::engine::device::Device;
use crate::engine::ops::{self, ConvGrad, ConvPart, Labels, Seed};
use crate::engine::tensor::Tensor;

type NodeId = usize;
/// Gets the gradient of each output node of its entry (`None` where none reached it).
type BackwardFn = Box<dyn FnOnce(&[Option<Tensor>], &mut Grads) -> Result<()>>;

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
    /// Takes the gradient gathered so far for `node`, for an op to add into in place
    /// (it then `add`s the sum back).
    fn take(&mut self, node: Option<NodeId>) -> Option<Tensor> {
        node.and_then(|node| self.0[node].take())
    }

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

/// An output that ops fill in channel slices, in channel order: an Inception block's
/// output, which its branches write straight into so that no concat runs. Started by
/// `Tape::channel_output`, filled by `conv2d_into` and `conv1x1_fused`, made a `Var` by
/// `Tape::finish` once every channel is written.
pub struct ChannelOutput {
    value: Tensor,
    filled: usize,
    node: Option<NodeId>,
    /// The finished output, which the writers' backward needs (ReLU's mask) but cannot
    /// hold while it is still being written: `finish` sets it.
    finished: Rc<OnceCell<Tensor>>,
}

impl ChannelOutput {
    /// The next free channel, after checking that `channels` more fit and that the
    /// writer's output plane `[n, _, h, w]` is this output's.
    fn claim(&mut self, g: &ConvGeometry, channels: usize) -> Result<usize> {
        let [n, total, h, w] = self.value.dims4("channel output")?;
        ensure!(
            [n, h, w] == [g.n, g.oh, g.ow] && self.filled + channels <= total,
            "{channels} channels of shape {:?} do not fit after channel {} of {:?}",
            g.output_shape(),
            self.filled,
            self.value.shape()
        );
        let offset = self.filled;
        self.filled += channels;
        Ok(offset)
    }
}

pub struct Tape {
    recording: bool,
    node_count: usize,
    entries: Vec<(Vec<NodeId>, BackwardFn)>,
    /// Per node, how many entries read its gradient.
    readers: Vec<usize>,
    param_nodes: Vec<(NodeId, ParamId)>,
}

impl Tape {
    /// A tape that records, for training.
    pub fn new() -> Tape {
        Tape {
            recording: true,
            node_count: 0,
            entries: Vec::new(),
            readers: Vec::new(),
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
        self.readers.push(0);
        self.node_count - 1
    }

    /// Records `backward`, which reads the gradients of `outputs`.
    fn push_entry(&mut self, outputs: Vec<NodeId>, backward: BackwardFn) {
        for &node in &outputs {
            self.readers[node] += 1;
        }
        self.entries.push((outputs, backward));
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
        self.push_entry(
            vec![node],
            Box::new(move |dys, grads| match &dys[0] {
                Some(dy) => backward(dy, grads),
                None => Ok(()),
            }),
        );
        Var {
            value,
            node: Some(node),
        }
    }

    /// `conv(x, w) + b` with stride and zero padding, then ReLU when `relu` (fused into
    /// the convolution's store, and its backward into the backward's loads).
    pub fn conv2d(
        &mut self,
        x: &Var,
        w: &Var,
        b: &Var,
        stride: usize,
        pad: usize,
        relu: bool,
    ) -> Result<Var> {
        let g = ops::conv2d_geometry(&x.value, &w.value, &b.value, stride, pad)?;
        let y = ops::conv2d(&x.value, &w.value, &b.value, &g, relu)?;
        let (xn, wn, bn) = (x.node, w.node, b.node);
        let (xv, wv) = (x.value.clone(), w.value.clone());
        let yv = relu.then(|| y.clone());
        Ok(self.record(y, &[xn, wn, bn], move |dy, grads| {
            let grad = ConvGrad {
                dy,
                relu_y: yv.as_ref(),
                offset: 0,
                len: g.c_out,
            };
            conv_backward(&g, &xv, &[grad], &[&wv], xn, &[(wn, bn)], grads)
        }))
    }

    /// An output of `shape` on `device` for ops to fill in channel slices.
    pub fn channel_output(&self, device: &Device, shape: [usize; 4]) -> Result<ChannelOutput> {
        Ok(ChannelOutput {
            value: ops::alloc(device, &shape)?,
            filled: 0,
            node: None,
            finished: Rc::new(OnceCell::new()),
        })
    }

    /// `conv2d` (with ReLU when `relu`) whose output lands in the next channels of `out`.
    #[allow(clippy::too_many_arguments)]
    pub fn conv2d_into(
        &mut self,
        x: &Var,
        w: &Var,
        b: &Var,
        stride: usize,
        pad: usize,
        relu: bool,
        out: &mut ChannelOutput,
    ) -> Result<()> {
        let g = ops::conv2d_geometry(&x.value, &w.value, &b.value, stride, pad)?;
        let offset = out.claim(&g, g.c_out)?;
        let part = ConvPart {
            w: &w.value,
            b: &b.value,
            y: &mut out.value,
            offset,
        };
        ops::conv2d_into(&x.value, &mut [part], &g, relu)?;
        let (xn, wn, bn) = (x.node, w.node, b.node);
        if !self.recording || [xn, wn, bn].iter().all(Option::is_none) {
            return Ok(());
        }
        let node = *out.node.get_or_insert_with(|| self.new_node());
        let (xv, wv, finished) = (x.value.clone(), w.value.clone(), out.finished.clone());
        self.push_entry(
            vec![node],
            Box::new(move |dys, grads| {
                let Some(dy) = &dys[0] else { return Ok(()) };
                let y = finished.get().context("an unfinished channel output")?;
                let grad = ConvGrad {
                    dy,
                    relu_y: relu.then_some(y),
                    offset,
                    len: g.c_out,
                };
                conv_backward(&g, &xv, &[grad], &[&wv], xn, &[(wn, bn)], grads)
            }),
        );
        Ok(())
    }

    /// The three 1x1 convolutions (each with ReLU) of an Inception block that read the
    /// same input `x`, as one GEMM over their concatenated filters `parts[i] = (w, b)`:
    /// the first lands in the next channels of `out` (the block output), the other two
    /// (the reductions before the 3x3 and 5x5 convolutions) are returned. Backward is
    /// one GEMM too, which adds the three input gradients in its own sum.
    pub fn conv1x1_fused(
        &mut self,
        x: &Var,
        parts: [(&Var, &Var); 3],
        out: &mut ChannelOutput,
    ) -> Result<[Var; 2]> {
        let filters = parts.map(|(w, b)| (&w.value, &b.value));
        let g = ops::conv2d_parts_geometry(&x.value, &filters, 1, 0)?;
        ensure!(g.k == 1, "conv1x1_fused: {0}x{0} filters", g.k);
        let lens = filters.map(|(w, _)| w.shape()[0]);
        let offset = out.claim(&g, lens[0])?;
        let device = x.value.device();
        let mut reduce2 = ops::alloc(device, &[g.n, lens[1], g.oh, g.ow])?;
        let mut reduce3 = ops::alloc(device, &[g.n, lens[2], g.oh, g.ow])?;
        let targets = [
            (&mut out.value, offset),
            (&mut reduce2, 0),
            (&mut reduce3, 0),
        ];
        let mut conv_parts = filters
            .into_iter()
            .zip(targets)
            .map(|((w, b), (y, offset))| ConvPart { w, b, y, offset })
            .collect::<Vec<_>>();
        ops::conv2d_into(&x.value, &mut conv_parts, &g, true)?;

        let nodes = parts.map(|(w, b)| (w.node, b.node));
        let xn = x.node;
        if !self.recording
            || (xn.is_none() && nodes.iter().all(|(w, b)| w.is_none() && b.is_none()))
        {
            return Ok([
                Var {
                    value: reduce2,
                    node: None,
                },
                Var {
                    value: reduce3,
                    node: None,
                },
            ]);
        }
        let out_node = *out.node.get_or_insert_with(|| self.new_node());
        let (node2, node3) = (self.new_node(), self.new_node());
        let (xv, finished) = (x.value.clone(), out.finished.clone());
        let w = parts.map(|(w, _)| w.value.clone());
        let (y2, y3) = (reduce2.clone(), reduce3.clone());
        self.push_entry(
            vec![out_node, node2, node3],
            Box::new(move |dys, grads| {
                let y1 = finished.get().context("an unfinished channel output")?;
                let ys = [y1, &y2, &y3];
                // A part no gradient reached (the loss does not use it) counts as zeros.
                let zeros = dys
                    .iter()
                    .zip(ys)
                    .map(|(dy, y)| match dy {
                        Some(_) => Ok(None),
                        None => Tensor::zeros(y.device(), y.shape()).map(Some),
                    })
                    .collect::<Result<Vec<_>>>()?;
                let offsets = [offset, 0, 0];
                let mut part_grads = Vec::with_capacity(3);
                for i in 0..3 {
                    part_grads.push(ConvGrad {
                        dy: dys[i]
                            .as_ref()
                            .or(zeros[i].as_ref())
                            .context("no gradient")?,
                        relu_y: Some(ys[i]),
                        offset: offsets[i],
                        len: lens[i],
                    });
                }
                let w = [&w[0], &w[1], &w[2]];
                conv_backward(&g, &xv, &part_grads, &w, xn, &nodes, grads)
            }),
        );
        Ok([
            Var {
                value: reduce2,
                node: Some(node2),
            },
            Var {
                value: reduce3,
                node: Some(node3),
            },
        ])
    }

    /// The filled output as a `Var`; every channel must have been written.
    pub fn finish(&mut self, out: ChannelOutput) -> Result<Var> {
        let total = out.value.dims4("channel output")?[1];
        ensure!(
            out.filled == total,
            "channel output {:?}: only {} of {total} channels were written",
            out.value.shape(),
            out.filled
        );
        // `finish` consumes the output, so the cell is still empty.
        let _ = out.finished.set(out.value.clone());
        Ok(Var {
            value: out.value,
            node: out.node,
        })
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

    /// Inverted dropout (drop probability `p`, mask keyed by `seed`).
    pub fn dropout(&mut self, x: &Var, p: f32, seed: impl Into<Seed>) -> Result<Var> {
        let seed = seed.into().on(x.value.device())?;
        let y = ops::dropout(&x.value, p, seed.clone())?;
        let xn = x.node;
        Ok(self.record(y, &[xn], move |dy, grads| {
            grads.add(xn, ops::dropout(dy, p, seed.clone())?)
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
        let mut readers = self.readers;
        for (outputs, backward) in self.entries.into_iter().rev() {
            let dys: Vec<Option<Tensor>> = outputs
                .iter()
                .map(|&node| {
                    readers[node] -= 1;
                    if readers[node] == 0 {
                        grads.0[node].take()
                    } else {
                        grads.0[node].clone()
                    }
                })
                .collect();
            if dys.iter().any(Option::is_some) {
                backward(&dys, &mut grads)?;
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

/// The backward of a convolution's output parts (`dys`, with filters `w` and parameter
/// nodes `params`): the input gradient is added into what `xn` has gathered (in the same
/// launch), each part's filter and bias gradients go to their nodes.
fn conv_backward(
    g: &ConvGeometry,
    x: &Tensor,
    dys: &[ConvGrad],
    w: &[&Tensor],
    xn: Option<NodeId>,
    params: &[(Option<NodeId>, Option<NodeId>)],
    grads: &mut Grads,
) -> Result<()> {
    if xn.is_some() {
        let into = grads.take(xn);
        grads.add(xn, ops::conv2d_bwd_data(dys, w, g, into)?)?;
    }
    if params.iter().any(|(w, b)| w.is_some() || b.is_some()) {
        for ((dw, db), &(wn, bn)) in ops::conv2d_bwd_filter(x, dys, g)?.into_iter().zip(params) {
            grads.add(wn, dw)?;
            grads.add(bn, db)?;
        }
    }
    Ok(())
}

impl Default for Tape {
    fn default() -> Self {
        Tape::new()
    }
}
