//! Every GPU op, run on the emulator (the real kernels compiled for the host), against
//! the CPU reference on random inputs and awkward shapes: batch 1, odd sizes, sizes
//! that are not multiples of the kernels' tiles, every GoogLeNet convolution and pool.
//!
//! Where both devices do the same arithmetic in the same order (elementwise ops,
//! pooling, dropout, resize, Adam, the linear bias gradient) the results must
//! be equal bit for bit. GEMMs (convolution, linear) sum in another order than the
//! CPU's GEMM, and softmax uses the C library's expf/logf rather than Rust's, so those
//! are compared within tolerances stated at each check. Shapes are small: the
//! emulator runs each GPU thread as a fiber.

mod common;

use anyhow::Result;
use googlenet::engine::device::emu::EmuDriver;
use googlenet::engine::device::geometry::{
    AdamStep, ChannelView, ConvGeometry, LinearGeometry, PoolGeometry,
};
use googlenet::engine::device::gpu::{Driver, GpuBackend};
use googlenet::engine::device::{
    seed_words, Backend, Buffer, ConvOutput, ConvOutputGrad, CpuBackend, Precision, Words,
};
use googlenet::engine::device::{ImageShape, View};
use googlenet::Normalize;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use common::assert_close;

/// The emulator at f32, the precision of these bounds (tests/tensor_cores.rs tests
/// tf32 and bf16).
fn gpu() -> GpuBackend<EmuDriver> {
    GpuBackend::new(EmuDriver::new(), Precision::F32)
}

fn random(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..len).map(|_| rng.gen_range(-1.0..1.0)).collect()
}

/// Values on a coarse grid (multiples of 1/4 in [-1, 1]), so pooling windows hold ties.
fn coarse(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..len)
        .map(|_| rng.gen_range(-4..=4) as f32 / 4.0)
        .collect()
}

fn up(device: &dyn Backend, data: &[f32]) -> Buffer<f32> {
    device.upload_f32(data.to_vec()).unwrap()
}

fn down(device: &dyn Backend, buffer: &Buffer<f32>) -> Vec<f32> {
    device.download_f32(buffer).unwrap()
}

/// Bit-for-bit equality (any NaN matches any NaN), naming the first difference.
fn assert_same(actual: &[f32], expected: &[f32], what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: lengths differ");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!(
            a.to_bits() == e.to_bits() || (a.is_nan() && e.is_nan()),
            "{what}: element {i}: got {a:e}, expected {e:e}"
        );
    }
}

#[test]
fn add_is_exact() -> Result<()> {
    let (cpu, gpu) = (CpuBackend, gpu());
    for len in [1, 255, 1000] {
        let (a, b) = (random(len, 1), random(len, 2));
        let expected = down(&cpu, &cpu.add(&up(&cpu, &a), &up(&cpu, &b))?);
        let actual = down(&gpu, &gpu.add(&up(&gpu, &a), &up(&gpu, &b))?);
        assert_same(&actual, &expected, &format!("add of {len}"));
    }
    Ok(())
}

#[test]
fn relu_is_exact_on_special_values() -> Result<()> {
    let (cpu, gpu) = (CpuBackend, gpu());
    let mut x = random(300, 3);
    x[..7].copy_from_slice(&[
        -0.0,
        0.0,
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        -1e-40,
        1e-40,
    ]);
    let y_cpu = cpu.relu_fwd(&up(&cpu, &x))?;
    let y_gpu = gpu.relu_fwd(&up(&gpu, &x))?;
    assert_same(&down(&gpu, &y_gpu), &down(&cpu, &y_cpu), "relu forward");
    // -0.0 must stay -0.0 (PyTorch's clamp_min), which a plain equality would not see.
    assert_eq!(down(&gpu, &y_gpu)[0].to_bits(), (-0.0f32).to_bits());

    let dy = random(300, 4);
    let dx_cpu = cpu.relu_bwd(&y_cpu, &up(&cpu, &dy))?;
    let dx_gpu = gpu.relu_bwd(&y_gpu, &up(&gpu, &dy))?;
    assert_same(&down(&gpu, &dx_gpu), &down(&cpu, &dx_cpu), "relu backward");
    Ok(())
}

