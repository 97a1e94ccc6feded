//! GoogLeNet (Inception v1) as the tutorial builds it, stage by stage.
//!
//! The stages and their names follow the tutorial's module tree, so parameter names
//! (`conv1.0.weight`, `conv2.2.bias`, `inception_4e.branch3_2.weight`, `fc.weight`)
//! match a PyTorch `state_dict`. Where the tutorial has `AvgPool2d(7)` this model
//! averages each whole plane: the same at 224x224, and small images still work.

use std::fmt::Write;

use anyhow::{ensure, Result};

use super::inception::{Inception, InceptionChannels};
use super::init::{Init, ParamBuilder};
use super::layers::{Conv2d, LayerGeometry, Linear};
use crate::engine::autograd::Parameters;
use crate::engine::autograd::{Tape, Var};
use crate::engine::device::geometry::{window_output, PoolGeometry};
use crate::engine::device::Device;
use crate::engine::ops::Seed;
use crate::engine::tensor::Tensor;

/// The shape of the network's ends.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GoogLeNetConfig {
    pub in_channels: usize,
    pub classes: usize,
    /// Drop probability before the classifier.
    pub dropout: f32,
}

impl Default for GoogLeNetConfig {
    /// The tutorial's: grey images, ten classes, dropout 0.4.
    fn default() -> Self {
        GoogLeNetConfig {
            in_channels: 1,
            classes: 10,
            dropout: 0.4,
        }
    }
}

/// Whether dropout is active (training) or the identity (evaluation).
#[derive(Clone, Debug)]
pub enum Mode {
    /// Dropout on; `dropout_seed` picks the mask (use a new one every step).
    Train {
        dropout_seed: Seed,
    },
    Eval,
}

enum Stage {
    /// Conv 7x7/2 pad 3, ReLU, max pool 3/2 pad 1 (`conv1.0` is the conv).
    Conv1(Conv2d),
    /// Conv 1x1, ReLU, conv 3x3 pad 1, ReLU, max pool 3/2 pad 1 (`conv2.0`, `conv2.2`).
    Conv2(Conv2d, Conv2d),
    Inception(Box<Inception>),
    /// Max pool 3/2 pad 1.
    MaxPool,
    /// Average over each whole plane.
    AvgPool,
    Dropout(f32),
    /// Flatten, then the classifier.
    Fc(Linear),
}

/// One line of the model summary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StageSummary {
    pub name: String,
    /// `[C, H, W]` of one image after this stage (`[classes]` after `fc`).
    pub output: Vec<usize>,
    pub params: usize,
}

pub struct GoogLeNet {
    config: GoogLeNetConfig,
    stages: Vec<(String, Stage)>,
}

/// The paper's Inception table: (name, in, c1, (c2a, c2b), (c3a, c3b), c4), with the
/// max pools between groups.
const INCEPTION_TABLE: [(&str, [usize; 6], [usize; 1]); 9] = [
    ("inception_3a", [192, 64, 96, 128, 16, 32], [32]),
    ("inception_3b", [256, 128, 128, 192, 32, 96], [64]),
    ("inception_4a", [480, 192, 96, 208, 16, 48], [64]),
    ("inception_4b", [512, 160, 112, 224, 24, 64], [64]),
    ("inception_4c", [512, 128, 128, 256, 24, 64], [64]),
    ("inception_4d", [512, 112, 144, 288, 32, 64], [64]),
    ("inception_4e", [528, 256, 160, 320, 32, 128], [128]),
    ("inception_5a", [832, 256, 160, 320, 32, 128], [128]),
    ("inception_5b", [832, 384, 192, 384, 48, 128], [128]),
];

