//! What a training run reports, and the JSON-lines file it goes to.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// One line of `metrics.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    /// Every `--log-every` batches: means over the batches since the last log line.
    Log {
        /// 1-based, as printed.
        epoch: usize,
        /// 1-based batch within the epoch.
        batch: usize,
        /// Optimizer steps taken so far in the whole run.
        step: u64,
        loss: f64,
        accuracy: f64,
        elapsed_s: f64,
        /// The learning rate of the window's last step (absent in older files).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lr: Option<f64>,
    },
    /// After each epoch: means over every training sample of the epoch.
    Epoch {
        epoch: usize,
        step: u64,
        train_loss: f64,
        train_accuracy: f64,
        test_accuracy: f64,
        epoch_time_s: f64,
        images_per_s: f64,
    },
}

/// Appends records to a JSON-lines file, one flushed line each.
pub struct MetricsLog {
    path: PathBuf,
    file: File,
}

impl MetricsLog {
    pub fn append(path: &Path) -> Result<MetricsLog> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        Ok(MetricsLog {
            path: path.to_path_buf(),
            file,
        })
    }

    pub fn write(&mut self, record: &Record) -> Result<()> {
        let line = serde_json::to_string(record)?;
        writeln!(self.file, "{line}")
            .and_then(|_| self.file.flush())
            .with_context(|| format!("cannot write {}", self.path.display()))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Every record of a metrics file, in order; names the line that does not parse.
pub fn read_records(path: &Path) -> Result<Vec<Record>> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    BufReader::new(file)
        .lines()
        .enumerate()
        .filter(|(_, line)| line.as_ref().map_or(true, |l| !l.trim().is_empty()))
        .map(|(i, line)| {
            let line = line.with_context(|| format!("cannot read {}", path.display()))?;
            serde_json::from_str(&line)
                .with_context(|| format!("{} line {}: not a metrics record", path.display(), i + 1))
        })
        .collect()
}
