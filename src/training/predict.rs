//! Classifying a user's image: turning any picture into a Fashion-MNIST-like 28x28
//! grey image, then running a checkpoint on it.
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
//! The 28x28 result then goes through the checkpoint's own resize and normalisation,
//! exactly as test images do.

use std::fs;
use std::io::{BufRead, BufReader, Seek};
use std::path::Path;

use anyhow::{bail, Context, Result};
use image::imageops::FilterType;
use image::{DynamicImage, GrayImage, Luma};

use crate::engine::autograd::{Parameters, Tape};
use crate::engine::nn::{GoogLeNet, Mode};
use crate::engine::ops::ByteImages;
use crate::training::checkpoint::{RunState, STATE_FILE};
use crate::training::settings::{preset, Preset, TrainConfig};

/// Side of a Fashion-MNIST image.
pub const SIDE: u32 = 28;

/// Images wider or taller than this are refused from their header, before decoding
/// (a 20000x20000 RGBA image alone would need 1.6 GB).
pub const MAX_SIDE: u32 = 16_384;

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
/// than `MAX_SIDE` on a side; every error names the file.
pub fn load_image(path: &Path) -> Result<DynamicImage> {
    decode(
        || {
            let file = fs::File::open(path).context("cannot open it")?;
            Ok(BufReader::new(file))
        },
        MAX_SIDE,
    )
}

/// Decodes an image from the readers `open` makes (the header is read from one, the
/// image from a second), refusing one larger than `max_side` on a side before it
/// allocates its pixels. `fuzz_targets::predict_image` feeds it bytes.
pub fn decode<R: BufRead + Seek>(
    open: impl Fn() -> Result<R>,
    max_side: u32,
) -> Result<DynamicImage> {
    let reader = |r| {
        image::io::Reader::new(r)
            .with_guessed_format()
            .context("cannot read it")
    };
    let header = reader(open()?)?;
    if header.format().is_none() {
        bail!("not an image in a known format (PNG, JPEG, BMP, GIF, WebP, PNM, TGA, ICO)");
    }
    let (w, h) = header
        .into_dimensions()
        .context("not a readable image (its header is damaged)")?;
    if w > max_side || h > max_side {
        bail!("the image is {w}x{h}: larger than {max_side} pixels on a side, so it is refused");
    }
    if w == 0 || h == 0 {
        bail!("the image is empty ({w}x{h})");
    }
    reader(open()?)?
        .decode()
        .context("not a readable image (its data is damaged)")
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

/// The settings a checkpoint directory's run used, or the tutorial's for a bare
/// model file (which has no `state.json` beside it).
pub fn checkpoint_config(checkpoint: &Path) -> Result<TrainConfig> {
    let state_file = checkpoint.join(STATE_FILE);
    if !state_file.exists() {
        return Ok(preset(Preset::Tutorial));
    }
    let json = fs::read_to_string(&state_file)
        .with_context(|| format!("cannot read {}", state_file.display()))?;
    let state: RunState = serde_json::from_str(&json)
        .with_context(|| format!("{} is not a run state", state_file.display()))?;
    Ok(state.config)
}

/// Class probabilities (softmax of the logits, in evaluation mode) of 28x28 grey
/// images, resized and normalised as `config`'s run did.
pub fn class_probabilities(
    net: &GoogLeNet,
    params: &Parameters,
    config: &TrainConfig,
    images: &[GrayImage],
) -> Result<Vec<[f32; 10]>> {
    if images.is_empty() {
        return Ok(Vec::new());
    }
    let device = params
        .iter()
        .next()
        .context("the model has no parameters")?;
    let device = device.value.device().clone();
    let pixels: Vec<u8> = images.iter().flat_map(|i| i.as_raw().clone()).collect();
    let set = ByteImages::new(&device, pixels, images.len(), SIDE as usize, SIDE as usize)?;
    let mut out = Vec::with_capacity(images.len());
    let order: Vec<u32> = (0..images.len() as u32).collect();
    for chunk in order.chunks(64) {
        let x = set.resize_batch_normalized(chunk, config.image_size, config.normalization())?;
        let logits = net.forward(&mut Tape::no_grad(), params, &x, Mode::Eval)?;
        for row in logits.value.to_vec()?.chunks(10) {
            out.push(softmax(row));
        }
    }
    Ok(out)
}

fn softmax(logits: &[f32]) -> [f32; 10] {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f64> = logits.iter().map(|&z| ((z - max) as f64).exp()).collect();
    let sum: f64 = exp.iter().sum();
    let mut p = [0.0f32; 10];
    for (p, e) in p.iter_mut().zip(&exp) {
        *p = (e / sum) as f32;
    }
    p
}

/// The `k` most probable classes, most probable first (ties: the lower class).
pub fn top_k(probabilities: &[f32; 10], k: usize) -> Vec<(usize, f32)> {
    let mut classes: Vec<(usize, f32)> = probabilities.iter().copied().enumerate().collect();
    classes.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    classes.truncate(k);
    classes
}
