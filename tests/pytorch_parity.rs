//! Our GoogLeNet against PyTorch's, without PyTorch: `tests/fixtures/pytorch_googlenet.json`
//! and `pytorch_googlenet_64.json` each hold PyTorch's numbers for one training setup
//! (written by hand with
//! `scripts/make_pytorch_fixture.py`; its `command` and `torch` fields say how and with
//! what). Weights, images and labels come from a formula both sides compute (its
//! `formula` field; `hashed_uniform` here), so the fixture holds no weights.
//!
//! Compared: all logits and the loss of one forward pass (batch 4 of 1x32x32; batch 1 of
//! 1x64x64 in the second fixture), every parameter gradient's L2 norm and three sampled
//! entries of it, then after three Adam steps (one in the second fixture; lr 0.001, the
//! same batch) the loss before each step, every parameter's L2
//! norm, its update's L2 norm and three sampled update entries. Dropout is off on both
//! sides: p = 0 (`GoogLeNetConfig { dropout: 0.0 }` here in `Mode::Train`, PyTorch's
//! `Dropout(0.0)` in `train()` mode), which is the identity; the model has no batch
//! norm, so that is also exactly evaluation mode.
//!
//! The images were picked (`image_stream`) so that no ReLU input or max-pool choice of
//! the first forward pass is within 11x PyTorch float32's noise of its threshold:
//! another summation order then cannot flip one, which would move a gradient by a
//! whole position's share, far beyond these tolerances (the fixture's
//! `decision_margin`).
//!
//! `cargo test --release --test pytorch_parity -- --nocapture` prints the discrepancies
//! next to the tolerances, and each against PyTorch's float64 run where the fixture has
//! it (it is the same size as PyTorch float32's own error).

mod common;

use anyhow::{ensure, Context, Result};
use googlenet::training::step::train_step;
use googlenet::{
    Adam, Device, GoogLeNet, GoogLeNetConfig, Init, Labels, Mode, Parameters, Tape, Tensor,
};
use serde::Deserialize;

// Tolerances (f32): each is about five to ten times the largest discrepancy measured
// against the fixture (PyTorch 2.15, CPU) on our cpu and emu devices, and above PyTorch
// float32's own error against float64 (the fixture's `pytorch_f32_error`). "cpu/emu"
// below are those measurements. TF32 and bf16 (emu, and cuda at those precisions) have
// their own, below `F32`.
struct Tolerances {
    /// Logits: max |ours - PyTorch| / max |PyTorch logit|. cpu/emu 1.2e-6/2.0e-6;
    /// PyTorch's own 8.6e-7 (float32 sums of up to 7,500 products, in different orders).
    logits: f64,
    /// The first loss, relative. cpu/emu 1.5e-9/1.1e-7. Kept at the logits' tolerance:
    /// the loss moves by at most about twice the largest logit error, so logits that pass
    /// can move it this much.
    loss: f64,
    /// Gradient L2 norms, relative. cpu/emu 4.1e-7/4.1e-7; PyTorch's own 2.4e-7.
    grad_norm: f64,
    /// Sampled gradient entries: |ours - PyTorch| <= grad_sample_floor * RMS +
    /// grad_sample_rel * |PyTorch|, RMS = the gradient's norm / sqrt(numel). An entry can
    /// be a sum that cancels, so its own relative error is unbounded; the noise scales
    /// with the sizes of the terms, which the RMS stands for. cpu/emu 3.7e-6/9.8e-6 RMS;
    /// PyTorch's own 3.9e-6 RMS.
    grad_sample_floor: f64,
    grad_sample_rel: f64,
    /// Losses before Adam steps 2 and 3, relative: the first update (about lr * sign(g)
    /// per weight) moved the loss from 2.1 to 6.7, so rounding differences are amplified.
    /// cpu/emu 9.8e-7/1.8e-6; PyTorch's own 1.1e-6.
    step_loss: f64,
    /// Parameter L2 norms after the Adam steps, relative. cpu/emu 8.8e-8/1.6e-7;
    /// PyTorch's own 1.3e-7.
    weight_norm: f64,
    /// L2 norm of each parameter's total update (after - before), relative: the part of
    /// the weights Adam computed. cpu/emu 2.5e-6/7.6e-6; PyTorch's own 4.7e-6. Larger than
    /// the gradients' because Adam divides by the gradient's size: an entry whose gradient
    /// is within rounding of zero can move by up to 2 lr either way.
    update_norm: f64,
    /// Sampled update entries (chosen where the gradient is clear of zero at every step,
    /// see the script), absolute, in units of lr. cpu/emu 3.7e-5/2.0e-4 lr; PyTorch's own
    /// 7.6e-5 lr.
    update_sample: f64,
}

