//! build.rs, part one: kernels/*.cu → GPU code with nvcc (build/nvcc.rs picks it),
//! assembled and checked by ptxas, embedded.
//!
//! Per file: compute_90 PTX assembled by ptxas into an sm_90 cubin (the H100/H200 load
//! that machine code as is: no JIT, no PTX-version check against the driver), and
//! compute_80 PTX for every other GPU to JIT (ptxas assembles it for sm_80 too, as a
//! check). A kernel that spills registers to local memory fails the build; ptxas's
//! sm_90 figures (registers, static shared memory) are embedded for the README's table
//! (src/engine/device/kernels.rs). Without nvcc the crate still builds, with a warning, and
//! says so in `--version` and in `--device cuda`'s error.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::nvcc;
use super::ptxas_report::{self, EntryReport};

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

/// nvcc to PTX for `virtual_arch`, then ptxas for `real_arch`: the PTX, the cubin and
/// ptxas's per-kernel report. Panics (failing the build) when a kernel spills.
fn compile(
    nvcc: &Path,
    file: &Path,
    out_dir: &Path,
    virtual_arch: &str,
    real_arch: &str,
) -> (PathBuf, PathBuf, Vec<EntryReport>) {
    let stem = file.file_stem().unwrap().to_string_lossy().into_owned();
    let include =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo")).join("kernels");
    let ptx = out_dir.join(format!("{stem}.{virtual_arch}.ptx"));
    let cubin = out_dir.join(format!("{stem}.{real_arch}.cubin"));
    run(
        Command::new(nvcc)
            .args(["-ptx", "-O3", "-Werror", "all-warnings"])
            .arg(format!("-arch={virtual_arch}"))
            .arg("-I")
            .arg(&include)
            .arg(file)
            .arg("-o")
            .arg(&ptx),
        &format!("nvcc on {}", file.display()),
    );
    let report = run(
        Command::new(nvcc.with_file_name("ptxas"))
            .args([&format!("-arch={real_arch}"), "-v", "-Werror"])
            .arg(&ptx)
            .arg("-o")
            .arg(&cubin),
        &format!("ptxas on {stem}.cu ({real_arch})"),
    );
    if env::var_os("GOOGLENET_PTXAS_VERBOSE").is_some_and(|v| v == "1") {
        for line in report.lines().filter(|l| !l.trim().is_empty()) {
            println!("cargo:warning={stem}.cu {real_arch}: {}", line.trim());
        }
    }
    let entries = ptxas_report::parse(&report);
    if let Some(e) = entries.iter().find(|e| e.spills()) {
        panic!(
            "kernels/{stem}.cu: {} spills registers to local memory on {real_arch} \
             ({} bytes spill stores, {} bytes spill loads, {} registers): reduce what each \
             thread keeps live (GOOGLENET_PTXAS_VERBOSE=1 prints ptxas's report)",
            e.kernel, e.spill_store_bytes, e.spill_load_bytes, e.registers
        );
    }
    (ptx, cubin, entries)
}

pub fn build(sources: &[PathBuf]) {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-env-changed=GOOGLENET_PTXAS_VERBOSE");
    let mut modules = String::from("pub const MODULES: &[Module] = &[\n");
    let mut resources = String::from("pub const RESOURCES: &[KernelResources] = &[\n");
    let summary = match nvcc::find(&out_dir) {
        Err(why) => {
            let why = why.replace('\n', " ");
            println!("cargo:warning=this build has no GPU kernels: {why}");
            format!("no GPU kernels ({why})")
        }
        Ok(nvcc) => {
            for file in sources {
                let stem = file.file_stem().unwrap().to_string_lossy().into_owned();
                let (_, cubin, sm90) = compile(&nvcc.path, file, &out_dir, "compute_90", "sm_90");
                let (ptx, _, _) = compile(&nvcc.path, file, &out_dir, "compute_80", "sm_80");
                let _ = writeln!(
                    modules,
                    "    Module {{ file: {stem:?}, cubin_sm90: include_bytes!({:?}), ptx_compute80: include_str!({:?}) }},",
                    cubin.display().to_string(),
                    ptx.display().to_string()
                );
                for e in sm90 {
                    let _ = writeln!(
                        resources,
                        "    KernelResources {{ kernel: {:?}, file: {stem:?}, registers: {}, shared_bytes: {}, stack_bytes: {} }},",
                        e.kernel, e.registers, e.shared_bytes, e.stack_bytes
                    );
                }
            }
            format!(
                "kernels: sm_90 (cubin), compute_80 (PTX), nvcc {}",
                nvcc.version
            )
        }
    };
    embed(&out_dir, modules, resources, &summary);
}

/// The crate's view of a build without GPU code: empty tables, and `summary` as what
/// `train --version` says.
pub fn none(summary: &str) {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    embed(
        &out_dir,
        String::from("pub const MODULES: &[Module] = &[\n"),
        String::from("pub const RESOURCES: &[KernelResources] = &[\n"),
        summary,
    );
}

/// Closes the two tables, writes them where src/engine/device/kernels.rs includes them,
/// and hands the summary to the crate.
fn embed(out_dir: &Path, mut modules: String, mut resources: String, summary: &str) {
    modules.push_str("];\n");
    resources.push_str("];\n");
    fs::write(out_dir.join("kernels_embedded.rs"), modules + &resources)
        .expect("write kernels_embedded.rs");
    // What `train --version` says (src/engine/device/kernels.rs).
    println!("cargo:rustc-env=GOOGLENET_GPU_CODE={summary}");
}
