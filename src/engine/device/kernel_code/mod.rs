//! The GPU code a driver loads, and what it must declare: source.rs picks the build's
//! embedded modules or `GOOGLENET_KERNELS`'s directory and checks the latter against
//! the former; interface.rs reads a module's kernels and parameter lists from PTX and
//! compares them; cubin.rs reads them from an sm_90 cubin.

mod cubin;
mod interface;
mod source;

pub use cubin::of_cubin;
pub use interface::{of_ptx, require_same, Interface};
pub use source::{
    check_directory_for_emulator, embedded, from_directory, override_directory, Code, KernelCode,
    ModuleCode, Target, KERNELS_VARIABLE,
};