/// TF32 (measured on emu; a GPU sums inside mma.sync in its own order, far below these
/// bounds): every conv and linear operand rounded to 11 significant bits (u = 2^-11 =
/// 4.9e-4) against PyTorch's f32. The error grows
/// through the network's ~20 GEMMs in a row, and gradient and update figures dominated
/// by sums that cancel (branch biases) take relative errors far above u. Each bound is
/// about 3x the emu measurement (in brackets), as the f32 ones are 5-10x theirs:
/// logits [1.65e-3 = 3.4u], loss [1.8e-4], gradient norms [2.9e-2, a bias], gradient
/// entries [0.31 RMS], later losses [7.2e-3], weight norms [8.7e-3, a bias], update
/// norms [0.11, a bias], update entries [2.2 lr: Adam moves a weight whose gradient is
/// near zero by up to lr a step either way, so 3 steps can differ by up to 6 lr].
const TF32: Tolerances = Tolerances {
    logits: 5e-3,
    loss: 1e-3,
    grad_norm: 0.1,
    grad_sample_floor: 1.0,
    grad_sample_rel: 0.02,
    step_loss: 3e-2,
    weight_norm: 3e-2,
    update_norm: 0.3,
    update_sample: 5.0,
};

/// bf16: 8 significant bits (u = 2^-8, 8x TF32's), the same reasoning; measured on emu:
/// logits [1.3e-2], loss [6.9e-4], gradient norms [0.14], gradient entries [1.17 RMS],
/// later losses [7.5e-2], weight norms [1.3e-2], update norms [0.135], update entries
/// [3.9 lr]. The entry and update bounds are loose by nature in bf16 (a gradient entry's
/// error is of the order of the gradient's RMS); the logits and losses are the check
/// that the arithmetic is bf16's and no worse.
const BF16: Tolerances = Tolerances {
    logits: 4e-2,
    loss: 5e-3,
    grad_norm: 0.4,
    grad_sample_floor: 3.0,
    grad_sample_rel: 0.1,
    step_loss: 0.2,
    weight_norm: 4e-2,
    update_norm: 0.4,
    update_sample: 5.0,
};

const F32: Tolerances = Tolerances {
    logits: 1e-5,
    loss: 1e-5,
    grad_norm: 3e-6,
    grad_sample_floor: 1e-4,
    grad_sample_rel: 2e-5,
    step_loss: 2e-5,
    weight_norm: 2e-6,
    update_norm: 5e-5,
    update_sample: 2e-3,
};

#[derive(Deserialize)]
struct Fixture {
    command: String,
    torch: String,
    batch: usize,
    image_size: usize,
    image_stream: u64,
    lr: f64,
    adam_steps: usize,
    weight_bits_sum: u64,
    image_bits_sum: u64,
    labels: Vec<u32>,
    logits: Vec<Vec<f64>>,
    logits_f64: Vec<Vec<f64>>,
    losses: Vec<f64>,
    losses_f64: Vec<f64>,
    pytorch_f32_error: serde_json::Map<String, serde_json::Value>,
    params: Vec<ParamRecord>,
}

