//! GoogLeNet as a whole: its shapes, parameter count and names, and one forward pass.

mod common;

use anyhow::Result;
use googlenet::engine::nn::format_summary;
use googlenet::{Device, GoogLeNet, GoogLeNetConfig, Init, Mode, Tape, Tensor};

/// (stage, output C x H x W) at 224x224, from the tutorial's printout.
const SHAPES_224: [(&str, &[usize]); 16] = [
    ("conv1", &[64, 56, 56]),
    ("conv2", &[192, 28, 28]),
    ("inception_3a", &[256, 28, 28]),
    ("inception_3b", &[480, 28, 28]),
    ("max_pool3", &[480, 14, 14]),
    ("inception_4a", &[512, 14, 14]),
    ("inception_4b", &[512, 14, 14]),
    ("inception_4c", &[512, 14, 14]),
    ("inception_4d", &[528, 14, 14]),
    ("inception_4e", &[832, 14, 14]),
    ("max_pool4", &[832, 7, 7]),
    ("inception_5a", &[832, 7, 7]),
    ("inception_5b", &[1024, 7, 7]),
    ("avg_pool", &[1024, 1, 1]),
    ("dropout", &[1024, 1, 1]),
    ("fc", &[10]),
];

/// Parameter counts per stage, worked out from the channel table by hand
/// (a conv has c_out·c_in·k² weights and c_out biases).
const PARAMS: [(&str, usize); 12] = [
    ("conv1", 3_200),
    ("conv2", 114_944),
    ("inception_3a", 163_696),
    ("inception_3b", 388_736),
    ("inception_4a", 376_176),
    ("inception_4b", 449_160),
    ("inception_4c", 510_104),
    ("inception_4d", 605_376),
    ("inception_4e", 868_352),
    ("inception_5a", 1_043_456),
    ("inception_5b", 1_444_080),
    ("fc", 10_250),
];
const TOTAL_PARAMS: usize = 5_977_530;

fn model(device: &Device) -> Result<(GoogLeNet, googlenet::Parameters)> {
    GoogLeNet::new(device, GoogLeNetConfig::default(), Init::PyTorchDefault, 0)
}

fn stage_shapes_at_224(device: Device) -> Result<()> {
    let (net, params) = model(&device)?;
    let rows = net.summary(&params, 224)?;
    let expected = SHAPES_224;
    assert_eq!(rows.len(), expected.len());
    for (row, (name, shape)) in rows.iter().zip(expected) {
        assert_eq!(row.name, *name);
        assert_eq!(row.output, *shape, "stage {name}");
    }
    Ok(())
}

fn stage_shapes_at_96(device: Device) -> Result<()> {
    let (net, params) = model(&device)?;
    let rows = net.summary(&params, 96)?;
    // 96 →(7x7/2) 48 →(pool) 24 →(pool) 12 →(pool3) 6 →(pool4) 3.
    let spatial = |name: &str| rows.iter().find(|r| r.name == name).unwrap().output.clone();
    assert_eq!(spatial("conv1"), [64, 24, 24]);
    assert_eq!(spatial("conv2"), [192, 12, 12]);
    assert_eq!(spatial("inception_3b"), [480, 12, 12]);
    assert_eq!(spatial("max_pool3"), [480, 6, 6]);
    assert_eq!(spatial("inception_4e"), [832, 6, 6]);
    assert_eq!(spatial("max_pool4"), [832, 3, 3]);
    assert_eq!(spatial("inception_5b"), [1024, 3, 3]);
    assert_eq!(spatial("avg_pool"), [1024, 1, 1]);
    assert_eq!(spatial("fc"), [10]);
    Ok(())
}

fn parameter_counts(device: Device) -> Result<()> {
    let (net, params) = model(&device)?;
    assert_eq!(params.scalar_count(), TOTAL_PARAMS);
    let rows = net.summary(&params, 224)?;
    for (name, count) in PARAMS {
        let row = rows.iter().find(|r| r.name == name).unwrap();
        assert_eq!(row.params, count, "stage {name}");
    }
    let table = format_summary(&rows, 224, 1);
    assert!(table.contains("inception_4e") && table.contains(&TOTAL_PARAMS.to_string()));
    Ok(())
}

