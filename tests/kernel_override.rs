//! The GPU code a driver loads (src/engine/device/kernel_code/): each kernel found in
//! the one module that declares it; the interfaces read from PTX and from cubins, and
//! held to what the launch code passes (the emulator's registered parameter types);
//! and `GOOGLENET_KERNELS=DIR`, with DIR compiled by scripts/gpu-kernels.sh with the
//! pinned nvcc: the same bytes as the build embeds, accepted in both forms, a body
//! change accepted, and a changed parameter list, a missing module or a foreign one
//! refused with the kernel's or the file's name, by the library and by `train --device
//! emu`.
//!
//! Without nvcc the build embeds nothing; then these skip, saying so, except in CI
//! (`CI` set), whose builds must have the kernels.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::kernels::has_kernels;
use googlenet::engine::device::emu::EmuDriver;
use googlenet::engine::device::kernel_code::{
    embedded, from_directory, Interface, KernelCode, ModuleCode, Target, KERNELS_VARIABLE,
};
use googlenet::engine::device::kernels::{MODULES, RESOURCES};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/gpu-kernels.sh")
}

/// scripts/gpu-kernels.sh DIR FILES..., which must succeed.
fn compile(dir: &Path, files: &[&Path]) {
    let out = Command::new("bash")
        .arg(script())
        .arg(dir)
        .args(files)
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "scripts/gpu-kernels.sh failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every module, compiled once for all the tests here (tens of seconds on two cores).
fn compiled() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        compile(dir.path(), &[]);
        dir
    })
    .path()
}

/// A copy of the compiled directory, to change.
fn copy_of_compiled() -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(compiled()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, copy.path().join(path.file_name().unwrap())).unwrap();
    }
    copy
}

/// A copy of the compiled directory whose relu module is kernels/relu.cu with `from`
/// replaced by `to`.
fn with_relu_edited(from: &str, to: &str) -> tempfile::TempDir {
    let dir = copy_of_compiled();
    let source =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels/relu.cu"))
            .unwrap();
    assert!(
        source.contains(from),
        "kernels/relu.cu no longer has {from:?}"
    );
    let edited = tempfile::tempdir().unwrap();
    let file = edited.path().join("relu.cu");
    std::fs::write(&file, source.replace(from, to)).unwrap();
    compile(dir.path(), &[&file]);
    dir
}

/// relu_fwd_f32 with a parameter more: what a kernel fix that changes the launch would
/// compile to.
const RELU_FWD: &str = "const float* x, float* y, int len) {";
const RELU_FWD_WIDER: &str = "const float* x, float* y, int len, int stride) {";

fn error_of(dir: &Path, target: Target) -> String {
    match from_directory(dir, target) {
        Ok(_) => panic!("{} was accepted for the {target}", dir.display()),
        Err(err) => format!("{err:#}"),
    }
}

/// The PTX type of each C++ parameter type the emulator registers.
fn ptx_type(emulated: &str) -> &'static str {
    match emulated {
        t if t.ends_with('*') => ".u64",
        "int32" | "uint32" => ".u32",
        "float" => ".f32",
        "uint64" | "int64" => ".u64",
        other => panic!("an emulated parameter type without a PTX twin here: {other}"),
    }
}

fn ptx_size(ptx: &str) -> u32 {
    match ptx {
        ".u64" | ".s64" | ".b64" | ".f64" => 8,
        ".u32" | ".s32" | ".b32" | ".f32" => 4,
        other => panic!("a PTX parameter type without a size here: {other}"),
    }
}

