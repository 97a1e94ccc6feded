//! The Inception block: four branches over one input, concatenated on channels.
//!
//!   branch 1: 1x1 conv, ReLU
//!   branch 2: 1x1 conv, ReLU, 3x3 conv (pad 1), ReLU
//!   branch 3: 1x1 conv, ReLU, 5x5 conv (pad 2), ReLU
//!   branch 4: 3x3 max pool (stride 1, pad 1), 1x1 conv, ReLU
//!
//! As it runs: the three 1x1 convolutions that read the input are one GEMM, and each
//! branch's last convolution writes straight into its channel slice of the block
//! output, so no concat (and, backward, no slice or gradient addition) runs. The 1x1
//! weights stay the separate parameters PyTorch names and stores (`branch1`,
//! `branch2_1`, `branch3_1`), so checkpoints are unchanged: the GPU kernels read each
//! part's filters where they lie, and the CPU stacks the three small filter sets for
//! its one GEMM.

use anyhow::Result;

use super::init::ParamBuilder;
use super::layers::{Conv2d, LayerGeometry};
use crate::engine::autograd::Parameters;
use crate::engine::autograd::{Tape, Var};
use crate::engine::device::geometry::PoolGeometry;

/// Output channels of an Inception block: `(in, c1, (c2a, c2b), (c3a, c3b), c4)`
/// in the paper's table.
#[derive(Clone, Copy, Debug)]
pub struct InceptionChannels {
    pub c_in: usize,
    pub c1: usize,
    pub c2: (usize, usize),
    pub c3: (usize, usize),
    pub c4: usize,
}

impl InceptionChannels {
    pub fn out(&self) -> usize {
        self.c1 + self.c2.1 + self.c3.1 + self.c4
    }
}

pub struct Inception {
    channels: InceptionChannels,
    branch1: Conv2d,
    branch2_1: Conv2d,
    branch2_2: Conv2d,
    branch3_1: Conv2d,
    branch3_2: Conv2d,
    branch4_2: Conv2d,
}

impl Inception {
    /// Parameters are named `<name>.branch1.weight`, `<name>.branch2_1.weight`, ...;
    /// `branch4_1` is the parameterless max pool.
    pub fn new(b: &mut ParamBuilder, name: &str, ch: InceptionChannels) -> Result<Self> {
        let c_in = ch.c_in;
        Ok(Inception {
            channels: ch,
            branch1: Conv2d::new(b, &format!("{name}.branch1"), c_in, ch.c1, 1, 1, 0)?,
            branch2_1: Conv2d::new(b, &format!("{name}.branch2_1"), c_in, ch.c2.0, 1, 1, 0)?,
            branch2_2: Conv2d::new(b, &format!("{name}.branch2_2"), ch.c2.0, ch.c2.1, 3, 1, 1)?,
            branch3_1: Conv2d::new(b, &format!("{name}.branch3_1"), c_in, ch.c3.0, 1, 1, 0)?,
            branch3_2: Conv2d::new(b, &format!("{name}.branch3_2"), ch.c3.0, ch.c3.1, 5, 1, 2)?,
            branch4_2: Conv2d::new(b, &format!("{name}.branch4_2"), c_in, ch.c4, 1, 1, 0)?,
        })
    }

    pub fn forward(&self, tape: &mut Tape, params: &Parameters, x: &Var) -> Result<Var> {
        let shape = self.output_shape(x.value.dims4("Inception input")?);
        let mut out = tape.channel_output(x.value.device(), shape)?;
        let (w1, b1) = self.branch1.vars(tape, params);
        let (w2, b2) = self.branch2_1.vars(tape, params);
        let (w3, b3) = self.branch3_1.vars(tape, params);
        let [reduce2, reduce3] =
            tape.conv1x1_fused(x, [(&w1, &b1), (&w2, &b2), (&w3, &b3)], &mut out)?;
        self.branch2_2
            .forward_relu_into(tape, params, &reduce2, &mut out)?;
        self.branch3_2
            .forward_relu_into(tape, params, &reduce3, &mut out)?;
        let pooled = tape.max_pool(x, 3, 1, 1)?;
        self.branch4_2
            .forward_relu_into(tape, params, &pooled, &mut out)?;
        tape.finish(out)
    }

    /// Every convolution and pool of the block named `name` on an input of shape
    /// `input`, in forward order, named as its parameters are (`branch4_1` is the pool).
    pub fn layer_geometries(
        &self,
        name: &str,
        input: [usize; 4],
    ) -> Result<Vec<(String, LayerGeometry)>> {
        let conv = |branch: &str, layer: &Conv2d, x: [usize; 4]| -> Result<_> {
            Ok((
                format!("{name}.{branch}"),
                LayerGeometry::Conv(layer.geometry(x)?),
            ))
        };
        let b2 = self.branch2_1.output_shape(input)?;
        let b3 = self.branch3_1.output_shape(input)?;
        let pool = PoolGeometry::new(input, 3, 3, 1, 1)?;
        Ok(vec![
            conv("branch1", &self.branch1, input)?,
            conv("branch2_1", &self.branch2_1, input)?,
            conv("branch2_2", &self.branch2_2, b2)?,
            conv("branch3_1", &self.branch3_1, input)?,
            conv("branch3_2", &self.branch3_2, b3)?,
            (format!("{name}.branch4_1"), LayerGeometry::MaxPool(pool)),
            conv("branch4_2", &self.branch4_2, pool.output_shape())?,
        ])
    }

    pub fn output_shape(&self, [n, _, h, w]: [usize; 4]) -> [usize; 4] {
        [n, self.channels.out(), h, w]
    }
}
