//! Where a GPU driver's code comes from: the modules the build embedded
//! (src/engine/device/kernels.rs), or, when `GOOGLENET_KERNELS=DIR` is set, the files
//! in DIR that scripts/gpu-kernels.sh compiled from kernels/*.cu — so that a kernel
//! fixed on the GPU machine, which has nvcc but no Rust, runs in the same executables.
//!
//! A directory's module is taken only when its interface (its kernels, and each one's
//! parameter list) is the embedded module's: the launch code was compiled against
//! those, and another list would have the kernel read its arguments as garbage. So a
//! fix to a kernel's body is accepted, and a changed signature is refused, naming the
//! kernel: that change needs a rebuild of the executables here.
//!
//! File names are the build's (build/ptx.rs): NAME.sm_90.cubin for sm_90 GPUs,
//! NAME.compute_80.ptx for the rest, per kernels/NAME.cu.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{bail, ensure, Context, Result};

use super::cubin::of_cubin;
use super::interface::{of_ptx, require_same, Interface};
use crate::engine::device::kernels::{GPU_CODE, MODULES};

/// The environment variable that names a directory of kernels to load instead.
pub const KERNELS_VARIABLE: &str = "GOOGLENET_KERNELS";

/// Which of the two forms of GPU code a GPU loads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Machine code for compute capability 9.x (H100, H200): loaded as is.
    Sm90Cubin,
    /// PTX for compute_80, which the driver JIT-compiles on any other GPU.
    Compute80Ptx,
}

impl Target {
    pub const ALL: [Target; 2] = [Target::Sm90Cubin, Target::Compute80Ptx];

    /// What a GPU of compute capability `major`.x loads.
    pub fn for_compute_capability(major: i32) -> Target {
        if major == 9 {
            Target::Sm90Cubin
        } else {
            Target::Compute80Ptx
        }
    }

    /// The file build/ptx.rs and scripts/gpu-kernels.sh write for kernels/`stem`.cu.
    pub fn file_name(self, stem: &str) -> String {
        match self {
            Target::Sm90Cubin => format!("{stem}.sm_90.cubin"),
            Target::Compute80Ptx => format!("{stem}.compute_80.ptx"),
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            Target::Sm90Cubin => ".sm_90.cubin",
            Target::Compute80Ptx => ".compute_80.ptx",
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Target::Sm90Cubin => "sm_90 cubin",
            Target::Compute80Ptx => "compute_80 PTX",
        })
    }
}

