//! The four files of the release, and getting one's content off the disk: gzip'ed or
//! raw, checked against its MD5.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use flate2::read::MultiGzDecoder;
use md5::{Digest, Md5};

use crate::sys;

/// The ten classes, by label.
pub const CLASS_NAMES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// Fashion-MNIST's images are 28x28; the reader refuses any other size.
pub const IMAGE_SIDE: usize = 28;

/// How to get the files without this program's help; ends errors that leave the
/// user without data.
pub const GET_BY_HAND: &str = "To get the data by hand: `apt-get install \
dataset-fashion-mnist`, or put the four files (train-images-idx3-ubyte, \
train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, each \
gzip'ed as NAME.gz or raw) in a directory and pass --data-dir DIR.";

/// What an IDX file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Images,
    Labels,
}

/// One file of the release.
#[derive(Clone, Copy, Debug)]
pub struct DataFile {
    /// The raw file's name; the gzip'ed one adds `.gz`.
    pub name: &'static str,
    pub kind: Kind,
    /// MD5 of the decompressed content. The official `.gz` files' own sums are no
    /// use: repackaged copies (Debian's) have other gzip headers.
    pub md5: &'static str,
}

pub const TRAIN_IMAGES: DataFile = DataFile {
    name: "train-images-idx3-ubyte",
    kind: Kind::Images,
    md5: "f4a8712d7a061bf5bd6d2ca38dc4d50a",
};
pub const TRAIN_LABELS: DataFile = DataFile {
    name: "train-labels-idx1-ubyte",
    kind: Kind::Labels,
    md5: "9018921c3c673c538a1fc5bad174d6f9",
};
pub const TEST_IMAGES: DataFile = DataFile {
    name: "t10k-images-idx3-ubyte",
    kind: Kind::Images,
    md5: "8181f5470baa50b63fa0f6fddb340f0a",
};
pub const TEST_LABELS: DataFile = DataFile {
    name: "t10k-labels-idx1-ubyte",
    kind: Kind::Labels,
    md5: "15d484375f8d13e6eb1aabb0c3f46965",
};

/// All four, in download order.
pub const FILES: [DataFile; 4] = [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS];

/// The gzip'ed name of `name`.
pub(crate) fn gz_name(name: &str) -> String {
    format!("{name}.gz")
}

/// The copy of `name` in `dir`: the raw file if there is one (nothing to
/// decompress, and someone unpacked it on purpose), else the gzip'ed one.
pub(crate) fn find(dir: &Path, name: &str) -> Option<PathBuf> {
    [dir.join(name), dir.join(gz_name(name))]
        .into_iter()
        .find(|p| p.is_file())
}

/// The content of `file` in `dir`, decompressed, and the path it came from.
pub(crate) fn read(dir: &Path, file: &DataFile) -> Result<(PathBuf, Vec<u8>)> {
    let Some(path) = find(dir, file.name) else {
        bail!(
            "{}: missing (and no {} either)",
            dir.join(file.name).display(),
            gz_name(file.name)
        );
    };
    let size = std::fs::metadata(&path)
        .map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", path.display()))?
        .len();
    ensure_fits(&path.display().to_string(), size, "the file is")?;
    let bytes = std::fs::read(&path)
        .map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", path.display()))?;
    let content = if path.extension().is_some_and(|e| e == "gz") {
        gunzip(&path.display().to_string(), &bytes)?
    } else {
        bytes
    };
    Ok((path, content))
}

/// Refuses `bytes` of data that cannot fit in the memory the host has left.
fn ensure_fits(origin: &str, bytes: u64, what: &str) -> Result<()> {
    if let Some(host) = sys::host_memory() {
        if bytes > host.available {
            bail!(
                "{origin}: {what} {bytes} bytes, more than the {} of memory available ({})",
                sys::human(host.available),
                host.limited_by
            );
        }
    }
    Ok(())
}

/// Decompresses gzip'ed IDX data; `origin` (a path or URL) names it in errors.
///
/// A small stream can inflate to any size, so it is read no further than its IDX
/// header says (and one byte more, to notice trailing data), and a header that
/// claims more than fits in memory is refused before anything big is allocated.
/// Content that is not IDX is read only as far as `idx::parse` needs to say so.
pub(crate) fn gunzip(origin: &str, bytes: &[u8]) -> Result<Vec<u8>> {
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        bail!(
            "{origin}: not gzip data (it starts with {}, gzip starts with 1f 8b)",
            hex_prefix(bytes)
        );
    }
    let mut decoder = MultiGzDecoder::new(bytes);
    let mut content = Vec::new();
    let mut read_to = |content: &mut Vec<u8>, len: u64| -> Result<()> {
        let more = len.saturating_sub(content.len() as u64);
        if let Err(e) = (&mut decoder).take(more).read_to_end(content) {
            bail!("{origin}: corrupt gzip data: {e}");
        }
        Ok(())
    };
    read_to(&mut content, 4)?;
    let ndims = match content[..] {
        [0, 0, 0x08, n] if (1..=4).contains(&n) => n as usize,
        // Not unsigned-byte IDX: a few bytes are all `idx::parse` looks at.
        _ => {
            read_to(&mut content, 64)?;
            return Ok(content);
        }
    };
    let header = 4 + 4 * ndims as u64;
    read_to(&mut content, header)?;
    if (content.len() as u64) < header {
        return Ok(content);
    }
    let claimed = content[4..]
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as u64)
        .try_fold(1u64, |acc, d| acc.checked_mul(d))
        .and_then(|size| size.checked_add(header))
        .unwrap_or(u64::MAX);
    ensure_fits(origin, claimed, "its IDX header claims")?;
    read_to(&mut content, claimed)?;
    // What follows the data is inflated only to be counted (into nothing, up to a
    // bound), which also checks the rest of the stream and its CRC.
    let trailing = std::io::copy(
        &mut (&mut decoder).take(TRAILING_LIMIT),
        &mut std::io::sink(),
    );
    match trailing {
        Err(e) => bail!("{origin}: corrupt gzip data: {e}"),
        Ok(0) => Ok(content),
        Ok(TRAILING_LIMIT) => bail!(
            "{origin}: more than {} of trailing garbage after the data its IDX header \
             describes",
            sys::human(TRAILING_LIMIT)
        ),
        Ok(n) => {
            bail!("{origin}: {n} bytes of trailing garbage after the data its IDX header describes")
        }
    }
}

/// How much decompressed data past an IDX file's end is counted before giving up.
const TRAILING_LIMIT: u64 = 1 << 30;

/// Checks the MD5 of decompressed `content` against `file`'s.
pub(crate) fn verify_md5(origin: &str, content: &[u8], file: &DataFile) -> Result<()> {
    let actual = md5_hex(content);
    if actual != file.md5 {
        bail!(
            "{origin}: checksum mismatch: the MD5 of its decompressed content is {actual}, \
             the official {} has {}. The file is corrupt or from another data set; to \
             read another IDX data set of this shape on purpose, pass --no-verify.",
            file.name,
            file.md5
        );
    }
    Ok(())
}

pub(crate) fn md5_hex(content: &[u8]) -> String {
    Md5::digest(content)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The first bytes of `bytes` in hex, for messages about what a file really is.
pub(crate) fn hex_prefix(bytes: &[u8]) -> String {
    match bytes.len() {
        0 => "nothing (it is empty)".to_string(),
        n => bytes[..n.min(4)]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" "),
    }
}
