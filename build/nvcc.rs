//! build.rs: which nvcc compiles the kernels, installing the pinned one when there is none.
//!
//! In order: `$NVCC`; the pinned copy in .venv-cuda (scripts/install-nvcc.sh, the one
//! place that names the pinned packages); an nvcc in `$CUDA_HOME/bin` or on `PATH` no
//! newer than 13.0; else build.rs runs scripts/install-nvcc.sh itself (about 10 s, once;
//! `GOOGLENET_NVCC_INSTALL=0` turns that off). The version matters: PTX from an nvcc newer
//! than the 13.0 driver of our GPUs does not load there, so a newer one is refused.
//!
//! Cargo reruns build.rs when the pinned nvcc appears or changes: it watches that file,
//! or, while there is none, the .venv-cuda directory (created empty for the purpose), so
//! `cargo build` and `./scripts/test.sh` give the same binaries in either order, and no
//! build reruns the script (and the emulator's C++ compile) when nothing changed
//! (`watch`).

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

/// The newest CUDA release whose PTX the driver of our GPUs (13.0) loads.
const NEWEST: (u32, u32) = (13, 0);

/// The nvcc a build uses.
pub struct Nvcc {
    pub path: PathBuf,
    /// Its full version, e.g. "13.0.88".
    pub version: String,
}

/// The nvcc to use, or why there is none (a sentence that says how to get one).
/// Panics when `$NVCC` names one that cannot be used: that was asked for explicitly.
pub fn find(out_dir: &Path) -> Result<Nvcc, String> {
    println!("cargo:rerun-if-env-changed=NVCC");
    println!("cargo:rerun-if-env-changed=CUDA_HOME");
    println!("cargo:rerun-if-env-changed=GOOGLENET_NVCC_INSTALL");
    if let Some(path) = env::var_os("NVCC") {
        let path = PathBuf::from(path);
        println!("cargo:rerun-if-changed={}", path.display());
        return match usable(&path) {
            Ok(nvcc) => Ok(nvcc),
            Err(why) => panic!("NVCC={}: {why}", path.display()),
        };
    }
    let root = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let venv = root.join(".venv-cuda");
    if let Some(pinned) = pinned(&venv) {
        watch(&pinned, out_dir);
        return usable(&pinned).map_err(|why| format!("{}: {why}", pinned.display()));
    }
    let found = system_or_installed(&root, &venv, out_dir);
    match pinned(&venv) {
        // Installed just now: from here on, only it matters. Its date is left as it is,
        // later than this run's start, so that cargo runs the script once more and the
        // note that it was installed is not replayed on every later build (the rerun
        // repeats no work: build/memo.rs).
        Some(path) => println!("cargo:rerun-if-changed={}", path.display()),
        // No pinned copy yet: watch the directory it will be installed into.
        None => {
            if !venv.exists() {
                let _ = fs::create_dir(&venv);
            }
            watch(&venv, out_dir);
        }
    }
    found
}

/// An nvcc on the system no newer than 13.0, else the pinned one, installed now.
fn system_or_installed(root: &Path, venv: &Path, out_dir: &Path) -> Result<Nvcc, String> {
    let mut skipped = Vec::new();
    for candidate in system_candidates() {
        match usable(&candidate) {
            Ok(nvcc) => {
                println!("cargo:rerun-if-changed={}", candidate.display());
                return Ok(nvcc);
            }
            Err(why) => skipped.push(format!("{} skipped: {why}", candidate.display())),
        }
    }
    let skipped = if skipped.is_empty() {
        String::new()
    } else {
        format!(" ({})", skipped.join("; "))
    };
    install(root, out_dir).map_err(|why| format!("{why}{skipped}"))?;
    let path = pinned(venv).ok_or_else(|| {
        format!("scripts/install-nvcc.sh succeeded but left no nvcc in .venv-cuda{skipped}")
    })?;
    println!(
        "cargo:warning=installed the pinned nvcc into .venv-cuda (scripts/install-nvcc.sh){skipped}"
    );
    usable(&path).map_err(|why| format!("{}: {why}", path.display()))
}