#[test]
fn dropout_masks_match_the_cpu() -> Result<()> {
    let (cpu, gpu) = (CpuBackend, gpu());
    let x = random(777, 5);
    for (p, seed) in [
        (0.0, 1),
        (0.4, 7),
        (0.5, u64::MAX),
        (0.9, 0x1234_5678_9abc_def0),
    ] {
        // The seed is read from the middle of a buffer, as from the step parameters.
        let [low, high] = seed_words(seed);
        let words = vec![u32::MAX, 5, 6, low, high, 9];
        let at = |buffer| Words {
            buffer,
            at: 3,
            len: 2,
        };
        let (cpu_words, gpu_words) = (cpu.upload_u32(words.clone())?, gpu.upload_u32(words)?);
        let expected = down(&cpu, &cpu.dropout(&up(&cpu, &x), p, at(&cpu_words))?);
        let actual = down(&gpu, &gpu.dropout(&up(&gpu, &x), p, at(&gpu_words))?);
        assert_same(&actual, &expected, &format!("dropout p={p} seed={seed}"));
    }
    Ok(())
}

#[test]
fn max_pool_matches_exactly() -> Result<()> {
    let (cpu, gpu) = (CpuBackend, gpu());
    let cases = [
        // (input [n, c, h, w], k, stride, pad)
        ([2, 3, 7, 9], 3, 2, 1),
        ([1, 2, 5, 5], 3, 1, 1),
        ([1, 1, 1, 1], 3, 2, 1),
        ([2, 2, 8, 6], 2, 2, 0),
        ([1, 3, 4, 7], 3, 2, 0),
        // Rows wider than a vector register, so the CPU's vectorised passes run their
        // main loop and its tail.
        ([2, 3, 19, 37], 3, 1, 1),
        ([1, 2, 23, 41], 3, 2, 1),
    ];
    for (i, (shape, k, stride, pad)) in cases.into_iter().enumerate() {
        let g = PoolGeometry::new(shape, k, k, stride, pad)?;
        let mut x = coarse(shape.iter().product(), 20 + i as u64);
        if x.len() > 10 {
            // Two NaNs side by side: the first one wins (its index is the argmax).
            x[3] = f32::NAN;
            x[4] = f32::NAN;
            x[7] = f32::NEG_INFINITY;
        }
        if x.len() > 1000 {
            // And inside a row, away from the edges.
            x[500] = f32::NAN;
            x[501] = f32::NAN;
        }
        let what = format!("max pool {shape:?} k{k} s{stride} p{pad}");

        let (y_cpu, arg_cpu) = cpu.max_pool_fwd(&up(&cpu, &x), &g)?;
        let (y_gpu, arg_gpu) = gpu.max_pool_fwd(&up(&gpu, &x), &g)?;
        assert_same(&down(&gpu, &y_gpu), &down(&cpu, &y_cpu), &what);
        let Buffer::Host(arg_expected) = &arg_cpu else {
            unreachable!("the CPU keeps host buffers")
        };
        assert_eq!(
            &gpu.driver.download_u32(&arg_gpu)?,
            arg_expected,
            "{what}: argmax"
        );

        let dy = random(g.n * g.c * g.oh * g.ow, 30 + i as u64);
        let dx_cpu = cpu.max_pool_bwd(&up(&cpu, &dy), &arg_cpu, &g)?;
        let dx_gpu = gpu.max_pool_bwd(&up(&gpu, &dy), &arg_gpu, &g)?;
        assert_same(
            &down(&gpu, &dx_gpu),
            &down(&cpu, &dx_cpu),
            &format!("{what}: backward"),
        );
    }
    Ok(())
}

