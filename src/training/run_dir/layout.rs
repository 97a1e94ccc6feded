//! A run directory: named by local date and time, a person can read it; and where in
//! it the metrics and checkpoints go.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Creates and returns `<root>/<preset>-YYYY-MM-DD_HH-MM-SS` (local time), or with
/// `-2`, `-3`, ... appended when a run started in the same second already has it.
pub fn create_run_dir(root: &Path, preset: &str) -> Result<PathBuf> {
    fs::create_dir_all(root).with_context(|| format!("cannot create {}", root.display()))?;
    let stamp = local_timestamp();
    for n in 1.. {
        let name = match n {
            1 => format!("{preset}-{stamp}"),
            n => format!("{preset}-{stamp}-{n}"),
        };
        let dir = root.join(name);
        // create_dir (not create_dir_all) fails on an existing directory, so two
        // runs starting together cannot both take one name.
        match fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot create {}", dir.display())),
        }
    }
    unreachable!("the suffixes do not run out")
}

/// Now, in the machine's local time zone, as `YYYY-MM-DD_HH-MM-SS`.
pub fn local_timestamp() -> String {
    // The C library knows the local zone (TZ, /etc/localtime); no crate here does
    // without a time-zone database of its own.
    let now = unsafe { libc::time(std::ptr::null_mut()) };
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are to live locals; localtime_r is the thread-safe form.
    let ok = !unsafe { libc::localtime_r(&now, &mut tm) }.is_null();
    if !ok {
        return format!("t{now}");
    }
    format!(
        "{:04}-{:02}-{:02}_{:02}-{:02}-{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

/// The run directory's layout.
pub fn metrics_path(run_dir: &Path) -> PathBuf {
    run_dir.join("metrics.jsonl")
}

pub fn checkpoints_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("checkpoints")
}