impl GoogLeNet {
    /// Builds the model and its freshly initialised parameters.
    pub fn new(
        device: &Device,
        config: GoogLeNetConfig,
        init: Init,
        seed: u64,
    ) -> Result<(GoogLeNet, Parameters)> {
        let mut b = ParamBuilder::new(device, seed, init);
        let mut stages = Vec::new();
        stages.push((
            "conv1".to_string(),
            Stage::Conv1(Conv2d::new(
                &mut b,
                "conv1.0",
                config.in_channels,
                64,
                7,
                2,
                3,
            )?),
        ));
        stages.push((
            "conv2".to_string(),
            Stage::Conv2(
                Conv2d::new(&mut b, "conv2.0", 64, 64, 1, 1, 0)?,
                Conv2d::new(&mut b, "conv2.2", 64, 192, 3, 1, 1)?,
            ),
        ));
        for (name, [c_in, c1, c2a, c2b, c3a, c3b], [c4]) in INCEPTION_TABLE {
            let channels = InceptionChannels {
                c_in,
                c1,
                c2: (c2a, c2b),
                c3: (c3a, c3b),
                c4,
            };
            stages.push((
                name.to_string(),
                Stage::Inception(Box::new(Inception::new(&mut b, name, channels)?)),
            ));
            match name {
                "inception_3b" => stages.push(("max_pool3".to_string(), Stage::MaxPool)),
                "inception_4e" => stages.push(("max_pool4".to_string(), Stage::MaxPool)),
                _ => {}
            }
        }
        stages.push(("avg_pool".to_string(), Stage::AvgPool));
        stages.push(("dropout".to_string(), Stage::Dropout(config.dropout)));
        stages.push((
            "fc".to_string(),
            Stage::Fc(Linear::new(&mut b, "fc", 1024, config.classes)?),
        ));
        Ok((GoogLeNet { config, stages }, b.finish()))
    }

    pub fn config(&self) -> GoogLeNetConfig {
        self.config
    }

    /// Logits `[n, classes]` for images `[n, in_channels, h, w]`.
    pub fn forward(
        &self,
        tape: &mut Tape,
        params: &Parameters,
        images: &Tensor,
        mode: Mode,
    ) -> Result<Var> {
        let [_, c, _, _] = images.dims4("GoogLeNet input")?;
        ensure!(
            c == self.config.in_channels,
            "GoogLeNet expects {} input channel(s), got images of shape {:?}",
            self.config.in_channels,
            images.shape()
        );
        let mut x = tape.constant(images.clone());
        for (_, stage) in &self.stages {
            x = match stage {
                Stage::Conv1(conv) => {
                    let y = conv.forward_relu(tape, params, &x)?;
                    tape.max_pool(&y, 3, 2, 1)?
                }
                Stage::Conv2(reduce, conv) => {
                    let y = reduce.forward_relu(tape, params, &x)?;
                    let y = conv.forward_relu(tape, params, &y)?;
                    tape.max_pool(&y, 3, 2, 1)?
                }
                Stage::Inception(block) => block.forward(tape, params, &x)?,
                Stage::MaxPool => tape.max_pool(&x, 3, 2, 1)?,
                Stage::AvgPool => tape.global_avg_pool(&x)?,
                Stage::Dropout(p) => match &mode {
                    Mode::Train { dropout_seed } if *p > 0.0 => {
                        tape.dropout(&x, *p, dropout_seed.clone())?
                    }
                    _ => x,
                },
                Stage::Fc(fc) => {
                    let flat = tape.flatten(&x)?;
                    fc.forward(tape, params, &flat)?
                }
            };
        }
        Ok(x)
    }

