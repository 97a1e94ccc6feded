//! The parsers of files this program reads from outside, as fuzzing entry points.
//!
//! Each target takes arbitrary bytes and must return, with an error or without,
//! never panicking, hanging or allocating without bound. `fuzz/` runs them under
//! cargo-fuzz (nightly, deep runs); `tests/fuzz.rs` runs them on stable over seeded
//! mutations of real files and over the corpus in `fuzz/corpus/<target>/`.

use std::path::{Component, Path, PathBuf};

use anyhow::Result;

use crate::data::fashion_mnist::{files, idx};
use crate::data::folder::{image_file, FolderOptions, Plan};
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
pub const TARGETS: [(&str, Target); 7] = [
    ("idx_raw", idx_raw),
    ("idx_gzip", idx_gzip),
    ("checkpoint_tensors", checkpoint_tensors),
    ("state_json", state_json),
    ("predict_image", predict_image),
    ("folder_image", folder_image),
    ("folder_scan", folder_scan),
];

/// The largest side `predict_image` and `folder_image` decode: `predict` and
/// `train --data` take up to `MAX_SIDE`, whose
/// pixels (1 GiB as RGBA) a fuzzer would allocate for every header that claims it;
/// the decoding code past the size check is the same for any side.
pub const FUZZ_MAX_SIDE: u32 = 1024;

/// An image file as `predict` reads it: decoded (refused by its header when too
/// large), then turned into Fashion-MNIST's 28x28 form, both inversion choices.
pub fn predict_image(bytes: &[u8]) {
    if let Ok(image) = image_file::decode(std::io::Cursor::new(bytes), FUZZ_MAX_SIDE) {
        for invert in [Invert::Auto, Invert::Yes] {
            let _ = predict::prepare(&image, invert);
        }
    }
}

/// An image file as `train --data` reads it: its header, then decoded (refused by its
/// header when too large) and fitted, grey and RGB, to a side below and above its own.
pub fn folder_image(bytes: &[u8]) {
    let _ = image_file::read_header(std::io::Cursor::new(bytes), FUZZ_MAX_SIDE);
    if let Ok(image) = image_file::decode(std::io::Cursor::new(bytes), FUZZ_MAX_SIDE) {
        for (channels, side) in [(1, 7), (3, 33)] {
            let _ = image_file::fit(&image, channels, side);
        }
    }
}

/// Entries a `folder_scan` input may create, and the bytes one file may hold.
const TREE_ENTRIES: usize = 48;
const TREE_FILE_BYTES: usize = 4096;

/// A folder tree from bytes (`tree_bytes` writes them), built in a temporary folder,
/// then scanned and planned as `train --data` does, with and without
/// `--skip-bad-images`: its files' headers are read, nothing is decoded.
pub fn folder_scan(bytes: &[u8]) {
    let Ok(root) = tempfile::tempdir() else {
        return;
    };
    build_tree(root.path(), bytes);
    for skip_bad_images in [false, true] {
        let _ = Plan::new(&FolderOptions {
            dir: root.path().to_path_buf(),
            test_fraction: 0.25,
            seed: 1,
            store_side: 8,
            channels: None,
            skip_bad_images,
        });
    }
}

/// One entry of a `folder_scan` input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TreeEntry {
    Folder(String),
    File(String, Vec<u8>),
    /// A symbolic link at the first path to the second (relative to the link's folder).
    Link(String, String),
}

/// `entries` as a `folder_scan` input: per entry a kind byte (`d`, `f`, `l`), a
/// length byte and a path, then for a file a little-endian u16 length and the
/// content, for a link a length byte and the target.
pub fn tree_bytes(entries: &[TreeEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    let text = |out: &mut Vec<u8>, s: &str| {
        out.push(s.len() as u8);
        out.extend_from_slice(s.as_bytes());
    };
    for entry in entries {
        match entry {
            TreeEntry::Folder(path) => {
                out.push(b'd');
                text(&mut out, path);
            }
            TreeEntry::File(path, content) => {
                out.push(b'f');
                text(&mut out, path);
                out.extend_from_slice(&(content.len() as u16).to_le_bytes());
                out.extend_from_slice(content);
            }
            TreeEntry::Link(path, target) => {
                out.push(b'l');
                text(&mut out, path);
                text(&mut out, target);
            }
        }
    }
    out
}

/// Creates what `bytes` describes under `root`, skipping what it cannot read or what
/// could leave `root` (absolute paths, `..`, links that do not descend).
fn build_tree(root: &Path, bytes: &[u8]) {
    let mut rest = bytes;
    let mut take = |n: usize| -> Option<Vec<u8>> {
        let (head, tail) = (rest.get(..n)?, rest.get(n..)?);
        rest = tail;
        Some(head.to_vec())
    };
    for _ in 0..TREE_ENTRIES {
        let Some(kind) = take(1) else { return };
        let Some(path) = take(1).and_then(|n| take(n[0] as usize)) else {
            return;
        };
        let Some(path) = inside(&path) else { continue };
        let path = root.join(path);
        match kind[0] {
            b'd' => {
                let _ = std::fs::create_dir_all(&path);
            }
            b'f' => {
                let Some(n) = take(2) else { return };
                let n = (u16::from_le_bytes([n[0], n[1]]) as usize).min(TREE_FILE_BYTES);
                let Some(content) = take(n) else { return };
                if let Some(parent) = path.parent() {
                    let _ = std::fs::create_dir_all(parent);
                }
                let _ = std::fs::write(&path, content);
            }
            b'l' => {
                let Some(target) = take(1).and_then(|n| take(n[0] as usize)) else {
                    return;
                };
                let Ok(target) = std::str::from_utf8(&target) else {
                    continue;
                };
                if descends(Path::new(target)) {
                    if let Some(parent) = path.parent() {
                        let _ = std::fs::create_dir_all(parent);
                    }
                    let _ = std::os::unix::fs::symlink(target, &path);
                }
            }
            _ => {}
        }
    }
}

/// `path` as a relative path of plain names, or None.
fn inside(path: &[u8]) -> Option<PathBuf> {
    let path = Path::new(std::str::from_utf8(path).ok()?);
    let plain = path.components().all(|c| matches!(c, Component::Normal(_)));
    (plain && path.components().count() > 0).then(|| path.to_path_buf())
}

/// Whether a link's `target` stays below the link's folder, and so, every link made
/// here doing the same, below the root: plain names and `.` only (`.` is enough for a
/// loop).
fn descends(target: &Path) -> bool {
    target.components().count() > 0
        && target
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
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
    if state.config.validate().is_ok() && state.data.validate().is_ok() {
        let _ = state.config.normalization(&state.data);
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