/// A module's code in the form its target takes.
pub enum Code {
    Cubin(Cow<'static, [u8]>),
    Ptx(Cow<'static, str>),
}

impl Code {
    fn interface(&self) -> Result<Interface> {
        match self {
            Code::Cubin(bytes) => of_cubin(bytes),
            Code::Ptx(text) => of_ptx(text),
        }
    }
}

/// One kernels/*.cu file's code, and the kernels it holds.
pub struct ModuleCode {
    /// The file's stem ("conv" for kernels/conv.cu).
    pub file: &'static str,
    pub code: Code,
    pub interface: Interface,
    /// Where the code came from, for messages: "kernels/conv.cu's sm_90 cubin (embedded)"
    /// or the file's path.
    pub origin: String,
}

/// The code a driver loads, one entry per kernels/*.cu file, in the build's order.
pub struct KernelCode {
    pub modules: Vec<ModuleCode>,
    /// `GOOGLENET_KERNELS`'s directory, when the code came from there.
    pub directory: Option<PathBuf>,
}

impl KernelCode {
    /// The embedded code, or `GOOGLENET_KERNELS`'s directory's when it is set.
    pub fn for_target(target: Target) -> Result<KernelCode> {
        match override_directory()? {
            Some(dir) => Ok(KernelCode {
                modules: from_directory(&dir, target)?,
                directory: Some(dir),
            }),
            None => Ok(KernelCode {
                modules: embedded(target)?,
                directory: None,
            }),
        }
    }

    /// The index of the module that holds `kernel`.
    pub fn module_of(&self, kernel: &str) -> Option<usize> {
        self.modules
            .iter()
            .position(|m| m.interface.parameters(kernel).is_some())
    }
}

/// `GOOGLENET_KERNELS`'s directory, if the variable is set; an error when it names no
/// directory.
pub fn override_directory() -> Result<Option<PathBuf>> {
    let Some(value) = std::env::var_os(KERNELS_VARIABLE) else {
        return Ok(None);
    };
    let dir = PathBuf::from(value);
    ensure!(
        dir.is_dir(),
        "{KERNELS_VARIABLE}={}: not a directory (scripts/gpu-kernels.sh DIR makes one)",
        dir.display()
    );
    Ok(Some(dir))
}

/// The modules this build embedded, for `target`.
pub fn embedded(target: Target) -> Result<Vec<ModuleCode>> {
    ensure!(!MODULES.is_empty(), "this build has {GPU_CODE}");
    MODULES
        .iter()
        .map(|m| {
            let code = match target {
                Target::Sm90Cubin => Code::Cubin(Cow::Borrowed(m.cubin_sm90)),
                Target::Compute80Ptx => Code::Ptx(Cow::Borrowed(m.ptx_compute80)),
            };
            let origin = format!("kernels/{}.cu's {target} (embedded)", m.file);
            let interface = code
                .interface()
                .with_context(|| format!("reading {origin}"))?;
            Ok(ModuleCode {
                file: m.file,
                code,
                interface,
                origin,
            })
        })
        .collect()
}

/// Every module for `target` from `dir`, each checked against the embedded one: a
/// missing file, a file of a module this build does not have, an unreadable one, or
/// one whose kernels or parameter lists differ, is an error that names it.
pub fn from_directory(dir: &Path, target: Target) -> Result<Vec<ModuleCode>> {
    let built = embedded(target)?;
    let listing = std::fs::read_dir(dir)
        .with_context(|| format!("{KERNELS_VARIABLE}={}: cannot list it", dir.display()))?;
    for entry in listing {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(target.suffix()) {
            ensure!(
                built.iter().any(|m| m.file == stem),
                "{KERNELS_VARIABLE}={}: {name} is not a module of this build (its kernels/*.cu \
                 files are {}); a new file needs a rebuild of the executables",
                dir.display(),
                built.iter().map(|m| m.file).collect::<Vec<_>>().join(", ")
            );
        }
    }
    built
        .into_iter()
        .map(|expected| {
            let path = dir.join(target.file_name(expected.file));
            let origin = path.display().to_string();
            let code = match target {
                Target::Sm90Cubin => std::fs::read(&path).map(|b| Code::Cubin(Cow::Owned(b))),
                Target::Compute80Ptx => {
                    std::fs::read_to_string(&path).map(|t| Code::Ptx(Cow::Owned(t)))
                }
            }
            .with_context(|| {
                format!(
                    "{KERNELS_VARIABLE}: cannot read {origin} (scripts/gpu-kernels.sh {} writes \
                     every module)",
                    dir.display()
                )
            })?;
            let interface = code
                .interface()
                .with_context(|| format!("{KERNELS_VARIABLE}: cannot read {origin}"))?;
            let what = format!("{KERNELS_VARIABLE}: {origin}");
            if let Err(err) = require_same(&expected.interface, &interface, &what) {
                bail!(
                    "{err}\n(a kernel's body may change without a rebuild; a kernel's name or \
                     parameters only with the executables rebuilt where Rust is)"
                );
            }
            Ok(ModuleCode {
                file: expected.file,
                code,
                interface,
                origin,
            })
        })
        .collect()
}

/// For the emulator, which runs its own host build of kernels/*.cu: checks
/// `GOOGLENET_KERNELS`'s directory (when set) in both forms, as any GPU would load it,
/// once per process. So a rehearsal with a directory proves it before a GPU sees it.
pub fn check_directory_for_emulator() -> Result<()> {
    static CHECKED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    let checked = CHECKED.get_or_init(|| {
        let check = || -> Result<()> {
            if let Some(dir) = override_directory()? {
                for target in Target::ALL {
                    from_directory(&dir, target)?;
                }
            }
            Ok(())
        };
        check().map_err(|err| format!("{err:#}"))
    });
    match checked {
        Ok(()) => Ok(()),
        Err(why) => bail!("emu: {why}"),
    }
}
