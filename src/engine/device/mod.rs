//! Devices and the op set every device implements.
//!
//! `Backend` (backend.rs) is the op set at the level of raw buffers and validated
//! geometry: one method per kernel, forward and backward spelled out. Shape checking
//! happens once, above it, in `ops`; the tape and the layers only ever call `ops`.
//! `Device` (handle.rs) is the cheap, cloneable handle a tensor carries.
//!
//! The ops' parameters live here, below every device: `geometry` (conv, pool, linear,
//! Adam), `resize` (image layout, normalisation and augmentation views), `dropout` (the mask every
//! device draws), `precision` (the GEMMs' arithmetic).
//!
//! The GPU code: `kernels` (what the build embedded), `kernel_code` (what a driver
//! loads: that, or `GOOGLENET_KERNELS`'s directory, checked), and `ceilings` (what the
//! sm_90 GPUs can do at most, by name, for the benchmarks).

mod backend;
mod buffer;
pub mod ceilings;
mod cpu;
pub mod cuda;
mod dropout;
pub mod emu;
pub mod geometry;
pub mod gpu;
mod handle;
pub mod kernel_code;
pub mod kernels;
pub mod precision;
mod resize;

pub use backend::{Backend, ConvOutput, ConvOutputGrad};
pub use buffer::{Buffer, Words};
pub use cpu::{argmax, simd_level, CpuBackend, CpuGemm, SimdLevel, GEMM_VARIABLE};
pub use dropout::{dropout_keeps, seed_words};
pub use gpu::Counters;
pub use handle::Device;
pub use precision::Precision;
pub use resize::{view_words, ImageShape, Normalize, View, MAX_CHANNELS};