#[derive(Deserialize)]
struct ParamRecord {
    name: String,
    shape: Vec<usize>,
    grad_norm: f64,
    grad_norm_f64: f64,
    /// `[index, value]` pairs at the formula's sampled indices.
    grad_samples: Vec<(usize, f64)>,
    weight_norm: f64,
    weight_norm_f64: f64,
    update_norm: f64,
    update_norm_f64: f64,
    /// `[index, after - before]` pairs.
    update_samples: Vec<(usize, f64)>,
}

/// A fixture, embedded so the test executable runs anywhere (the GPU machine has no
/// checkout at this path), and its file name for messages.
struct FixtureFile {
    name: &'static str,
    text: &'static str,
}

/// Batch 4 of 32x32: three Adam steps on the same batch.
const FIXTURE_32: FixtureFile = FixtureFile {
    name: "tests/fixtures/pytorch_googlenet.json",
    text: include_str!("fixtures/pytorch_googlenet.json"),
};

/// Batch 1 of 64x64: conv2's 3x3 convolution runs on a 16x16 plane, where the CPU device
/// takes Winograd's transforms (forward and backward data); no 3x3 convolution of the
/// 32x32 fixture reaches their 14x14 minimum. One Adam step: on a single image the
/// second and third drive PyTorch's float64 loss to exactly 0, where a relative loss
/// error means nothing. Its image stream has the largest decision margin of 1,000
/// tried (7.1x, `--find-image-stream`). The `F32` bounds hold: measured on cpu/emu,
/// logits 1.4e-6/1.3e-6, gradient norms 2.0e-6/1.3e-6 (PyTorch's own 1.5e-6 against
/// float64, where ours is 5.2e-7/1.2e-6), gradient entries 9.8e-6/1.1e-5 RMS. A planted
/// 2e-5 relative error in Winograd's filter transform fails this fixture on cpu (95
/// discrepancies) and passes the 32x32 one.
const FIXTURE_64: FixtureFile = FixtureFile {
    name: "tests/fixtures/pytorch_googlenet_64.json",
    text: include_str!("fixtures/pytorch_googlenet_64.json"),
};

impl FixtureFile {
    fn parse(&self) -> Result<Fixture> {
        serde_json::from_str(self.text).with_context(|| format!("parsing {}", self.name))
    }
}

/// SplitMix64's output function.
fn splitmix64(key: u64) -> u64 {
    let mut z = key.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The fixture's formula: `count` values `a * (2u - 1)` of stream `stream`, in f64
/// (exactly rounded operations only), then rounded to f32: the same bits as numpy's.
fn hashed_uniform(stream: u64, count: usize, amplitude: f64) -> Vec<f32> {
    (0..count as u64)
        .map(|i| {
            let u = (splitmix64((stream << 32) | i) >> 11) as f64 / (1u64 << 53) as f64;
            (amplitude * (2.0 * u - 1.0)) as f32
        })
        .collect()
}

/// Every parameter from the formula: parameter t is stream t, weights uniform in
/// ±sqrt(6 / fan_in), biases in ±1 / sqrt(fan_in) (their weight's fan_in).
fn set_formula_weights(params: &mut Parameters, device: &Device) -> Result<()> {
    let mut values = Vec::new();
    let mut fan_in = 0;
    for (t, p) in params.iter().enumerate() {
        let shape = p.value.shape();
        let amplitude = if shape.len() > 1 {
            fan_in = p.value.numel() / shape[0];
            (6.0 / fan_in as f64).sqrt()
        } else {
            1.0 / (fan_in as f64).sqrt()
        };
        let data = hashed_uniform(t as u64, p.value.numel(), amplitude);
        values.push(Tensor::from_vec(device, shape, data)?);
    }
    params.set_all(values)
}

/// The formula's sampled gradient indices of parameter t (the fixture lists them too).
fn sample_indices(t: usize, numel: usize) -> Vec<usize> {
    let first = (splitmix64((2000 << 32) | t as u64) % numel as u64) as usize;
    (0..3).map(|k| (first + k * (numel / 3)) % numel).collect()
}

fn norm(values: &[f64]) -> f64 {
    values.iter().map(|v| v * v).sum::<f64>().sqrt()
}

fn to_f64(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.to_vec()?.into_iter().map(f64::from).collect())
}