#[test]
fn avg_pool_matches_exactly() -> Result<()> {
    let (cpu, gpu) = (CpuBackend, gpu());
    let cases = [
        // (input, kh, kw, stride): global pools as GoogLeNet's, overlapping and
        // windows that leave the last rows uncovered.
        ([2, 5, 3, 3], 3, 3, 1),
        ([1, 3, 1, 1], 1, 1, 1),
        ([2, 2, 7, 7], 3, 3, 2),
        ([1, 2, 6, 5], 2, 3, 1),
        ([1, 1, 9, 8], 4, 4, 3),
    ];
    for (i, (shape, kh, kw, stride)) in cases.into_iter().enumerate() {
        let g = PoolGeometry::new(shape, kh, kw, stride, 0)?;
        let x = random(shape.iter().product(), 40 + i as u64);
        let what = format!("avg pool {shape:?} {kh}x{kw} s{stride}");
        let y_cpu = cpu.avg_pool_fwd(&up(&cpu, &x), &g)?;
        let y_gpu = gpu.avg_pool_fwd(&up(&gpu, &x), &g)?;
        assert_same(&down(&gpu, &y_gpu), &down(&cpu, &y_cpu), &what);

        let dy = random(g.n * g.c * g.oh * g.ow, 50 + i as u64);
        let dx_cpu = cpu.avg_pool_bwd(&up(&cpu, &dy), &g)?;
        let dx_gpu = gpu.avg_pool_bwd(&up(&gpu, &dy), &g)?;
        assert_same(
            &down(&gpu, &dx_gpu),
            &down(&cpu, &dx_cpu),
            &format!("{what}: backward"),
        );
    }
    Ok(())
}

/// Tolerance of a sum of `terms` products of values in [-1, 1], summed in another order
/// than the CPU's: each order's rounding error is at most about `terms · 2⁻²⁴` times the
/// sum of magnitudes (itself at most `terms`); random signs keep it far below that.
fn gemm_tolerance(terms: usize) -> f32 {
    4e-7 * terms as f32
}

/// One convolution whose output channels come in parts of `lens` channels, on both
/// devices from the same data, every result compared within the GEMMs' tolerance.
/// Part i writes channels `offset .. offset + len` of a tensor with `total` channels
/// (from `views`, or the whole tensor), which starts out random: channels outside the
/// view must come back untouched. Backward reads each part's gradient through the same
/// view, masked by ReLU's backward when `relu` (the CPU's forward output as the mask on
/// both devices, so a value at the kink cannot split them), and backward data adds onto
/// a random gradient when `accumulate`.
struct ConvCase {
    input: [usize; 4],
    lens: Vec<usize>,
    /// `(offset, total)` per part; `None`: every part is a whole tensor.
    views: Option<Vec<(usize, usize)>>,
    k: usize,
    stride: usize,
    pad: usize,
    relu: bool,
    accumulate: bool,
}

