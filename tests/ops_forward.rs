//! Forward checks of every op on cases small enough to work out by hand.
//!
//! Expected values are written out (worked in comments where not obvious) and follow
//! PyTorch's semantics; none is computed by the code under test.

mod common;

use anyhow::{Context, Result};
use googlenet::engine::device::geometry::{ConvGeometry, PoolGeometry};
use googlenet::engine::device::{ImageShape, View};
use googlenet::engine::ops;
use googlenet::{
    Adam, ByteImages, Device, Gradients, Labels, Normalize, Parameters, Tape, Tensor, Var,
};

use common::assert_close;

fn tensor(device: &Device, shape: &[usize], data: &[f32]) -> Result<Tensor> {
    Tensor::from_vec(device, shape, data.to_vec())
}

/// The plane 1..=9, row by row, used by the convolution cases.
const ONE_TO_NINE: [f32; 9] = [1., 2., 3., 4., 5., 6., 7., 8., 9.];

/// Runs `conv2d` through the tape on constant inputs.
fn conv(x: &Tensor, w: &Tensor, b: &Tensor, stride: usize, pad: usize) -> Result<Tensor> {
    let mut tape = Tape::new();
    let (x, w, b) = (
        tape.constant(x.clone()),
        tape.constant(w.clone()),
        tape.constant(b.clone()),
    );
    Ok(tape.conv2d(&x, &w, &b, stride, pad, false)?.value)
}

fn conv_2x2_kernel(device: Device) -> Result<()> {
    let x = tensor(&device, &[1, 1, 3, 3], &ONE_TO_NINE)?;
    let w = tensor(&device, &[1, 1, 2, 2], &[1., 2., 3., 4.])?;
    let b = tensor(&device, &[1], &[0.5])?;
    let y = conv(&x, &w, &b, 1, 0)?;
    assert_eq!(y.shape(), [1, 1, 2, 2]);
    // Cross-correlation, kernel not flipped: y[0,0] = 1·1 + 2·2 + 3·4 + 4·5 = 37, then + 0.5.
    // A flipped kernel would give 4·1 + 3·2 + 2·4 + 1·5 = 23 instead.
    assert_eq!(y.to_vec()?, [37.5, 47.5, 67.5, 77.5]);
    Ok(())
}

fn conv_3x3_kernel_pad_1(device: Device) -> Result<()> {
    let x = tensor(&device, &[1, 1, 3, 3], &ONE_TO_NINE)?;
    // Only three taps, none symmetric to another, so each output names which input
    // pixels it saw: y[i,j] = 100·x[i-1,j-1] + x[i,j] + 10·x[i+1,j+1], zero outside.
    #[rustfmt::skip]
    let w = tensor(&device, &[1, 1, 3, 3], &[
        100., 0., 0.,
        0.,   1., 0.,
        0.,   0., 10.,
    ])?;
    let b = tensor(&device, &[1], &[-1.0])?;
    let y = conv(&x, &w, &b, 1, 1)?;
    assert_eq!(y.shape(), [1, 1, 3, 3]);
    // Before the bias of -1:
    //   1 + 10·5 = 51     2 + 10·6 = 62          3
    //   4 + 10·8 = 84     100·1 + 5 + 10·9 = 195  100·2 + 6 = 206
    //   7                 100·4 + 8 = 408         100·5 + 9 = 509
    #[rustfmt::skip]
    assert_eq!(y.to_vec()?, [
        50., 61., 2.,
        83., 194., 205.,
        6., 407., 508.,
    ]);

    // Stride 2 keeps the outputs centred on (0,0), (0,2), (2,0), (2,2): (3 + 2 - 3) / 2 + 1 = 2.
    let y = conv(&x, &w, &b, 2, 1)?;
    assert_eq!(y.shape(), [1, 1, 2, 2]);
    assert_eq!(y.to_vec()?, [50., 2., 6., 508.]);

    // With an all-ones kernel each stride-2 output is the sum of the in-image part of
    // its window: 1+2+4+5, 2+3+5+6, 4+5+7+8, 5+6+8+9.
    let ones = Tensor::full(&device, &[1, 1, 3, 3], 1.0)?;
    let b = tensor(&device, &[1], &[0.5])?;
    assert_eq!(
        conv(&x, &ones, &b, 2, 1)?.to_vec()?,
        [12.5, 16.5, 24.5, 28.5]
    );
    Ok(())
}

fn conv_pointwise_two_channels(device: Device) -> Result<()> {
    // Channel 0 is 1..4, channel 1 is 10..40.
    let x = tensor(
        &device,
        &[1, 2, 2, 2],
        &[1., 2., 3., 4., 10., 20., 30., 40.],
    )?;
    // Weight [c_out, c_in]: out0 = in0 + 0.5·in1, out1 = -in0 + 2·in1 + 100.
    let w = tensor(&device, &[2, 2, 1, 1], &[1., 0.5, -1., 2.])?;
    let b = tensor(&device, &[2], &[0., 100.])?;
    let y = conv(&x, &w, &b, 1, 0)?;
    assert_eq!(y.shape(), [1, 2, 2, 2]);
    assert_eq!(y.to_vec()?, [6., 12., 18., 24., 119., 138., 157., 176.]);
    Ok(())
}

