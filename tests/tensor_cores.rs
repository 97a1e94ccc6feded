//! The tensor-core kernels (`_tf32`, `_bf16`: kernels/mma_gemm.cuh) against the f32
//! reference kernels (`_f32`, which tests/gpu_ops.rs checks against the CPU) on the same
//! device: the emulator (`emu::`) and a GPU (`cuda::`, ignored without one:
//! scripts/gpu-check.sh runs them). Every conv op (forward and backward data on both tile sizes, backward filter
//! with and without the split reduction, the three-part `conv3_` kernels with views,
//! ReLU and accumulation) and the linear layer, at GoogLeNet's shapes at batch 1-2 and
//! awkward ones (odd sizes, channels not a tile multiple). Two checks per case:
//!
//! - **Exact.** Inputs are multiples of 1/64 in [-1, 1]: 7 significant bits, so TF32 and
//!   bf16 hold them exactly; their products are multiples of 2⁻¹² of magnitude at most 1,
//!   so any sum of fewer than 4096 of them is exact in f32, in any order. Every case's
//!   reduction is shorter, so the fast kernels must equal the reference bit for bit:
//!   a wrong lane, fragment, tile edge, split or epilogue fails, however small.
//! - **Rounding.** Uniform inputs in [-1, 1]. Each operand is rounded once, with relative
//!   error at most u (2⁻¹¹ for TF32's 11 significant bits, 2⁻⁸ for bf16's 8), so a product
//!   is off by at most (2u + u²)·|a||b| and a sum of K of them by (2u + u²)·S, with
//!   S = Σ|a_k||b_k| (computed by the reference kernel on |a| and |b|, same views and
//!   mask), plus each f32 summation's own error, at most K·2⁻²⁴·S. So every element must
//!   be within (2u + u² + 2K·2⁻²⁴)·S of the reference: the worst case. Random signs make
//!   the typical error far smaller, and its size is checked too: the root mean square
//!   of the errors over all outputs (of at least 256) must stay below u times that of
//!   the reference. For
//!   round-to-nearest of both operands it is about 0.4u-0.6u (each rounding's relative
//!   error is spread evenly over at most ±u); truncation, a missed rounding or the wrong
//!   format would put it past u. (The "TF32 near 3e-4, bf16 near 1e-2" are these
//!   bounds at these depths.)
//!
//! Both checks hold on a GPU as on the emulator: exact sums are exact in any order, and
//! the bounds hold for any summation order.
//!
//! A NaN never passes: every comparison is on finite values. Outputs start poisoned: a
//! conv's output tensor is NaN inside its view (outside, random values that must come
//! back untouched), and on the emulator every other output comes from its allocator,
//! which fills fresh memory with NaN; so an element a kernel does not write fails.

use anyhow::Result;
use googlenet::engine::device::geometry::{ChannelView, ConvGeometry, LinearGeometry};
use googlenet::engine::device::{Backend, Buffer, ConvOutput, ConvOutputGrad, Precision};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Stamps each test body, `fn name(gpu: &dyn Backend) -> Result<()>`, for the emulator
/// and for GPU 0: a GPU backend (the bodies switch its precision between the reference
/// and the fast kernels), where tests/common/mod.rs's `device_tests!` hands out devices.
macro_rules! gpu_tests {
    ($($name:ident),* $(,)?) => {
        mod emu {
            use googlenet::engine::device::emu::EmuDriver;
            use googlenet::engine::device::gpu::GpuBackend;
            use googlenet::engine::device::Precision;
            $(
                #[test]
                fn $name() -> anyhow::Result<()> {
                    super::$name(&GpuBackend::new(EmuDriver::new(), Precision::F32))
                }
            )*
        }
        mod cuda {
            use googlenet::engine::device::cuda::CudaDriver;
            use googlenet::engine::device::gpu::GpuBackend;
            use googlenet::engine::device::Precision;
            $(
                #[test]
                #[ignore = "needs a CUDA GPU: run with --include-ignored where there is one"]
                fn $name() -> anyhow::Result<()> {
                    super::$name(&GpuBackend::new(CudaDriver::new(0)?, Precision::F32))
                }
            )*
        }
    };
}

