//! Image files in the modes users have (grey, RGB, RGBA, palette, 16-bit), and folders
//! of class folders made of them, for the folder data set's tests.

use std::io::Write;
use std::path::Path;

use flate2::write::ZlibEncoder;
use flate2::Compression;
use googlenet::data::folder::FolderOptions;
use image::{DynamicImage, GrayImage, ImageBuffer, Luma, Rgb, RgbImage, Rgba, RgbaImage};

/// Saves `image` at `path` (the format from its extension), making its folder.
pub fn save(path: &Path, image: &DynamicImage) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image.save(path).unwrap();
}

/// A grey image whose every pixel is `value`.
pub fn grey(w: u32, h: u32, value: u8) -> DynamicImage {
    DynamicImage::ImageLuma8(GrayImage::from_pixel(w, h, Luma([value])))
}

/// An RGB image whose every pixel is `rgb`.
pub fn rgb(w: u32, h: u32, rgb: [u8; 3]) -> DynamicImage {
    DynamicImage::ImageRgb8(RgbImage::from_pixel(w, h, Rgb(rgb)))
}

/// An RGBA image whose every pixel is `rgba`.
pub fn rgba(w: u32, h: u32, rgba: [u8; 4]) -> DynamicImage {
    DynamicImage::ImageRgba8(RgbaImage::from_pixel(w, h, Rgba(rgba)))
}

/// A 16-bit grey image whose every pixel is `value`.
pub fn grey16(w: u32, h: u32, value: u16) -> DynamicImage {
    DynamicImage::ImageLuma16(ImageBuffer::from_pixel(w, h, Luma([value])))
}

/// A PNG of colour type 3 (palette) at `path`: pixel `(x, y)` is
/// `palette[index(x, y)]`. The image crate writes no palette PNGs, so it is put
/// together here, chunk by chunk.
pub fn palette_png(
    path: &Path,
    w: u32,
    h: u32,
    palette: &[[u8; 3]],
    index: impl Fn(u32, u32) -> u8,
) {
    let mut rows = Vec::new();
    for y in 0..h {
        rows.push(0);
        rows.extend((0..w).map(|x| index(x, y)));
    }
    let mut zlib = ZlibEncoder::new(Vec::new(), Compression::fast());
    zlib.write_all(&rows).unwrap();
    write_png(
        path,
        w,
        h,
        3,
        Some(&palette.concat()),
        &zlib.finish().unwrap(),
    );
}

/// A folder of `classes` class folders, `per_class` small PNGs each (class `k`'s
/// pixels all `40 * k + 10`, so a label can be read back from its image).
pub fn class_folders(root: &Path, classes: &[&str], per_class: usize) {
    for (k, class) in classes.iter().enumerate() {
        for i in 0..per_class {
            save(
                &root.join(class).join(format!("{i:03}.png")),
                &grey(6 + i as u32 % 3, 5, 40 * k as u8 + 10),
            );
        }
    }
}

/// Reading `dir` at a store side of 8, channels chosen from the images, bad files
/// refused.
pub fn options(dir: &Path) -> FolderOptions {
    FolderOptions {
        dir: dir.to_path_buf(),
        test_fraction: 0.25,
        seed: 7,
        store_side: 8,
        channels: None,
        skip_bad_images: false,
    }
}

/// A PNG of `w x h` pixels of colour type `color_type` (0 grey, 2 RGB, 6 RGBA) and
/// 8 bits, every byte of its pixel data `value`, streamed through the compressor so
/// that a huge image costs no memory.
pub fn flat_png(path: &Path, w: u32, h: u32, color_type: u8, value: u8) {
    let channels = match color_type {
        0 => 1,
        2 => 3,
        _ => 4,
    };
    let mut zlib = ZlibEncoder::new(Vec::new(), Compression::fast());
    let mut row = vec![value; 1 + w as usize * channels];
    row[0] = 0;
    for _ in 0..h {
        zlib.write_all(&row).unwrap();
    }
    write_png(path, w, h, color_type, None, &zlib.finish().unwrap());
}

/// The PNG file of already compressed `data`.
fn write_png(path: &Path, w: u32, h: u32, color_type: u8, palette: Option<&[u8]>, data: &[u8]) {
    let chunk = |out: &mut Vec<u8>, kind: &[u8], data: &[u8]| {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        out.extend_from_slice(&crc.sum().to_be_bytes());
    };
    let mut header = Vec::new();
    header.extend_from_slice(&w.to_be_bytes());
    header.extend_from_slice(&h.to_be_bytes());
    header.extend_from_slice(&[8, color_type, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut png, b"IHDR", &header);
    if let Some(palette) = palette {
        chunk(&mut png, b"PLTE", palette);
    }
    chunk(&mut png, b"IDAT", data);
    chunk(&mut png, b"IEND", &[]);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, png).unwrap();
}
