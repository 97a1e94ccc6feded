//! Numerical gradient checks: every op's analytic backward, run through the tape,
//! against central differences of a scalar loss, for every element of every input.
//!
//! Precision budget. The engine computes the loss in f32, so two losses differ by the
//! true difference plus about one f32 spacing of the loss (each is rounded, and the
//! sums behind them round a little differently once an input moved); over the step
//! 2·EPS that is the noise `check` estimates, spacing / EPS: ~1e-5 for a loss near 1,
//! ~2e-4 for one near 28 (the batched `WeightedSum`). The truncation error EPS²/6 · L'''
//! is zero for the op checks, whose loss is linear in each input element between kinks
//! (every op is linear or bilinear in its inputs there, `WeightedSum` linear), and
//! below 1e-5 where cross-entropy ends the loss (|L'''| < 0.1). Hence EPS = 1e-2: a
//! smaller step only amplifies the rounding, a larger one brings more data within a
//! step of a kink. The tolerance is RTOL = 1e-2 of the tensor's largest numerical
//! gradient, and must be at least NOISE_MARGIN = 10 times the noise, or the check
//! refuses to run. The worst errors seen are ~2e-2 of the tolerance (`--nocapture`
//! prints each), while a wrong backward (a flipped sign, a lost 1/n, a wrong divisor,
//! another image's gradient, a sum that overwrites, a slice off by one) puts some
//! element off by ten tolerances or more: each of those, made on purpose in src/,
//! failed these tests.

mod common;

use anyhow::{bail, ensure, Context, Result};
use googlenet::engine::device::dropout_keeps;
use googlenet::engine::nn::{Inception, InceptionChannels, ParamBuilder};
use googlenet::{Device, Init, Labels, Parameters, Tape, Tensor, Var};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use common::{assert_close, random_tensor};

/// The perturbation of each input element (see the budget above).
const EPS: f32 = 1e-2;
/// Allowed |analytic - numerical|, relative to the tensor's largest numerical gradient.
const RTOL: f64 = 1e-2;
/// How far the tolerance must stand above the rounding noise: below that a check could
/// not tell a wrong gradient from rounding, and a gradient that is all (near) zero would
/// let a backward that produces nothing pass.
const NOISE_MARGIN: f64 = 10.0;

/// A loss built on a tape from the parameters (the inputs under test).
type LossFn<'a> = dyn Fn(&mut Tape, &Parameters) -> Result<Var> + 'a;

fn loss_value(params: &Parameters, loss_fn: &LossFn) -> Result<f64> {
    let mut tape = Tape::no_grad();
    Ok(f64::from(loss_fn(&mut tape, params)?.value.scalar()?))
}

/// Row-major coordinates of flat index `i` in `shape`, for messages.
fn coords(shape: &[usize], mut i: usize) -> Vec<usize> {
    let mut out = vec![0; shape.len()];
    for (axis, &len) in shape.iter().enumerate().rev() {
        out[axis] = i % len;
        i /= len;
    }
    out
}

/// The central difference of the loss in element `i` of parameter `name`, whose other
/// elements are `values`, and the gap between the two one-sided slopes (`l0` is the
/// unperturbed loss). The step actually taken is what f32 rounds x ± EPS to.
fn central_difference(
    params: &mut Parameters,
    loss_fn: &LossFn,
    l0: f64,
    name: &str,
    values: &[f32],
    i: usize,
) -> Result<(f64, f64)> {
    let id = params.find(name).context("parameter vanished")?;
    let device = params.value(id).device().clone();
    let shape = params.value(id).shape().to_vec();
    let mut loss_at = |v: f32| -> Result<f64> {
        let mut perturbed = values.to_vec();
        perturbed[i] = v;
        params.set(id, Tensor::from_vec(&device, &shape, perturbed)?)?;
        loss_value(params, loss_fn)
    };
    let x = values[i];
    let (up, down) = (x + EPS, x - EPS);
    let (l_up, l_down) = (loss_at(up)?, loss_at(down)?);
    params.set(id, Tensor::from_vec(&device, &shape, values.to_vec())?)?;
    let (x, up, down) = (f64::from(x), f64::from(up), f64::from(down));
    let central = (l_up - l_down) / (up - down);
    let gap = ((l_up - l0) / (up - x) - (l0 - l_down) / (x - down)).abs();
    Ok((central, gap))
}

