//! The emulated GPU as a driver: the CUDA kernels of kernels/ compiled for the host (build.rs),
//! run on the CPU by the emulator in kernels/emu/, with host memory standing in for
//! device memory. It takes the same launches as the real GPU (`GpuBackend` is generic
//! over the `Driver`), so CI, which has no GPU, runs the real kernels and the real
//! launch code.
//!
//! Before a launch the arguments are checked against the kernel's parameter types,
//! which the emulator records at registration: a wrong argument list fails here with
//! both lists shown, where on a GPU it would be read as garbage.
//!
//! GOOGLENET_EMU_CHECK (`checks.rs`) turns on the sanitizer checks: `race` runs the
//! kernels' race-check build (kernels/emu/cuda_emu.h), `init` and `order` run a launch
//! several times on copies of its buffers and compare (`checked.rs`, with the record of
//! unwritten memory in `shadow.rs`).
//!
//! With `GOOGLENET_KERNELS=DIR` (the GPU drivers' kernel override) the first launch
//! checks DIR as a GPU would load it (kernel_code/source.rs) and fails on a module that
//! a GPU would refuse; the kernels run are still the emulator's own build of the same
//! sources. So a rehearsal proves the directory before a GPU sees it.
//!
//! Recording (`Driver::begin_recording`, what a CUDA graph capture is on the GPU) is
//! real here: each launch is checked and resolved to its kernel, launch shape and
//! arguments (buffers as addresses, scalars by value) and stored instead of run; a
//! replay runs the stored list, without the host code that launched it. A scalar a
//! step passes by value is therefore frozen at its recorded value, as on the GPU.

use std::ffi::CString;
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Result};

use super::checked;
use super::checks::Checks;
use super::launch::{
    self, check_arguments, host, host_mut, in_place, regions, Kernel, Param, Region, POISON,
    RACE_CHECK,
};
use super::shadow;
use crate::engine::device::gpu::{Arg, Driver, Launch, Recording};
use crate::engine::device::kernel_code;
use crate::engine::device::Buffer;

/// The emulator as a GPU driver. Buffers are `Buffer::Host` vectors.
#[derive(Clone, Debug, Default)]
pub struct EmuDriver {
    /// None: the checks GOOGLENET_EMU_CHECK asks for.
    checks: Option<Checks>,
    /// Where launches go while recording (`with_recording`; None: this driver cannot
    /// record). Behind an `Arc` so that the driver stays a plain constant value.
    recording: Option<Arc<Mutex<Option<Launches>>>>,
}

/// One recorded launch: as `Kernel`, owning its parts.
struct Recorded {
    name: CString,
    kernel: String,
    launch: Launch,
    regions: Vec<Region>,
    params: Vec<Param>,
}

/// A recorded list of launches.
#[derive(Default)]
struct Launches(Vec<Recorded>);

// SAFETY: the regions' pointers point into buffers that the runtime holds for as long
// as the recording lives (gpu/runtime.rs's `Graph`) and that only launches, which
// are serialised by the caller's use of the device, touch.
unsafe impl Send for Launches {}
unsafe impl Sync for Launches {}

impl std::fmt::Debug for Launches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} recorded launches", self.0.len())
    }
}

impl EmuDriver {
    /// The driver, with the checks GOOGLENET_EMU_CHECK asks for.
    pub const fn new() -> EmuDriver {
        EmuDriver {
            checks: None,
            recording: None,
        }
    }

    /// The driver with `checks`, whatever GOOGLENET_EMU_CHECK says.
    pub const fn with_checks(checks: Checks) -> EmuDriver {
        EmuDriver {
            checks: Some(checks),
            recording: None,
        }
    }

    /// The driver, able to record launches and replay them (`Device::emu`'s).
    pub fn with_recording(self) -> EmuDriver {
        EmuDriver {
            recording: Some(Arc::new(Mutex::new(None))),
            ..self
        }
    }