fn conv_batch_of_two(device: Device) -> Result<()> {
    // Image 1 is 10 - image 0, so with kernel sum 10 its outputs are 100 - image 0's.
    let mut data = ONE_TO_NINE.to_vec();
    data.extend(ONE_TO_NINE.iter().map(|v| 10.0 - v));
    let x = tensor(&device, &[2, 1, 3, 3], &data)?;
    let w = tensor(&device, &[1, 1, 2, 2], &[1., 2., 3., 4.])?;
    let b = tensor(&device, &[1], &[0.5])?;
    let y = conv(&x, &w, &b, 1, 0)?;
    assert_eq!(y.shape(), [2, 1, 2, 2]);
    assert_eq!(
        y.to_vec()?,
        [37.5, 47.5, 67.5, 77.5, 63.5, 53.5, 33.5, 23.5]
    );
    Ok(())
}

fn conv_output_shapes(device: Device) -> Result<()> {
    // GoogLeNet's stem: (224 + 6 - 7) / 2 + 1 = 112.
    let g = ConvGeometry::new([2, 3, 224, 224], 64, 7, 2, 3)?;
    assert_eq!(g.output_shape(), [2, 64, 112, 112]);
    // "Same" convolutions: (28 + 2 - 3) + 1 = 28 and (28 + 4 - 5) + 1 = 28.
    assert_eq!(
        ConvGeometry::new([1, 8, 28, 28], 16, 3, 1, 1)?.output_shape(),
        [1, 16, 28, 28]
    );
    assert_eq!(
        ConvGeometry::new([1, 8, 28, 28], 4, 5, 1, 2)?.output_shape(),
        [1, 4, 28, 28]
    );
    // Non-square planes use the same formula per axis.
    assert_eq!(
        ConvGeometry::new([1, 1, 14, 9], 1, 5, 1, 2)?.output_shape(),
        [1, 1, 14, 9]
    );

    // The kernel agrees with the geometry on a real 224 input (one output channel keeps it cheap).
    let x = Tensor::full(&device, &[1, 1, 224, 224], 1.0)?;
    let w = Tensor::full(&device, &[1, 1, 7, 7], 1.0)?;
    let b = tensor(&device, &[1], &[0.0])?;
    let y = conv(&x, &w, &b, 2, 3)?.to_vec()?;
    assert_eq!(y.len(), 112 * 112);
    // Top-left window covers rows/cols -3..=3, of which 4x4 are inside; an interior one all 49.
    assert_eq!(y[0], 16.0);
    assert_eq!(y[5 * 112 + 5], 49.0);
    Ok(())
}

fn conv_shape_errors(device: Device) -> Result<()> {
    let x = Tensor::zeros(&device, &[1, 3, 4, 4])?;
    let w = Tensor::zeros(&device, &[2, 2, 3, 3])?;
    let b = Tensor::zeros(&device, &[2])?;
    let err = ops::conv2d_geometry(&x, &w, &b, 1, 1)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("[1, 3, 4, 4]") && err.contains("[2, 2, 3, 3]"),
        "{err}"
    );
    let err = conv(&x, &w, &b, 1, 1).unwrap_err().to_string();
    assert!(
        err.contains("[1, 3, 4, 4]") && err.contains("[2, 2, 3, 3]"),
        "{err}"
    );
    Ok(())
}

fn tensor_length_error(device: Device) -> Result<()> {
    let err = Tensor::from_vec(&device, &[2, 3], vec![0.0; 5])
        .unwrap_err()
        .to_string();
    assert!(err.contains("[2, 3]") && err.contains('5'), "{err}");
    Ok(())
}

fn relu_values(device: Device) -> Result<()> {
    let x = tensor(
        &device,
        &[6],
        &[-2.0, -0.0, 0.0, 0.5, 3.0, f32::NEG_INFINITY],
    )?;
    let mut tape = Tape::new();
    let x = tape.constant(x);
    let y = tape.relu(&x)?.value.to_vec()?;
    assert_eq!(y, [0.0, 0.0, 0.0, 0.5, 3.0, 0.0]);
    // torch.relu is clamp_min(x, 0), i.e. `x < 0 ? 0 : x`: -0.0 is not below 0 and
    // comes back unchanged, sign included; 0.0 stays +0.0 and -2.0 becomes +0.0.
    assert!(
        y[1].is_sign_negative(),
        "relu(-0.0) should be -0.0, got {}",
        y[1]
    );
    assert!(y[0].is_sign_positive() && y[2].is_sign_positive());

    let y = ops::relu(&tensor(&device, &[3], &[f32::NAN, -1.0, f32::NAN])?)?.to_vec()?;
    assert!(y[0].is_nan() && y[2].is_nan(), "{y:?}");
    assert_eq!(y[1], 0.0);
    Ok(())
}

/// The convolution's ReLU epilogue follows torch.relu (clamp_min): with zero filters the
/// output is relu(bias), and a NaN bias stays NaN.
fn conv_relu_epilogue_values(device: Device) -> Result<()> {
    let biases = [-2.0, 0.5, f32::NAN, f32::NEG_INFINITY, f32::INFINITY, 0.0];
    let x = tensor(&device, &[1, 1, 2, 1], &[1.0, 1.0])?;
    let w = Tensor::zeros(&device, &[6, 1, 1, 1])?;
    let b = tensor(&device, &[6], &biases)?;
    let mut tape = Tape::new();
    let (x, w, b) = (tape.constant(x), tape.constant(w), tape.constant(b));
    let y = tape.conv2d(&x, &w, &b, 1, 0, true)?.value.to_vec()?;
    assert_eq!(y.len(), 12);
    for (c, &bias) in biases.iter().enumerate() {
        for v in &y[2 * c..2 * c + 2] {
            if bias.is_nan() {
                assert!(v.is_nan(), "channel {c}: {v}");
            } else {
                assert_eq!(*v, bias.max(0.0), "channel {c}");
            }
        }
    }
    Ok(())
}