gpu_tests!(
    googlenet_convolutions_match_the_f32_kernels,
    awkward_convolutions_match_the_f32_kernels,
    fused_inception_1x1s_match_the_f32_kernels,
    linear_matches_the_f32_kernels,
);

/// Outputs below which the RMS check is skipped (the per-element bound still holds).
const RMS_MIN_OUTPUTS: usize = 256;

/// `gpu`, its GEMMs switched to precision `p`.
fn at(gpu: &dyn Backend, p: Precision) -> Result<&dyn Backend> {
    gpu.set_precision(p)?;
    Ok(gpu)
}

/// The unit roundoff of a precision's GEMM operands.
fn unit_roundoff(p: Precision) -> f64 {
    match p {
        Precision::F32 => (2.0f64).powi(-24),
        Precision::Tf32 => (2.0f64).powi(-11),
        Precision::Bf16 => (2.0f64).powi(-8),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Values {
    /// Multiples of 1/64 in [-1, 1]: exact in every precision.
    Grid,
    /// Uniform in [-1, 1].
    Uniform,
}

fn values(kind: Values, len: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..len)
        .map(|_| match kind {
            Values::Grid => rng.gen_range(-64..=64) as f32 / 64.0,
            Values::Uniform => rng.gen_range(-1.0..1.0),
        })
        .collect()
}

fn abs(v: &[f32]) -> Vec<f32> {
    v.iter().map(|x| x.abs()).collect()
}

fn up(device: &dyn Backend, data: &[f32]) -> Buffer<f32> {
    device.upload_f32(data.to_vec()).unwrap()
}

fn down(device: &dyn Backend, buffer: &Buffer<f32>) -> Vec<f32> {
    device.download_f32(buffer).unwrap()
}

/// Compares one output of a fast kernel with the reference's, as the module comment
/// says: bit for bit on grid inputs; on uniform ones within the worst-case bound per
/// element (`scale` holds S, `depth` is K) and the RMS bound over all.
fn compare(
    p: Precision,
    kind: Values,
    got: &[f32],
    want: &[f32],
    scale: &[f32],
    depth: usize,
    what: &str,
) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    let u = unit_roundoff(p);
    let factor = 2.0 * u + u * u + 2.0 * depth as f64 * (2.0f64).powi(-24);
    let (mut err2, mut ref2) = (0.0f64, 0.0f64);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            g.is_finite() && w.is_finite(),
            "{what} ({p}): element {i}: got {g}, expected {w} (a NaN is never right: an \
             unwritten or poisoned element)"
        );
        if kind == Values::Grid {
            assert_eq!(
                g.to_bits(),
                w.to_bits(),
                "{what} ({p}, exact inputs): element {i}: got {g:e}, expected {w:e}"
            );
            continue;
        }
        let bound = factor * scale[i].abs() as f64 + 1e-30;
        let err = (g as f64 - w as f64).abs();
        assert!(
            err <= bound,
            "{what} ({p}): element {i}: got {g:e}, expected {w:e}: error {err:e} past the \
             bound {bound:e} = {factor:e} x S = {:e} (depth {depth})",
            scale[i]
        );
        err2 += err * err;
        ref2 += (w as f64) * (w as f64);
    }
    // A statistic: over a few outputs one small reference sum (cancellation) decides it.
    if kind == Values::Uniform && got.len() >= RMS_MIN_OUTPUTS && ref2 > 0.0 {
        let ratio = (err2 / ref2).sqrt();
        assert!(
            ratio <= u,
            "{what} ({p}): RMS error {ratio:e} of the reference's RMS, past u = {u:e}"
        );
    }
}

/// One convolution, as tests/gpu_ops.rs's ConvCase: output parts of `lens` channels,
/// each in channels `offset..offset + len` of a tensor of `total` (`views`; `None`:
/// whole tensors), backward through the same views, masked by ReLU's backward when
/// `relu`, backward data adding onto a gradient when `accumulate`.
struct ConvCase {
    input: [usize; 4],
    lens: Vec<usize>,
    views: Option<Vec<(usize, usize)>>,
    k: usize,
    stride: usize,
    pad: usize,
    relu: bool,
    accumulate: bool,
}