#[test]
fn every_kernel_is_in_one_module_with_the_parameters_the_launches_pass() {
    if !has_kernels("every_kernel_is_in_one_module_with_the_parameters_the_launches_pass") {
        return;
    }
    let ptx = embedded(Target::Compute80Ptx).unwrap();
    let cubin = embedded(Target::Sm90Cubin).unwrap();
    let mut home: BTreeMap<&str, &str> = BTreeMap::new();
    for (p, c) in ptx.iter().zip(&cubin) {
        assert_eq!(p.file, c.file);
        let kernels: Vec<&str> = p.interface.kernels().collect();
        assert!(
            !kernels.is_empty(),
            "kernels/{}.cu declares no kernel",
            p.file
        );
        assert_eq!(
            kernels,
            c.interface.kernels().collect::<Vec<_>>(),
            "kernels/{}.cu: the PTX and the cubin hold other kernels",
            p.file
        );
        for kernel in kernels {
            if let Some(other) = home.insert(kernel, p.file) {
                panic!(
                    "{kernel} is in kernels/{other}.cu and kernels/{}.cu",
                    p.file
                );
            }
            // The PTX's types are the emulator's, which every launch is checked against.
            let types = p.interface.parameters(kernel).unwrap();
            let emulated = EmuDriver::kernel_parameters(kernel)
                .unwrap_or_else(|| panic!("the emulator has no kernel {kernel}"));
            let expected: Vec<&str> = emulated.iter().map(|t| ptx_type(t)).collect();
            assert_eq!(types, expected, "{kernel}'s PTX parameters");
            // The cubin's sizes are the PTX types', laid out in order at their alignment.
            let mut offset = 0u32;
            let laid_out: Vec<String> = types
                .iter()
                .map(|t| {
                    let size = ptx_size(t);
                    offset = offset.div_ceil(size) * size;
                    let at = format!("{size} bytes at {offset}");
                    offset += size;
                    at
                })
                .collect();
            assert_eq!(
                c.interface.parameters(kernel).unwrap(),
                laid_out,
                "{kernel}'s cubin parameters"
            );
        }
    }
    // The driver looks each kernel up in the module the build's resource table (ptxas's
    // report per file) puts it in.
    let code = KernelCode::for_target(Target::Compute80Ptx).unwrap();
    for r in RESOURCES {
        let module = code
            .module_of(r.kernel)
            .unwrap_or_else(|| panic!("{} is in no module", r.kernel));
        assert_eq!(code.modules[module].file, r.file, "{}", r.kernel);
    }
    assert_eq!(home.len(), RESOURCES.len());
    assert_eq!(code.module_of("no_such_kernel"), None);
}

#[test]
fn the_script_compiles_what_the_build_embeds() {
    if !has_kernels("the_script_compiles_what_the_build_embeds") {
        return;
    }
    let dir = compiled();
    for m in MODULES {
        let cubin = std::fs::read(dir.join(Target::Sm90Cubin.file_name(m.file))).unwrap();
        assert!(
            cubin == m.cubin_sm90,
            "{}.sm_90.cubin differs from the build's",
            m.file
        );
        let ptx = std::fs::read_to_string(dir.join(Target::Compute80Ptx.file_name(m.file)));
        assert!(
            ptx.unwrap() == m.ptx_compute80,
            "{}.compute_80.ptx differs",
            m.file
        );
    }
}

#[test]
fn a_compiled_directory_is_accepted_in_both_forms() {
    if !has_kernels("a_compiled_directory_is_accepted_in_both_forms") {
        return;
    }
    for target in Target::ALL {
        let loaded = from_directory(compiled(), target).unwrap();
        let built = embedded(target).unwrap();
        let interfaces = |modules: &[ModuleCode]| -> Vec<Interface> {
            modules.iter().map(|m| m.interface.clone()).collect()
        };
        assert!(interfaces(&loaded) == interfaces(&built), "{target}");
        assert!(loaded[0]
            .origin
            .starts_with(&compiled().display().to_string()));
    }
}

#[test]
fn a_changed_body_is_accepted() {
    if !has_kernels("a_changed_body_is_accepted") {
        return;
    }
    let dir = with_relu_edited(
        "y[i] = v < 0.0f ? 0.0f : v;",
        "y[i] = v <= 0.0f ? 0.0f : v;",
    );
    for target in Target::ALL {
        from_directory(dir.path(), target).unwrap();
    }
}