/// An Inception-shaped fill of one output: the fused 1x1 convolutions (the first into
/// channel 0, the others returned), then two convolutions into channels 1 and 2.
fn convolutions_fill_channel_slices(device: Device) -> Result<()> {
    let mut tape = Tape::new();
    let x = tape.constant(tensor(&device, &[1, 1, 3, 3], &ONE_TO_NINE)?);
    let scalar = |tape: &mut Tape, v: f32| -> Result<Var> {
        Ok(tape.constant(tensor(&device, &[1, 1, 1, 1], &[v])?))
    };
    let bias = |tape: &mut Tape, v: f32| -> Result<Var> {
        Ok(tape.constant(tensor(&device, &[1], &[v])?))
    };
    let (w1, b1) = (scalar(&mut tape, 1.0)?, bias(&mut tape, -5.0)?);
    let (w2, b2) = (scalar(&mut tape, -1.0)?, bias(&mut tape, 5.0)?);
    let (w3, b3) = (scalar(&mut tape, 2.0)?, bias(&mut tape, 0.0)?);
    let mut out = tape.channel_output(&device, [1, 3, 3, 3])?;
    let [r2, r3] = tape.conv1x1_fused(&x, [(&w1, &b1), (&w2, &b2), (&w3, &b3)], &mut out)?;
    // ReLU(5 - x) and ReLU(2x), each its own tensor.
    assert_eq!(r2.value.to_vec()?, [4., 3., 2., 1., 0., 0., 0., 0., 0.]);
    assert_eq!(
        r3.value.to_vec()?,
        [2., 4., 6., 8., 10., 12., 14., 16., 18.]
    );
    // Channel 1: r2 as it is; channel 2: ReLU(r3 / 2 - 3) = ReLU(x - 3).
    let (one, zero) = (scalar(&mut tape, 1.0)?, bias(&mut tape, 0.0)?);
    tape.conv2d_into(&r2, &one, &zero, 1, 0, true, &mut out)?;
    let (half, minus3) = (scalar(&mut tape, 0.5)?, bias(&mut tape, -3.0)?);
    tape.conv2d_into(&r3, &half, &minus3, 1, 0, true, &mut out)?;
    let y = tape.finish(out)?;
    assert_eq!(y.shape(), [1, 3, 3, 3]);
    #[rustfmt::skip]
    let expected = [
        0., 0., 0., 0., 0., 1., 2., 3., 4., // ReLU(x - 5)
        4., 3., 2., 1., 0., 0., 0., 0., 0., // ReLU(5 - x)
        0., 0., 0., 1., 2., 3., 4., 5., 6., // ReLU(x - 3)
    ];
    assert_eq!(y.value.to_vec()?, expected);

    // Writing past the last channel, and finishing with channels unwritten, are errors.
    let mut out = tape.channel_output(&device, [1, 2, 3, 3])?;
    tape.conv2d_into(&x, &one, &zero, 1, 0, true, &mut out)?;
    let err = tape
        .finish(out)
        .err()
        .context("an unfinished output")?
        .to_string();
    assert!(err.contains("1 of 2 channels"), "{err}");
    let mut out = tape.channel_output(&device, [1, 1, 3, 3])?;
    tape.conv2d_into(&x, &one, &zero, 1, 0, true, &mut out)?;
    let err = tape
        .conv2d_into(&x, &one, &zero, 1, 0, true, &mut out)
        .unwrap_err()
        .to_string();
    assert!(err.contains("do not fit"), "{err}");
    Ok(())
}

fn max_pool(x: Tensor, k: usize, stride: usize, pad: usize) -> Result<Tensor> {
    let mut tape = Tape::new();
    let x = tape.constant(x);
    Ok(tape.max_pool(&x, k, stride, pad)?.value)
}

fn max_pool_padding_is_minus_infinity(device: Device) -> Result<()> {
    // An all-negative plane: zero padding would make every border output 0.
    let data: Vec<f32> = (1..=16).map(|v| -(v as f32)).collect();
    let x = tensor(&device, &[1, 1, 4, 4], &data)?;
    // 3x3/2 pad 1 on 4x4: (4 + 2 - 3) / 2 + 1 = 2. Windows (clipped) cover rows/cols
    // {0,1} and {1,2,3}; the largest (least negative) is the top-left of each.
    let y = max_pool(x, 3, 2, 1)?;
    assert_eq!(y.shape(), [1, 1, 2, 2]);
    assert_eq!(y.to_vec()?, [-1., -2., -5., -6.]);

    // 3x3/1 pad 1 on -1..-9: each output is the top-left-most element of its clipped
    // window, -(1 + 3·max(i-1, 0) + max(j-1, 0)).
    let x = tensor(&device, &[1, 1, 3, 3], &ONE_TO_NINE.map(|v| -v))?;
    let y = max_pool(x, 3, 1, 1)?;
    assert_eq!(y.shape(), [1, 1, 3, 3]);
    assert_eq!(y.to_vec()?, [-1., -1., -2., -1., -1., -2., -4., -4., -5.]);
    Ok(())
}

fn max_pool_values_and_batch(device: Device) -> Result<()> {
    // Two images, two channels each, so plane order is checked too; 2x2/2 pool.
    #[rustfmt::skip]
    let x = tensor(&device, &[2, 2, 2, 4], &[
        1., 5., 2., 0.,   3., 4., 8., 7.,    // image 0, channel 0
        -1., -2., -3., -4., -5., -6., -7., -8., // image 0, channel 1
        0., 0., 9., 1.,   0., 2., 1., 1.,    // image 1, channel 0
        4., 3., 2., 1.,   6., 7., 0., -1.,   // image 1, channel 1
    ])?;
    let y = max_pool(x, 2, 2, 0)?;
    assert_eq!(y.shape(), [2, 2, 1, 2]);
    assert_eq!(y.to_vec()?, [5., 8., -1., -3., 2., 9., 7., 2.]);
    Ok(())
}