    /// Every convolution and pool that `forward` runs on `batch` images of
    /// `size x size`, in order, computed from the geometry alone (nothing runs). Each is
    /// named after its module in the tutorial's tree: convolutions as their parameters
    /// (`conv1.0`, `inception_3a.branch2_2`), pools by position (`conv1.2`, `conv2.4`,
    /// `inception_3a.branch4_1`, `max_pool3`, `avg_pool`).
    pub fn layer_geometries(
        &self,
        batch: usize,
        size: usize,
    ) -> Result<Vec<(String, LayerGeometry)>> {
        type Layers = Vec<(String, LayerGeometry)>;
        fn conv(layers: &mut Layers, name: &str, conv: &Conv2d, x: &mut [usize; 4]) -> Result<()> {
            let g = conv.geometry(*x)?;
            layers.push((name.to_string(), LayerGeometry::Conv(g)));
            *x = g.output_shape();
            Ok(())
        }
        // Max pool 3/2 pad 1, the pool between stages.
        fn pool(layers: &mut Layers, name: &str, x: &mut [usize; 4]) -> Result<()> {
            let g = PoolGeometry::new(*x, 3, 3, 2, 1)?;
            layers.push((name.to_string(), LayerGeometry::MaxPool(g)));
            *x = g.output_shape();
            Ok(())
        }
        let mut x = [batch, self.config.in_channels, size, size];
        let mut layers = Vec::new();
        for (name, stage) in &self.stages {
            match stage {
                Stage::Conv1(c) => {
                    conv(&mut layers, "conv1.0", c, &mut x)?;
                    pool(&mut layers, "conv1.2", &mut x)?;
                }
                Stage::Conv2(reduce, c) => {
                    conv(&mut layers, "conv2.0", reduce, &mut x)?;
                    conv(&mut layers, "conv2.2", c, &mut x)?;
                    pool(&mut layers, "conv2.4", &mut x)?;
                }
                Stage::Inception(block) => {
                    layers.extend(block.layer_geometries(name, x)?);
                    x = block.output_shape(x);
                }
                Stage::MaxPool => pool(&mut layers, name, &mut x)?,
                Stage::AvgPool => {
                    let g = PoolGeometry::new(x, x[2], x[3], 1, 0)?;
                    layers.push((name.clone(), LayerGeometry::AvgPool(g)));
                    x = g.output_shape();
                }
                Stage::Dropout(_) | Stage::Fc(_) => {}
            }
        }
        Ok(layers)
    }

    /// Each stage's output shape and parameter count for `size x size` inputs,
    /// computed from the geometry alone (nothing runs).
    pub fn summary(&self, params: &Parameters, size: usize) -> Result<Vec<StageSummary>> {
        let pool = |[n, c, h, w]: [usize; 4]| -> Result<[usize; 4]> {
            Ok([n, c, window_output(h, 3, 2, 1)?, window_output(w, 3, 2, 1)?])
        };
        let mut shape = [1, self.config.in_channels, size, size];
        let mut rows = Vec::new();
        for (name, stage) in &self.stages {
            let output: Vec<usize> = match stage {
                Stage::Conv1(conv) => {
                    shape = pool(conv.output_shape(shape)?)?;
                    shape[1..].to_vec()
                }
                Stage::Conv2(reduce, conv) => {
                    shape = pool(conv.output_shape(reduce.output_shape(shape)?)?)?;
                    shape[1..].to_vec()
                }
                Stage::Inception(block) => {
                    shape = block.output_shape(shape);
                    shape[1..].to_vec()
                }
                Stage::MaxPool => {
                    shape = pool(shape)?;
                    shape[1..].to_vec()
                }
                Stage::AvgPool => {
                    shape = [shape[0], shape[1], 1, 1];
                    shape[1..].to_vec()
                }
                Stage::Dropout(_) => shape[1..].to_vec(),
                Stage::Fc(fc) => vec![fc.out_features()],
            };
            let prefix = format!("{}.", name);
            let count = params
                .iter()
                .filter(|p| p.name.starts_with(&prefix))
                .map(|p| p.value.numel())
                .sum();
            rows.push(StageSummary {
                name: name.clone(),
                output,
                params: count,
            });
        }
        Ok(rows)
    }
}

