//! The GPU device, shared by `cuda` (the real GPU, through cudarc) and `emu` (the same
//! kernels compiled for the host, see kernels/emu/): launch configurations and
//! argument lists live here, once; a `Driver` only moves memory and launches.
//!
//! Each op family has its own file next to this one, mirroring kernels/*.cu.

use std::sync::Arc;

use anyhow::Result;

use super::Buffer;

// One file per op family, mirroring kernels/*.cu; backend.rs implements `Backend`.
mod adam;
mod backend;
mod conv;
mod elementwise;
mod launch;
mod linear;
mod loss;
mod pool;
mod resize;

/// Grid and block dimensions of one launch (no dynamic shared memory: kernels size
/// their shared arrays statically).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Launch {
    pub grid: [u32; 3],
    pub block: [u32; 3],
}

impl Launch {
    /// One thread per element, `block` threads a block.
    pub fn linear(elements: usize, block: u32) -> Launch {
        let blocks = elements.div_ceil(block as usize).max(1) as u32;
        Launch {
            grid: [blocks, 1, 1],
            block: [block, 1, 1],
        }
    }
}

/// One kernel argument, in the kernel's parameter order. Buffers a kernel writes are
/// passed as `Out*`, which borrows them mutably. A `*Table` is a table of buffers the
/// kernel takes as an array of pointers (`const float**`, `float**`): the driver builds
/// the array in device memory for the launch.
pub enum Arg<'a> {
    F32(&'a Buffer<f32>),
    OutF32(&'a mut Buffer<f32>),
    F32Table(Vec<&'a Buffer<f32>>),
    OutF32Table(Vec<&'a mut Buffer<f32>>),
    U32s(&'a Buffer<u32>),
    OutU32s(&'a mut Buffer<u32>),
    U8s(&'a Buffer<u8>),
    I32(i32),
    Float(f32),
    U64(u64),
}

/// What `cuda` and `emu` each provide.
pub trait Driver: Send + Sync + 'static {
    fn name(&self) -> String;
    /// A real GPU (the emulator is not one).
    fn is_gpu(&self) -> bool;
    fn zeros_f32(&self, len: usize) -> Result<Buffer<f32>>;
    fn zeros_u32(&self, len: usize) -> Result<Buffer<u32>>;
    fn upload_f32(&self, data: Vec<f32>) -> Result<Buffer<f32>>;
    fn upload_u32(&self, data: Vec<u32>) -> Result<Buffer<u32>>;
    fn upload_u8(&self, data: Vec<u8>) -> Result<Buffer<u8>>;
    fn download_f32(&self, buffer: &Buffer<f32>) -> Result<Vec<f32>>;
    fn download_u32(&self, buffer: &Buffer<u32>) -> Result<Vec<u32>>;
    /// Runs `kernel` (its `extern "C"` name) and reports any launch or kernel error.
    fn launch(&self, kernel: &str, launch: Launch, args: &mut [Arg]) -> Result<()>;
    /// Waits for every launch so far (the emulator runs each to completion at once).
    fn synchronize(&self) -> Result<()> {
        Ok(())
    }
    /// The stream launches go to, on a real GPU.
    fn cuda_stream(&self) -> Option<Arc<cudarc::driver::CudaStream>> {
        None
    }
    /// Free bytes of the GPU's own memory, on a real GPU.
    fn memory_free(&self) -> Option<Result<u64>> {
        None
    }
}

/// The op set on a GPU driver.
pub struct GpuBackend<D: Driver> {
    pub driver: D,
}