#[test]
fn a_changed_parameter_list_is_refused_naming_the_kernel() {
    if !has_kernels("a_changed_parameter_list_is_refused_naming_the_kernel") {
        return;
    }
    let dir = with_relu_edited(RELU_FWD, RELU_FWD_WIDER);
    let cubin = error_of(dir.path(), Target::Sm90Cubin);
    assert!(cubin.contains("relu.sm_90.cubin"), "{cubin}");
    assert!(
        cubin.contains(
            "kernel relu_fwd_f32: the build has relu_fwd_f32(8 bytes at 0, 8 bytes at 8, \
             4 bytes at 16), this has relu_fwd_f32(8 bytes at 0, 8 bytes at 8, 4 bytes at 16, \
             4 bytes at 20)"
        ),
        "{cubin}"
    );
    assert!(
        !cubin.contains("relu_bwd_f32"),
        "only the changed kernel: {cubin}"
    );
    let ptx = error_of(dir.path(), Target::Compute80Ptx);
    assert!(ptx.contains("relu.compute_80.ptx"), "{ptx}");
    assert!(
        ptx.contains(
            "relu_fwd_f32(.u64, .u64, .u32), this has relu_fwd_f32(.u64, .u64, .u32, .u32)"
        ),
        "{ptx}"
    );
}

#[test]
fn a_renamed_missing_or_foreign_module_is_refused_naming_it() {
    if !has_kernels("a_renamed_missing_or_foreign_module_is_refused_naming_it") {
        return;
    }
    let renamed = with_relu_edited("void relu_bwd_f32(", "void relu_backward_f32(");
    let err = error_of(renamed.path(), Target::Sm90Cubin);
    assert!(err.contains("kernel relu_bwd_f32 is missing"), "{err}");
    assert!(
        err.contains("kernel relu_backward_f32 is not in the build"),
        "{err}"
    );

    let missing = copy_of_compiled();
    std::fs::remove_file(missing.path().join("pool.compute_80.ptx")).unwrap();
    let err = error_of(missing.path(), Target::Compute80Ptx);
    assert!(
        err.contains("cannot read") && err.contains("pool.compute_80.ptx"),
        "{err}"
    );
    // The other form is all there.
    from_directory(missing.path(), Target::Sm90Cubin).unwrap();

    let foreign = copy_of_compiled();
    std::fs::copy(
        foreign.path().join("relu.sm_90.cubin"),
        foreign.path().join("relu2.sm_90.cubin"),
    )
    .unwrap();
    let err = error_of(foreign.path(), Target::Sm90Cubin);
    assert!(
        err.contains("relu2.sm_90.cubin is not a module of this build"),
        "{err}"
    );

    let garbage = copy_of_compiled();
    std::fs::write(garbage.path().join("relu.sm_90.cubin"), b"not a cubin").unwrap();
    let err = error_of(garbage.path(), Target::Sm90Cubin);
    assert!(
        err.contains("relu.sm_90.cubin") && err.contains("not an ELF file"),
        "{err}"
    );
}

/// `train --device emu` for two steps, with `GOOGLENET_KERNELS` set to `dir`.
fn train_on_emu_with(dir: &Path) -> (bool, String) {
    let data = common::runs::data_dir(8, 8);
    let run = tempfile::tempdir().unwrap();
    common::runs::output_of(
        Command::new(env!("CARGO_BIN_EXE_train"))
            .env_remove("FASHION_MNIST_DIR")
            .env(KERNELS_VARIABLE, dir)
            .args(["--no-verify", "--device", "emu", "--epochs", "1"])
            .args(common::runs::TINY)
            .arg("--data-dir")
            .arg(data.path())
            .arg("--run-dir")
            .arg(run.path()),
    )
}

#[test]
fn the_emulator_checks_the_directory_as_a_gpu_would_load_it() {
    if !has_kernels("the_emulator_checks_the_directory_as_a_gpu_would_load_it") {
        return;
    }
    let (ok, text) = train_on_emu_with(compiled());
    assert!(ok, "a compiled directory was refused:\n{text}");

    let dir = with_relu_edited(RELU_FWD, RELU_FWD_WIDER);
    let (ok, text) = train_on_emu_with(dir.path());
    assert!(!ok, "a mismatched directory was accepted:\n{text}");
    assert!(
        text.contains("GOOGLENET_KERNELS") && text.contains("kernel relu_fwd_f32"),
        "{text}"
    );

    let (ok, text) = train_on_emu_with(Path::new("/nonexistent/kernels"));
    assert!(!ok);
    assert!(
        text.contains("GOOGLENET_KERNELS=/nonexistent/kernels: not a directory"),
        "{text}"
    );
}