/// The outputs of one conv case on one device: each part's forward output, dx, and
/// each part's (dw, db).
struct ConvResults {
    y: Vec<Vec<f32>>,
    dx: Vec<f32>,
    filter: Vec<(Vec<f32>, Vec<f32>)>,
}

/// The inputs of one conv case.
struct ConvData {
    x: Vec<f32>,
    w: Vec<Vec<f32>>,
    b: Vec<Vec<f32>>,
    /// The output tensors' starting contents: NaN inside each view (poison), random outside.
    y0: Vec<Vec<f32>>,
    dy: Vec<Vec<f32>>,
    prior: Vec<f32>,
}

impl ConvData {
    fn abs(&self) -> ConvData {
        ConvData {
            x: abs(&self.x),
            w: self.w.iter().map(|w| abs(w)).collect(),
            b: self.b.iter().map(|b| abs(b)).collect(),
            y0: self.y0.clone(),
            dy: self.dy.iter().map(|d| abs(d)).collect(),
            prior: abs(&self.prior),
        }
    }
}

fn views_of(case: &ConvCase) -> Vec<ChannelView> {
    match &case.views {
        None => case.lens.iter().map(|&l| ChannelView::whole(l)).collect(),
        Some(v) => case
            .lens
            .iter()
            .zip(v)
            .map(|(&len, &(offset, total))| ChannelView { offset, len, total })
            .collect(),
    }
}

/// Runs forward, backward data and backward filter of `case` on `device`; backward
/// masks with `masks` (the reference's forward output) when the case has ReLU.
fn run_conv(
    device: &dyn Backend,
    case: &ConvCase,
    g: &ConvGeometry,
    data: &ConvData,
    masks: Option<&[Vec<f32>]>,
) -> Result<ConvResults> {
    let views = views_of(case);
    let x = up(device, &data.x);
    let w: Vec<Buffer<f32>> = data.w.iter().map(|w| up(device, w)).collect();
    let b: Vec<Buffer<f32>> = data.b.iter().map(|b| up(device, b)).collect();
    let mut y: Vec<Buffer<f32>> = data.y0.iter().map(|y| up(device, y)).collect();
    let mut parts: Vec<ConvOutput> = y
        .iter_mut()
        .enumerate()
        .map(|(i, y)| ConvOutput {
            w: &w[i],
            b: &b[i],
            y,
            view: views[i],
        })
        .collect();
    device.conv2d_fwd(&x, &mut parts, g, case.relu)?;
    let y: Vec<Vec<f32>> = y.iter().map(|y| down(device, y)).collect();

    let dy: Vec<Buffer<f32>> = data.dy.iter().map(|d| up(device, d)).collect();
    let mask_source = masks.unwrap_or(&y);
    let masks: Vec<Buffer<f32>> = mask_source.iter().map(|m| up(device, m)).collect();
    let grads: Vec<ConvOutputGrad> = (0..views.len())
        .map(|i| ConvOutputGrad {
            dy: &dy[i],
            relu_y: case.relu.then_some(&masks[i]),
            view: views[i],
        })
        .collect();
    let into = case.accumulate.then(|| up(device, &data.prior));
    let w_refs: Vec<&Buffer<f32>> = w.iter().collect();
    let dx = device.conv2d_bwd_data(&grads, &w_refs, g, into)?;
    let filter = device.conv2d_bwd_filter(&x, &grads, g)?;
    Ok(ConvResults {
        y,
        dx: down(device, &dx),
        filter: filter
            .iter()
            .map(|(dw, db)| (down(device, dw), down(device, db)))
            .collect(),
    })
}

