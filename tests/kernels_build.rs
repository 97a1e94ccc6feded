//! What the build embeds for the GPU (build/ptx.rs, src/engine/device/kernels.rs): the code
//! `--version` names, the sm_90 cubin and compute_80 PTX themselves, the ptxas report
//! the build's spill check reads, and the resource table of docs/KERNELS.md.
//!
//! Without nvcc the build embeds nothing; then the checks on the code skip, saying so,
//! except in CI (`CI` set), whose builds must have the kernels.

use std::path::Path;
use std::process::Command;

use common::kernels::has_kernels;
use googlenet::engine::device::kernels::{self, MODULES, RESOURCES};

mod common;

#[path = "../build/ptxas_report.rs"]
mod ptxas_report;

// Only `usable` is tested; the rest runs in build.rs.
#[allow(dead_code)]
#[path = "../build/nvcc.rs"]
mod nvcc;

#[test]
fn version_names_the_gpu_code() {
    for (name, exe) in [
        ("train", env!("CARGO_BIN_EXE_train")),
        ("eval", env!("CARGO_BIN_EXE_eval")),
    ] {
        let out = Command::new(exe).arg("--version").output().unwrap();
        assert!(out.status.success(), "{name} --version failed");
        let line = String::from_utf8(out.stdout).unwrap();
        assert_eq!(line, format!("googlenet {}\n", kernels::VERSION), "{name}");
    }
    let expected = if MODULES.is_empty() {
        "no GPU kernels ("
    } else {
        "kernels: sm_90 (cubin), compute_80 (PTX), nvcc "
    };
    assert!(
        kernels::GPU_CODE.starts_with(expected),
        "{:?} should start with {expected:?}",
        kernels::GPU_CODE
    );
}

#[test]
fn every_kernel_file_is_embedded_as_sm90_cubin_and_compute80_ptx() {
    if !has_kernels("every_kernel_file_is_embedded_as_sm90_cubin_and_compute80_ptx") {
        return;
    }
    let kernels_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels");
    let mut files: Vec<String> = std::fs::read_dir(kernels_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "cu"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let embedded: Vec<&str> = MODULES.iter().map(|m| m.file).collect();
    assert_eq!(embedded, files);
    for m in MODULES {
        // An ELF file for the CUDA machine (EM_CUDA = 190), as cuModuleLoadData takes it.
        let elf = m.cubin_sm90;
        assert_eq!(&elf[..4], b"\x7fELF", "{}.cu's cubin", m.file);
        assert_eq!(
            u16::from_le_bytes([elf[18], elf[19]]),
            190,
            "{}.cu's cubin",
            m.file
        );
        assert!(
            m.ptx_compute80.contains("\n.target sm_80"),
            "{}.cu's PTX",
            m.file
        );
    }
}

/// The PTX of each `.entry` in `ptx`: (kernel name, its body up to the next entry).
fn ptx_entries(ptx: &str) -> Vec<(&str, &str)> {
    ptx.split(".entry ")
        .skip(1)
        .map(|body| (body.split('(').next().unwrap().trim(), body))
        .collect()
}

/// Every conv and linear GEMM kernel (each `_f32` one but the split reduction and the
/// bias sum) has tensor-core twins `_tf32` and `_bf16` whose PTX holds that precision's
/// mma.sync and ldmatrix, and the f32 reference holds no mma.
#[test]
fn every_gemm_kernel_has_tf32_and_bf16_twins_on_tensor_cores() {
    if !has_kernels("every_gemm_kernel_has_tf32_and_bf16_twins_on_tensor_cores") {
        return;
    }
    const TF32: &str = "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32";
    const BF16: &str = "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32";
    // conv: forward and backward data on two tile sizes, backward filter one split
    // and several, each for one part and three; linear: its three products.
    for (file, gemms) in [("conv", 12), ("linear", 3)] {
        let module = MODULES.iter().find(|m| m.file == file).unwrap();
        let entries = ptx_entries(module.ptx_compute80);
        let reference: Vec<&str> = entries
            .iter()
            .map(|(name, _)| *name)
            .filter(|name| {
                name.ends_with("_f32") && !name.contains("reduce") && !name.contains("bias")
            })
            .collect();
        assert_eq!(
            reference.len(),
            gemms,
            "{file}.cu's f32 GEMMs: {reference:?}"
        );
        for base in reference {
            let body = |name: &str| {
                entries
                    .iter()
                    .find(|(n, _)| *n == name)
                    .unwrap_or_else(|| panic!("{file}.cu has no kernel {name}"))
                    .1
            };
            assert!(
                !body(base).contains("mma.sync"),
                "{base} is the f32 reference"
            );
            let stem = base.strip_suffix("_f32").unwrap();
            for (precision, mma) in [("tf32", TF32), ("bf16", BF16)] {
                let name = format!("{stem}_{precision}");
                let code = body(&name);
                assert!(code.contains(mma), "{name}'s PTX has no {mma}");
                assert!(
                    code.contains("ldmatrix.sync.aligned.m8n8"),
                    "{name}'s PTX has no ldmatrix"
                );
            }
        }
    }
}

/// Integer divide and remainder instructions in a piece of PTX, any width and signedness
/// (`div.s32`, `rem.u64`, ...; not `div.rn.f32` and its kin).
fn integer_divisions(ptx: &str) -> usize {
    ptx.lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|op| {
            let mut parts = op.split('.');
            matches!(parts.next(), Some("div" | "rem"))
                && parts.any(|t| matches!(t, "s32" | "u32" | "s64" | "u64"))
        })
        .count()
}