fn max_pool_output_sizes(_device: Device) -> Result<()> {
    // Floor mode: (n + 2 - 3) / 2 + 1.
    for (input, output) in [
        (112, 56),
        (56, 28),
        (28, 14),
        (14, 7),
        (7, 4),
        (5, 3),
        (4, 2),
    ] {
        let g = PoolGeometry::new([1, 1, input, input], 3, 3, 2, 1)?;
        assert_eq!(g.output_shape(), [1, 1, output, output], "input {input}");
    }
    // Stride 1 pad 1 keeps the size.
    assert_eq!(
        PoolGeometry::new([1, 1, 7, 5], 3, 3, 1, 1)?.output_shape(),
        [1, 1, 7, 5]
    );
    Ok(())
}

/// Max pool forward, then backward of `dy`, via `ops`.
fn max_pool_grad(x: &Tensor, k: usize, stride: usize, pad: usize, dy: &[f32]) -> Result<Vec<f32>> {
    let g = PoolGeometry::new(x.dims4("test")?, k, k, stride, pad)?;
    let (y, argmax) = ops::max_pool(x, &g)?;
    let dy = tensor(x.device(), y.shape(), dy)?;
    ops::max_pool_bwd(&dy, &argmax, &g)?.to_vec()
}

fn max_pool_ties_take_first(device: Device) -> Result<()> {
    // Two 7s in one window at (1,2) and (2,1): row-major order meets (1,2) first
    // (column-major would meet (2,1) first).
    #[rustfmt::skip]
    let x = tensor(&device, &[1, 1, 3, 3], &[
        0., 0., 0.,
        0., 0., 7.,
        0., 7., 0.,
    ])?;
    let dx = max_pool_grad(&x, 3, 1, 0, &[1.0])?;
    assert_eq!(dx, [0., 0., 0., 0., 0., 1., 0., 0., 0.]);

    // A constant 4x4 plane, 3x3/2 pad 1: every element ties, so each window's first
    // in-image element, (0,0), (0,1), (1,0), (1,1), takes its output's gradient.
    let x = Tensor::full(&device, &[1, 1, 4, 4], 3.0)?;
    let dx = max_pool_grad(&x, 3, 2, 1, &[1., 2., 3., 4.])?;
    #[rustfmt::skip]
    assert_eq!(dx, [
        1., 2., 0., 0.,
        3., 4., 0., 0.,
        0., 0., 0., 0.,
        0., 0., 0., 0.,
    ]);

    // A constant 2x2 plane, 3x3/1 pad 1: all four windows clip to the whole plane, so
    // all four gradients land on element (0,0) and add up.
    let x = Tensor::full(&device, &[1, 1, 2, 2], -3.0)?;
    let dx = max_pool_grad(&x, 3, 1, 1, &[1., 2., 3., 4.])?;
    assert_eq!(dx, [10., 0., 0., 0.]);
    Ok(())
}

fn max_pool_nan_propagates(device: Device) -> Result<()> {
    // NaN after a larger value, and before one: both windows give NaN (torch.max_pool2d
    // treats NaN as the maximum); the third window has no NaN.
    #[rustfmt::skip]
    let x = tensor(&device, &[1, 1, 2, 6], &[
        5., f32::NAN, f32::NAN, 9., 1., 2.,
        2., 0.,       4.,       5., 3., 0.,
    ])?;
    let y = max_pool(x.clone(), 2, 2, 0)?.to_vec()?;
    assert!(y[0].is_nan() && y[1].is_nan(), "{y:?}");
    assert_eq!(y[2], 3.0);
    // The gradient follows the NaN too (one per window here; with several, PyTorch's
    // kernels keep the last, a case not pinned down here).
    let dx = max_pool_grad(&x, 2, 2, 0, &[1., 2., 3.])?;
    #[rustfmt::skip]
    assert_eq!(dx, [
        0., 1., 2., 0., 0., 0.,
        0., 0., 0., 0., 3., 0.,
    ]);
    Ok(())
}

fn avg_pool_7x7(device: Device) -> Result<()> {
    // Channel 0 holds 0..48 (mean 1176 / 49 = 24), channel 1 holds 0..48 halved (mean 12).
    let mut data: Vec<f32> = (0..49).map(|v| v as f32).collect();
    data.extend((0..49).map(|v| v as f32 / 2.0));
    let x = tensor(&device, &[1, 2, 7, 7], &data)?;
    let mut tape = Tape::new();
    let x = tape.constant(x);
    let y = tape.avg_pool(&x, 7, 7, 1)?;
    assert_eq!(y.shape(), [1, 2, 1, 1]);
    assert_eq!(y.value.to_vec()?, [24.0, 12.0]);
    Ok(())
}

fn avg_pool_sliding(device: Device) -> Result<()> {
    // 2x2/1 on 1..9: means of {1,2,4,5}, {2,3,5,6}, {4,5,7,8}, {5,6,8,9}.
    let x = tensor(&device, &[1, 1, 3, 3], &ONE_TO_NINE)?;
    let mut tape = Tape::new();
    let x = tape.constant(x);
    let y = tape.avg_pool(&x, 2, 2, 1)?;
    assert_eq!(y.value.to_vec()?, [3., 4., 6., 7.]);
    Ok(())
}

