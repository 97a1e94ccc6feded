//! Classifying a user's image: preparing it as the checkpoint's training images were,
//! then running the checkpoint on it.
//!
//! A model trained on a folder (`train --data DIR`) gets each image as the folder's
//! were decoded: its channels, the shorter side resized to the store side, the centre
//! cropped (data/folder/image_file.rs). A model trained on Fashion-MNIST gets a
//! Fashion-MNIST-like 28x28 grey image:
//!
//! Fashion-MNIST was made from product photos on light backgrounds: trimmed to the
//! object, its longest edge resized to 28 pixels, centred on a 28x28 canvas,
//! intensities negated (a light object on black), 8-bit grey. [`prepare`] does the
//! same to a decoded image:
//!   1. grey (ITU-R BT.601 luma), transparent pixels composited onto white;
//!   2. inverted when the background is light, judged from the border: the median
//!      of the outermost pixels above 127 (`Invert::Auto`), or as told;
//!   3. levels stretched: the background level (that median, after inversion) to
//!      0 and the brightest pixel to 255, so the canvas is black as in the data set
//!      and a dim photo (a coloured object on a tinted background) is not faint;
//!   4. trimmed to the box of pixels brighter than the background by more than
//!      `TRIM_THRESHOLD`, that box resized (area-averaging triangle filter) so its
//!      longest edge is 28, and centred on a black 28x28 canvas.
//!
//! Either result then goes through the checkpoint's own resize and normalisation,
//! exactly as test images do.

use std::fs;
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use image::imageops::FilterType;
use image::{DynamicImage, GrayImage, Luma};

use crate::data::folder::image_file;
pub use crate::data::folder::image_file::MAX_SIDE;
use crate::data::DataDescription;
use crate::engine::autograd::{Parameters, Tape};
use crate::engine::device::ImageShape;
use crate::engine::nn::{GoogLeNet, Mode};
use crate::engine::ops::ByteImages;
use crate::training::checkpoint::{RunState, STATE_FILE};
use crate::training::settings::{preset, Preset, TrainConfig};

/// Side of a Fashion-MNIST image.
pub const SIDE: u32 = 28;

/// Pixels within this much of the background level count as background when trimming.
pub const TRIM_THRESHOLD: u8 = 24;

/// Whether to negate intensities so the object is light on black.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invert {
    /// When the border is mostly light.
    Auto,
    Yes,
    No,
}

impl Invert {
    pub fn parse(text: &str) -> Result<Invert> {
        match text {
            "auto" => Ok(Invert::Auto),
            "yes" => Ok(Invert::Yes),
            "no" => Ok(Invert::No),
            other => bail!("--invert {other:?} is unknown: expected auto, yes or no"),
        }
    }
}

/// Decodes the image file at `path`, refusing it by its header when it is larger
/// than `MAX_SIDE` on a side.
pub fn load_image(path: &Path) -> Result<DynamicImage> {
    image_file::decode(image_file::open(path)?, MAX_SIDE)
}

/// An image prepared for a checkpoint: its pixels, as the checkpoint's data set
/// stores its images, and whether they were inverted (Fashion-MNIST's form only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prepared {
    pub pixels: Vec<u8>,
    pub inverted: bool,
}

/// `image` as the run of `config` on `data` read its images (see the module comment);
/// `invert` applies to Fashion-MNIST's form. An error for an image too elongated to
/// fit (`image_file::check_fit`).
pub fn prepare_as_trained(
    image: &DynamicImage,
    config: &TrainConfig,
    data: &DataDescription,
    invert: Invert,
) -> Result<Prepared> {
    if config.data.is_fashion_mnist() {
        let (grey, inverted) = prepare(image, invert);
        return Ok(Prepared {
            pixels: grey.into_raw(),
            inverted,
        });
    }
    Ok(Prepared {
        pixels: image_file::fit(image, data.channels, data.store_side as u32)?,
        inverted: false,
    })
}

/// Grey, with transparency composited onto white.
fn grey(image: &DynamicImage) -> GrayImage {
    let la = image.to_luma_alpha8();
    GrayImage::from_fn(la.width(), la.height(), |x, y| {
        let [v, a] = la.get_pixel(x, y).0;
        let (v, a) = (v as u32, a as u32);
        Luma([((v * a + 255 * (255 - a) + 127) / 255) as u8])
    })
}

/// The median of the image's outermost pixels.
fn border_median(image: &GrayImage) -> u8 {
    let (w, h) = image.dimensions();
    let mut border: Vec<u8> = (0..w)
        .flat_map(|x| [(x, 0), (x, h - 1)])
        .chain((0..h).flat_map(|y| [(0, y), (w - 1, y)]))
        .map(|(x, y)| image.get_pixel(x, y).0[0])
        .collect();
    border.sort_unstable();
    border[border.len() / 2]
}

