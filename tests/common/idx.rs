//! Crafted IDX files (the Fashion-MNIST format) for tests.

use std::io::Write;
use std::path::Path;

use flate2::write::GzEncoder;
use flate2::Compression;
use googlenet::data::FILES;

/// An IDX header: magic, then each dimension, big-endian.
pub fn header(magic: u32, dims: &[u32]) -> Vec<u8> {
    let mut out = magic.to_be_bytes().to_vec();
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out
}

/// `count` images of `side`x`side`, pixel values derived from their position.
pub fn images_idx(count: usize, side: usize) -> Vec<u8> {
    let mut out = header(0x803, &[count as u32, side as u32, side as u32]);
    out.extend((0..count * side * side).map(|i| (i * 7 % 256) as u8));
    out
}

pub fn labels_idx(labels: &[u8]) -> Vec<u8> {
    let mut out = header(0x801, &[labels.len() as u32]);
    out.extend_from_slice(labels);
    out
}

pub fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// Images from given pixels (`count` images of `side`x`side`).
pub fn images_idx_from(count: usize, side: usize, pixels: &[u8]) -> Vec<u8> {
    assert_eq!(pixels.len(), count * side * side);
    let mut out = header(0x803, &[count as u32, side as u32, side as u32]);
    out.extend_from_slice(pixels);
    out
}

/// Writes `contents` (in `FILES` order) into `dir`, gzip'ed as `NAME.gz` or raw.
pub fn write_set(dir: &Path, contents: &[Vec<u8>; 4], gzip: bool) {
    for (file, content) in FILES.iter().zip(contents) {
        if gzip {
            std::fs::write(dir.join(format!("{}.gz", file.name)), gz(content)).unwrap();
        } else {
            std::fs::write(dir.join(file.name), content).unwrap();
        }
    }
}