fn global_avg_pool_non_square(device: Device) -> Result<()> {
    // Planes of 2x3: 1..6 (mean 3.5) and 10..60 (mean 35), for each of two images.
    #[rustfmt::skip]
    let x = tensor(&device, &[2, 2, 2, 3], &[
        1., 2., 3., 4., 5., 6.,
        10., 20., 30., 40., 50., 60.,
        -1., -1., -1., -1., -1., 5.,
        0., 0., 0., 0., 0., 0.,
    ])?;
    let mut tape = Tape::new();
    let x = tape.constant(x);
    let y = tape.global_avg_pool(&x)?;
    assert_eq!(y.shape(), [2, 2, 1, 1]);
    assert_eq!(y.value.to_vec()?, [3.5, 35.0, 0.0, 0.0]);
    Ok(())
}

fn dropout_p_zero_keeps_everything(device: Device) -> Result<()> {
    let data: Vec<f32> = (0..1000).map(|i| i as f32 * 0.37 - 100.0).collect();
    let x = tensor(&device, &[10, 100], &data)?;
    assert_eq!(ops::dropout(&x, 0.0, 7)?.to_vec()?, data);
    Ok(())
}

fn dropout_fraction_and_scale(device: Device) -> Result<()> {
    const N: usize = 100_000;
    let p = 0.4f32;
    // Nonzero everywhere, so a zero output means a dropped element.
    let data: Vec<f32> = (0..N).map(|i| 1.0 + (i % 13) as f32 * 0.25).collect();
    let x = tensor(&device, &[N], &data)?;
    let y = ops::dropout(&x, p, 12345)?.to_vec()?;
    // PyTorch builds the mask as bernoulli(1 - p) and divides it by (1 - p) in f32, then
    // multiplies: a kept value is x · (1 / (1 - p)) with that f32 reciprocal.
    let scale = 1.0f32 / (1.0f32 - p);
    let mut dropped = 0;
    for (i, (&yi, &xi)) in y.iter().zip(&data).enumerate() {
        if yi == 0.0 {
            dropped += 1;
        } else {
            assert_eq!(yi, xi * scale, "element {i}");
        }
    }
    // The dropped count is Binomial(1e5, 0.4): its standard deviation is 0.0015 of N,
    // so ±0.01 is over six of them.
    let fraction = dropped as f64 / N as f64;
    assert!(
        (fraction - 0.4).abs() <= 0.01,
        "dropped fraction {fraction}"
    );

    let again = ops::dropout(&x, p, 12345)?.to_vec()?;
    assert_eq!(again, y, "same seed, same mask");
    let other = ops::dropout(&x, p, 12346)?.to_vec()?;
    let differing = other
        .iter()
        .zip(&y)
        .filter(|(a, b)| (**a == 0.0) != (**b == 0.0))
        .count();
    // Independent masks disagree on 2·0.4·0.6 = 48% of elements.
    assert!(differing > N / 3, "only {differing} mask entries differ");
    Ok(())
}

fn linear_forward(device: Device) -> Result<()> {
    let x = tensor(&device, &[2, 3], &[1., 2., 3., 4., 5., 6.])?;
    // nn.Linear's layout, w [out, in]; four outputs so that w read as [in, out]
    // could not even line up.
    #[rustfmt::skip]
    let w = tensor(&device, &[4, 3], &[
        1., 0., -2.,
        0.5, 1., 2.,
        0., 0., 1.,
        -1., -1., -1.,
    ])?;
    let b = tensor(&device, &[4], &[10., -1., 0., 0.25])?;
    let mut tape = Tape::new();
    let (x, w, b) = (tape.constant(x), tape.constant(w), tape.constant(b));
    let y = tape.linear(&x, &w, &b)?;
    assert_eq!(y.shape(), [2, 4]);
    // Row [1,2,3]: 1-6+10, 0.5+2+6-1, 3, -6+0.25; row [4,5,6]: 4-12+10, 2+5+12-1, 6, -15+0.25.
    #[rustfmt::skip]
    assert_eq!(y.value.to_vec()?, [
        5., 7.5, 3., -5.75,
        2., 18., 6., -14.75,
    ]);
    Ok(())
}

fn cross_entropy(
    device: &Device,
    logits: &[f32],
    shape: [usize; 2],
    labels: &[u32],
) -> Result<f32> {
    let logits = tensor(device, &shape, logits)?;
    let labels = Labels::new(device, labels, shape[1])?;
    let mut tape = Tape::new();
    let logits = tape.constant(logits);
    tape.cross_entropy(&logits, &labels)?.value.scalar()
}

fn cross_entropy_values(device: Device) -> Result<()> {
    // Equal logits: every class has probability 1/10, so the loss is ln 10 whatever
    // the label or the common value.
    let loss = cross_entropy(&device, &[0.0; 20], [2, 10], &[3, 9])?;
    assert_close(&[loss], &[std::f32::consts::LN_10], 1e-6, 1e-6, "uniform");
    let loss = cross_entropy(&device, &[123.5; 10], [1, 10], &[0])?;
    assert_close(
        &[loss],
        &[std::f32::consts::LN_10],
        0.0,
        1e-6,
        "uniform, shifted",
    );

    // Row [1,2,3] label 2: ln(e + e² + e³) - 3 = ln(1 + e⁻¹ + e⁻²) = ln 1.5032147 = 0.40760596.
    // Row [0,0,0] label 1: ln 3 = 1.09861229. Mean: 0.75310913.
    let loss = cross_entropy(&device, &[1., 2., 3., 0., 0., 0.], [2, 3], &[2, 1])?;
    assert_close(&[loss], &[0.753_109_13], 1e-6, 1e-6, "two rows");
    Ok(())
}