/// The conv GEMMs divide by nothing at run time: every index map divides with the
/// launch code's multipliers (kernels/divisor.cuh), so their PTX holds no integer
/// division at all, in the loaders, the epilogues or the cores. (Before, each loaded
/// element divided by k, k·k, oh·ow, ow or the stride: 20 to 140 per kernel, e.g. 80 in
/// conv_fwd_tf32, as nvcc unrolls the staging loops.) The split reduction, one thread per
/// weight, keeps its one split of that weight's index into (channel, patch row).
#[test]
fn conv_kernels_divide_by_nothing_at_run_time() {
    if !has_kernels("conv_kernels_divide_by_nothing_at_run_time") {
        return;
    }
    let module = MODULES.iter().find(|m| m.file == "conv").unwrap();
    let entries = ptx_entries(module.ptx_compute80);
    assert!(entries.len() >= 38, "conv.cu has {} kernels", entries.len());
    for (name, body) in entries {
        let budget = if name.contains("reduce") { 1 } else { 0 };
        let found = integer_divisions(body);
        assert!(
            found <= budget,
            "{name} has {found} integer divisions in its PTX (at most {budget})"
        );
    }
}

#[test]
fn integer_divisions_are_counted_by_opcode() {
    let ptx = "\tdiv.s32 \t%r1, %r2, %r3;\n\trem.u64 %rd1, %rd2, %rd3;\n\
               \tdiv.rn.f32 %f1, %f2, %f3;\n\tmul.hi.u32 %r4, %r5, %r6;\n\
               // div.u32 in a comment\n\tdiv.full.f32 %f4, %f5, %f6;\n";
    assert_eq!(integer_divisions(ptx), 2);
}

/// An nvcc newer than the 13.0 driver supports is refused; 13.0 and older are used.
#[test]
fn an_nvcc_newer_than_13_0_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    for (release, full, accepted) in [
        ("13.0", "13.0.88", true),
        ("12.8", "12.8.93", true),
        ("13.1", "13.1.80", false),
        ("14.0", "14.0.10", false),
    ] {
        let fake = dir.path().join(format!("nvcc-{full}"));
        std::fs::write(
            &fake,
            format!(
                "#!/bin/sh\necho 'nvcc: NVIDIA (R) Cuda compiler driver'\n\
                 echo 'Cuda compilation tools, release {release}, V{full}'\n"
            ),
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        // A child another test thread forks while the script is open for writing holds
        // it open until that child execs, and running the script then fails with
        // ETXTBSY ("Text file busy", os error 26): that is no answer, so try again.
        let answer = (0..100)
            .find_map(|_| match nvcc::usable(&fake) {
                Err(why) if why.contains("os error 26") => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    None
                }
                answer => Some(answer),
            })
            .expect("the fake nvcc stayed busy");
        match answer {
            Ok(found) => {
                assert!(accepted, "nvcc {full} was accepted");
                assert_eq!(found.version, full);
            }
            Err(why) => {
                assert!(!accepted, "nvcc {full} was refused: {why}");
                assert!(why.contains("newer than CUDA 13.0"), "{why}");
            }
        }
    }
}