/// The 28x28 grey image, light object on black, that `image` becomes (see the module
/// comment), and whether it was inverted.
pub fn prepare(image: &DynamicImage, invert: Invert) -> (GrayImage, bool) {
    let mut grey = grey(image);
    let inverted = match invert {
        Invert::Auto => border_median(&grey) > 127,
        Invert::Yes => true,
        Invert::No => false,
    };
    if inverted {
        image::imageops::invert(&mut grey);
    }
    let background = border_median(&grey);
    let brightest = grey.pixels().map(|p| p.0[0]).max().unwrap_or(0);
    let span = (brightest.saturating_sub(background) as u32).max(1);
    for p in grey.pixels_mut() {
        let v = p.0[0].saturating_sub(background) as u32;
        p.0[0] = (v * 255 / span).min(255) as u8;
    }

    let mut canvas = GrayImage::new(SIDE, SIDE);
    let Some((x0, y0, w, h)) = object_box(&grey) else {
        return (canvas, inverted); // nothing but background
    };
    let object = image::imageops::crop_imm(&grey, x0, y0, w, h).to_image();
    let scale = SIDE as f64 / w.max(h) as f64;
    let (fw, fh) = (
        ((w as f64 * scale).round() as u32).clamp(1, SIDE),
        ((h as f64 * scale).round() as u32).clamp(1, SIDE),
    );
    let fitted = image::imageops::resize(&object, fw, fh, FilterType::Triangle);
    image::imageops::replace(
        &mut canvas,
        &fitted,
        ((SIDE - fw) / 2) as i64,
        ((SIDE - fh) / 2) as i64,
    );
    (canvas, inverted)
}

/// The smallest box `(x, y, w, h)` holding every pixel above `TRIM_THRESHOLD`.
fn object_box(image: &GrayImage) -> Option<(u32, u32, u32, u32)> {
    let mut bounds: Option<(u32, u32, u32, u32)> = None;
    for (x, y, p) in image.enumerate_pixels() {
        if p.0[0] > TRIM_THRESHOLD {
            let b = bounds.get_or_insert((x, y, x, y));
            *b = (b.0.min(x), b.1.min(y), b.2.max(x), b.3.max(y));
        }
    }
    bounds.map(|(x0, y0, x1, y1)| (x0, y0, x1 - x0 + 1, y1 - y0 + 1))
}

/// The settings a checkpoint directory's run used and the data set it trained on, or
/// the tutorial's on Fashion-MNIST for a bare model file (which has no `state.json`
/// beside it).
pub fn checkpoint_settings(checkpoint: &Path) -> Result<(TrainConfig, DataDescription)> {
    let state_file = checkpoint.join(STATE_FILE);
    if !state_file.exists() {
        return Ok((preset(Preset::Tutorial), DataDescription::fashion_mnist()));
    }
    let json = fs::read_to_string(&state_file)
        .with_context(|| format!("cannot read {}", state_file.display()))?;
    let state: RunState = serde_json::from_str(&json)
        .with_context(|| format!("{} is not a run state", state_file.display()))?;
    state
        .data
        .validate()
        .with_context(|| format!("{}", state_file.display()))?;
    Ok((state.config, state.data))
}

/// Class probabilities (softmax of the logits, in evaluation mode) of `images`
/// prepared for the checkpoint (`prepare_as_trained`), resized and normalised as
/// `config`'s run on `data` did.
pub fn class_probabilities(
    net: &GoogLeNet,
    params: &Parameters,
    config: &TrainConfig,
    data: &DataDescription,
    images: &[Vec<u8>],
) -> Result<Vec<Vec<f32>>> {
    if images.is_empty() {
        return Ok(Vec::new());
    }
    let device = params
        .iter()
        .next()
        .context("the model has no parameters")?;
    let device = device.value.device().clone();
    let shape = ImageShape {
        channels: data.channels,
        height: data.store_side,
        width: data.store_side,
    };
    if let Some(bad) = images.iter().find(|i| i.len() != shape.image_bytes()) {
        bail!(
            "a prepared image of {} bytes; the checkpoint's are {}x{}x{}",
            bad.len(),
            shape.channels,
            shape.height,
            shape.width
        );
    }
    let set = ByteImages::with_shape(&device, images.concat(), images.len(), shape)?;
    let norm = config.normalization(data)?;
    let classes = data.classes.len();
    let mut out = Vec::with_capacity(images.len());
    let order: Vec<u32> = (0..images.len() as u32).collect();
    for chunk in order.chunks(64) {
        let x = set.resize_batch_normalized(chunk, config.image_size, norm)?;
        let logits = net.forward(&mut Tape::no_grad(), params, &x, Mode::Eval)?;
        let logits = logits.value.to_vec()?;
        ensure!(
            logits.len() == chunk.len() * classes,
            "the model has not the checkpoint's {classes} classes"
        );
        out.extend(logits.chunks(classes).map(softmax));
    }
    Ok(out)
}

fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f64> = logits.iter().map(|&z| ((z - max) as f64).exp()).collect();
    let sum: f64 = exp.iter().sum();
    exp.iter().map(|e| (e / sum) as f32).collect()
}

/// The `k` most probable classes, most probable first (ties: the lower class).
pub fn top_k(probabilities: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut classes: Vec<(usize, f32)> = probabilities.iter().copied().enumerate().collect();
    classes.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    classes.truncate(k);
    classes
}