fn cross_entropy_label_smoothing(device: Device) -> Result<()> {
    let smoothed = |logits: &[f32], shape: [usize; 2], labels: &[u32], eps: f32| {
        let logits = tensor(&device, &shape, logits)?;
        let labels = Labels::new(&device, labels, shape[1])?.smoothed(eps)?;
        let mut tape = Tape::new();
        let logits = tape.constant(logits);
        tape.cross_entropy(&logits, &labels)?.value.scalar()
    };
    // Row [1,2,3] label 2, ε = 0.3: log p = [-2.40760596, -1.40760596, -0.40760596];
    // loss = 0.7·0.40760596 + 0.1·(2.40760596 + 1.40760596 + 0.40760596)
    //      = 0.28532417 + 0.42228179 = 0.70760596.
    let loss = smoothed(&[1., 2., 3.], [1, 3], &[2], 0.3)?;
    assert_close(&[loss], &[0.707_605_96], 1e-6, 1e-6, "smoothed row");
    // Equal logits: every target sums to 1 against log(1/10) everywhere: ln 10.
    let loss = smoothed(&[0.5; 20], [2, 10], &[3, 9], 0.1)?;
    assert_close(&[loss], &[std::f32::consts::LN_10], 1e-6, 1e-6, "uniform");
    // ε = 0 is the plain loss, even where a probability underflows to 0.
    let loss = smoothed(&[1000., -1000., 1000., -1000.], [2, 2], &[0, 1], 0.0)?;
    assert_eq!(loss, 1000.0);
    let err = smoothed(&[0.0; 2], [1, 2], &[0], 1.5)
        .unwrap_err()
        .to_string();
    assert!(err.contains("label smoothing"), "{err}");
    Ok(())
}

fn cross_entropy_extreme_logits(device: Device) -> Result<()> {
    // log-sum-exp of [1000, -1000] is 1000 + ln(1 + e⁻²⁰⁰⁰) = 1000 in f32, so row 0
    // (label 0) loses 0 and row 1 (label 1) loses 2000; the mean is exactly 1000.
    // exp(1000) overflows f32, so a naive softmax would give inf or NaN.
    let loss = cross_entropy(&device, &[1000., -1000., 1000., -1000.], [2, 2], &[0, 1])?;
    assert_eq!(loss, 1000.0);
    // Small differences between large logits must survive: PyTorch's log_softmax takes
    // (z - max) - ln Σ exp(z - max), never (max + ln Σ) - z, whose rounding at 1000
    // (f32 spacing 6e-5) would swamp them.
    let loss = cross_entropy(&device, &[-1000., -1000.], [1, 2], &[1])?;
    assert_close(&[loss], &[std::f32::consts::LN_2], 0.0, 1e-6, "equal -1000");
    // ln(e¹⁰⁰⁰ + e⁹⁹⁹) - 999 = 1 + ln(1 + e⁻¹) = 1.31326169.
    let loss = cross_entropy(&device, &[1000., 999.], [1, 2], &[1])?;
    assert_close(&[loss], &[1.313_261_7], 0.0, 1e-6, "1000 vs 999");
    Ok(())
}

fn correct_count_ties(device: Device) -> Result<()> {
    #[rustfmt::skip]
    let logits = tensor(&device, &[4, 3], &[
        1., 3., 3.,  // tie between 1 and 2: argmax 1, label 1 → correct
        2., 2., 0.,  // tie between 0 and 1: argmax 0, label 1 → wrong
        5., 1., 5.,  // tie between 0 and 2: argmax 0, label 0 → correct
        0., 0., 1.,  // argmax 2, label 0 → wrong
    ])?;
    let labels = Labels::new(&device, &[1, 1, 0, 0], 3)?;
    assert_eq!(ops::correct_count(&logits, &labels)?, 2);
    Ok(())
}

fn labels_out_of_range(device: Device) -> Result<()> {
    assert!(Labels::new(&device, &[0, 9], 10).is_ok());
    let err = Labels::new(&device, &[0, 10, 3], 10)
        .err()
        .expect("label 10 of 10 classes must be refused")
        .to_string();
    assert!(err.contains("10") && err.contains("position 1"), "{err}");
    Ok(())
}

fn resize_constant_and_identity(device: Device) -> Result<()> {
    // A constant image interpolates to itself at any size (weights sum to 1).
    let images = ByteImages::new(&device, vec![200; 3 * 5], 1, 3, 5)?;
    let y = images.resize_batch(&[0], 8)?;
    assert_eq!(y.shape(), [1, 1, 8, 8]);
    assert_close(&y.to_vec()?, &[200.0 / 255.0; 64], 1e-6, 0.0, "constant");

    // 28 → 28: the source coordinate is o itself, weight 0 on the neighbour.
    let pixels: Vec<u8> = (0..28 * 28).map(|i| (i * 37 % 256) as u8).collect();
    let expected: Vec<f32> = pixels.iter().map(|&p| p as f32 / 255.0).collect();
    let images = ByteImages::new(&device, pixels, 1, 28, 28)?;
    assert_eq!(images.resize_batch(&[0], 28)?.to_vec()?, expected);
    Ok(())
}

