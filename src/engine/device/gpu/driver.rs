//! What the cuda and emu drivers each provide (memory, copies, launches, recording),
//! and the launch and argument types the op code hands them.

use std::sync::Arc;

use anyhow::Result;

use crate::engine::device::{Buffer, Words};

/// A driver's recording of launches (`Driver::end_recording`), replayed whole.
pub type Recording = Box<dyn std::any::Any + Send + Sync>;

impl<'a> Arg<'a> {
    /// The words as a kernel argument.
    pub fn words(w: Words<'a>, what: &str) -> Result<Arg<'a>> {
        w.check(what)?;
        Ok(Arg::U32sAt(w.buffer, w.at, w.len))
    }
}

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
    /// `const unsigned*` to `len` words of a buffer from word `at` (`Words`): where
    /// kernels find the step parameters.
    U32sAt(&'a Buffer<u32>, usize, usize),
    OutU32s(&'a mut Buffer<u32>),
    U8s(&'a Buffer<u8>),
    I32(i32),
    Float(f32),
    U64(u64),
}

/// What `cuda` and `emu` each provide (the primitives), and what the op code calls.
/// The op code gets a `Runtime` (runtime.rs), which implements this trait over the
/// real driver: it lends memory from the caching allocator and counts every launch,
/// allocation, memset, copy and host wait.
///
/// For an output a kernel writes in full, op code calls `alloc_f32` (no memset); it
/// calls `zeros_f32` only where the kernel needs zeros (it accumulates into them).
pub trait Driver: Send + Sync + 'static {
    fn name(&self) -> String;
    /// A real GPU (the emulator is not one).
    fn is_gpu(&self) -> bool;
    /// `len` elements with unspecified contents.
    fn alloc_f32(&self, len: usize) -> Result<Buffer<f32>>;
    fn alloc_u32(&self, len: usize) -> Result<Buffer<u32>>;
    fn alloc_u8(&self, len: usize) -> Result<Buffer<u8>>;
    /// A block the caching allocator hands out again: what it holds is the last user's,
    /// garbage to the next. Nothing to do on a GPU; the emulator poisons it, so that its
    /// init check sees a read of stale memory as a read of unwritten memory.
    fn recycle_f32(&self, _buffer: &mut Buffer<f32>) -> Result<()> {
        Ok(())
    }
    fn recycle_u32(&self, _buffer: &mut Buffer<u32>) -> Result<()> {
        Ok(())
    }
    /// Sets every element to zero: one memset.
    fn fill_zeros_f32(&self, buffer: &mut Buffer<f32>) -> Result<()>;
    fn fill_zeros_u32(&self, buffer: &mut Buffer<u32>) -> Result<()>;
    /// Copies `data` into `buffer`, which holds exactly as many elements: one
    /// host-to-device copy, queued in order with the launches.
    fn write_f32(&self, buffer: &mut Buffer<f32>, data: &[f32]) -> Result<()>;
    fn write_u32(&self, buffer: &mut Buffer<u32>, data: &[u32]) -> Result<()>;
    fn write_u8(&self, buffer: &mut Buffer<u8>, data: &[u8]) -> Result<()>;
    /// Blocking reads: the host waits for everything queued before them.
    fn download_f32(&self, buffer: &Buffer<f32>) -> Result<Vec<f32>>;
    fn download_u32(&self, buffer: &Buffer<u32>) -> Result<Vec<u32>>;
    /// Runs `kernel` (its `extern "C"` name) and reports any launch or kernel error.
    fn launch(&self, kernel: &str, launch: Launch, args: &mut [Arg]) -> Result<()>;
    /// Waits for every launch so far (the emulator runs each to completion at once).
    fn synchronize(&self) -> Result<()> {
        Ok(())
    }
    /// From now until `end_recording`, launches are recorded (with their arguments as
    /// they are now: buffers by address, scalars by value) instead of run: cuda's
    /// stream capture, the emulator's list. The caller (`Runtime`) makes sure nothing
    /// else reaches the driver meanwhile.
    fn can_record(&self) -> bool {
        false
    }
    fn begin_recording(&self) -> Result<()> {
        anyhow::bail!("{} cannot record launches", self.name())
    }
    fn end_recording(&self) -> Result<Recording> {
        anyhow::bail!("{} cannot record launches", self.name())
    }
    /// Runs a recording's launches again, in order; returns how many kernels it ran.
    fn replay(&self, _recording: &Recording) -> Result<u64> {
        anyhow::bail!("{} cannot replay launches", self.name())
    }
    /// The stream launches go to, on a real GPU.
    fn cuda_stream(&self) -> Option<Arc<cudarc::driver::CudaStream>> {
        None
    }

    /// `len` zeros: an allocation and a memset.
    fn zeros_f32(&self, len: usize) -> Result<Buffer<f32>> {
        let mut buffer = self.alloc_f32(len)?;
        self.fill_zeros_f32(&mut buffer)?;
        Ok(buffer)
    }

    fn zeros_u32(&self, len: usize) -> Result<Buffer<u32>> {
        let mut buffer = self.alloc_u32(len)?;
        self.fill_zeros_u32(&mut buffer)?;
        Ok(buffer)
    }

    /// `data` in a new buffer: an allocation and a copy.
    fn upload_f32(&self, data: Vec<f32>) -> Result<Buffer<f32>> {
        let mut buffer = self.alloc_f32(data.len())?;
        self.write_f32(&mut buffer, &data)?;
        Ok(buffer)
    }

    fn upload_u32(&self, data: Vec<u32>) -> Result<Buffer<u32>> {
        let mut buffer = self.alloc_u32(data.len())?;
        self.write_u32(&mut buffer, &data)?;
        Ok(buffer)
    }

    fn upload_u8(&self, data: Vec<u8>) -> Result<Buffer<u8>> {
        let mut buffer = self.alloc_u8(data.len())?;
        self.write_u8(&mut buffer, &data)?;
        Ok(buffer)
    }

    /// Free bytes of the GPU's own memory, on a real GPU.
    fn memory_free(&self) -> Option<Result<u64>> {
        None
    }
}