fn check_conv(case: &ConvCase, seed: u64) -> Result<()> {
    let (cpu, gpu) = (CpuBackend, gpu());
    let c_out = case.lens.iter().sum();
    let g = ConvGeometry::new(case.input, c_out, case.k, case.stride, case.pad)?;
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
    let views: Vec<ChannelView> = match &case.views {
        None => case
            .lens
            .iter()
            .map(|&len| ChannelView::whole(len))
            .collect(),
        Some(views) => case
            .lens
            .iter()
            .zip(views)
            .map(|(&len, &(offset, total))| ChannelView { offset, len, total })
            .collect(),
    };
    let plane = g.n * g.oh * g.ow;
    let x = random(case.input.iter().product(), seed);
    let w: Vec<Vec<f32>> = (0..views.len())
        .map(|i| random(views[i].len * g.patch_len(), seed + 10 + i as u64))
        .collect();
    let b: Vec<Vec<f32>> = (0..views.len())
        .map(|i| random(views[i].len, seed + 20 + i as u64))
        .collect();
    let y0: Vec<Vec<f32>> = (0..views.len())
        .map(|i| random(views[i].total * plane, seed + 30 + i as u64))
        .collect();
    let dy: Vec<Vec<f32>> = (0..views.len())
        .map(|i| random(views[i].total * plane, seed + 40 + i as u64))
        .collect();
    let prior = random(case.input.iter().product(), seed + 50);

    let forward = |device: &dyn Backend| -> Result<Vec<Vec<f32>>> {
        let (x, w, b) = (
            up(device, &x),
            w.iter().map(|w| up(device, w)).collect::<Vec<_>>(),
            b.iter().map(|b| up(device, b)).collect::<Vec<_>>(),
        );
        let mut y: Vec<Buffer<f32>> = y0.iter().map(|y| up(device, y)).collect();
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
        device.conv2d_fwd(&x, &mut parts, &g, case.relu)?;
        Ok(y.iter().map(|y| down(device, y)).collect())
    };
    let y_cpu = forward(&cpu)?;
    let y_gpu = forward(&gpu)?;
    let tol = gemm_tolerance(g.patch_len() + 1);
    for (i, (y_gpu, y_cpu)) in y_gpu.iter().zip(&y_cpu).enumerate() {
        assert_close(
            y_gpu,
            y_cpu,
            tol,
            0.0,
            &format!("{what}: forward, part {i}"),
        );
    }

    type Grads = (Vec<f32>, Vec<(Vec<f32>, Vec<f32>)>);
    let backward = |device: &dyn Backend| -> Result<Grads> {
        let x = up(device, &x);
        let w: Vec<Buffer<f32>> = w.iter().map(|w| up(device, w)).collect();
        let dy: Vec<Buffer<f32>> = dy.iter().map(|dy| up(device, dy)).collect();
        let masks: Vec<Buffer<f32>> = y_cpu.iter().map(|y| up(device, y)).collect();
        let grads: Vec<ConvOutputGrad> = (0..views.len())
            .map(|i| ConvOutputGrad {
                dy: &dy[i],
                relu_y: case.relu.then_some(&masks[i]),
                view: views[i],
            })
            .collect();
        let into = case.accumulate.then(|| up(device, &prior));
        let w_refs: Vec<&Buffer<f32>> = w.iter().collect();
        let dx = device.conv2d_bwd_data(&grads, &w_refs, &g, into)?;
        let filter = device.conv2d_bwd_filter(&x, &grads, &g)?;
        Ok((
            down(device, &dx),
            filter
                .iter()
                .map(|(dw, db)| (down(device, dw), down(device, db)))
                .collect(),
        ))
    };
    let (dx_cpu, filter_cpu) = backward(&cpu)?;
    let (dx_gpu, filter_gpu) = backward(&gpu)?;
    // Plus one for the gradient added onto.
    let tol = gemm_tolerance(c_out * case.k * case.k + 1);
    assert_close(
        &dx_gpu,
        &dx_cpu,
        tol,
        0.0,
        &format!("{what}: backward data"),
    );
    let tol = gemm_tolerance(plane);
    for (i, ((dw_gpu, db_gpu), (dw_cpu, db_cpu))) in filter_gpu.iter().zip(&filter_cpu).enumerate()
    {
        assert_close(
            dw_gpu,
            dw_cpu,
            tol,
            0.0,
            &format!("{what}: weight gradient, part {i}"),
        );
        assert_close(
            db_gpu,
            db_cpu,
            tol,
            0.0,
            &format!("{what}: bias gradient, part {i}"),
        );
    }
    Ok(())
}

