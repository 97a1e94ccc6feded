//! Fashion-MNIST as a data set: its two splits, where they were found, and how.
//!
//! `load` looks for the files (see `locate` for the order), downloads them when no
//! directory has them, then reads them with `load_dir`. Every file is checked all
//! the way: its IDX header against its length, the image size, the label range, the
//! image and label counts against each other and, unless `verify` is off, the MD5 of
//! its decompressed content against the official release. A bad file is an error
//! that names it, never a panic and never garbage handed on to training.

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Result};

use super::download::{self, OFFICIAL_MIRROR};
use super::files::{FILES, GET_BY_HAND, TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS};
use super::locate;
use super::read;
use crate::data::Split;

/// Both splits and the directory they were read from.
#[derive(Clone, Debug)]
pub struct FashionMnist {
    pub train: Split,
    pub test: Split,
    /// The directory the files were read from, made absolute.
    pub source: PathBuf,
    /// How that directory was chosen (e.g. "$FASHION_MNIST_DIR", "downloaded").
    pub found_by: &'static str,
}

/// Where to find the data and how far to trust it.
#[derive(Clone, Debug)]
pub struct DataOptions {
    /// Read from this directory only (no search). When it holds none of the four
    /// files and `download` is on, they are downloaded into it.
    pub data_dir: Option<PathBuf>,
    /// Check each file's MD5 against the official release. Turn off to read another
    /// IDX data set of the same shape (28x28 images, labels 0..=9).
    pub verify: bool,
    /// Download the files when no directory has them.
    pub download: bool,
    /// Base URL the files are downloaded from.
    pub mirror: String,
}

impl Default for DataOptions {
    /// Search, verify, download if needed, from `$FASHION_MNIST_MIRROR` or else the
    /// official mirror.
    fn default() -> Self {
        DataOptions {
            data_dir: None,
            verify: true,
            download: true,
            mirror: std::env::var("FASHION_MNIST_MIRROR")
                .ok()
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| OFFICIAL_MIRROR.to_string()),
        }
    }
}

/// Finds the data (downloading it if allowed and needed), reads and checks it.
pub fn load(opts: &DataOptions) -> Result<FashionMnist> {
    let (dir, why) = match &opts.data_dir {
        Some(dir) => {
            let missing = locate::missing(dir);
            if missing.len() == FILES.len() && opts.download {
                download::download_missing(dir, &opts.mirror, opts.verify)?;
                (dir.clone(), "--data-dir, downloaded")
            } else if missing.is_empty() {
                (dir.clone(), "--data-dir")
            } else {
                bail!(
                    "{}: no {} there (given by --data-dir, so no other directory is \
                     searched{}). {GET_BY_HAND}",
                    dir.display(),
                    missing.join(", "),
                    if opts.download {
                        "; it holds some of the files, so nothing is downloaded into it"
                    } else {
                        ""
                    }
                );
            }
        }
        None => match locate::search() {
            Ok(found) => (found.dir, found.why),
            Err(searched) => {
                ensure!(
                    opts.download,
                    "Fashion-MNIST not found, and downloading is off. {searched} {GET_BY_HAND}"
                );
                let dir = PathBuf::from(locate::DOWNLOAD_DIR);
                download::download_missing(&dir, &opts.mirror, opts.verify)?;
                (dir, "downloaded")
            }
        },
    };
    let mut data = load_dir(&dir, opts.verify)?;
    data.found_by = why;
    Ok(data)
}

/// Reads and checks the four files in `dir`; `verify` compares their MD5 with the
/// official release.
pub fn load_dir(dir: &Path, verify: bool) -> Result<FashionMnist> {
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let train = read::read(&dir, &TRAIN_IMAGES, &TRAIN_LABELS, verify)?;
    let test = read::read(&dir, &TEST_IMAGES, &TEST_LABELS, verify)?;
    Ok(FashionMnist {
        train,
        test,
        source: dir,
        found_by: "read directly",
    })
}