fn relative(ours: f64, theirs: f64) -> f64 {
    (ours - theirs).abs() / theirs.abs().max(f64::MIN_POSITIVE)
}

/// One compared quantity: the largest discrepancy with PyTorch (in the tolerance's
/// units) and where, the same against PyTorch's float64 run where the fixture has it,
/// and every entry beyond tolerance.
struct Check {
    what: &'static str,
    tolerance: f64,
    worst: f64,
    at: String,
    worst_f64: Option<f64>,
    failures: Vec<String>,
}

impl Check {
    fn new(what: &'static str, tolerance: f64) -> Check {
        Check {
            what,
            tolerance,
            worst: 0.0,
            at: String::new(),
            worst_f64: None,
            failures: Vec::new(),
        }
    }

    /// A discrepancy that must stay within the tolerance.
    fn see(&mut self, value: f64, at: impl Fn() -> String) {
        self.see_within(value, self.tolerance, at);
    }

    /// A discrepancy that must stay within `limit` (the tolerance widened for this entry).
    fn see_within(&mut self, value: f64, limit: f64, at: impl Fn() -> String) {
        if value > self.worst || value.is_nan() {
            self.worst = value;
            self.at = at();
        }
        if value.is_nan() || value > limit {
            self.failures.push(format!(
                "{}: {} ({value:.3e} > {limit:.3e})",
                self.what,
                at()
            ));
        }
    }

    /// The same discrepancy against PyTorch's float64 run (reported, not checked).
    fn see_f64(&mut self, value: f64) {
        self.worst_f64 = Some(self.worst_f64.unwrap_or(0.0).max(value));
    }
}

/// Sum of the f32 bit patterns of a tensor list, as the fixture's `*_bits_sum`.
fn bits_sum<'a>(tensors: impl IntoIterator<Item = &'a Tensor>) -> Result<u64> {
    let mut sum = 0u64;
    for t in tensors {
        sum += t.to_vec()?.iter().map(|v| v.to_bits() as u64).sum::<u64>();
    }
    Ok(sum)
}

