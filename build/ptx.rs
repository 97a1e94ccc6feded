//! build.rs, part one: kernels/*.cu → PTX with nvcc, checked by ptxas, embedded.
//!
//! Two PTX versions per file: compute_90 (assembled for sm_90, the H100/H200) and
//! compute_80, which older GPUs JIT. Without nvcc the crate still builds, with a
//! warning, and the CUDA device explains that this build has no kernels.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The PTX targets: (virtual architecture, real architecture ptxas checks it for, tag).
const TARGETS: [(&str, &str, &str); 2] = [
    ("compute_90", "sm_90", "sm90"),
    ("compute_80", "sm_80", "sm80"),
];

/// nvcc from $NVCC, $CUDA_HOME/bin, PATH, or the pinned copy scripts/install-nvcc.sh puts in .venv-cuda.
fn find_nvcc() -> Option<PathBuf> {
    if let Some(path) = env::var_os("NVCC") {
        return Some(PathBuf::from(path));
    }
    if let Some(home) = env::var_os("CUDA_HOME") {
        let path = Path::new(&home).join("bin/nvcc");
        if path.exists() {
            return Some(path);
        }
    }
    if let Some(paths) = env::var_os("PATH") {
        if let Some(path) = env::split_paths(&paths)
            .map(|p| p.join("nvcc"))
            .find(|p| p.exists())
        {
            return Some(path);
        }
    }
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-cuda/lib");
    fs::read_dir(lib).ok()?.flatten().find_map(|python| {
        let path = python.path().join("site-packages/nvidia/cu13/bin/nvcc");
        path.exists().then_some(path)
    })
}

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        panic!("{what} failed:\n{text}");
    }
    text
}

pub fn build(sources: &[PathBuf]) {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-env-changed=NVCC");
    println!("cargo:rerun-if-env-changed=CUDA_HOME");
    println!("cargo:rerun-if-env-changed=GOOGLENET_PTXAS_VERBOSE");
    let verbose = env::var_os("GOOGLENET_PTXAS_VERBOSE").is_some_and(|v| v == "1");
    let mut table = String::from("pub const MODULES: &[(&str, &str, &str)] = &[\n");
    match find_nvcc() {
        None => println!(
            "cargo:warning=nvcc not found: this build has no GPU kernels (run scripts/install-nvcc.sh, or set NVCC)"
        ),
        Some(nvcc) => {
            let ptxas = nvcc.with_file_name("ptxas");
            let include = Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels");
            for file in sources {
                let stem = file.file_stem().unwrap().to_string_lossy().into_owned();
                let mut paths = Vec::new();
                for (virtual_arch, real_arch, tag) in TARGETS {
                    let ptx = out_dir.join(format!("{stem}.{tag}.ptx"));
                    run(
                        Command::new(&nvcc)
                            .args(["-ptx", "-O3", "-Werror", "all-warnings", &format!("-arch={virtual_arch}"), "-I"])
                            .arg(&include)
                            .arg(file)
                            .arg("-o")
                            .arg(&ptx),
                        &format!("nvcc on {}", file.display()),
                    );
                    let report = run(
                        Command::new(&ptxas)
                            .args([&format!("-arch={real_arch}"), "-v", "-Werror"])
                            .arg(&ptx)
                            .arg("-o")
                            .arg(out_dir.join(format!("{stem}.{tag}.cubin"))),
                        &format!("ptxas on {stem}.cu ({real_arch})"),
                    );
                    if verbose {
                        for line in report.lines().filter(|l| !l.trim().is_empty()) {
                            println!("cargo:warning={stem}.cu {real_arch}: {}", line.trim());
                        }
                    }
                    paths.push(ptx);
                }
                let _ = writeln!(
                    table,
                    "    ({stem:?}, include_str!({:?}), include_str!({:?})),",
                    paths[0].display().to_string(),
                    paths[1].display().to_string()
                );
            }
        }
    }
    table.push_str("];\n");
    fs::write(out_dir.join("kernels_ptx.rs"), table).expect("write kernels_ptx.rs");
}