    /// The recording slot; an error for a driver made without one.
    fn recording(&self) -> Result<std::sync::MutexGuard<'_, Option<Launches>>> {
        match &self.recording {
            Some(slot) => Ok(slot.lock().expect("recording lock")),
            None => bail!("emu: this driver was made without recording (with_recording)"),
        }
    }

    /// Runs one launch, with the checks asked for.
    fn execute(&self, launch: &Kernel, regions: &[Region]) -> Result<()> {
        let checks = self.checks()?;
        if checks.init || checks.order {
            checked::launch(launch, regions, checks)
        } else {
            let mode = if checks.race { RACE_CHECK } else { 0 };
            in_place(launch, regions, mode)
        }
    }

    /// The checks this driver makes (an error for a bad GOOGLENET_EMU_CHECK).
    pub fn checks(&self) -> Result<Checks> {
        match self.checks {
            Some(checks) => Ok(checks),
            None => Checks::from_environment(),
        }
    }

    /// Whether the kernels run under AddressSanitizer (GOOGLENET_EMU_ASAN=1); an error
    /// when it was asked for and cannot be had (the runtime not loaded first, no
    /// compiler).
    pub fn address_sanitizer() -> Result<bool> {
        launch::address_sanitizer()
    }

    /// The parameter types of `kernel` as the emulator registered them from its
    /// source ("const float*", "int32", ...: the types launches are checked against);
    /// `None` for a kernel it does not have.
    pub fn kernel_parameters(kernel: &str) -> Option<Vec<String>> {
        launch::kernel_parameters(&CString::new(kernel).ok()?)
    }

    /// A buffer of `len` floats that holds nothing yet, as a GPU allocation without a
    /// memset: see `invalidate`.
    pub fn uninit_f32(&self, len: usize) -> Result<Buffer<f32>> {
        let mut buffer = Buffer::Host(vec![0.0; len]);
        self.invalidate(&mut buffer)?;
        Ok(buffer)
    }

    /// `uninit_f32` for u32 elements.
    pub fn uninit_u32(&self, len: usize) -> Result<Buffer<u32>> {
        let mut buffer = Buffer::Host(vec![0; len]);
        self.invalidate(&mut buffer)?;
        Ok(buffer)
    }

    /// Declares the contents of `buffer` garbage, as for memory fresh from an allocator
    /// or reused from a pool: it is filled with NaNs (u32::MAX for u32), and under the
    /// init check every element counts as unwritten until an upload or a kernel writes
    /// it. This is the hook for any allocation that skips the memset.
    pub fn invalidate<T: bytemuck::Pod>(&self, buffer: &mut Buffer<T>) -> Result<()> {
        let data = host_mut(buffer)?;
        let words: &mut [u32] = bytemuck::try_cast_slice_mut(data.as_mut_slice())
            .map_err(|_| anyhow!("emu: only buffers of 4-byte elements can be invalidated"))?;
        words.fill(POISON);
        if self.checks()?.init {
            shadow::set(data.as_ptr().cast(), vec![true; data.len()]);
        }
        Ok(())
    }

    /// Under the init check, fails if `buffer` holds elements that nothing wrote.
    fn check_download<T>(&self, data: &[T]) -> Result<()> {
        if !self.checks()?.init {
            return Ok(());
        }
        if let Some(unwritten) = shadow::unwritten(data.as_ptr().cast(), data.len()) {
            let first = unwritten.iter().position(|&u| u).unwrap_or(0);
            let count = unwritten.iter().filter(|&&u| u).count();
            bail!(
                "emu: init check: a download of a buffer of {} elements reads {count} that no \
                 upload, memset or kernel wrote (the first is element {first})",
                data.len()
            );
        }
        Ok(())
    }
}

/// A fresh buffer of the driver's: whatever the init check knew of its address is void.
fn filled<T>(data: Vec<T>) -> Buffer<T> {
    shadow::forget(data.as_ptr().cast());
    Buffer::Host(data)
}

impl Driver for EmuDriver {
    fn name(&self) -> String {
        "emu".into()
    }

    fn is_gpu(&self) -> bool {
        false
    }

    /// Memory fresh from the allocator holds garbage: poisoned, and tracked by the init
    /// check until something writes it.
    fn alloc_f32(&self, len: usize) -> Result<Buffer<f32>> {
        self.uninit_f32(len)
    }

    fn alloc_u32(&self, len: usize) -> Result<Buffer<u32>> {
        self.uninit_u32(len)
    }

