//! The `train` program on a crafted data set, for tests that start, kill and restart it.

use std::path::{Path, PathBuf};
use std::process::Command;

use googlenet::engine::device::Device;
use googlenet::training;

use super::idx;

/// `train` images and `test` images of 28x28 (labels cycling 0..9) as gzip'ed IDX files.
pub fn data_dir(train: usize, test: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let labels = |n: usize| (0..n).map(|i| (i % 10) as u8).collect::<Vec<_>>();
    idx::write_set(
        dir.path(),
        &[
            idx::images_idx(train, 28),
            idx::labels_idx(&labels(train)),
            idx::images_idx(test, 28),
            idx::labels_idx(&labels(test)),
        ],
        true,
    );
    dir
}

/// A run of a few milliseconds a step (checkpoints take longer: 72 MB each).
pub const TINY: [&str; 8] = [
    "--preset",
    "quick",
    "--image-size",
    "8",
    "--batch-size",
    "4",
    "--test-limit",
    "8",
];

/// The `train` program on the CPU with `data` and no MD5 check (crafted data).
pub fn train_program(data: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_train"));
    cmd.env_remove("FASHION_MNIST_DIR")
        .args(["--no-verify", "--device=cpu"])
        .arg("--data-dir")
        .arg(data);
    cmd
}

/// Runs to the end; (success, stdout and stderr).
pub fn output_of(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().expect("program runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The checkpoint directories of a run (hidden leftovers not included), by name.
pub fn checkpoints(run_dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(training::run_dir::checkpoints_dir(run_dir)) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    dirs.sort();
    dirs
}

/// Loads a checkpoint the way `--resume` does; its step.
pub fn load_step(checkpoint: &Path) -> anyhow::Result<u64> {
    let (state, ..) = training::checkpoint::resume(&Device::cpu(), checkpoint)?;
    Ok(state.step)
}

/// The token after `--resume` in `text`'s last line that has one.
pub fn resume_path(text: &str) -> Option<PathBuf> {
    let line = text.lines().rev().find(|l| l.contains("--resume "))?;
    let after = line.split("--resume ").nth(1)?;
    Some(PathBuf::from(after.split_whitespace().next()?))
}