/// The summary as a table, like the tutorial's walk over `named_children`.
pub fn format_summary(rows: &[StageSummary], size: usize, in_channels: usize) -> String {
    let mut out = String::new();
    let total: usize = rows.iter().map(|r| r.params).sum();
    let _ = writeln!(out, "GoogLeNet on {in_channels}x{size}x{size} inputs");
    let _ = writeln!(out, "{:<14} {:>16} {:>12}", "stage", "output", "parameters");
    for row in rows {
        let shape = row
            .output
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("x");
        let _ = writeln!(out, "{:<14} {:>16} {:>12}", row.name, shape, row.params);
    }
    let _ = writeln!(out, "{:<14} {:>16} {:>12}", "total", "", total);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::device::geometry::ConvGeometry;
    use crate::engine::nn::Init;

    #[test]
    fn layer_geometries_cover_every_parameter_and_pool() {
        let device = Device::cpu();
        let (net, params) =
            GoogLeNet::new(&device, GoogLeNetConfig::default(), Init::PyTorchDefault, 0).unwrap();
        let layers = net.layer_geometries(2, 224).unwrap();
        let convs: Vec<(&String, &ConvGeometry)> = layers
            .iter()
            .filter_map(|(name, layer)| match layer {
                LayerGeometry::Conv(g) => Some((name, g)),
                _ => None,
            })
            .collect();
        // conv1, conv2's two, six per Inception block.
        assert_eq!(convs.len(), 3 + 9 * 6);
        assert_eq!(
            *convs[0].1,
            ConvGeometry::new([2, 1, 224, 224], 64, 7, 2, 3).unwrap()
        );
        // Each convolution's weight is its parameter's shape, so the inputs chain
        // correctly; with the classifier they hold all 5,977,530 parameters.
        for (name, g) in &convs {
            let id = params.find(&format!("{name}.weight")).unwrap();
            assert_eq!(params.value(id).shape(), g.weight_shape(), "{name}");
        }
        let conv_params: usize = convs
            .iter()
            .map(|(_, g)| g.c_out * g.patch_len() + g.c_out)
            .sum();
        assert_eq!(conv_params + 1024 * 10 + 10, params.scalar_count());
        assert_eq!(params.scalar_count(), 5_977_530);

        let pools: Vec<(&str, [usize; 4], [usize; 4])> = layers
            .iter()
            .filter_map(|(name, layer)| match layer {
                LayerGeometry::MaxPool(g) if g.stride == 2 => {
                    Some((name.as_str(), g.input_shape(), g.output_shape()))
                }
                LayerGeometry::AvgPool(g) => {
                    Some((name.as_str(), g.input_shape(), g.output_shape()))
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            pools,
            [
                ("conv1.2", [2, 64, 112, 112], [2, 64, 56, 56]),
                ("conv2.4", [2, 192, 56, 56], [2, 192, 28, 28]),
                ("max_pool3", [2, 480, 28, 28], [2, 480, 14, 14]),
                ("max_pool4", [2, 832, 14, 14], [2, 832, 7, 7]),
                ("avg_pool", [2, 1024, 7, 7], [2, 1024, 1, 1]),
            ]
        );
        // Each block's 3x3 stride-1 pool sees the block's input and feeds branch4_2.
        for (i, (name, layer)) in layers.iter().enumerate() {
            if let LayerGeometry::MaxPool(g) = layer {
                if g.stride == 1 {
                    assert!(name.ends_with(".branch4_1"), "{name}");
                    assert_eq!((g.kh, g.pad, g.output_shape()), (3, 1, g.input_shape()));
                    let LayerGeometry::Conv(next) = layers[i + 1].1 else {
                        panic!("{name} is not followed by a convolution")
                    };
                    assert_eq!(next.input_shape(), g.output_shape());
                }
            }
        }
        // The same walk at another size ends where the summary does.
        let small = net.layer_geometries(1, 32).unwrap();
        let summary = net.summary(&params, 32).unwrap();
        let Some((_, LayerGeometry::AvgPool(g))) = small.last() else {
            panic!("the last layer is not the average pool")
        };
        let avg = summary.iter().find(|s| s.name == "avg_pool").unwrap();
        assert_eq!(g.output_shape()[1..], avg.output[..]);
    }
}