fn parameter_names_follow_pytorch(device: Device) -> Result<()> {
    let (_, params) = model(&device)?;
    let names: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
    // 2 convs in the stem + 1, 6 per Inception block x 9, and fc: weight and bias each.
    assert_eq!(names.len(), 2 * (3 + 6 * 9 + 1));
    assert_eq!(
        &names[..6],
        [
            "conv1.0.weight",
            "conv1.0.bias",
            "conv2.0.weight",
            "conv2.0.bias",
            "conv2.2.weight",
            "conv2.2.bias"
        ]
    );
    let block: Vec<String> = [
        "branch1",
        "branch2_1",
        "branch2_2",
        "branch3_1",
        "branch3_2",
        "branch4_2",
    ]
    .iter()
    .flat_map(|b| {
        [
            format!("inception_3a.{b}.weight"),
            format!("inception_3a.{b}.bias"),
        ]
    })
    .collect();
    assert_eq!(&names[6..18], block);
    assert_eq!(&names[names.len() - 2..], ["fc.weight", "fc.bias"]);
    let shape = |name: &str| params.value(params.find(name).unwrap()).shape().to_vec();
    assert_eq!(shape("conv1.0.weight"), [64, 1, 7, 7]);
    assert_eq!(shape("inception_4e.branch3_2.weight"), [128, 32, 5, 5]);
    assert_eq!(shape("fc.weight"), [10, 1024]);
    Ok(())
}

/// PyTorch's default draws every weight and bias within ±1/√fan_in; Kaiming-normal
/// has std √(2/fan_in) and zero biases.
fn initialisation_scales(device: Device) -> Result<()> {
    let (_, params) = model(&device)?;
    let w = params
        .value(params.find("conv2.2.weight").unwrap())
        .to_vec()?;
    let bound = 1.0 / (64.0f32 * 9.0).sqrt();
    assert!(w.iter().all(|v| v.abs() <= bound));
    assert!(
        w.iter().any(|v| v.abs() > 0.9 * bound),
        "uniform draws reach near the bound"
    );
    let (_, params) = GoogLeNet::new(&device, GoogLeNetConfig::default(), Init::KaimingNormal, 0)?;
    let w = params
        .value(params.find("conv2.2.weight").unwrap())
        .to_vec()?;
    let std = (w.iter().map(|v| v * v).sum::<f32>() / w.len() as f32).sqrt();
    let expected = (2.0f32 / (64.0 * 9.0)).sqrt();
    assert!(
        (std / expected - 1.0).abs() < 0.02,
        "std {std} vs {expected}"
    );
    let b = params
        .value(params.find("conv2.2.bias").unwrap())
        .to_vec()?;
    assert!(b.iter().all(|&v| v == 0.0));
    Ok(())
}

fn one_image_at_224_gives_ten_logits(device: Device) -> Result<()> {
    let (net, params) = model(&device)?;
    let image = common::random_tensor(&device, &[1, 1, 224, 224], 0.0, 1.0, 7)?;
    let logits = net.forward(&mut Tape::no_grad(), &params, &image, Mode::Eval)?;
    assert_eq!(logits.shape(), [1, 10]);
    assert!(logits.value.to_vec()?.iter().all(|v| v.is_finite()));
    Ok(())
}

/// In eval mode a batch's logits are each image's own: no state leaks across images.
fn batch_rows_match_single_images(device: Device) -> Result<()> {
    let (net, params) = model(&device)?;
    let batch = common::random_tensor(&device, &[3, 1, 32, 32], 0.0, 1.0, 3)?;
    let all = net
        .forward(&mut Tape::no_grad(), &params, &batch, Mode::Eval)?
        .value
        .to_vec()?;
    let pixels = batch.to_vec()?;
    for i in 0..3 {
        let one = Tensor::from_vec(
            &device,
            &[1, 1, 32, 32],
            pixels[i * 1024..(i + 1) * 1024].to_vec(),
        )?;
        let row = net
            .forward(&mut Tape::no_grad(), &params, &one, Mode::Eval)?
            .value
            .to_vec()?;
        common::assert_close(&row, &all[i * 10..(i + 1) * 10], 1e-5, 1e-4, "logits");
    }
    Ok(())
}

fn wrong_input_channels_is_an_error(device: Device) -> Result<()> {
    let (net, params) = model(&device)?;
    let image = Tensor::zeros(&device, &[1, 3, 32, 32])?;
    let err = net
        .forward(&mut Tape::no_grad(), &params, &image, Mode::Eval)
        .err()
        .unwrap();
    assert!(err.to_string().contains("[1, 3, 32, 32]"), "{err}");
    Ok(())
}

device_tests!(
    stage_shapes_at_224,
    stage_shapes_at_96,
    parameter_counts,
    parameter_names_follow_pytorch,
    initialisation_scales,
    one_image_at_224_gives_ten_logits,
    batch_rows_match_single_images,
    wrong_input_channels_is_an_error,
);
