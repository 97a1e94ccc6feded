//! One image file: its header read (size and colour) without decoding the pixels,
//! decoded, and fitted to a square the way torchvision's standard evaluation
//! transform does (`Resize(side)` then `CenterCrop(side)`).
//!
//! `fit`, for an image of `w x h` and a side `s`:
//!   1. colour: RGB from any mode, as PIL's `convert("RGB")` does (grey repeated on
//!      the three channels, palettes looked up, alpha dropped, 16 bits to 8); or grey,
//!      as PIL's `convert("L")` does: `L = (19595 R + 38470 G + 7471 B + 2^15) >> 16`
//!      (ITU-R 601-2 luma, in PIL's fixed point);
//!   2. the shorter side resized to `s`, the longer to `⌊s · long / short⌋`, with a
//!      triangle (bilinear) filter widened by the scale when shrinking (antialiased, as
//!      PIL's bilinear resize);
//!   3. the centre `s x s` cropped, its offset `round((resized - s) / 2)` with halves
//!      rounded to even, as torchvision computes it in Python;
//!   4. stored as channel planes (CHW).
//!
//! An image already `s x s` passes through steps 2 and 3 unchanged.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek};
use std::path::Path;

use anyhow::{bail, Context, Result};
use image::imageops::FilterType;
use image::{ColorType, DynamicImage, GrayImage, ImageBuffer, ImageDecoder, ImageReader, Pixel};

/// Images wider or taller than this are refused from their header, before decoding
/// (a 20000x20000 RGBA image alone would need 1.6 GB).
pub const MAX_SIDE: u32 = 16_384;

/// The most bytes one decoded image may take (the image crate's own default limit,
/// which its decoders do not apply when driven one step at a time, as here): a
/// 16384x16384 RGBA image would take 1 GiB.
pub const MAX_DECODED_BYTES: u64 = 512 << 20;

/// The most bytes step 2 (below) may resize an image to, counted as the resize's
/// floats: a photo far longer than wide (1x16384 at a store side of 1024 would be
/// 1024x16777216) is refused rather than resized.
pub const MAX_RESIZED_BYTES: u64 = 512 << 20;

/// The formats the decoder reads, as errors name them.
const FORMATS: &str = "PNG, JPEG, BMP, GIF, WebP, TIFF, PNM, TGA, ICO";

/// What an image file's header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub width: u32,
    pub height: u32,
    /// The pixel format the decoder gives (a palette image is RGB or RGBA).
    pub color: ColorType,
}

impl Header {
    /// Whether the image has colour channels (a grey image does not, alpha or not).
    pub fn has_colour(&self) -> bool {
        self.color.has_color()
    }

    /// The mode in words, for reports.
    pub fn mode(&self) -> &'static str {
        match self.color {
            ColorType::L8 => "grey",
            ColorType::La8 => "grey with alpha",
            ColorType::L16 => "16-bit grey",
            ColorType::La16 => "16-bit grey with alpha",
            ColorType::Rgb8 => "RGB",
            ColorType::Rgba8 => "RGBA",
            ColorType::Rgb16 => "16-bit RGB",
            ColorType::Rgba16 => "16-bit RGBA",
            ColorType::Rgb32F => "float RGB",
            ColorType::Rgba32F => "float RGBA",
            _ => "another mode",
        }
    }
}

/// The file at `path`, buffered; an error saying it cannot be opened and why (a
/// missing file, a broken symbolic link, no permission).
pub fn open(path: &Path) -> Result<BufReader<File>> {
    let file = File::open(path).context("cannot open it")?;
    Ok(BufReader::new(file))
}

/// The decoder for `reader`'s image, its header checked: a known format, readable,
/// not empty, at most `max_side` on a side and `MAX_DECODED_BYTES` decoded.
fn decoder<'a, R: BufRead + Seek + 'a>(
    reader: R,
    max_side: u32,
) -> Result<(impl ImageDecoder + 'a, Header)> {
    let reader = ImageReader::new(reader)
        .with_guessed_format()
        .context("cannot read it")?;
    if reader.format().is_none() {
        bail!("not an image in a known format ({FORMATS})");
    }
    let decoder = reader
        .into_decoder()
        .context("not a readable image (its header is damaged or its mode unsupported)")?;
    let (width, height) = decoder.dimensions();
    if width > max_side || height > max_side {
        bail!(
            "the image is {width}x{height}: larger than {max_side} pixels on a side, so it \
             is refused"
        );
    }
    if width == 0 || height == 0 {
        bail!("the image is empty ({width}x{height})");
    }
    let color = decoder.color_type();
    let header = Header {
        width,
        height,
        color,
    };
    if decoder.total_bytes() > MAX_DECODED_BYTES {
        bail!(
            "the image is {width}x{height} {}: {} bytes decoded, over the decoder's limit \
             of {} MiB, so it is refused",
            header.mode(),
            decoder.total_bytes(),
            MAX_DECODED_BYTES >> 20
        );
    }
    Ok((decoder, header))
}