/// Checks the tape's gradient of `loss_fn` with respect to every parameter in
/// `params`, every element, against central differences.
///
/// The kink guard, for parameters where `guarded(name)`: a ReLU at 0 or a max-pool tie
/// within EPS of the data would make the central difference no derivative of either
/// side. Where the loss is piecewise linear in an element, or smooth with a second
/// derivative small against the tolerance, the two one-sided slopes agree unless such
/// a kink lies within EPS, and a kink there moves the central difference by at most
/// half their gap. Holding the gap within the tolerance keeps a kink from passing for
/// a wrong gradient, or hiding one, and names the data as the culprit.
fn check(
    what: &str,
    params: &mut Parameters,
    loss_fn: &LossFn,
    guarded: &dyn Fn(&str) -> bool,
) -> Result<()> {
    let mut tape = Tape::new();
    let loss = loss_fn(&mut tape, params)?;
    let l0 = f64::from(loss.value.scalar()?);
    let grads = tape.backward(&loss, params)?;
    // One f32 spacing of the loss, over EPS (see the budget at the top).
    let spacing = f64::from((l0 as f32).abs().next_up()) - l0.abs();
    let noise = spacing / f64::from(EPS);
    let names: Vec<String> = params.iter().map(|p| p.name.clone()).collect();
    let mut report = Vec::new();
    for name in &names {
        let id = params.find(name).context("parameter vanished")?;
        let values = params.value(id).to_vec()?;
        let shape = params.value(id).shape().to_vec();
        let analytic = grads.0[id.index()]
            .as_ref()
            .with_context(|| format!("{what}: no gradient reached {name}"))?;
        ensure!(
            analytic.shape() == shape,
            "{what}: gradient of {name} has shape {:?}, the input {shape:?}",
            analytic.shape()
        );
        let analytic = analytic.to_vec()?;
        let (mut numeric, mut gaps) = (Vec::new(), Vec::new());
        for i in 0..values.len() {
            let (central, gap) = central_difference(params, loss_fn, l0, name, &values, i)?;
            numeric.push(central);
            gaps.push(gap);
        }

        let scale = numeric.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let tol = RTOL * scale;
        ensure!(
            tol >= NOISE_MARGIN * noise,
            "{what}: the gradient of {name} (largest {scale:e}) is too small to check \
             against the loss's rounding noise ({noise:e})"
        );
        if guarded(name) {
            if let Some(i) = (0..gaps.len()).find(|&i| gaps[i] > tol) {
                bail!(
                    "{what}: {name}{:?}: one-sided slopes differ by {:e} (tolerance {tol:e}): \
                     a kink lies within {EPS} of the data; choose other data",
                    coords(&shape, i),
                    gaps[i]
                );
            }
        }
        let errors: Vec<f64> = analytic
            .iter()
            .zip(&numeric)
            .map(|(&a, &n)| (f64::from(a) - n).abs())
            .collect();
        let bad: Vec<usize> = (0..errors.len()).filter(|&i| errors[i] > tol).collect();
        if let Some(&first) = bad.first() {
            bail!(
                "{what}: gradient of {name} is wrong at {} of {} elements; first at {:?}: \
                 analytic {}, numerical {} (tolerance {tol:e})",
                bad.len(),
                errors.len(),
                coords(&shape, first),
                analytic[first],
                numeric[first]
            );
        }
        let worst = errors.iter().fold(0.0f64, |m, &e| m.max(e));
        report.push(format!("{name} {:.0e}", worst / tol));
    }
    // Seen with --nocapture: how much of the tolerance each tensor used.
    eprintln!("{what}: worst error / tolerance: {}", report.join(", "));
    Ok(())
}

/// In a batched `WeightedSum`, the weights are scaled so the largest |r_j · y_i| is
/// LOGIT_SPAN, which leaves LOGIT_GAP below the constant logit: exp(-LOGIT_GAP) < 1e-5
/// leaves a softmax curvature far below any tolerance. The constant, 28, keeps the loss
/// under 32, where f32's spacing (the noise) doubles.
const LOGIT_SPAN: f32 = 16.0;
const LOGIT_GAP: f32 = 12.0;
const CONSTANT_LOGIT: f32 = LOGIT_SPAN + LOGIT_GAP;