fn resize_bilinear_2x2_to_4x4(device: Device) -> Result<()> {
    let images = ByteImages::new(&device, vec![0, 255, 255, 0], 1, 2, 2)?;
    let y = images.resize_batch(&[0], 4)?.to_vec()?;
    // Source coordinate s = max((o + 0.5)·2/4 - 0.5, 0) for o = 0..3: 0, 0.25, 0.75, 1.25;
    // 1.25 has both taps on index 1 (clamped), so it acts as 1. With u, v in
    // {0, 0.25, 0.75, 1} for columns and rows, and the image [[0,1],[1,0]]:
    //   out = (1-v)·u + v·(1-u).
    // This is F.interpolate(x, size=4, mode="bilinear", align_corners=False).
    #[rustfmt::skip]
    assert_eq!(y, [
        0.,   0.25,  0.75,  1.,
        0.25, 0.375, 0.625, 0.75,
        0.75, 0.625, 0.375, 0.25,
        1.,   0.75,  0.25,  0.,
    ]);
    Ok(())
}

fn resize_gathers_indices(device: Device) -> Result<()> {
    // Three 2x2 images, each constant: 10, 20, 30.
    let pixels = [10u8, 20, 30].iter().flat_map(|&v| [v; 4]).collect();
    let images = ByteImages::new(&device, pixels, 3, 2, 2)?;
    assert_eq!(images.count(), 3);
    let y = images.resize_batch(&[2, 0, 2, 1], 2)?;
    assert_eq!(y.shape(), [4, 1, 2, 2]);
    let expected: Vec<f32> = [30u8, 10, 30, 20]
        .iter()
        .flat_map(|&v| [v as f32 / 255.0; 4])
        .collect();
    assert_eq!(y.to_vec()?, expected);

    let err = images.resize_batch(&[0, 3], 2).unwrap_err().to_string();
    assert!(err.contains("index 3"), "{err}");
    Ok(())
}

fn resize_rgb_planes_normalised_per_channel(device: Device) -> Result<()> {
    // Two 2x2 RGB images, planar: image 0's planes are constant 51 (0.2), constant
    // 102 (0.4) and [[0, 255], [255, 0]]; image 1's are its planes in reverse order.
    let pattern = [0u8, 255, 255, 0];
    let image0: Vec<u8> = [[51u8; 4], [102; 4], pattern].concat();
    let image1: Vec<u8> = [pattern, [102; 4], [51; 4]].concat();
    let shape = ImageShape {
        channels: 3,
        height: 2,
        width: 2,
    };
    let images = ByteImages::with_shape(&device, [image0, image1].concat(), 2, shape)?;
    let norm = Normalize::per_channel(&[0.2, 0.4, 0.5], &[1.0, 0.5, 0.5])?;
    let y = images.resize_batch_normalized(&[1, 0], 4, norm)?;
    assert_eq!(y.shape(), [2, 3, 4, 4]);
    // The 2x2 → 4x4 pattern of resize_bilinear_2x2_to_4x4, in [0, 1].
    #[rustfmt::skip]
    let bilinear = [
        0.,   0.25,  0.75,  1.,
        0.25, 0.375, 0.625, 0.75,
        0.75, 0.625, 0.375, 0.25,
        1.,   0.75,  0.25,  0.,
    ];
    let plane = |f: &dyn Fn(f32) -> f32| bilinear.iter().map(|&v| f(v)).collect::<Vec<f32>>();
    let expected = [
        // image 1: the pattern on channel 0, 0.4 on 1, 0.2 on 2; each channel's own
        // mean and std.
        plane(&|v| v - 0.2),
        plane(&|_| 0.0),
        plane(&|_| (0.2 - 0.5) / 0.5),
        // image 0
        plane(&|_| 0.0),
        plane(&|_| 0.0),
        plane(&|v| (v - 0.5) / 0.5),
    ]
    .concat();
    assert_close(&y.to_vec()?, &expected, 1e-6, 0.0, "RGB planes");

    let err = ByteImages::with_shape(
        &device,
        vec![0; 4 * 4 * 4],
        4,
        ImageShape {
            channels: 4,
            ..shape
        },
    )
    .err()
    .expect("four channels are refused")
    .to_string();
    assert!(err.contains("4 channels"), "{err}");
    Ok(())
}

fn resize_through_views(device: Device) -> Result<()> {
    // The 3x3 image 1..9 at its own size, so each output pixel is one source pixel:
    // aug(y, x) = image(y + dy, x' + dx), x' mirrored when flipped, 0 outside.
    let images = ByteImages::new(&device, (1..=9).collect(), 1, 3, 3)?;
    let views = [
        View {
            dy: 0,
            dx: 0,
            flip: true,
        },
        View {
            dy: 1,
            dx: 0,
            flip: false,
        },
        View {
            dy: 0,
            dx: -1,
            flip: false,
        },
        View {
            dy: -1,
            dx: 1,
            flip: true,
        },
    ];
    let y = images.resize_batch_augmented(&[0; 4], &views, 3, Normalize::NONE)?;
    let got: Vec<f32> = y.to_vec()?.iter().map(|v| (v * 255.0).round()).collect();
    #[rustfmt::skip]
    assert_eq!(got, [
        // mirrored
        3., 2., 1.,  6., 5., 4.,  9., 8., 7.,
        // moved up one row (dy = 1 reads the row below)
        4., 5., 6.,  7., 8., 9.,  0., 0., 0.,
        // moved right one column
        0., 1., 2.,  0., 4., 5.,  0., 7., 8.,
        // cropped one row up and one column right (image(y - 1, x + 1)), then
        // mirrored: image(y - 1, 2 - x + 1)
        0., 0., 0.,  0., 3., 2.,  0., 6., 5.,
    ]);
    let err = images
        .resize_batch_augmented(&[0], &[], 3, Normalize::NONE)
        .unwrap_err()
        .to_string();
    assert!(err.contains("0 augmentation views for 1 images"), "{err}");
    Ok(())
}