/// The header of `reader`'s image, checked as `decode` checks it; the pixels are not
/// decoded.
pub fn read_header<R: BufRead + Seek>(reader: R, max_side: u32) -> Result<Header> {
    Ok(decoder(reader, max_side)?.1)
}

/// Decodes `reader`'s image, refusing one larger than `max_side` on a side (or than
/// the decoder's own memory limit, 512 MiB) before it allocates its pixels.
pub fn decode<R: BufRead + Seek>(reader: R, max_side: u32) -> Result<DynamicImage> {
    let (decoder, _) = decoder(reader, max_side)?;
    DynamicImage::from_decoder(decoder)
        .context("not a readable image (its data is damaged, or it is over the decoder's limits)")
}

/// The size step 2 resizes a `width x height` image to: its shorter side `side`, its
/// longer `⌊side · long / short⌋` (as torchvision's `int()`).
fn resized_size(width: u32, height: u32, side: u32) -> (u64, u64) {
    let long = |long: u32, short: u32| side as u64 * long as u64 / short as u64;
    if width <= height {
        (side as u64, long(height, width))
    } else {
        (long(width, height), side as u64)
    }
}

/// Fails, before anything is resized, when fitting a `width x height` image of
/// `channels` channels to `side` would resize it to more than `MAX_RESIZED_BYTES`.
pub fn check_fit(width: u32, height: u32, channels: usize, side: u32) -> Result<()> {
    let (rw, rh) = resized_size(width, height, side);
    let bytes = rw * rh * channels as u64 * 4;
    if bytes > MAX_RESIZED_BYTES {
        bail!(
            "the image is {width}x{height}: resizing its shorter side to {side} would make \
             it {rw}x{rh}, over the limit of {} MiB; it is too elongated to fit",
            MAX_RESIZED_BYTES >> 20
        );
    }
    Ok(())
}

/// `image` as `channels` (1 or 3) planes of `side x side` (see the module comment);
/// an error for an image `check_fit` refuses.
pub fn fit(image: &DynamicImage, channels: usize, side: u32) -> Result<Vec<u8>> {
    check_fit(image.width(), image.height(), channels, side)?;
    if channels == 1 {
        return Ok(resize_and_crop(&grey(image), side).into_raw());
    }
    let rgb = resize_and_crop(&image.to_rgb8(), side);
    let plane = (side * side) as usize;
    let mut planes = vec![0; 3 * plane];
    for (i, pixel) in rgb.pixels().enumerate() {
        for (c, &value) in pixel.0.iter().enumerate() {
            planes[c * plane + i] = value;
        }
    }
    Ok(planes)
}

/// PIL's `convert("L")`: grey images as they are (alpha dropped, 16 bits to 8),
/// colour ones through its luma.
fn grey(image: &DynamicImage) -> GrayImage {
    if !image.color().has_color() {
        return image.to_luma8();
    }
    let rgb = image.to_rgb8();
    GrayImage::from_fn(rgb.width(), rgb.height(), |x, y| {
        let [r, g, b] = rgb.get_pixel(x, y).0.map(u32::from);
        image::Luma([((19595 * r + 38470 * g + 7471 * b + 0x8000) >> 16) as u8])
    })
}

/// Steps 2 and 3 of the module comment.
fn resize_and_crop<P: Pixel<Subpixel = u8> + 'static>(
    image: &ImageBuffer<P, Vec<u8>>,
    side: u32,
) -> ImageBuffer<P, Vec<u8>> {
    let (w, h) = image.dimensions();
    let (rw, rh) = resized_size(w, h, side);
    // `check_fit` bounds the size well within u32.
    let (rw, rh) = (rw as u32, rh as u32);
    let resized;
    let source = if (rw, rh) == (w, h) {
        image
    } else {
        resized = image::imageops::resize(image, rw, rh, FilterType::Triangle);
        &resized
    };
    let (left, top) = (centre_offset(rw, side), centre_offset(rh, side));
    image::imageops::crop_imm(source, left, top, side, side).to_image()
}

/// `round((length - side) / 2)` with halves to even, as Python's `round`.
fn centre_offset(length: u32, side: u32) -> u32 {
    let twice = length - side;
    let (half, odd) = (twice / 2, twice % 2 == 1);
    // (2k + 1) / 2 = k + 0.5 rounds to whichever of k and k + 1 is even.
    if odd && half % 2 == 1 {
        half + 1
    } else {
        half
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn centre_offsets_round_halves_to_even() {
        // Python: round(0.5) = 0, round(1.5) = 2, round(2.5) = 2, round(3) = 3.
        for (length, offset) in [(29, 0), (31, 2), (33, 2), (34, 3), (28, 0)] {
            assert_eq!(centre_offset(length, 28), offset, "{length}");
        }
    }
}