/// Reduces an op's output `y [n, ...]` to a scalar linear in `y`, with fixed random
/// weights: the loss whose gradients the op checks compare.
///
/// For n = 1 it is Σ r·y: a `[1, numel]` weight row applied by `linear`. Every op keeps
/// the batch axis, though, and cross-entropy is the only one that reduces it, so for
/// n > 1 the rows go through cross-entropy with n + 1 classes: logit j < n of image i
/// is r_j · y_i, the last logit a constant C (a bias) at least LOGIT_GAP above all the
/// others, and image i is labelled i. Then the softmax sits on the constant class,
/// log-sum-exp = C up to exp(-LOGIT_GAP), and the loss is C - (1/n) Σ_i r_i · y_i:
/// still linear in y, with a different weighting per image, so a backward that mixes
/// up images cannot pass.
struct WeightedSum {
    /// `[1, m]`, or `[n + 1, m]` with a zero last row.
    r: Tensor,
    bias: Tensor,
    /// The labels, when n > 1.
    labels: Option<Labels>,
}

impl WeightedSum {
    /// Weights for outputs shaped like `y`; for n > 1, `y`'s values set their scale.
    fn new(y: &Tensor, seed: u64) -> Result<Self> {
        let device = y.device();
        let n = y.shape()[0];
        let m = y.numel() / n;
        if n == 1 {
            return Ok(WeightedSum {
                r: random_tensor(device, &[1, m], -1.0, 1.0, seed)?,
                bias: Tensor::zeros(device, &[1])?,
                labels: None,
            });
        }
        let mut r = random_tensor(device, &[n, m], -1.0, 1.0, seed)?.to_vec()?;
        let ys = y.to_vec()?;
        // With each image's own weighted sum positive, the loss (C minus their mean)
        // stays below C.
        for (ri, yi) in r.chunks_mut(m).zip(ys.chunks(m)) {
            if dot(ri, yi) < 0.0 {
                ri.iter_mut().for_each(|v| *v = -*v);
            }
        }
        let largest = ys
            .chunks(m)
            .flat_map(|yi| r.chunks(m).map(move |rj| dot(rj, yi).abs()))
            .fold(0.0f32, f32::max);
        ensure!(largest > 0.0, "the output is zero: nothing to weight");
        for v in &mut r {
            *v *= LOGIT_SPAN / largest;
        }
        r.extend(std::iter::repeat_n(0.0, m));
        let mut bias = vec![0.0; n + 1];
        bias[n] = CONSTANT_LOGIT;
        let labels: Vec<u32> = (0..n as u32).collect();
        Ok(WeightedSum {
            r: Tensor::from_vec(device, &[n + 1, m], r)?,
            bias: Tensor::from_vec(device, &[n + 1], bias)?,
            labels: Some(Labels::new(device, &labels, n + 1)?),
        })
    }

