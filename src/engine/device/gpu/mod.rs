//! The GPU device, shared by `cuda` (the real GPU, through cudarc) and `emu` (the same
//! kernels compiled for the host, see kernels/emu/): launch configurations and
//! argument lists live here, once; a `Driver` only moves memory and launches.
//!
//! Each op family has its own file next to this one, mirroring kernels/*.cu;
//! driver.rs is what a driver provides, runtime.rs and memory.rs the counting and the
//! caching allocator between the op code and a driver, backend.rs the op set on top.

mod adam;
mod backend;
mod conv;
mod driver;
mod elementwise;
mod launch;
mod linear;
mod loss;
mod memory;
mod pool;
mod resize;
mod runtime;

pub use backend::GpuBackend;
pub use conv::backward_filter_launches;
pub use driver::{Arg, Driver, Launch, Recording};
pub use runtime::{Counters, Runtime};
