//! The IDX format: a big-endian header, then the data.
//!
//!   magic: u32 = 0x0000_08_NN (0x08: unsigned bytes, NN: number of dimensions)
//!   dims:  NN x u32, the size of each dimension
//!   data:  the product of the dims, in bytes, and nothing after it
//!
//! Images are 3-dimensional (count, rows, cols), labels 1-dimensional (count).

use anyhow::{bail, Result};

use super::files::IMAGE_SIDE;
use super::files::{hex_prefix, Kind};

/// A checked IDX file: its dimensions and where the data starts.
#[derive(Debug)]
pub(crate) struct Idx {
    pub dims: Vec<usize>,
    pub offset: usize,
}

impl Idx {
    pub fn count(&self) -> usize {
        self.dims[0]
    }
}

/// Parses and checks `content`, an IDX file of `kind`; `origin` names it in errors.
/// Checks the header against the length, images' size, and the labels' range.
pub(crate) fn parse(origin: &str, content: &[u8], kind: Kind) -> Result<Idx> {
    let (expected, what) = match kind {
        Kind::Images => (0x0000_0803_u32, "images: unsigned bytes, 3 dimensions"),
        Kind::Labels => (0x0000_0801_u32, "labels: unsigned bytes, 1 dimension"),
    };
    let Some(magic) = be_u32(content, 0) else {
        bail!(
            "{origin}: truncated: {} bytes, too short for an IDX header",
            content.len()
        );
    };
    if magic != expected {
        bail!(
            "{origin}: wrong magic number 0x{magic:08x}, expected 0x{expected:08x} (IDX \
             {what}){}",
            magic_hint(magic, content)
        );
    }
    let ndims = (expected & 0xff) as usize;
    let offset = 4 + 4 * ndims;
    let dims: Vec<usize> = (0..ndims)
        .map_while(|d| be_u32(content, 4 + 4 * d))
        .map(|d| d as usize)
        .collect();
    if dims.len() < ndims {
        bail!(
            "{origin}: truncated: {} bytes, too short for the {offset}-byte IDX header",
            content.len()
        );
    }

    let shape = match kind {
        Kind::Images => format!("{} images of {}x{}", dims[0], dims[1], dims[2]),
        Kind::Labels => format!("{} labels", dims[0]),
    };
    let size = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    let present = content.len() - offset;
    match size {
        Some(size) if size == present => {}
        Some(size) if size < present => bail!(
            "{origin}: {} bytes of trailing garbage after the {shape}",
            present - size
        ),
        _ => bail!(
            "{origin}: truncated: the header says {shape} ({} bytes) but only {present} \
             bytes follow it",
            size.map_or("too many".to_string(), |s| s.to_string())
        ),
    }

    let data = &content[offset..];
    match kind {
        Kind::Images if dims[1] != IMAGE_SIDE || dims[2] != IMAGE_SIDE => bail!(
            "{origin}: images are {}x{}, Fashion-MNIST's are {IMAGE_SIDE}x{IMAGE_SIDE}",
            dims[1],
            dims[2]
        ),
        Kind::Labels => {
            if let Some((i, label)) = data.iter().enumerate().find(|(_, &l)| l >= 10) {
                bail!("{origin}: label {label} at index {i} is out of range: there are 10 classes (0 to 9)");
            }
        }
        Kind::Images => {}
    }
    Ok(Idx { dims, offset })
}

fn be_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// What a wrong magic number suggests the file really is.
fn magic_hint(magic: u32, content: &[u8]) -> String {
    if content.starts_with(&[0x1f, 0x8b]) {
        return "; it looks gzip-compressed: name it NAME.gz".to_string();
    }
    match magic {
        0x0000_0801 => "; that is an IDX label file".to_string(),
        0x0000_0803 => "; that is an IDX image file".to_string(),
        m if m >> 16 == 0 => format!(
            "; that is an IDX file of type 0x{:02x} with {} dimensions",
            (m >> 8) & 0xff,
            m & 0xff
        ),
        _ => format!("; not an IDX file (it starts with {})", hex_prefix(content)),
    }
}
