//! The four files of the release, and getting one's content off the disk: gzip'ed or
//! raw, checked against its MD5.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use flate2::read::MultiGzDecoder;
use md5::{Digest, Md5};

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
    let bytes = std::fs::read(&path)
        .map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", path.display()))?;
    let content = if path.extension().is_some_and(|e| e == "gz") {
        gunzip(&path.display().to_string(), &bytes)?
    } else {
        bytes
    };
    Ok((path, content))
}

/// Decompresses gzip data; `origin` (a path or URL) names it in errors.
pub(crate) fn gunzip(origin: &str, bytes: &[u8]) -> Result<Vec<u8>> {
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        bail!(
            "{origin}: not gzip data (it starts with {}, gzip starts with 1f 8b)",
            hex_prefix(bytes)
        );
    }
    let mut content = Vec::with_capacity(bytes.len() * 2);
    if let Err(e) = MultiGzDecoder::new(bytes).read_to_end(&mut content) {
        bail!("{origin}: corrupt gzip data: {e}");
    }
    Ok(content)
}

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
