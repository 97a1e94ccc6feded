//! The engine: everything that computes, one way down.
//!
//! - `nn`: layers and GoogLeNet, built from the tape's ops;
//! - `optim`: Adam, and the step log whose divergence flag it checks;
//! - `autograd`: the tape, and the parameters it differentiates;
//! - `ops`: shape-checked calls into a device's op set;
//! - `tensor`: a shape and a buffer on a device;
//! - `device`: the op set (`Backend`), implemented once per device (cpu, cuda, emu),
//!   and the kernels (kernels/*.cu) the GPU devices launch.
//!
//! Each imports only those below it.

pub mod autograd;
pub mod device;
pub mod nn;
pub mod ops;
pub mod optim;
pub mod tensor;