#[test]
fn the_report_parser_finds_resources_and_spills() {
    let report = "\
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'gemm_f32' for 'sm_90'
ptxas info    : Function properties for gemm_f32
    16 bytes stack frame, 8 bytes spill stores, 12 bytes spill loads
ptxas info    : Used 255 registers, used 1 barriers, 8320 bytes smem, 400 bytes cmem[0]
ptxas info    : Compile time = 1.0 ms
ptxas info    : Function properties for helper
    32 bytes stack frame, 4 bytes spill stores, 4 bytes spill loads
ptxas info    : Compiling entry function 'relu_f32' for 'sm_90'
ptxas info    : Function properties for relu_f32
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 10 registers, used 0 barriers
";
    let entries = ptxas_report::parse(report);
    assert_eq!(entries.len(), 2);
    let gemm = &entries[0];
    assert_eq!(
        (
            gemm.kernel.as_str(),
            gemm.registers,
            gemm.shared_bytes,
            gemm.stack_bytes
        ),
        ("gemm_f32", 255, 8320, 16)
    );
    assert_eq!((gemm.spill_store_bytes, gemm.spill_load_bytes), (8, 12));
    assert!(gemm.spills());
    // The device function's properties are not relu's, nor gemm's.
    let relu = &entries[1];
    assert_eq!(
        (relu.kernel.as_str(), relu.registers, relu.shared_bytes),
        ("relu_f32", 10, 0)
    );
    assert!(!relu.spills());
}

#[test]
fn every_kernel_has_resources_and_no_stack() {
    if !has_kernels("every_kernel_has_resources_and_no_stack") {
        return;
    }
    // The build fails on a spill; a stack frame without one is a local array.
    for r in RESOURCES {
        assert!(
            r.registers > 0,
            "{}: no registers read from ptxas",
            r.kernel
        );
        assert_eq!(
            r.stack_bytes, 0,
            "{} uses {} bytes of stack",
            r.kernel, r.stack_bytes
        );
    }
    let files: Vec<&str> = MODULES.iter().map(|m| m.file).collect();
    for r in RESOURCES {
        assert!(files.contains(&r.file), "{}: file {}", r.kernel, r.file);
    }
}

const TABLE_BEGIN: &str = "<!-- kernel resources: generated by tests/kernels_build.rs -->\n";
const TABLE_END: &str = "<!-- end of kernel resources -->\n";

/// docs/KERNELS.md's table is the build's. `GOOGLENET_BLESS=1` rewrites it.
#[test]
fn resource_table_page_is_current() {
    if !has_kernels("resource_table_page_is_current") {
        return;
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/KERNELS.md");
    let page = std::fs::read_to_string(&path).unwrap();
    let start = page
        .find(TABLE_BEGIN)
        .expect("docs/KERNELS.md has the table's begin marker")
        + TABLE_BEGIN.len();
    let end = page[start..]
        .find(TABLE_END)
        .expect("docs/KERNELS.md has the table's end marker")
        + start;
    let fresh = kernels::resource_table();
    if page[start..end] == fresh {
        return;
    }
    if std::env::var_os("GOOGLENET_BLESS").is_some_and(|v| v == "1") {
        let updated = format!("{}{fresh}{}", &page[..start], &page[end..]);
        std::fs::write(&path, updated).unwrap();
        return;
    }
    panic!(
        "docs/KERNELS.md's kernel resource table is stale; rewrite it with \
         GOOGLENET_BLESS=1 cargo test --release --test kernels_build resource_table. The \
         build's:\n{fresh}"
    );
}
