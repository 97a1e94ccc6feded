//! Run directories a person can read: named by local date and time, and summed up
//! at the end from their metrics.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::metrics::Record;

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

/// What a run's last lines say, from its `Epoch` records.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// The last epoch's test accuracy.
    pub final_test_accuracy: f64,
    /// The best epoch (1-based) and its test accuracy; the earliest of equals.
    pub best_epoch: usize,
    pub best_test_accuracy: f64,
    /// Seconds spent training (evaluation excluded) and training images per second.
    pub train_seconds: f64,
    pub images_per_s: f64,
}

impl Summary {
    /// None when no epoch has finished.
    pub fn from_records(records: &[Record]) -> Option<Summary> {
        let mut summary: Option<Summary> = None;
        let mut images = 0.0;
        for record in records {
            let Record::Epoch {
                epoch,
                test_accuracy,
                epoch_time_s,
                images_per_s,
                ..
            } = *record
            else {
                continue;
            };
            images += images_per_s * epoch_time_s;
            let s = summary.get_or_insert(Summary {
                final_test_accuracy: test_accuracy,
                best_epoch: epoch,
                best_test_accuracy: test_accuracy,
                train_seconds: 0.0,
                images_per_s: 0.0,
            });
            s.final_test_accuracy = test_accuracy;
            if test_accuracy > s.best_test_accuracy {
                (s.best_epoch, s.best_test_accuracy) = (epoch, test_accuracy);
            }
            s.train_seconds += epoch_time_s;
            s.images_per_s = images / s.train_seconds.max(1e-9);
        }
        summary
    }
}

/// `seconds` as "9 min 32 s" (or "41 s", or "2 h 05 min").
pub fn format_duration(seconds: f64) -> String {
    let s = seconds.round() as u64;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {:02} s", s / 60, s % 60),
        _ => format!("{} h {:02} min", s / 3600, s % 3600 / 60),
    }
}