fn check_conv(gpu: &dyn Backend, case: &ConvCase, seed: u64) -> Result<()> {
    let c_out = case.lens.iter().sum();
    let g = ConvGeometry::new(case.input, c_out, case.k, case.stride, case.pad)?;
    let views = views_of(case);
    let plane = g.n * g.oh * g.ow;
    let what = format!(
        "conv {:?} -> {:?} (views {:?}), {k}x{k}/{} pad {}, relu {}, accumulate {}",
        case.input,
        case.lens,
        case.views,
        case.stride,
        case.pad,
        case.relu,
        case.accumulate,
        k = case.k
    );
    for kind in [Values::Grid, Values::Uniform] {
        let data = ConvData {
            x: values(kind, case.input.iter().product(), seed),
            w: (0..views.len())
                .map(|i| values(kind, views[i].len * g.patch_len(), seed + 10 + i as u64))
                .collect(),
            b: (0..views.len())
                .map(|i| values(kind, views[i].len, seed + 20 + i as u64))
                .collect(),
            y0: views
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let mut y = values(Values::Uniform, v.total * plane, seed + 30 + i as u64);
                    for img in 0..g.n {
                        let start = (img * v.total + v.offset) * g.oh * g.ow;
                        y[start..start + v.len * g.oh * g.ow].fill(f32::NAN);
                    }
                    y
                })
                .collect(),
            dy: views
                .iter()
                .enumerate()
                .map(|(i, v)| values(kind, v.total * plane, seed + 40 + i as u64))
                .collect(),
            prior: values(kind, case.input.iter().product(), seed + 50),
        };
        let reference = at(gpu, Precision::F32)?;
        let want = run_conv(reference, case, &g, &data, None)?;
        // S for each output: the reference on magnitudes, through the same mask.
        let scale = run_conv(reference, case, &g, &data.abs(), Some(&want.y))?;
        for p in [Precision::Tf32, Precision::Bf16] {
            let got = run_conv(at(gpu, p)?, case, &g, &data, Some(&want.y))?;
            for i in 0..views.len() {
                let part = format!("{what}: forward, part {i}");
                compare(
                    p,
                    kind,
                    &got.y[i],
                    &want.y[i],
                    &scale.y[i],
                    g.patch_len() + 1,
                    &part,
                );
                let part = format!("{what}: weight gradient, part {i}");
                let (dw, db) = (&got.filter[i], &want.filter[i]);
                compare(p, kind, &dw.0, &db.0, &scale.filter[i].0, plane, &part);
                let part = format!("{what}: bias gradient, part {i}");
                compare(p, kind, &dw.1, &db.1, &scale.filter[i].1, plane, &part);
            }
            let depth = c_out * case.k * case.k + 1;
            let part = format!("{what}: backward data");
            compare(p, kind, &got.dx, &want.dx, &scale.dx, depth, &part);
        }
    }
    Ok(())
}

/// Each `(input [n, c_in, h, w], c_out, k, stride, pad)` case once plain and once fused
/// (bias, ReLU and accumulation), the fused one into a view that starts past the tensor's
/// first channel and ends before its last.
fn check_plain_and_fused(
    gpu: &dyn Backend,
    cases: &[([usize; 4], usize, usize, usize, usize)],
) -> Result<()> {
    for (i, &(input, c_out, k, stride, pad)) in cases.iter().enumerate() {
        for fused in [false, true] {
            let case = ConvCase {
                input,
                lens: vec![c_out],
                views: fused.then(|| vec![(3, c_out + 5)]),
                k,
                stride,
                pad,
                relu: fused,
                accumulate: fused,
            };
            check_conv(gpu, &case, 100 + 100 * i as u64 + u64::from(fused))?;
        }
    }
    Ok(())
}

/// GoogLeNet's convolutions at their real channel counts on small images, batch 1-2,
/// each plain and with every fusion (ReLU, a channel view, accumulation).
fn googlenet_convolutions_match_the_f32_kernels(gpu: &dyn Backend) -> Result<()> {
    let cases = [
        // (input [n, c_in, h, w], c_out, k, stride, pad)
        ([1, 1, 28, 28], 64, 7, 2, 3), // conv1: one grey channel, 7x7 stride 2
        ([2, 64, 7, 7], 192, 3, 1, 1), // conv2's 3x3
        ([1, 96, 7, 7], 128, 3, 1, 1), // inception 3a's 3x3 on its 96-channel reduce
        ([2, 16, 7, 7], 32, 5, 1, 2),  // 3a's 5x5 on its 16-channel reduce
        ([1, 48, 4, 4], 128, 5, 1, 2), // 5b's 5x5 on 48 channels
    ];
    check_plain_and_fused(gpu, &cases)
}