/// Tells cargo to rerun build.rs when `path` changes (and not because of this run). Cargo reruns it when the path is
/// newer than the time it started this run (the mtime of invoked.timestamp beside
/// OUT_DIR), so what this run wrote there itself (the installed nvcc, the directory
/// made to watch) is dated back to that time: else the next build would rerun
/// build.rs, and the emulator's C++ compile, once more for nothing.
fn watch(path: &Path, out_dir: &Path) {
    println!("cargo:rerun-if-changed={}", path.display());
    let started = out_dir
        .parent()
        .and_then(|run| fs::metadata(run.join("invoked.timestamp")).ok())
        .and_then(|meta| meta.modified().ok());
    if let Some(started) = started {
        date_back(path, started - Duration::from_secs(1));
    }
}

/// Sets the mtime of `path`, and of everything under it, that is later than `to` to `to`.
fn date_back(path: &Path, to: SystemTime) {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return;
    };
    if meta.is_dir() {
        for entry in fs::read_dir(path).into_iter().flatten().flatten() {
            date_back(&entry.path(), to);
        }
    }
    if meta.modified().is_ok_and(|m| m > to) && !meta.is_symlink() {
        if let Ok(file) = fs::File::open(path) {
            let _ = file.set_modified(to);
        }
    }
}

/// `.venv-cuda/lib/python*/site-packages/nvidia/cu13/bin/nvcc`, where it exists.
fn pinned(venv: &Path) -> Option<PathBuf> {
    fs::read_dir(venv.join("lib"))
        .ok()?
        .flatten()
        .find_map(|python| {
            let path = python.path().join("site-packages/nvidia/cu13/bin/nvcc");
            path.exists().then_some(path)
        })
}

fn system_candidates() -> Vec<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(home) = env::var_os("CUDA_HOME") {
        candidates.push(Path::new(&home).join("bin/nvcc"));
    }
    if let Some(paths) = env::var_os("PATH") {
        candidates.extend(env::split_paths(&paths).map(|p| p.join("nvcc")));
    }
    let mut seen = Vec::new();
    candidates.retain(|p| {
        let keep = p.exists() && !seen.contains(p);
        seen.push(p.clone());
        keep
    });
    candidates
}

/// The nvcc at `path` with its version, or why it cannot be used.
pub fn usable(path: &Path) -> Result<Nvcc, String> {
    let out = Command::new(path)
        .arg("--version")
        .output()
        .map_err(|e| format!("cannot run it ({e})"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "Cuda compilation tools, release 13.0, V13.0.88"
    let version = text
        .lines()
        .find_map(|line| line.split(", V").nth(1))
        .map(|v| v.trim().to_string())
        .ok_or_else(|| format!("`--version` printed no version:\n{text}"))?;
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let release = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if release > NEWEST {
        return Err(format!(
            "it is nvcc {version}, newer than CUDA {}.{}: its PTX would not load on the {}.{} driver of our GPUs \
             (unset NVCC to use the pinned copy that scripts/install-nvcc.sh installs)",
            NEWEST.0, NEWEST.1, NEWEST.0, NEWEST.1
        ));
    }
    Ok(Nvcc {
        path: path.to_path_buf(),
        version,
    })
}

/// Runs scripts/install-nvcc.sh once per target directory: a failure (no network, no
/// python3-venv) is remembered in OUT_DIR, so later builds do not retry it each time.
fn install(root: &Path, out_dir: &Path) -> Result<(), String> {
    let how = "run scripts/install-nvcc.sh (or set NVCC) and rebuild";
    if env::var_os("GOOGLENET_NVCC_INSTALL").is_some_and(|v| v == "0") {
        return Err(format!(
            "nvcc not found, and GOOGLENET_NVCC_INSTALL=0 keeps the build from installing it: {how}"
        ));
    }
    let failed = out_dir.join("nvcc-install-failed.txt");
    if let Ok(earlier) = fs::read_to_string(&failed) {
        return Err(format!(
            "nvcc not found, and installing the pinned one failed in an earlier build ({}): {how}",
            earlier.trim()
        ));
    }
    let out = Command::new("bash")
        .arg(root.join("scripts/install-nvcc.sh"))
        .output();
    let why = match out {
        Ok(out) if out.status.success() => return Ok(()),
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stderr).into_owned()
                + &String::from_utf8_lossy(&out.stdout);
            let last = text.lines().rev().find(|l| !l.trim().is_empty());
            format!(
                "scripts/install-nvcc.sh failed: {}",
                last.unwrap_or("no output").trim()
            )
        }
        Err(e) => format!("cannot run bash scripts/install-nvcc.sh: {e}"),
    };
    let _ = fs::write(&failed, &why);
    Err(format!("nvcc not found, and {why}: {how}"))
}