    fn recycle_f32(&self, buffer: &mut Buffer<f32>) -> Result<()> {
        self.invalidate(buffer)
    }

    fn recycle_u32(&self, buffer: &mut Buffer<u32>) -> Result<()> {
        self.invalidate(buffer)
    }

    /// Byte buffers only ever hold uploaded images, written whole right after.
    fn alloc_u8(&self, len: usize) -> Result<Buffer<u8>> {
        Ok(filled(vec![0; len]))
    }

    fn fill_zeros_f32(&self, buffer: &mut Buffer<f32>) -> Result<()> {
        written(host_mut(buffer)?).fill(0.0);
        Ok(())
    }

    fn fill_zeros_u32(&self, buffer: &mut Buffer<u32>) -> Result<()> {
        written(host_mut(buffer)?).fill(0);
        Ok(())
    }

    fn write_f32(&self, buffer: &mut Buffer<f32>, data: &[f32]) -> Result<()> {
        write(host_mut(buffer)?, data)
    }

    fn write_u32(&self, buffer: &mut Buffer<u32>, data: &[u32]) -> Result<()> {
        write(host_mut(buffer)?, data)
    }

    fn write_u8(&self, buffer: &mut Buffer<u8>, data: &[u8]) -> Result<()> {
        write(host_mut(buffer)?, data)
    }

    fn download_f32(&self, buffer: &Buffer<f32>) -> Result<Vec<f32>> {
        let data = host(buffer)?;
        self.check_download(data)?;
        Ok(data.clone())
    }

    fn download_u32(&self, buffer: &Buffer<u32>) -> Result<Vec<u32>> {
        let data = host(buffer)?;
        self.check_download(data)?;
        Ok(data.clone())
    }

    fn launch(&self, kernel: &str, launch: Launch, args: &mut [Arg]) -> Result<()> {
        kernel_code::check_directory_for_emulator()?;
        let name = CString::new(kernel)?;
        check_arguments(&name, kernel, args)?;
        let (regions, params) = regions(args)?;
        let mut recording = self
            .recording
            .as_ref()
            .map(|slot| slot.lock().expect("recording lock"));
        if let Some(list) = recording.as_mut().and_then(|r| r.as_mut()) {
            list.0.push(Recorded {
                name,
                kernel: kernel.to_string(),
                launch,
                regions,
                params,
            });
            return Ok(());
        }
        drop(recording);
        let launch = Kernel {
            name: &name,
            kernel,
            launch,
            params: &params,
        };
        self.execute(&launch, &regions)
    }

    fn can_record(&self) -> bool {
        self.recording.is_some()
    }

    fn begin_recording(&self) -> Result<()> {
        let mut recording = self.recording()?;
        if recording.is_some() {
            bail!("emu: already recording");
        }
        *recording = Some(Launches::default());
        Ok(())
    }

    fn end_recording(&self) -> Result<Recording> {
        match self.recording()?.take() {
            Some(list) => Ok(Box::new(list)),
            None => bail!("emu: end_recording without begin_recording"),
        }
    }

    fn replay(&self, recording: &Recording) -> Result<u64> {
        let Some(list) = recording.downcast_ref::<Launches>() else {
            bail!("emu: a recording of another driver was replayed on the emulator");
        };
        for recorded in &list.0 {
            let launch = Kernel {
                name: &recorded.name,
                kernel: &recorded.kernel,
                launch: recorded.launch,
                params: &recorded.params,
            };
            self.execute(&launch, &recorded.regions)?;
        }
        Ok(list.0.len() as u64)
    }
}

/// Copies `data` over the whole of `buffer`, which is then written.
fn write<T: Copy>(buffer: &mut Vec<T>, data: &[T]) -> Result<()> {
    if buffer.len() != data.len() {
        bail!(
            "emu: {} elements written to a buffer of {}",
            data.len(),
            buffer.len()
        );
    }
    written(buffer).copy_from_slice(data);
    Ok(())
}

/// `buffer`, about to be written whole: the init check forgets what it knew of it.
fn written<T>(buffer: &mut Vec<T>) -> &mut Vec<T> {
    shadow::forget(buffer.as_ptr().cast());
    buffer
}
