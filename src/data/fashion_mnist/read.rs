//! One split of Fashion-MNIST read from its pair of IDX files, each checked.

use std::path::Path;

use anyhow::{ensure, Result};

use super::files::{self, DataFile};
use super::idx;
use crate::data::Split;

/// Reads and checks one split from `dir`: both files, their MD5 if `verify`, and
/// that they hold as many images as labels.
pub(crate) fn read(
    dir: &Path,
    images_file: &DataFile,
    labels_file: &DataFile,
    verify: bool,
) -> Result<Split> {
    let images = Checked::read(dir, images_file, verify)?;
    let labels = Checked::read(dir, labels_file, verify)?;
    ensure!(
        images.idx.count() == labels.idx.count(),
        "{} holds {} images but {} holds {} labels",
        images.origin,
        images.idx.count(),
        labels.origin,
        labels.idx.count()
    );
    let (rows, cols) = (images.idx.dims[1], images.idx.dims[2]);
    Ok(Split {
        images: images.into_data(),
        labels: labels.into_data(),
        channels: 1,
        rows,
        cols,
    })
}

/// One file's content, its format checked and, if asked, its MD5.
struct Checked {
    origin: String,
    content: Vec<u8>,
    idx: idx::Idx,
}

impl Checked {
    fn read(dir: &Path, file: &DataFile, verify: bool) -> Result<Checked> {
        let (path, content) = files::read(dir, file)?;
        let origin = path.display().to_string();
        let idx = idx::parse(&origin, &content, file.kind)?;
        if verify {
            files::verify_md5(&origin, &content, file)?;
        }
        Ok(Checked {
            origin,
            content,
            idx,
        })
    }

    /// The data after the header.
    fn into_data(mut self) -> Vec<u8> {
        self.content.drain(..self.idx.offset);
        self.content
    }
}