/// A single parameter `w` holding `initial`, and Adam over it.
fn adam_on(device: &Device, initial: &[f32], lr: f64) -> Result<(Parameters, Adam)> {
    let mut params = Parameters::default();
    params.push("w", tensor(device, &[initial.len()], initial)?)?;
    let adam = Adam::new(&params, lr)?;
    Ok((params, adam))
}

fn adam_step(
    device: &Device,
    params: &mut Parameters,
    adam: &mut Adam,
    grad: &[f32],
) -> Result<Vec<f32>> {
    let g = tensor(device, &[grad.len()], grad)?;
    adam.step(params, &Gradients(vec![Some(g)]))?;
    params.iter().next().unwrap().value.to_vec()
}

fn adam_first_steps_move_by_lr(device: Device) -> Result<()> {
    let lr = 0.01;
    let start = [1.0f32, -2.0, 0.5, 3.0];
    let grad = [0.1f32, -3.0, 0.25, -0.5];
    let (mut params, mut adam) = adam_on(&device, &start, lr)?;
    // Step 1: m̂ = g and v̂ = g², so the move is lr·g / (|g| + eps) = lr·sign(g) to a
    // relative 1e-7 for |g| ≥ 0.1.
    let p1 = adam_step(&device, &mut params, &mut adam, &grad)?;
    // Step 2, same g: m = 0.19·g, v = 0.001999·g², and the bias corrections 1 - 0.9² =
    // 0.19 and 1 - 0.999² = 0.001999 again give m̂ = g, v̂ = g².
    let p2 = adam_step(&device, &mut params, &mut adam, &grad)?;
    let expect = |steps: f32| -> Vec<f32> {
        start
            .iter()
            .zip(&grad)
            .map(|(p, g)| p - steps * lr as f32 * g.signum())
            .collect()
    };
    // Tolerance: a few f32 ulps of parameters up to 3 (ulp 2.4e-7).
    assert_close(&p1, &expect(1.0), 1e-6, 0.0, "after one step");
    assert_close(&p2, &expect(2.0), 1e-6, 0.0, "after two steps");
    assert_eq!(adam.steps_taken(), 2);
    Ok(())
}

fn adam_two_different_gradients(device: Device) -> Result<()> {
    // From 0, lr 0.01, betas (0.9, 0.999), eps 1e-8; gradient g1 then g2:
    //   step 1: p1 = -lr·g1 / (|g1| + eps)
    //   step 2: m = 0.09·g1 + 0.1·g2,  v = 0.000999·g1² + 0.001·g2²,
    //           m̂ = m / 0.19,  v̂ = v / 0.001999,  p2 = p1 - lr·m̂ / (√v̂ + eps)
    // (g1, g2) = (1, -1):   m = -0.01, m̂ = -1/19, v̂ = 1, p2 = -0.01·(18/19)/(1+1e-8)
    //                       = -0.00947368412
    // (0.5, 2):             p1 = -0.0099999998; m̂ = 0.245/0.19 = 1.28947368,
    //                       v̂ = 0.00424975/0.001999 = 2.12593797, √v̂ = 1.45805966,
    //                       step 0.01·0.88437648 → p2 = -0.01884376465
    // (-2, -0.5):           p1 = 0.00999999995; m̂ = -0.23/0.19 = -1.21052632,
    //                       v̂ = 0.004246/0.001999 = 2.12406203, √v̂ = 1.45741621,
    //                       step 0.01·0.83059758 → p2 = 0.01830597523
    // Starting from 0 keeps the parameters small, so f32 rounding stays far below 1e-6.
    let (mut params, mut adam) = adam_on(&device, &[0.0; 3], 0.01)?;
    let p1 = adam_step(&device, &mut params, &mut adam, &[1.0, 0.5, -2.0])?;
    assert_close(
        &p1,
        &[-0.009_999_999_9f64, -0.009_999_999_8, 0.009_999_999_95].map(|v| v as f32),
        0.0,
        1e-6,
        "adam step 1",
    );
    let p2 = adam_step(&device, &mut params, &mut adam, &[-1.0, 2.0, -0.5])?;
    assert_close(
        &p2,
        &[-0.009_473_684_12f64, -0.018_843_764_65, 0.018_305_975_23].map(|v| v as f32),
        0.0,
        1e-6,
        "adam step 2",
    );
    Ok(())
}

device_tests!(
    conv_2x2_kernel,
    conv_3x3_kernel_pad_1,
    conv_pointwise_two_channels,
    conv_batch_of_two,
    conv_output_shapes,
    conv_shape_errors,
    tensor_length_error,
    relu_values,
    conv_relu_epilogue_values,
    convolutions_fill_channel_slices,
    max_pool_padding_is_minus_infinity,
    max_pool_values_and_batch,
    max_pool_output_sizes,
    max_pool_ties_take_first,
    max_pool_nan_propagates,
    avg_pool_7x7,
    avg_pool_sliding,
    global_avg_pool_non_square,
    dropout_p_zero_keeps_everything,
    dropout_fraction_and_scale,
    linear_forward,
    cross_entropy_values,
    cross_entropy_extreme_logits,
    cross_entropy_label_smoothing,
    correct_count_ties,
    labels_out_of_range,
    resize_constant_and_identity,
    resize_bilinear_2x2_to_4x4,
    resize_gathers_indices,
    resize_through_views,
    resize_rgb_planes_normalised_per_channel,
    adam_first_steps_move_by_lr,
    adam_two_different_gradients,
);
