//! A module's interface: its kernels (entry points) and each one's parameter list, as
//! the GPU code itself declares them, and the comparison that refuses code whose
//! interface is not the build's. A launch passes its arguments by position and size
//! (cuLaunchKernel), so a module with another parameter list would read them as
//! garbage: the comparison is what stands between a rebuilt kernel and that.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::{bail, Result};

/// Kernel name → its parameters in order, each as the code describes it: a PTX type
/// (".u64") or, from a cubin, a size and offset ("8 bytes at 16").
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Interface(pub BTreeMap<String, Vec<String>>);

impl Interface {
    pub fn kernels(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    pub fn parameters(&self, kernel: &str) -> Option<&[String]> {
        self.0.get(kernel).map(Vec::as_slice)
    }
}

fn signature(kernel: &str, parameters: &[String]) -> String {
    format!("{kernel}({})", parameters.join(", "))
}

/// Fails unless `found` has exactly `expected`'s kernels with the same parameter lists;
/// the error names every kernel that differs. `what` names the code that was checked.
pub fn require_same(expected: &Interface, found: &Interface, what: &str) -> Result<()> {
    let mut differences = String::new();
    for (kernel, parameters) in &expected.0 {
        match found.0.get(kernel) {
            None => {
                let _ = write!(differences, "\n  kernel {kernel} is missing");
            }
            Some(other) if other != parameters => {
                let _ = write!(
                    differences,
                    "\n  kernel {kernel}: the build has {}, this has {}",
                    signature(kernel, parameters),
                    signature(kernel, other)
                );
            }
            Some(_) => {}
        }
    }
    for kernel in found.0.keys().filter(|k| !expected.0.contains_key(*k)) {
        let _ = write!(differences, "\n  kernel {kernel} is not in the build");
    }
    if !differences.is_empty() {
        bail!("{what} does not match the kernels this program was built with:{differences}");
    }
    Ok(())
}

/// The interface declared by PTX text: every `.entry`, with the type of each `.param`
/// (`.u64` for a pointer or a 64-bit integer, `.u32`, `.f32`, ...).
pub fn of_ptx(ptx: &str) -> Result<Interface> {
    // Comments could hold anything, ".entry" included.
    let code: String = ptx
        .lines()
        .map(|line| line.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let mut kernels = BTreeMap::new();
    for declaration in code.split(".entry").skip(1) {
        let Some((name, rest)) = declaration.split_once('(') else {
            bail!("PTX: an .entry without a parameter list");
        };
        let Some((list, _)) = rest.split_once(')') else {
            bail!(
                "PTX: the parameter list of .entry {} is not closed",
                name.trim()
            );
        };
        let parameters = list
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| ptx_parameter_type(p, name.trim()))
            .collect::<Result<Vec<_>>>()?;
        let name = name.trim().to_string();
        if kernels.insert(name.clone(), parameters).is_some() {
            bail!("PTX: .entry {name} is declared twice");
        }
    }
    Ok(Interface(kernels))
}

/// `.param .u64 .ptr .align 4 relu_fwd_f32_param_0` → ".u64 .ptr .align 4": every
/// token but the parameter's name (an array's `[N]` stays with the type).
fn ptx_parameter_type(parameter: &str, kernel: &str) -> Result<String> {
    let tokens: Vec<&str> = parameter.split_whitespace().collect();
    match tokens.split_last() {
        Some((name, [".param", types @ ..])) if !types.is_empty() => {
            let array = name.find('[').map_or("", |at| &name[at..]);
            Ok(format!("{}{array}", types.join(" ")))
        }
        _ => bail!("PTX: .entry {kernel} has a parameter this reader does not know: {parameter:?}"),
    }
}
