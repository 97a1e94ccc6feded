//! Where to look for the files, in order:
//!
//!   1. `--data-dir` (handled by `load`: given, it is the only place looked at)
//!   2. `$FASHION_MNIST_DIR`
//!   3. `./data/fashion-mnist`, where downloads go
//!   4. `/usr/share/datasets/fashion-mnist`, Debian's `dataset-fashion-mnist`
//!
//! A directory counts only when it holds all four files (each raw or gzip'ed).

use std::path::{Path, PathBuf};

use super::files::{self, FILES};

/// Where downloads go when no `--data-dir` is given (relative to the working
/// directory).
pub(crate) const DOWNLOAD_DIR: &str = "data/fashion-mnist";

/// Debian's `dataset-fashion-mnist` package.
pub(crate) const SYSTEM_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// A directory that holds all four files, and why it was looked at.
pub(crate) struct Found {
    pub dir: PathBuf,
    pub why: &'static str,
}

/// The names of the files that `dir` lacks (in neither form).
pub(crate) fn missing(dir: &Path) -> Vec<&'static str> {
    FILES
        .iter()
        .filter(|f| files::find(dir, f.name).is_none())
        .map(|f| f.name)
        .collect()
}

/// The first directory in the search order that holds all four files, or else a
/// sentence saying what each one lacked.
pub(crate) fn search() -> Result<Found, String> {
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::var_os("FASHION_MNIST_DIR").filter(|d| !d.is_empty()) {
        candidates.push((PathBuf::from(dir), "$FASHION_MNIST_DIR"));
    }
    candidates.push((
        PathBuf::from(".").join(DOWNLOAD_DIR),
        "the download directory",
    ));
    candidates.push((
        PathBuf::from(SYSTEM_DIR),
        "the dataset-fashion-mnist package",
    ));

    let mut lacks = Vec::new();
    for (dir, why) in candidates {
        let missing = missing(&dir);
        if missing.is_empty() {
            return Ok(Found { dir, why });
        }
        let what = if missing.len() == FILES.len() {
            "none of the files".to_string()
        } else {
            format!("no {}", missing.join(", "))
        };
        lacks.push(format!("{} ({why}): {what}", dir.display()));
    }
    Err(format!("Searched {}.", lacks.join("; ")))
}