    fn apply(&self, tape: &mut Tape, y: &Var) -> Result<Var> {
        let flat = tape.flatten(y)?;
        let r = tape.constant(self.r.clone());
        let bias = tape.constant(self.bias.clone());
        let logits = tape.linear(&flat, &r, &bias)?;
        let Some(labels) = &self.labels else {
            return Ok(logits);
        };
        // Perturbations move the logits a little; the loss must stay linear all the same.
        let classes = logits.shape()[1];
        let highest = logits
            .value
            .to_vec()?
            .chunks(classes)
            .flat_map(|row| row[..classes - 1].to_vec())
            .fold(f32::NEG_INFINITY, f32::max);
        ensure!(
            highest <= LOGIT_SPAN + 1.0,
            "a logit of {highest} came within {} of the constant {CONSTANT_LOGIT}",
            LOGIT_GAP - 1.0
        );
        tape.cross_entropy(&logits, labels)
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Checks `forward`'s output through a `WeightedSum` (whose loss is linear in the output,
/// hence piecewise linear in each input element: the kink guard applies).
fn check_reduced(
    what: &str,
    params: &mut Parameters,
    forward: &LossFn,
    seed: u64,
) -> Result<WeightedSum> {
    let y0 = forward(&mut Tape::no_grad(), params)?.value;
    let head = WeightedSum::new(&y0, seed)?;
    check(
        what,
        params,
        &|tape, p| {
            let y = forward(tape, p)?;
            head.apply(tape, &y)
        },
        &|_| true,
    )?;
    Ok(head)
}

/// Registers `inputs` as parameters, so each gets a gradient, and checks `op` on them.
fn check_op(
    what: &str,
    inputs: Vec<(&str, Tensor)>,
    op: impl Fn(&mut Tape, &[Var]) -> Result<Var>,
    seed: u64,
) -> Result<WeightedSum> {
    let mut params = Parameters::default();
    let ids = inputs
        .into_iter()
        .map(|(name, value)| params.push(name, value))
        .collect::<Result<Vec<_>>>()?;
    let forward = |tape: &mut Tape, p: &Parameters| {
        let vars: Vec<Var> = ids.iter().map(|&id| tape.param(p, id)).collect();
        op(tape, &vars)
    };
    check_reduced(what, &mut params, &forward, seed)
}

/// Values at least 0.1 away from ReLU's kink at 0 (well beyond EPS), of both signs.
fn clear_of_zero(device: &Device, shape: &[usize], seed: u64) -> Result<Tensor> {
    let mut rng = StdRng::seed_from_u64(seed);
    let n = shape.iter().product();
    let values = (0..n)
        .map(|_| {
            let magnitude = rng.gen_range(0.1..1.0);
            if rng.gen_bool(0.5) {
                magnitude
            } else {
                -magnitude
            }
        })
        .collect();
    Tensor::from_vec(device, shape, values)
}

/// Per `h x w` plane, a shuffled evenly spaced ramp: no two values in a plane (hence in
/// a pooling window) are closer than 0.05, so no ±EPS step can reorder a window and
/// move its maximum; the ramp is centred on 0 so padding and signs both occur.
fn distinct_planes(device: &Device, shape: &[usize], seed: u64) -> Result<Tensor> {
    let mut rng = StdRng::seed_from_u64(seed);
    let plane = shape[2] * shape[3];
    let mut values = Vec::new();
    for _ in 0..shape[0] * shape[1] {
        let mut ramp: Vec<f32> = (0..plane)
            .map(|k| (k as f32 - (plane as f32 - 1.0) / 2.0) * 0.05)
            .collect();
        ramp.shuffle(&mut rng);
        values.extend(ramp);
    }
    Tensor::from_vec(device, shape, values)
}

/// One convolution configuration over `(input shape, c_out)` cases, checking the
/// input, weight and bias gradients.
fn check_conv(
    device: &Device,
    k: usize,
    stride: usize,
    pad: usize,
    cases: &[([usize; 4], usize)],
) -> Result<()> {
    for (case, &(input, c_out)) in cases.iter().enumerate() {
        let seed = 100 * case as u64;
        let x = random_tensor(device, &input, -1.0, 1.0, seed)?;
        let w = random_tensor(device, &[c_out, input[1], k, k], -1.0, 1.0, seed + 1)?;
        let b = random_tensor(device, &[c_out], -1.0, 1.0, seed + 2)?;
        check_op(
            &format!("conv2d {k}x{k} stride {stride} pad {pad} on {input:?} -> {c_out}"),
            vec![("x", x), ("weight", w), ("bias", b)],
            |tape, v| tape.conv2d(&v[0], &v[1], &v[2], stride, pad, false),
            seed + 3,
        )?;
    }
    Ok(())
}

/// GoogLeNet's stem (`conv1`); odd, even and non-square images, which a swap of the
/// row and column axes in im2col/col2im would not survive. On the CPU an output plane
/// of 14x15 (at least 196 positions) takes the per-image columns for its filter
/// gradient.
fn conv2d_7x7_stride2_pad3(device: Device) -> Result<()> {
    check_conv(
        &device,
        7,
        2,
        3,
        &[
            ([1, 1, 9, 9], 3),
            ([2, 2, 8, 11], 2),
            ([1, 1, 4, 3], 2),
            ([2, 1, 28, 29], 2),
        ],
    )
}

/// The pointwise path, which skips im2col and multiplies the input directly; on the
/// CPU, a plane of 14x15 (at least 196 positions) takes the per-image GEMMs.
fn conv2d_1x1(device: Device) -> Result<()> {
    check_conv(
        &device,
        1,
        1,
        0,
        &[
            ([1, 3, 5, 5], 2),
            ([2, 4, 3, 6], 3),
            ([2, 2, 1, 1], 2),
            ([2, 2, 14, 15], 2),
        ],
    )
}

/// Inception's 3x3 branch and `conv2.2`; late Inception blocks on small images see
/// planes as small as 1x1, where all but the centre tap fall in the padding. On the CPU
/// a plane of 14x15 (at least 196 positions) takes Winograd's transforms, and the
/// per-image columns for its filter gradient.
fn conv2d_3x3_pad1(device: Device) -> Result<()> {
    check_conv(
        &device,
        3,
        1,
        1,
        &[
            ([1, 2, 5, 5], 3),
            ([2, 3, 6, 7], 2),
            ([2, 2, 1, 1], 2),
            ([2, 2, 14, 15], 2),
        ],
    )
}

/// Inception's 5x5 branch, including planes smaller than the kernel; on the CPU a plane
/// of 14x15 takes the per-image columns for its filter gradient.
fn conv2d_5x5_pad2(device: Device) -> Result<()> {
    check_conv(
        &device,
        5,
        1,
        2,
        &[
            ([1, 2, 5, 5], 2),
            ([2, 2, 7, 6], 3),
            ([2, 2, 2, 2], 2),
            ([1, 3, 1, 1], 2),
            ([2, 2, 14, 15], 2),
        ],
    )
}

/// A bias per output channel that holds its ReLU input on one side of the kink (beyond
/// what |w · x| reaches at these sizes): channel 0 below (the masked path, whose gradient
/// must be zero), the others above.
fn kink_free_bias(device: &Device, c_out: usize) -> Result<Tensor> {
    let values = (0..c_out)
        .map(|c| if c == 0 { -2.0 } else { 2.0 })
        .collect();
    Tensor::from_vec(device, &[c_out], values)
}

/// The convolution epilogue's ReLU, with biases clear of the kink.
fn conv2d_relu_epilogue(device: Device) -> Result<()> {
    let x = random_tensor(&device, &[2, 2, 4, 5], -0.5, 0.5, 60)?;
    let w = random_tensor(&device, &[3, 2, 3, 3], -0.2, 0.2, 61)?;
    check_op(
        "conv2d 3x3 with the ReLU epilogue",
        vec![
            ("x", x),
            ("weight", w),
            ("bias", kink_free_bias(&device, 3)?),
        ],
        |tape, v| tape.conv2d(&v[0], &v[1], &v[2], 1, 1, true),
        62,
    )?;
    Ok(())
}

/// The fused 1x1 convolutions (ReLU in the epilogue; the first part into channels
/// 0..2 of a shared output), then a 3x3 and a 1x1 convolution of the two returned
/// parts into the next channels: every input of every part gets its gradient, the
/// fused backward reading the first part's gradient through its view and adding the
/// three input gradients in one sum.
fn conv1x1_fused_into_channel_output(device: Device) -> Result<()> {
    // 14x14: on the CPU, planes of 196 positions and up take the per-image GEMMs.
    for shape in [[2, 3, 3, 4], [1, 3, 14, 14]] {
        conv1x1_fused_at(&device, shape)?;
    }
    Ok(())
}

fn conv1x1_fused_at(device: &Device, shape: [usize; 4]) -> Result<()> {
    let device = device.clone();
    let mut inputs = vec![("x", random_tensor(&device, &shape, -0.5, 0.5, 70)?)];
    let names = [("w1", "b1", 2), ("w2", "b2", 3), ("w3", "b3", 2)];
    for (i, (w, b, c_out)) in names.into_iter().enumerate() {
        let seed = 71 + i as u64;
        inputs.push((
            w,
            random_tensor(&device, &[c_out, 3, 1, 1], -0.2, 0.2, seed)?,
        ));
        inputs.push((b, kink_free_bias(&device, c_out)?));
    }
    inputs.push((
        "w_3x3",
        random_tensor(&device, &[2, 3, 3, 3], -0.5, 0.5, 75)?,
    ));
    inputs.push(("b_3x3", random_tensor(&device, &[2], -0.5, 0.5, 76)?));
    inputs.push((
        "w_1x1",
        random_tensor(&device, &[1, 2, 1, 1], -0.5, 0.5, 77)?,
    ));
    inputs.push(("b_1x1", random_tensor(&device, &[1], -0.5, 0.5, 78)?));
    check_op(
        "fused 1x1 convolutions into a channel output",
        inputs,
        |tape, v| {
            let device = v[0].value.device().clone();
            let mut out = tape.channel_output(&device, [shape[0], 5, shape[2], shape[3]])?;
            let [r2, r3] = tape.conv1x1_fused(
                &v[0],
                [(&v[1], &v[2]), (&v[3], &v[4]), (&v[5], &v[6])],
                &mut out,
            )?;
            tape.conv2d_into(&r2, &v[7], &v[8], 1, 1, false, &mut out)?;
            tape.conv2d_into(&r3, &v[9], &v[10], 1, 0, false, &mut out)?;
            tape.finish(out)
        },
        79,
    )?;
    Ok(())
}

/// Inputs of both signs, so the gradient is masked and passed, none near the kink.
fn relu(device: Device) -> Result<()> {
    for (case, shape) in [[1, 2, 4, 5], [2, 3, 3, 3]].into_iter().enumerate() {
        let seed = 10 * case as u64;
        check_op(
            &format!("relu on {shape:?}"),
            vec![("x", clear_of_zero(&device, &shape, seed)?)],
            |tape, v| tape.relu(&v[0]),
            seed + 1,
        )?;
    }
    Ok(())
}

fn check_max_pool(device: &Device, stride: usize, shapes: &[[usize; 4]]) -> Result<()> {
    for (case, shape) in shapes.iter().enumerate() {
        let seed = 10 * case as u64;
        check_op(
            &format!("max pool 3x3 stride {stride} pad 1 on {shape:?}"),
            vec![("x", distinct_planes(device, shape, seed)?)],
            |tape, v| tape.max_pool(&v[0], 3, stride, 1),
            seed + 1,
        )?;
    }
    Ok(())
}

/// Inception's pool branch.
fn max_pool_3x3_stride1_pad1(device: Device) -> Result<()> {
    check_max_pool(
        &device,
        1,
        &[[1, 2, 5, 5], [2, 2, 6, 7], [1, 1, 1, 1], [1, 1, 2, 3]],
    )
}

/// GoogLeNet's downsampling pool; odd sizes put the last window half in the padding.
fn max_pool_3x3_stride2_pad1(device: Device) -> Result<()> {
    check_max_pool(
        &device,
        2,
        &[[1, 2, 7, 7], [2, 1, 8, 9], [1, 1, 1, 1], [1, 1, 2, 2]],
    )
}

/// Overlapping, disjoint and non-square windows; with floor-mode outputs some rows and
/// columns fall in no window and must get no gradient.
fn avg_pool(device: Device) -> Result<()> {
    let cases = [
        ([1, 2, 5, 6], (2, 2, 2)),
        ([1, 2, 5, 6], (3, 3, 1)),
        ([1, 2, 5, 6], (3, 2, 2)),
        ([2, 3, 4, 5], (2, 3, 1)),
    ];
    for (case, (shape, (kh, kw, stride))) in cases.into_iter().enumerate() {
        let seed = 10 * case as u64;
        check_op(
            &format!("avg pool {kh}x{kw} stride {stride} on {shape:?}"),
            vec![("x", random_tensor(&device, &shape, -1.0, 1.0, seed)?)],
            |tape, v| tape.avg_pool(&v[0], kh, kw, stride),
            seed + 1,
        )?;
    }
    Ok(())
}

fn global_avg_pool(device: Device) -> Result<()> {
    for (case, shape) in [[1, 3, 5, 4], [2, 2, 7, 7], [2, 3, 1, 1]]
        .into_iter()
        .enumerate()
    {
        let seed = 10 * case as u64;
        check_op(
            &format!("global avg pool on {shape:?}"),
            vec![("x", random_tensor(&device, &shape, -1.0, 1.0, seed)?)],
            |tape, v| tape.global_avg_pool(&v[0]),
            seed + 1,
        )?;
    }
    Ok(())
}

/// The backward must apply the forward's mask (same seed) and the 1/(1-p) scale.
fn dropout(device: Device) -> Result<()> {
    const P: f32 = 0.4;
    const SEED: u64 = 7;
    let shape = [1, 2, 5, 5];
    let x = random_tensor(&device, &shape, -1.0, 1.0, 1)?;
    let head = check_op(
        &format!("dropout p {P} on {shape:?}"),
        vec![("x", x.clone())],
        |tape, v| tape.dropout(&v[0], P, SEED),
        2,
    )?;

    // With Σ r·y as the loss, dL/dx is exactly r · mask / (1 - p).
    let keeps: Vec<bool> = (0..x.numel() as u64)
        .map(|i| dropout_keeps(SEED, i, P))
        .collect();
    assert!(
        keeps.contains(&true) && keeps.contains(&false),
        "the mask must both keep and drop, or it cannot tell them apart"
    );
    let mut params = Parameters::default();
    let id = params.push("x", x)?;
    let mut tape = Tape::new();
    let xv = tape.param(&params, id);
    let y = tape.dropout(&xv, P, SEED)?;
    let loss = head.apply(&mut tape, &y)?;
    let grads = tape.backward(&loss, &params)?;
    let got = grads.0[id.index()]
        .as_ref()
        .context("no gradient")?
        .to_vec()?;
    let expected: Vec<f32> = head
        .r
        .to_vec()?
        .iter()
        .zip(&keeps)
        .map(|(&r, &keep)| if keep { r / (1.0 - P) } else { 0.0 })
        .collect();
    assert_close(
        &got,
        &expected,
        1e-6,
        1e-6,
        "dropout gradient vs mask / (1 - p)",
    );

    let shape = [2, 3, 4, 4];
    check_op(
        &format!("dropout p {P} on {shape:?}"),
        vec![("x", random_tensor(&device, &shape, -1.0, 1.0, 3)?)],
        |tape, v| tape.dropout(&v[0], P, SEED),
        4,
    )?;
    Ok(())
}

fn flatten(device: Device) -> Result<()> {
    for (case, shape) in [[1, 3, 4, 5], [2, 3, 2, 3]].into_iter().enumerate() {
        let seed = 10 * case as u64;
        check_op(
            &format!("flatten of {shape:?}"),
            vec![("x", random_tensor(&device, &shape, -1.0, 1.0, seed)?)],
            |tape, v| tape.flatten(&v[0]),
            seed + 1,
        )?;
    }
    Ok(())
}

fn linear(device: Device) -> Result<()> {
    for (case, (n, inp, out)) in [(1, 6, 4), (3, 7, 5)].into_iter().enumerate() {
        let seed = 10 * case as u64;
        check_op(
            &format!("linear {inp} -> {out} on {n} rows"),
            vec![
                ("x", random_tensor(&device, &[n, inp], -1.0, 1.0, seed)?),
                (
                    "weight",
                    random_tensor(&device, &[out, inp], -1.0, 1.0, seed + 1)?,
                ),
                ("bias", random_tensor(&device, &[out], -1.0, 1.0, seed + 2)?),
            ],
            |tape, v| tape.linear(&v[0], &v[1], &v[2]),
            seed + 3,
        )?;
    }
    Ok(())
}

/// The loss itself (no weighting): a mean over rows, so each row's gradient carries 1/n.
/// The second case's logits near 20 exercise the max subtraction.
fn cross_entropy(device: Device) -> Result<()> {
    let cases: [(&[u32], usize, f32); 3] =
        [(&[4, 0, 2], 5, 0.0), (&[1, 3], 4, 20.0), (&[2], 3, 0.0)];
    for (case, (labels, classes, offset)) in cases.into_iter().enumerate() {
        let n = labels.len();
        let logits = random_tensor(
            &device,
            &[n, classes],
            offset - 2.0,
            offset + 2.0,
            case as u64,
        )?;
        let labels = Labels::new(&device, labels, classes)?;
        let mut params = Parameters::default();
        let id = params.push("logits", logits)?;
        // Smooth everywhere: no kinks to guard against, and the curvature parts the
        // one-sided slopes by up to the tolerance, which the guard would mistake for one.
        check(
            &format!("cross-entropy over {n} rows of {classes}"),
            &mut params,
            &|tape, p| {
                let z = tape.param(p, id);
                tape.cross_entropy(&z, &labels)
            },
            &|_| false,
        )?;
        let smoothed = labels.clone().smoothed(0.2)?;
        check(
            &format!("cross-entropy over {n} rows of {classes}, label smoothing 0.2"),
            &mut params,
            &|tape, p| {
                let z = tape.param(p, id);
                tape.cross_entropy(&z, &smoothed)
            },
            &|_| false,
        )?;
    }
    Ok(())
}

/// GoogLeNet's ops in training order, each gradient flowing back through all the later
/// backwards. Where the ReLU and pool kinks lie depends on the convolution's output,
/// so the seed is one whose data keep them beyond EPS of every input and convolution
/// parameter; the kink guard holds the data to that. It leaves out the classifier's
/// parameters, which come after every kink: the loss is smooth in them, and the
/// cross-entropy's curvature there, which can part the one-sided slopes by as much as
/// the tolerance, is no kink.
fn conv_relu_pool_linear_cross_entropy(device: Device) -> Result<()> {
    const SEED: u64 = 50;
    let random = |shape: &[usize], bound: f32, k: u64| {
        random_tensor(&device, shape, -bound, bound, SEED + k)
    };
    let mut params = Parameters::default();
    let x = params.push("x", random(&[2, 2, 5, 5], 1.0, 1)?)?;
    let cw = params.push("conv.weight", random(&[3, 2, 3, 3], 1.0, 2)?)?;
    let cb = params.push("conv.bias", random(&[3], 0.5, 3)?)?;
    let fw = params.push("fc.weight", random(&[4, 3], 2.0, 4)?)?;
    let fb = params.push("fc.bias", random(&[4], 0.5, 5)?)?;
    let labels = Labels::new(&device, &[1, 3], 4)?;
    check(
        "conv -> relu -> max pool -> global avg pool -> flatten -> linear -> cross-entropy",
        &mut params,
        &|tape, p| {
            let (x, cw, cb) = (tape.param(p, x), tape.param(p, cw), tape.param(p, cb));
            let y = tape.conv2d(&x, &cw, &cb, 1, 1, true)?;
            let y = tape.max_pool(&y, 3, 2, 1)?;
            let y = tape.global_avg_pool(&y)?;
            let y = tape.flatten(&y)?;
            let (fw, fb) = (tape.param(p, fw), tape.param(p, fb));
            let logits = tape.linear(&y, &fw, &fb)?;
            tape.cross_entropy(&logits, &labels)
        },
        &|name| !name.starts_with("fc."),
    )
}

/// A whole block as it runs: the fused 1x1 convolutions and the pool reading one input
/// (whose gradient sums their contributions, the fused backward adding onto the pool's),
/// the ReLU epilogues, and the branches writing their channel slices of the output.
///
/// Every weight here feeds dozens of ReLUs, so with the initial biases some kink lies
/// within EPS of nearly every element. Instead the input is drawn like the max-pool
/// tests' (no near ties in a window), and each convolution's channel 0 gets bias OFF,
/// which holds its ReLU input below 0 (the masked path, whose gradient must be zero),
/// the other channels ON, which holds theirs above 0, each by a margin no EPS step
/// crosses; the kink guard checks that for this seed. ReLU's masks within a plane are
/// checked on their own, in `relu`.
fn inception_block(device: Device) -> Result<()> {
    const SEED: u64 = 80;
    const ON: f32 = 1.0;
    const OFF: f32 = -2.0;
    let channels = InceptionChannels {
        c_in: 3,
        c1: 2,
        c2: (2, 3),
        c3: (2, 2),
        c4: 2,
    };
    for shape in [[1, 3, 5, 5], [2, 3, 6, 6]] {
        let mut builder = ParamBuilder::new(&device, SEED, Init::PyTorchDefault);
        let block = Inception::new(&mut builder, "inception", channels)?;
        let mut params = builder.finish();
        let biases: Vec<String> = params
            .iter()
            .map(|p| p.name.clone())
            .filter(|name| name.ends_with(".bias"))
            .collect();
        for name in biases {
            let id = params.find(&name).context("bias vanished")?;
            let c_out = params.value(id).numel();
            let values = (0..c_out).map(|c| if c == 0 { OFF } else { ON }).collect();
            params.set(id, Tensor::from_vec(&device, &[c_out], values)?)?;
        }
        let x = params.push("x", distinct_planes(&device, &shape, SEED + 1)?)?;
        check_reduced(
            &format!("inception block on {shape:?}"),
            &mut params,
            &|tape, p| {
                let x = tape.param(p, x);
                block.forward(tape, p, &x)
            },
            SEED + 2,
        )?;
    }
    Ok(())
}

device_tests!(
    conv2d_7x7_stride2_pad3,
    conv2d_1x1,
    conv2d_3x3_pad1,
    conv2d_5x5_pad2,
    conv2d_relu_epilogue,
    conv1x1_fused_into_channel_output,
    relu,
    max_pool_3x3_stride1_pad1,
    max_pool_3x3_stride2_pad1,
    avg_pool,
    global_avg_pool,
    dropout,
    flatten,
    linear,
    cross_entropy,
    conv_relu_pool_linear_cross_entropy,
    inception_block,
);