fn parity(device: Device, file: &FixtureFile, tol: &Tolerances) -> Result<()> {
    let fx = file.parse()?;
    eprintln!(
        "{}: torch {}, made by `{}`",
        file.name, fx.torch, fx.command
    );
    let config = GoogLeNetConfig {
        dropout: 0.0,
        ..GoogLeNetConfig::default()
    };
    let (net, mut params) = GoogLeNet::new(&device, config, Init::PyTorchDefault, 0)?;
    ensure!(
        params.len() == fx.params.len(),
        "{} parameters here, {} in the fixture",
        params.len(),
        fx.params.len()
    );
    for (t, (p, r)) in params.iter().zip(&fx.params).enumerate() {
        ensure!(
            p.name == r.name && p.value.shape() == r.shape.as_slice(),
            "parameter {t}: {} {:?} here, {} {:?} in PyTorch's state_dict",
            p.name,
            p.value.shape(),
            r.name,
            r.shape
        );
        let indices: Vec<usize> = r.grad_samples.iter().map(|s| s.0).collect();
        ensure!(
            indices == sample_indices(t, p.value.numel()),
            "{}: the fixture's sampled indices are not the formula's",
            p.name
        );
    }
    set_formula_weights(&mut params, &device)?;
    let (n, s) = (fx.batch, fx.image_size);
    let pixels = hashed_uniform(fx.image_stream, n * s * s, 1.0);
    let images = Tensor::from_vec(&device, &[n, 1, s, s], pixels)?;
    let labels: Vec<u32> = (0..n as u64)
        .map(|j| (splitmix64((1001 << 32) | j) % 10) as u32)
        .collect();
    ensure!(labels == fx.labels, "labels from the formula differ");
    ensure!(
        bits_sum(params.iter().map(|p| &p.value))? == fx.weight_bits_sum,
        "the formula's weights are not bit-identical to numpy's"
    );
    ensure!(
        bits_sum([&images])? == fx.image_bits_sum,
        "the formula's images are not bit-identical to numpy's"
    );
    let labels = Labels::new(&device, &labels, 10)?;

    // One forward/backward, as train_step does it, keeping the logits and gradients.
    let mut tape = Tape::new();
    let logits = net.forward(
        &mut tape,
        &params,
        &images,
        Mode::Train {
            dropout_seed: 1.into(),
        },
    )?;
    let loss = tape.cross_entropy(&logits, &labels)?;
    let first_loss = f64::from(loss.value.scalar()?);
    let ours_logits = to_f64(&logits.value)?;
    let grads = tape.backward(&loss, &params)?;
    drop(logits);

    let mut logits_check = Check::new("logits (of max |logit|)", tol.logits);
    let theirs = fx.logits.concat();
    let exact = fx.logits_f64.concat();
    let scale = theirs.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for (i, ((a, b), e)) in ours_logits.iter().zip(&theirs).zip(&exact).enumerate() {
        logits_check.see((a - b).abs() / scale, || {
            format!("logit {i}: ours {a}, PyTorch {b}")
        });
        logits_check.see_f64((a - e).abs() / scale);
    }
    let mut loss_check = Check::new("loss (relative)", tol.loss);
    loss_check.see(relative(first_loss, fx.losses[0]), || {
        format!("ours {first_loss}, PyTorch {}", fx.losses[0])
    });
    loss_check.see_f64(relative(first_loss, fx.losses_f64[0]));

    let mut norm_check = Check::new("gradient norms (relative)", tol.grad_norm);
    let mut entry_check = Check::new("gradient entries (of RMS)", tol.grad_sample_floor);
    for ((p, r), g) in params.iter().zip(&fx.params).zip(&grads.0) {
        let g = g.as_ref();
        let g = to_f64(g.with_context(|| format!("{} has no gradient", p.name))?)?;
        let ours = norm(&g);
        norm_check.see(relative(ours, r.grad_norm), || {
            format!("{}: ours {ours}, PyTorch {}", p.name, r.grad_norm)
        });
        norm_check.see_f64(relative(ours, r.grad_norm_f64));
        let rms = r.grad_norm / (g.len() as f64).sqrt();
        for &(i, theirs) in &r.grad_samples {
            let limit = tol.grad_sample_floor + tol.grad_sample_rel * theirs.abs() / rms;
            entry_check.see_within((g[i] - theirs).abs() / rms, limit, || {
                format!(
                    "{}[{i}]: ours {}, PyTorch {theirs}, RMS {rms:.3e}",
                    p.name, g[i]
                )
            });
        }
    }

    // Adam: the first step with these gradients, then whole train_steps on the same batch.
    let initial: Vec<Vec<f64>> = params
        .iter()
        .map(|p| to_f64(&p.value))
        .collect::<Result<_>>()?;
    let mut adam = Adam::new(&params, fx.lr)?;
    adam.step(&mut params, &grads)?;
    drop(grads);
    let mut losses = vec![first_loss];
    for step in 1..fx.adam_steps {
        let result = train_step(&net, &mut params, &mut adam, &images, &labels, step as u64)?;
        losses.push(f64::from(result.loss));
    }
    let mut step_loss_check = Check::new("later losses (relative)", tol.step_loss);
    let steps = losses.iter().zip(&fx.losses).zip(&fx.losses_f64);
    for (k, ((&a, &b), &exact)) in steps.enumerate().skip(1) {
        step_loss_check.see(relative(a, b), || {
            format!("before step {}: ours {a}, PyTorch {b}", k + 1)
        });
        step_loss_check.see_f64(relative(a, exact));
    }

    let mut weight_check = Check::new("weight norms (relative)", tol.weight_norm);
    let mut update_check = Check::new("update norms (relative)", tol.update_norm);
    let mut step_check = Check::new("update entries (of lr)", tol.update_sample);
    for ((p, r), before) in params.iter().zip(&fx.params).zip(&initial) {
        let after = to_f64(&p.value)?;
        let update: Vec<f64> = after.iter().zip(before).map(|(a, b)| a - b).collect();
        let (wn, un) = (norm(&after), norm(&update));
        weight_check.see(relative(wn, r.weight_norm), || {
            format!("{}: ours {wn}, PyTorch {}", p.name, r.weight_norm)
        });
        weight_check.see_f64(relative(wn, r.weight_norm_f64));
        update_check.see(relative(un, r.update_norm), || {
            format!("{}: ours {un}, PyTorch {}", p.name, r.update_norm)
        });
        update_check.see_f64(relative(un, r.update_norm_f64));
        for &(i, theirs) in &r.update_samples {
            step_check.see((update[i] - theirs).abs() / fx.lr, || {
                format!("{}[{i}]: ours {}, PyTorch {theirs}", p.name, update[i])
            });
        }
    }

    let checks = [
        logits_check,
        loss_check,
        norm_check,
        entry_check,
        step_loss_check,
        weight_check,
        update_check,
        step_check,
    ];
    eprintln!("on {} ({}):", device.name(), device.precision());
    eprintln!(
        "{:<27} {:>10} {:>10} {:>10}  worst at",
        "quantity", "vs PyTorch", "vs f64", "tolerance"
    );
    for c in &checks {
        let f64_column = c.worst_f64.map_or("-".to_string(), |v| format!("{v:.2e}"));
        eprintln!(
            "{:<27} {:>10.2e} {:>10} {:>10.0e}  {}",
            c.what, c.worst, f64_column, c.tolerance, c.at
        );
    }
    eprintln!("PyTorch float32 vs float64: {:?}", fx.pytorch_f32_error);
    let failures: Vec<&str> = checks
        .iter()
        .flat_map(|c| c.failures.iter().map(String::as_str))
        .collect();
    ensure!(
        failures.is_empty(),
        "{} discrepancies with PyTorch beyond tolerance on {}:\n{}",
        failures.len(),
        device.name(),
        failures[..failures.len().min(20)].join("\n")
    );
    Ok(())
}