/// Forward, backward data and backward filter on every GoogLeNet convolution shape
/// (7x7/2 pad 3, 1x1, 3x3 pad 1, 5x5 pad 2) at small sizes, plus shapes that are not
/// tile multiples in any dimension, batch 1, a 1x1 image and a split reduction: plain
/// (no ReLU, whole outputs), then with every fusion (ReLU, a channel view, backward
/// data adding onto a gradient).
#[test]
fn conv_matches_within_tolerance() -> Result<()> {
    let cases = [
        // (input [n, c_in, h, w], c_out, k, stride, pad)
        ([1, 1, 17, 19], 8, 7, 2, 3), // conv1 (grey input)
        ([2, 3, 12, 11], 5, 7, 2, 3), // conv1, colour, odd sizes
        ([3, 20, 5, 7], 70, 1, 1, 0), // 1x1 reduce: c_out past one tile
        ([2, 17, 6, 5], 9, 3, 1, 1),  // 3x3 pad 1
        ([1, 5, 9, 8], 3, 5, 1, 2),   // 5x5 pad 2
        ([1, 66, 4, 4], 65, 3, 1, 1), // channels one past a tile
        ([1, 3, 1, 1], 2, 3, 1, 1),   // 1x1 image through a 3x3
        ([1, 4, 1, 1], 3, 5, 1, 2),   // and through a 5x5
        ([2, 3, 8, 7], 4, 3, 2, 1),   // stride 2 with padding
        ([2, 2, 32, 32], 4, 3, 1, 1), // 2048 output pixels: the filter gradient splits
        ([4, 1, 64, 64], 8, 7, 2, 3), // conv1 on 64x64: four splits
        ([2, 32, 8, 8], 48, 5, 1, 2), // an Inception 5x5: several tiles on every axis
        // 138 tiles of 64x64 both ways: forward and backward data on the large tiles
        // (every case above runs on the 32x32 ones).
        ([1, 130, 54, 54], 130, 1, 1, 0),
    ];
    for (i, (input, c_out, k, stride, pad)) in cases.into_iter().enumerate() {
        for fused in [false, true] {
            let case = ConvCase {
                input,
                lens: vec![c_out],
                // A view that starts past the tensor's first channel and ends before its last.
                views: fused.then(|| vec![(3, c_out + 5)]),
                k,
                stride,
                pad,
                relu: fused,
                accumulate: fused,
            };
            check_conv(&case, 100 + 100 * i as u64 + u64::from(fused))?;
        }
    }
    Ok(())
}

/// Three output parts (an Inception block's fused 1x1 convolutions): the first into a
/// view of a wider tensor, the others whole; part sizes that straddle the 64-row tiles,
/// a part of one channel, a split filter reduction, and three parts of a 3x3 (the
/// kernels take any size).
#[test]
fn fused_conv_parts_match_within_tolerance() -> Result<()> {
    let cases = [
        // (input, lens, k, pad)
        ([2, 6, 5, 7], [3, 70, 5], 1, 0),
        ([1, 9, 3, 3], [1, 2, 65], 1, 0),
        ([2, 4, 32, 32], [2, 3, 4], 1, 0), // 2048 output pixels: the reduction splits
        ([1, 3, 6, 5], [2, 3, 2], 3, 1),
    ];
    for (i, (input, lens, k, pad)) in cases.into_iter().enumerate() {
        for relu in [false, true] {
            let case = ConvCase {
                input,
                lens: lens.to_vec(),
                views: Some(vec![(2, lens[0] + 7), (0, lens[1]), (0, lens[2])]),
                k,
                stride: 1,
                pad,
                relu,
                accumulate: relu,
            };
            check_conv(&case, 5000 + 100 * i as u64 + u64::from(relu))?;
        }
    }
    Ok(())
}

/// A bad part list is an error on the GPU, not a bad launch.
#[test]
fn conv_refuses_mismatched_parts() -> Result<()> {
    let gpu = gpu();
    let g = ConvGeometry::new([1, 2, 3, 3], 4, 1, 1, 0)?;
    let (x, w, b) = (
        up(&gpu, &[0.0; 18]),
        up(&gpu, &[0.0; 8]),
        up(&gpu, &[0.0; 4]),
    );
    let mut y = up(&gpu, &[0.0; 36]);
    // Channels 2..6 of a 4-channel tensor.
    let view = ChannelView {
        offset: 2,
        len: 4,
        total: 4,
    };
    let err = gpu
        .conv2d_fwd(
            &x,
            &mut [ConvOutput {
                w: &w,
                b: &b,
                y: &mut y,
                view,
            }],
            &g,
            true,
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("outside"), "{err}");
    // Two parts: the kernels take one or three.
    let (w2, b2) = (up(&gpu, &[0.0; 4]), up(&gpu, &[0.0; 2]));
    let mut y2 = up(&gpu, &[0.0; 18]);
    let mut y3 = up(&gpu, &[0.0; 18]);
    let half = ChannelView::whole(2);
    let err = gpu
        .conv2d_fwd(
            &x,
            &mut [
                ConvOutput {
                    w: &w2,
                    b: &b2,
                    y: &mut y2,
                    view: half,
                },
                ConvOutput {
                    w: &w2,
                    b: &b2,
                    y: &mut y3,
                    view: half,
                },
            ],
            &g,
            true,
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("1 or 3"), "{err}");
    Ok(())
}

