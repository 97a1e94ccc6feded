//! build.rs, part zero: the build script's work done once per change of what it reads.
//!
//! Cargo reruns a build script when a file or variable it watches changes, and on every
//! other build replays the script's stored output, warnings included. The one warning
//! that must not be replayed is the note that the build installed the pinned nvcc (a
//! one-off event, not a state): so the build that installs it has cargo run the script
//! once more (build/nvcc.rs leaves the new nvcc's date alone), and that run must not
//! redo the work, which takes minutes (nvcc on every kernel file, the emulator's C++).
//!
//! So the script's work runs in a child process (the script itself, again), whose
//! output is kept in OUT_DIR with a fingerprint of everything the work reads: the
//! kernels, the script's own binary, the variables the compilers look at and the nvcc
//! files it may pick. A run whose fingerprint matches prints the kept output instead of
//! working, without the one-off notes (`ONE_OFF`).

use std::collections::hash_map::DefaultHasher;
use std::env;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{exit, Command};

/// Set in the child that does the work.
const CHILD: &str = "GOOGLENET_BUILD_WORKER";

/// Output lines that say something happened in this run only, not kept for a replay.
pub const ONE_OFF: &str = "cargo:warning=installed the pinned nvcc";

/// In the build script's first process: replays the kept output when nothing the work
/// reads has changed, else runs the work in a child and keeps its output. Returns only
/// in the child, which then does the work.
pub fn work_once(manifest_dir: &Path) {
    if env::var_os(CHILD).is_some() {
        return;
    }
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let kept = out_dir.join("build-output.txt");
    let print = |text: &str| {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(text.as_bytes()).expect("stdout");
        stdout.flush().expect("stdout");
    };
    if let Ok(text) = fs::read_to_string(&kept) {
        if let Some((stamp, output)) = text.split_once('\n') {
            if stamp == fingerprint(manifest_dir).to_string() {
                print(output);
                exit(0);
            }
        }
    }
    let _ = fs::remove_file(&kept);
    let run = Command::new(env::current_exe().expect("the build script's path"))
        .env(CHILD, "1")
        .output()
        .expect("the build script runs itself");
    let output = String::from_utf8_lossy(&run.stdout);
    print(&output);
    std::io::stderr().write_all(&run.stderr).expect("stderr");
    if !run.status.success() {
        exit(run.status.code().unwrap_or(1));
    }
    let lasting: String = output
        .lines()
        .filter(|line| !line.starts_with(ONE_OFF))
        .map(|line| format!("{line}\n"))
        .collect();
    // Taken after the work: what the output corresponds to (an nvcc it installed too).
    let stamp = fingerprint(manifest_dir);
    fs::write(&kept, format!("{stamp}\n{lasting}")).expect("OUT_DIR is writable");
    exit(0);
}

/// A hash of everything the work reads.
fn fingerprint(manifest_dir: &Path) -> u64 {
    let mut hasher = DefaultHasher::new();
    hash_tree(&manifest_dir.join("kernels"), &mut hasher);
    if let Ok(script) = env::current_exe().and_then(fs::read) {
        script.hash(&mut hasher);
    }
    let mut vars: Vec<(String, String)> = env::vars()
        .filter(|(name, _)| read_by_the_work(name))
        .collect();
    vars.sort();
    vars.hash(&mut hasher);
    for nvcc in nvcc_files(manifest_dir) {
        stamp_of(&nvcc).hash(&mut hasher);
    }
    hasher.finish()
}

/// Variables the work (build/nvcc.rs, build/ptx.rs, the emulator's build, the cc
/// crate's compiler choice and flags) reads. Not cargo's per-invocation ones (the
/// jobserver's), which would make every run look new.
fn read_by_the_work(name: &str) -> bool {
    const NAMES: [&str; 9] = [
        "NVCC",
        "CUDA_HOME",
        "PATH",
        "TARGET",
        "HOST",
        "PROFILE",
        "OPT_LEVEL",
        "DEBUG",
        "RUSTC",
    ];
    const PREFIXES: [&str; 9] = [
        "GOOGLENET_",
        "CC",
        "CXX",
        "CFLAGS",
        "CXXFLAGS",
        "AR",
        "HOST_",
        "TARGET_",
        "CRATE_CC",
    ];
    NAMES.contains(&name) || PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Every nvcc the work may pick: the pinned one, `$CUDA_HOME/bin`'s, those on `PATH`.
fn nvcc_files(manifest_dir: &Path) -> Vec<PathBuf> {
    let mut dirs = vec![];
    if let Ok(pythons) = fs::read_dir(manifest_dir.join(".venv-cuda/lib")) {
        for python in pythons.flatten() {
            dirs.push(python.path().join("site-packages/nvidia/cu13/bin"));
        }
    }
    if let Some(home) = env::var_os("CUDA_HOME") {
        dirs.push(Path::new(&home).join("bin"));
    }
    if let Some(path) = env::var_os("PATH") {
        dirs.extend(env::split_paths(&path));
    }
    dirs.into_iter().map(|d| d.join("nvcc")).collect()
}

/// A file's size and modification time, or nothing for a missing one.
fn stamp_of(path: &Path) -> Option<(u64, std::time::SystemTime)> {
    let meta = fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()?))
}

/// The names and contents of every file under `dir`, in a fixed order.
fn hash_tree(dir: &Path, hasher: &mut DefaultHasher) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for path in paths {
        path.hash(hasher);
        if path.is_dir() {
            hash_tree(&path, hasher);
        } else if let Ok(bytes) = fs::read(&path) {
            bytes.hash(hasher);
        }
    }
}