fn pytorch_parity(device: Device) -> Result<()> {
    parity(device, &FIXTURE_32, &F32)
}

fn pytorch_parity_64(device: Device) -> Result<()> {
    parity(device, &FIXTURE_64, &F32)
}

device_tests!(pytorch_parity, pytorch_parity_64);

/// The tensor-core precisions, on the emulator (and, ignored without one, the GPU).
mod tensor_cores {
    use super::*;
    use googlenet::Precision;

    #[test]
    fn emu_tf32() -> Result<()> {
        parity(Device::emu_at(Precision::Tf32), &FIXTURE_32, &TF32)
    }

    #[test]
    fn emu_bf16() -> Result<()> {
        parity(Device::emu_at(Precision::Bf16), &FIXTURE_32, &BF16)
    }

    #[test]
    #[ignore = "needs a CUDA GPU: run with --include-ignored where there is one"]
    fn cuda_tf32() -> Result<()> {
        parity(Device::cuda_at(0, Precision::Tf32)?, &FIXTURE_32, &TF32)
    }

    #[test]
    #[ignore = "needs a CUDA GPU: run with --include-ignored where there is one"]
    fn cuda_bf16() -> Result<()> {
        parity(Device::cuda_at(0, Precision::Bf16)?, &FIXTURE_32, &BF16)
    }
}