#[test]
fn linear_matches_within_tolerance() -> Result<()> {
    let (cpu, gpu) = (CpuBackend, gpu());
    for (i, (n, inp, out)) in [(1, 3, 10), (5, 70, 10), (67, 130, 65), (33, 1024, 10)]
        .into_iter()
        .enumerate()
    {
        let g = LinearGeometry { n, inp, out };
        let what = format!("linear {n}x{inp} -> {out}");
        let seed = 200 + 10 * i as u64;
        let (x, w, b) = (
            random(n * inp, seed),
            random(out * inp, seed + 1),
            random(out, seed + 2),
        );
        let dy = random(n * out, seed + 3);

        let y_cpu = down(
            &cpu,
            &cpu.linear_fwd(&up(&cpu, &x), &up(&cpu, &w), &up(&cpu, &b), &g)?,
        );
        let y_gpu = down(
            &gpu,
            &gpu.linear_fwd(&up(&gpu, &x), &up(&gpu, &w), &up(&gpu, &b), &g)?,
        );
        assert_close(
            &y_gpu,
            &y_cpu,
            gemm_tolerance(inp + 1),
            0.0,
            &format!("{what}: forward"),
        );

        let dx_cpu = down(
            &cpu,
            &cpu.linear_bwd_data(&up(&cpu, &dy), &up(&cpu, &w), &g)?,
        );
        let dx_gpu = down(
            &gpu,
            &gpu.linear_bwd_data(&up(&gpu, &dy), &up(&gpu, &w), &g)?,
        );
        assert_close(
            &dx_gpu,
            &dx_cpu,
            gemm_tolerance(out),
            0.0,
            &format!("{what}: backward data"),
        );

        let (dw_cpu, db_cpu) = cpu.linear_bwd_weight(&up(&cpu, &x), &up(&cpu, &dy), &g)?;
        let (dw_gpu, db_gpu) = gpu.linear_bwd_weight(&up(&gpu, &x), &up(&gpu, &dy), &g)?;
        assert_close(
            &down(&gpu, &dw_gpu),
            &down(&cpu, &dw_cpu),
            gemm_tolerance(n),
            0.0,
            &format!("{what}: weight gradient"),
        );
        // The bias gradient sums the rows in the CPU's order.
        assert_same(
            &down(&gpu, &db_gpu),
            &down(&cpu, &db_cpu),
            &format!("{what}: bias gradient"),
        );
    }
    Ok(())
}

/// Logits of `n` rows: random, plus rows of large values (the max subtraction must keep
/// exp finite) and a row of ties.
fn logits(n: usize, classes: usize, seed: u64) -> Vec<f32> {
    let mut z: Vec<f32> = random(n * classes, seed).iter().map(|v| v * 8.0).collect();
    if n >= 3 {
        z[classes..2 * classes]
            .iter_mut()
            .for_each(|v| *v += 1000.0);
        z[2 * classes..3 * classes].fill(0.5);
    }
    z
}

fn labels(n: usize, classes: usize, seed: u64) -> Vec<u32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.gen_range(0..classes as u32)).collect()
}