/// Shapes that are no tile multiple on any axis, batch 1, a 1x1 image, a reduction that
/// splits (2048 output pixels) and one on the 64x64 tiles (the others use 32x32 for
/// forward and backward data).
fn awkward_convolutions_match_the_f32_kernels(gpu: &dyn Backend) -> Result<()> {
    let cases = [
        ([1, 3, 5, 7], 5, 3, 2, 1),   // odd everything
        ([3, 20, 5, 7], 70, 1, 1, 0), // c_out one tile and a bit
        ([1, 66, 3, 3], 65, 3, 1, 1), // channels one past a tile
        ([1, 3, 1, 1], 2, 3, 1, 1),   // a 1x1 image through a 3x3
        ([2, 2, 32, 32], 4, 3, 1, 1), // the filter gradient splits
        // 138 tiles of 64x64: forward and backward data on the large tiles.
        ([1, 130, 54, 54], 130, 1, 1, 0),
    ];
    check_plain_and_fused(gpu, &cases)
}

/// An Inception block's three 1x1 convolutions as one GEMM (`conv3_`): 3a's
/// (64, 96, 16 of 192 channels), 5b's (384, 192, 48 of 832) and parts that straddle
/// tiles, with a split filter reduction.
fn fused_inception_1x1s_match_the_f32_kernels(gpu: &dyn Backend) -> Result<()> {
    let cases = [
        ([2, 192, 7, 7], [64, 96, 16]),
        ([1, 832, 2, 2], [384, 192, 48]),
        ([2, 4, 32, 32], [2, 3, 4]),
    ];
    for (i, (input, lens)) in cases.into_iter().enumerate() {
        let case = ConvCase {
            input,
            lens: lens.to_vec(),
            views: Some(vec![(2, lens[0] + 7), (0, lens[1]), (0, lens[2])]),
            k: 1,
            stride: 1,
            pad: 0,
            relu: true,
            accumulate: i != 1,
        };
        check_conv(gpu, &case, 5000 + 100 * i as u64)?;
    }
    Ok(())
}

/// The linear layer's three products: GoogLeNet's classifier (1024 -> 10 at batch 16),
/// batch 1 and sizes off the tiles.
fn linear_matches_the_f32_kernels(gpu: &dyn Backend) -> Result<()> {
    for (i, (n, inp, out)) in [(16, 1024, 10), (1, 3, 10), (67, 130, 65)]
        .into_iter()
        .enumerate()
    {
        let g = LinearGeometry { n, inp, out };
        let what = format!("linear {n}x{inp} -> {out}");
        for kind in [Values::Grid, Values::Uniform] {
            let seed = 200 + 10 * i as u64;
            let (x, w, b, dy) = (
                values(kind, n * inp, seed),
                values(kind, out * inp, seed + 1),
                values(kind, out, seed + 2),
                values(kind, n * out, seed + 3),
            );
            let run = |d: &dyn Backend, x: &[f32], w: &[f32], b: &[f32], dy: &[f32]| {
                let (x, w, b, dy) = (up(d, x), up(d, w), up(d, b), up(d, dy));
                let y = d.linear_fwd(&x, &w, &b, &g)?;
                let dx = d.linear_bwd_data(&dy, &w, &g)?;
                let (dw, db) = d.linear_bwd_weight(&x, &dy, &g)?;
                anyhow::Ok([y, dx, dw, db].map(|buf| down(d, &buf)))
            };
            let reference = at(gpu, Precision::F32)?;
            let want = run(reference, &x, &w, &b, &dy)?;
            let scale = run(reference, &abs(&x), &abs(&w), &abs(&b), &abs(&dy))?;
            for p in [Precision::Tf32, Precision::Bf16] {
                let got = run(at(gpu, p)?, &x, &w, &b, &dy)?;
                for (j, (name, depth)) in [
                    ("forward", inp + 1),
                    ("backward data", out),
                    ("weight gradient", n),
                ]
                .into_iter()
                .enumerate()
                {
                    let part = format!("{what}: {name}");
                    compare(p, kind, &got[j], &want[j], &scale[j], depth, &part);
                }
                // The bias gradient is an f32 sum in every precision.
                let part = format!("{what}: bias gradient");
                compare(
                    Precision::F32,
                    Values::Grid,
                    &got[3],
                    &want[3],
                    &[],
                    n,
                    &part,
                );
            }
        }
    }
    Ok(())
}
