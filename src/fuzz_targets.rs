//! The parsers of files this program reads from outside, as fuzzing entry points.
//!
//! Each target takes arbitrary bytes and must return, with an error or without,
//! never panicking, hanging or allocating without bound. `fuzz/` runs them under
//! cargo-fuzz (nightly, deep runs); `tests/fuzz.rs` runs them on stable over seeded
//! mutations of real files and over the corpus in `fuzz/corpus/<target>/`.

use anyhow::Result;

use crate::data::fashion_mnist::{files, idx};
use crate::data::{Kind, IMAGE_SIDE};
use crate::engine::autograd::Parameters;
use crate::engine::device::Device;
use crate::engine::nn::{GoogLeNet, GoogLeNetConfig, Init};
use crate::engine::tensor::Tensor;
use crate::training::checkpoint::{self, RunState};
use crate::training::memory::{self, DataShape};
use crate::training::predict::{self, Invert};
use crate::training::run::workload;

/// A target: bytes in, nothing out but the absence of a panic.
pub type Target = fn(&[u8]);

/// Every target by name, as `fuzz/fuzz_targets/` and the corpus directories call them.
pub const TARGETS: [(&str, Target); 5] = [
    ("idx_raw", idx_raw),
    ("idx_gzip", idx_gzip),
    ("checkpoint_tensors", checkpoint_tensors),
    ("state_json", state_json),
    ("predict_image", predict_image),
];

/// The largest side `predict_image` decodes: `predict` takes up to `MAX_SIDE`, whose
/// pixels (1 GiB as RGBA) a fuzzer would allocate for every header that claims it;
/// the decoding code past the size check is the same for any side.
pub const FUZZ_MAX_SIDE: u32 = 1024;

/// An image file as `predict` reads it: decoded (refused by its header when too
/// large), then turned into Fashion-MNIST's 28x28 form, both inversion choices.
pub fn predict_image(bytes: &[u8]) {
    let open = || Ok(std::io::Cursor::new(bytes));
    if let Ok(image) = predict::decode(open, FUZZ_MAX_SIDE) {
        for invert in [Invert::Auto, Invert::Yes] {
            let _ = predict::prepare(&image, invert);
        }
    }
}

/// An uncompressed IDX file, read as images and as labels.
pub fn idx_raw(bytes: &[u8]) {
    for kind in [Kind::Images, Kind::Labels] {
        let _ = idx::parse("fuzz", bytes, kind);
    }
}

/// A gzip'ed IDX file: decompressed (bounded by its header) and parsed.
pub fn idx_gzip(bytes: &[u8]) {
    if let Ok(content) = files::gunzip("fuzz", bytes) {
        idx_raw(&content);
    }
}

/// A small model with a convolution and a classifier, whose checkpoint files are small
/// enough to fuzz: the loader's code is the same for every model.
pub fn small_model() -> Result<Parameters> {
    let device = Device::cpu();
    let mut params = Parameters::default();
    for (name, shape) in [
        ("conv.weight", &[4, 1, 3, 3][..]),
        ("conv.bias", &[4]),
        ("fc.weight", &[10, 4]),
        ("fc.bias", &[10]),
    ] {
        let n = shape.iter().product::<usize>();
        let values = (0..n).map(|i| i as f32 * 0.25 - 1.0).collect();
        params.push(name, Tensor::from_vec(&device, shape, values)?)?;
    }
    Ok(params)
}

/// A safetensors file, loaded as `small_model`'s weights and as its optimizer state.
pub fn checkpoint_tensors(bytes: &[u8]) {
    let params = small_model().expect("the small model builds");
    checkpoint_tensors_of(&params, bytes);
}

/// A safetensors file, loaded as `params`' weights and as their optimizer state.
pub fn checkpoint_tensors_of(params: &Parameters, bytes: &[u8]) {
    for groups in [&[""][..], &["exp_avg.", "exp_avg_sq."]] {
        let _ = checkpoint::parse_groups("fuzz", bytes, params, groups);
    }
}

thread_local! {
    /// GoogLeNet's layer geometry, built once per thread: a run state's config is
    /// checked against it as `train` does.
    static NET: GoogLeNet = GoogLeNet::new(
        &Device::cpu(),
        GoogLeNetConfig::default(),
        Init::PyTorchDefault,
        0,
    )
    .expect("GoogLeNet builds")
    .0;
}

/// A checkpoint's `state.json`: parsed, its config validated and, when valid, its
/// memory estimated from the model's geometry, as a resume does before training.
pub fn state_json(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let Ok(state) = serde_json::from_str::<RunState>(text) else {
        return;
    };
    if state.config.validate().is_ok() {
        // Fashion-MNIST's 70,000 images, all of them used.
        let data = DataShape {
            images_read: 70_000,
            image_bytes: IMAGE_SIDE * IMAGE_SIDE,
            images_used: 70_000,
        };
        NET.with(|net| {
            for on_gpu in [false, true] {
                let _ = memory::estimate(&workload(net, 5_977_530, &state.config, data, on_gpu));
            }
        });
    }
}