/// Softmax uses expf/logf, whose last bits differ between libraries (and between the
/// GPU and the host), so probabilities and the loss agree to a few ulps, not exactly.
/// With and without label smoothing.
#[test]
fn cross_entropy_matches() -> Result<()> {
    let (cpu, gpu) = (CpuBackend, gpu());
    for (i, (n, classes)) in [(1, 10), (7, 3), (300, 10)].into_iter().enumerate() {
        let z = logits(n, classes, 300 + i as u64);
        let t = labels(n, classes, 310 + i as u64);
        let labels_gpu = gpu.upload_u32(t.clone())?;
        for smoothing in [0.0, 0.1, 1.0] {
            let what = format!("cross-entropy {n}x{classes}, smoothing {smoothing}");
            let (loss_cpu, p_cpu) = cpu.cross_entropy_fwd(
                &up(&cpu, &z),
                &cpu.upload_u32(t.clone())?,
                n,
                classes,
                smoothing,
            )?;
            let (loss_gpu, p_gpu) =
                gpu.cross_entropy_fwd(&up(&gpu, &z), &labels_gpu, n, classes, smoothing)?;
            let (p_cpu, p_gpu) = (down(&cpu, &p_cpu), down(&gpu, &p_gpu));
            assert_close(
                &p_gpu,
                &p_cpu,
                1e-7,
                1e-5,
                &format!("{what}: probabilities"),
            );
            assert_close(
                &down(&gpu, &loss_gpu),
                &down(&cpu, &loss_cpu),
                1e-6,
                1e-5,
                &format!("{what}: loss"),
            );

            // Backward from the same probabilities is the same arithmetic: exact.
            let dloss = [0.75f32];
            let dz_cpu = cpu.cross_entropy_bwd(
                &up(&cpu, &p_cpu),
                &cpu.upload_u32(t.clone())?,
                &up(&cpu, &dloss),
                n,
                classes,
                smoothing,
            )?;
            let dz_gpu = gpu.cross_entropy_bwd(
                &up(&gpu, &p_cpu),
                &labels_gpu,
                &up(&gpu, &dloss),
                n,
                classes,
                smoothing,
            )?;
            assert_same(
                &down(&gpu, &dz_gpu),
                &down(&cpu, &dz_cpu),
                &format!("{what}: backward"),
            );
        }

        let count_cpu =
            cpu.correct_count(&up(&cpu, &z), &cpu.upload_u32(t.clone())?, n, classes)?;
        let count_gpu = gpu.correct_count(&up(&gpu, &z), &labels_gpu, n, classes)?;
        assert_eq!(
            count_gpu, count_cpu,
            "cross-entropy {n}x{classes}: correct count"
        );
    }
    Ok(())
}

/// Ties go to the first maximum (torch.argmax), so a row of equal logits counts as
/// correct only for label 0.
#[test]
fn correct_count_breaks_ties_like_the_cpu() -> Result<()> {
    let (cpu, gpu) = (CpuBackend, gpu());
    let (n, classes) = (5, 4);
    #[rustfmt::skip]
    let z = [
        1.0, 1.0, 1.0, 1.0,
        1.0, 1.0, 1.0, 1.0,
        0.0, 2.0, 2.0, 1.0,
        0.0, 2.0, 2.0, 1.0,
        -1.0, -3.0, -2.0, -1.0,
    ];
    let t = [0, 1, 1, 2, 0];
    let expected = cpu.correct_count(&up(&cpu, &z), &cpu.upload_u32(t.to_vec())?, n, classes)?;
    assert_eq!(expected, 3);
    let actual = gpu.correct_count(&up(&gpu, &z), &gpu.upload_u32(t.to_vec())?, n, classes)?;
    assert_eq!(actual, expected);
    Ok(())
}

