//! The emulator built with AddressSanitizer, chosen when a process starts
//! (`GOOGLENET_EMU_ASAN=1`): a kernel that reads or writes outside its buffers then
//! aborts with a report naming its line.
//!
//! It is a run-time switch, so that checking the kernel tests under AddressSanitizer
//! does not rebuild this crate: the first launch compiles the build's own emulator unit
//! (every kernel, as build.rs generated it in OUT_DIR) into a shared library beside it,
//! once, and later processes reuse it while it is newer than the unit. The process
//! loads it in place of the emulator linked in. The sanitizer's runtime must be loaded
//! before anything else, which only the process's start can do:
//! `LD_PRELOAD=$(c++ -print-file-name=libasan.so)`, as `scripts/with-asan.sh` runs a
//! command (CI runs the tests through it as cargo's runner).

use std::ffi::{c_void, CStr, CString};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};

/// The switch's environment variable.
pub(super) const SWITCH: &str = "GOOGLENET_EMU_ASAN";

/// Whether this process asked for the sanitized emulator.
pub(super) fn requested() -> Result<bool> {
    match std::env::var(SWITCH) {
        Err(_) => Ok(false),
        Ok(value) if value == "1" => Ok(true),
        Ok(value) if value.is_empty() || value == "0" => Ok(false),
        Ok(value) => bail!("{SWITCH}={value:?}: expected 1 (or 0, or unset)"),
    }
}

/// The sanitized emulator, loaded: a handle that stays open for the process's life.
pub(super) struct Library {
    handle: *mut c_void,
}

// SAFETY: a dlopen handle may be used from any thread (dlsym is thread-safe).
unsafe impl Send for Library {}
unsafe impl Sync for Library {}

impl Library {
    /// Builds the library if it is missing or older than the unit, and loads it.
    pub(super) fn load() -> Result<Library> {
        ensure!(
            runtime_loaded(),
            "{SWITCH}=1 needs AddressSanitizer's runtime loaded first: run the command \
             as scripts/with-asan.sh COMMAND, or with \
             LD_PRELOAD=$(c++ -print-file-name=libasan.so)"
        );
        let unit = Path::new(env!("OUT_DIR")).join("emu_kernels.cpp");
        let library = Path::new(env!("OUT_DIR")).join("libgooglenet_emu_asan.so");
        if !up_to_date(&library, &unit) {
            compile(&unit, &library)?;
        }
        let path = CString::new(library.as_os_str().as_encoded_bytes())
            .context("the library's path has a NUL byte")?;
        // SAFETY: loading a library this crate compiled from its own sources.
        let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if handle.is_null() {
            bail!("{SWITCH}=1: loading {}: {}", library.display(), dl_error());
        }
        Ok(Library { handle })
    }

    /// The address of the entry point `name` (NUL-terminated).
    pub(super) fn symbol(&self, name: &CStr) -> Result<*mut c_void> {
        // SAFETY: the handle is open; `name` is NUL-terminated.
        let address = unsafe { libc::dlsym(self.handle, name.as_ptr()) };
        ensure!(
            !address.is_null(),
            "{SWITCH}=1: the sanitized emulator has no {name:?}: {}",
            dl_error()
        );
        Ok(address)
    }
}

/// Whether the sanitizer's runtime is in the process (it defines `__asan_init`).
fn runtime_loaded() -> bool {
    // SAFETY: looking a symbol up in the process's global scope.
    !unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"__asan_init".as_ptr()) }.is_null()
}

fn up_to_date(library: &Path, unit: &Path) -> bool {
    let modified = |p: &Path| p.metadata().and_then(|m| m.modified()).ok();
    matches!((modified(library), modified(unit)), (Some(l), Some(u)) if l >= u)
}

/// Compiles the unit as build.rs compiles it for linking, with the sanitizer, into a
/// shared library whose calls among its own functions stay inside it (-Bsymbolic: the
/// executable holds the unsanitized copies under the same names).
fn compile(unit: &Path, library: &Path) -> Result<()> {
    ensure!(
        unit.exists(),
        "{SWITCH}=1: the emulator's unit {} is missing (was OUT_DIR cleaned? rebuild)",
        unit.display()
    );
    let partial = PathBuf::from(format!("{}.{}.tmp", library.display(), std::process::id()));
    let compiler = env!("GOOGLENET_EMU_CXX");
    eprintln!("{SWITCH}=1: compiling the emulator with AddressSanitizer (once, about a minute)...");
    let output = Command::new(compiler)
        .args(["-std=c++17", "-O2", "-fPIC", "-shared", "-Wl,-Bsymbolic"])
        .args(["-fsanitize=address", "-fno-omit-frame-pointer"])
        .arg(format!(
            "-I{}",
            concat!(env!("CARGO_MANIFEST_DIR"), "/kernels")
        ))
        .arg(unit)
        .arg("-o")
        .arg(&partial)
        // The compiler is not sanitized: the runtime's leak report at its exit would
        // fail it.
        .env_remove("LD_PRELOAD")
        .output()
        .with_context(|| format!("{SWITCH}=1: running the C++ compiler {compiler}"))?;
    if !output.status.success() {
        let _ = std::fs::remove_file(&partial);
        bail!(
            "{SWITCH}=1: compiling {} failed:\n{}",
            unit.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    std::fs::rename(&partial, library)
        .with_context(|| format!("{SWITCH}=1: writing {}", library.display()))
}

fn dl_error() -> String {
    // SAFETY: dlerror returns null or a NUL-terminated message.
    let message = unsafe { libc::dlerror() };
    if message.is_null() {
        return "unknown error".into();
    }
    // SAFETY: non-null, NUL-terminated.
    unsafe { CStr::from_ptr(message) }
        .to_string_lossy()
        .into_owned()
}
