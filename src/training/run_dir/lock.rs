//! One `train` process per run directory, so metrics and checkpoints never interleave.
//!
//! `<run_dir>/train.lock` is locked (flock, exclusive) for the run's whole life and
//! holds the pid of the process that has it. The kernel drops the lock when that
//! process dies, however it dies, so a lock left by a killed run is simply taken
//! over; its pid is still in the file, which is how a new run can say so. A run that
//! ends normally empties the file. The file is never deleted: a process that opened
//! it just before a deletion would lock a file no one else can see.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

pub const LOCK_FILE: &str = "train.lock";

/// The held lock; dropping it releases the directory.
#[derive(Debug)]
pub struct RunLock {
    file: File,
    path: PathBuf,
    /// The pid of a run that died holding the lock, when this one took it over.
    pub stale_pid: Option<u32>,
}

impl RunLock {
    /// Locks `run_dir` (creating it) for this process, or says which process has it.
    pub fn acquire(run_dir: &Path) -> Result<RunLock> {
        fs::create_dir_all(run_dir)
            .with_context(|| format!("cannot create run directory {}", run_dir.display()))?;
        let path = run_dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let mut previous = String::new();
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let _ = file.read_to_string(&mut previous);
                let holder = match previous.trim() {
                    "" => "another process".to_string(),
                    pid => format!("another train process (pid {pid})"),
                };
                bail!(
                    "{} is in use by {holder}: one run per directory, so that metrics and \
                     checkpoints do not interleave (lock file {}). Wait for it to finish, \
                     or pass another --run-dir",
                    run_dir.display(),
                    path.display()
                );
            }
            Err(TryLockError::Error(err)) => {
                return Err(err).with_context(|| format!("cannot lock {}", path.display()))
            }
        }
        file.read_to_string(&mut previous)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let stale_pid = previous.trim().parse().ok();
        let mut lock = RunLock {
            file,
            path,
            stale_pid,
        };
        lock.write_pid(&std::process::id().to_string())?;
        Ok(lock)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write_pid(&mut self, text: &str) -> Result<()> {
        self.file
            .set_len(0)
            .and_then(|()| self.file.rewind())
            .and_then(|()| self.file.write_all(text.as_bytes()))
            .and_then(|()| self.file.sync_all())
            .with_context(|| format!("cannot write {}", self.path.display()))
    }
}

impl Drop for RunLock {
    /// A run that ends (not one that is killed) leaves the file empty: not stale.
    fn drop(&mut self) {
        let _ = self.write_pid("");
    }
}