/// The resize on the GPU is the CPU's bit for bit, without augmentation and with
/// views that shift past every edge and mirror (an image of odd width, so the flip
/// has a middle column), on grey and RGB images of several stored sides, normalised
/// per channel.
#[test]
fn resize_is_exact() -> Result<()> {
    let (cpu, gpu) = (CpuBackend, gpu());
    let count = 5;
    let mut rng = StdRng::seed_from_u64(400);
    let indices = vec![3, 0, 3, 4, 1, 2];
    let identity = vec![View::IDENTITY; indices.len()];
    let shifted = [
        (0, 0, true),
        (-2, 2, false),
        (2, -2, true),
        (-27, 0, false),
        (5, 30, true),
        (1, -1, false),
    ]
    .map(|(dy, dx, flip)| View { dy, dx, flip })
    .to_vec();
    let per_channel = Normalize::per_channel(&[0.49, 0.48, 0.45], &[0.25, 0.24, 0.26])?;
    for (channels, h, w) in [(1, 28, 27), (3, 28, 27), (3, 9, 9), (2, 40, 40)] {
        let shape = ImageShape {
            channels,
            height: h,
            width: w,
        };
        let pixels: Vec<u8> = (0..count * shape.image_bytes())
            .map(|_| rng.gen())
            .collect();
        let images_cpu = cpu.upload_u8(pixels.clone())?;
        let images_gpu = gpu.upload_u8(pixels)?;
        for views in [&identity, &shifted] {
            let words: Vec<u32> = views.iter().map(|v| v.word()).collect();
            for size in [1, 7, 28, 32, 37] {
                for norm in [Normalize::NONE, Normalize::FASHION_MNIST, per_channel] {
                    let what = format!("resize {shape:?} -> {size} {norm:?} {views:?}");
                    let (indices_cpu, words_cpu) = (
                        cpu.upload_u32(indices.clone())?,
                        cpu.upload_u32(words.clone())?,
                    );
                    let (indices_gpu, words_gpu) = (
                        gpu.upload_u32(indices.clone())?,
                        gpu.upload_u32(words.clone())?,
                    );
                    let expected = cpu.resize_images(
                        &images_cpu,
                        shape,
                        Words::whole(&indices_cpu),
                        Words::whole(&words_cpu),
                        size,
                        norm,
                    )?;
                    let actual = gpu.resize_images(
                        &images_gpu,
                        shape,
                        Words::whole(&indices_gpu),
                        Words::whole(&words_gpu),
                        size,
                        norm,
                    )?;
                    assert_same(&down(&gpu, &actual), &down(&cpu, &expected), &what);
                }
            }
        }
    }
    Ok(())
}

/// Three Adam steps over tensors of several sizes, all in one call (one launch on the
/// GPU): odd sizes, sizes at and around the block of 256, and empty tensors among
/// them. The update is the CPU's, bit for bit.
#[test]
fn adam_is_exact() -> Result<()> {
    let (cpu, gpu) = (CpuBackend, gpu());
    let sizes = [1, 300, 0, 1000, 256, 257, 7, 255, 513, 0, 4097, 3];
    let run = |device: &dyn Backend| -> Result<Vec<Vec<f32>>> {
        let mut params: Vec<Buffer<f32>> = sizes
            .iter()
            .enumerate()
            .map(|(i, &len)| up(device, &random(len, 500 + i as u64)))
            .collect();
        let mut m: Vec<Buffer<f32>> = sizes
            .iter()
            .map(|&len| up(device, &vec![0.0; len]))
            .collect();
        let mut v: Vec<Buffer<f32>> = sizes
            .iter()
            .map(|&len| up(device, &vec![0.0; len]))
            .collect();
        for step in 1..=3 {
            let grads: Vec<Buffer<f32>> = sizes
                .iter()
                .enumerate()
                .map(|(i, &len)| up(device, &random(len, 600 + 10 * step + i as u64)))
                .collect();
            let hyper = AdamStep {
                lr: 1e-3,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                step,
            };
            let scalars = device.upload_u32(hyper.scalars().words().to_vec())?;
            device.adam_step(
                &mut params.iter_mut().collect::<Vec<_>>(),
                &grads.iter().collect::<Vec<_>>(),
                &mut m.iter_mut().collect::<Vec<_>>(),
                &mut v.iter_mut().collect::<Vec<_>>(),
                &hyper,
                Words::whole(&scalars),
                None,
            )?;
        }
        Ok(params
            .iter()
            .chain(&m)
            .chain(&v)
            .map(|b| down(device, b))
            .collect())
    };
    let (expected, actual) = (run(&cpu)?, run(&gpu)?);
    for (i, (a, e)) in actual.iter().zip(&expected).enumerate() {
        assert_same(a, e, &format!("adam tensor {i} (params, then m, then v)"));
    }
    Ok(())
}
