//! The emulated GPU: the CUDA kernels of kernels/ compiled for the host (build.rs),
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
//! Recording (`Driver::begin_recording`, what a CUDA graph capture is on the GPU) is
//! real here: each launch is checked and resolved to its kernel, launch shape and
//! arguments (buffers as addresses, scalars by value) and stored instead of run; a
//! replay runs the stored list, without the host code that launched it. A scalar a
//! step passes by value is therefore frozen at its recorded value, as on the GPU.

mod checked;
mod checks;
mod shadow;

use std::ffi::{c_char, c_int, c_long, c_uint, c_void, CStr, CString};
use std::ptr;
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Result};

pub use checks::Checks;

use super::gpu::{Arg, Driver, Launch, Recording};
use super::Buffer;

extern "C" {
    /// kernels/emu/cuda_emu.cpp: runs `kernel` over `grid` x `block` threads; `args[i]`
    /// points to the value of parameter i (as cuLaunchKernel's kernelParams); `mode` is
    /// a set of the mode bits below, `seed` the block shuffle's. 0, or nonzero with a
    /// message in `error`.
    fn emu_launch(
        kernel: *const c_char,
        grid: *const c_uint,
        block: *const c_uint,
        args: *mut *mut c_void,
        mode: c_uint,
        seed: u64,
        error: *mut c_char,
        error_len: usize,
    ) -> c_int;
    /// Writes the kernel's parameter types, comma-separated, to `out`; returns their
    /// length, or -1 for an unknown kernel.
    fn emu_kernel_parameters(kernel: *const c_char, out: *mut c_char, out_len: usize) -> c_long;
    /// Whether the emulator was built with AddressSanitizer (GOOGLENET_EMU_ASAN=1).
    fn emu_address_sanitizer() -> c_int;

    // The C allocator, for the copies AddressSanitizer watches (see `Staged`).
    fn malloc(size: usize) -> *mut c_void;
    fn free(ptr: *mut c_void);
}

/// emu_launch's mode bits (kernels/emu/cuda_emu.cpp): run the race-check build of the
/// kernel, hand out the blocks shuffled, share them with the helper threads however
/// few they are, run them all on the calling thread in order.
const RACE_CHECK: c_uint = 1;
const SHUFFLE: c_uint = 2;
const SHARE: c_uint = 4;
const SERIAL: c_uint = 8;

/// The bits of "unwritten" memory: what `EmuDriver::invalidate` fills a buffer with (a
/// NaN, or u32::MAX), so that a read of it shows even with the init check off.
const POISON: u32 = 0x7fff_ffff;

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

    /// Whether the kernels were built with AddressSanitizer (GOOGLENET_EMU_ASAN=1).
    pub fn address_sanitizer() -> bool {
        // SAFETY: no arguments, returns a constant.
        unsafe { emu_address_sanitizer() != 0 }
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

/// One launch: the kernel and its arguments, with buffers as indices into the launch's
/// regions.
struct Kernel<'a> {
    name: &'a CStr,
    kernel: &'a str,
    launch: Launch,
    params: &'a [Param],
}

/// A kernel argument, its buffers as indices into the launch's `Region`s.
enum Param {
    Buffer(usize),
    Table(Vec<usize>),
    Value(Value),
}

/// One buffer a launch passes, as memory.
struct Region {
    pointer: *mut u8,
    bytes: usize,
    /// Bytes per element.
    element: usize,
    /// Passed as Out*: the kernel may write it.
    written: bool,
    /// Holds floats (for messages).
    float: bool,
    /// Which argument it is, and its place in the argument's table if it is in one.
    arg: usize,
    entry: Option<usize>,
    parameter: &'static str,
}

impl Region {
    fn elements(&self) -> usize {
        self.bytes / self.element
    }

    /// Which argument it is, for messages: "argument 1 (float*)".
    fn what(&self) -> String {
        let what = format!("argument {} ({})", self.arg, self.parameter);
        match self.entry {
            Some(entry) => format!("{what} entry {entry}"),
            None => what,
        }
    }
}

/// The regions and parameters of `args`.
fn regions(args: &mut [Arg]) -> Result<(Vec<Region>, Vec<Param>)> {
    let mut regions = Vec::new();
    let mut params = Vec::with_capacity(args.len());
    for (index, arg) in args.iter_mut().enumerate() {
        let parameter = parameter_type(arg);
        let float = matches!(
            arg,
            Arg::F32(_) | Arg::OutF32(_) | Arg::F32Table(_) | Arg::OutF32Table(_)
        );
        let in_table = matches!(arg, Arg::F32Table(_) | Arg::OutF32Table(_));
        let mut entries = 0;
        let mut add = |pointer: *mut u8, bytes: usize, element: usize, written: bool| {
            regions.push(Region {
                pointer,
                bytes,
                element,
                written,
                float,
                arg: index,
                entry: in_table.then_some(entries),
                parameter,
            });
            entries += 1;
            regions.len() - 1
        };
        let param = match arg {
            Arg::F32(b) => Param::Buffer(read_only(host(b)?, &mut add)),
            Arg::U32s(b) => Param::Buffer(read_only(host(b)?, &mut add)),
            Arg::U32sAt(b, at, len) => {
                let words = host(b)?.get(*at..*at + *len).ok_or_else(|| {
                    anyhow!("emu: words {at}..{} of a buffer of {}", *at + *len, b.len())
                })?;
                Param::Buffer(read_only(words, &mut add))
            }
            Arg::U8s(b) => Param::Buffer(read_only(host(b)?, &mut add)),
            Arg::OutF32(b) => Param::Buffer(writable(host_mut(b)?, &mut add)),
            Arg::OutU32s(b) => Param::Buffer(writable(host_mut(b)?, &mut add)),
            Arg::F32Table(buffers) => {
                let mut table = Vec::with_capacity(buffers.len());
                for b in buffers.iter() {
                    table.push(read_only(host(b)?, &mut add));
                }
                Param::Table(table)
            }
            Arg::OutF32Table(buffers) => {
                let mut table = Vec::with_capacity(buffers.len());
                for b in buffers.iter_mut() {
                    table.push(writable(host_mut(b)?, &mut add));
                }
                Param::Table(table)
            }
            Arg::I32(v) => Param::Value(Value { int32: *v }),
            Arg::Float(v) => Param::Value(Value { float: *v }),
            Arg::U64(v) => Param::Value(Value { uint64: *v }),
        };
        params.push(param);
    }
    Ok((regions, params))
}

fn read_only<T>(data: &[T], add: &mut impl FnMut(*mut u8, usize, usize, bool) -> usize) -> usize {
    add(
        data.as_ptr().cast_mut().cast(),
        size_of_val(data),
        size_of::<T>(),
        false,
    )
}

fn writable<T>(
    data: &mut [T],
    add: &mut impl FnMut(*mut u8, usize, usize, bool) -> usize,
) -> usize {
    add(
        data.as_mut_ptr().cast(),
        size_of_val(data),
        size_of::<T>(),
        true,
    )
}

/// Runs the launch on its buffers themselves (under AddressSanitizer, on exact-size
/// copies that go back after it, see `CopyOf`).
fn in_place(kernel: &Kernel, regions: &[Region], mode: c_uint) -> Result<()> {
    if !EmuDriver::address_sanitizer() {
        let pointers: Vec<*mut c_void> = regions.iter().map(|r| r.pointer.cast()).collect();
        return run(kernel, &pointers, mode, 0);
    }
    let copies: Vec<CopyOf> = regions.iter().map(CopyOf::new).collect();
    let pointers: Vec<*mut c_void> = copies.iter().map(|c| c.pointer.cast()).collect();
    let result = run(kernel, &pointers, mode, 0);
    for (copy, region) in copies.iter().zip(regions) {
        if region.written {
            copy.write_back(region);
        }
    }
    result
}

/// Runs the launch with region i at `pointers[i]`.
fn run(kernel: &Kernel, pointers: &[*mut c_void], mode: c_uint, seed: u64) -> Result<()> {
    // The arrays of pointers that `Table` arguments point to: malloc'd copies under
    // AddressSanitizer, like the buffers.
    let watched = EmuDriver::address_sanitizer();
    let mut tables = Vec::new();
    let mut values = Vec::with_capacity(kernel.params.len());
    for param in kernel.params {
        values.push(match param {
            Param::Buffer(r) => Value {
                pointer: pointers[*r],
            },
            Param::Table(entries) => {
                let table: Vec<*mut c_void> = entries.iter().map(|&r| pointers[r]).collect();
                let copy = CopyOf::bytes(table.as_ptr().cast(), size_of_val(table.as_slice()));
                let pointer = if watched {
                    copy.pointer.cast()
                } else {
                    table.as_ptr().cast_mut().cast()
                };
                tables.push((table, copy));
                Value { pointer }
            }
            Param::Value(value) => *value,
        });
    }
    let mut arguments: Vec<*mut c_void> = values
        .iter_mut()
        .map(|value| ptr::from_mut(value).cast())
        .collect();

    let mut error = vec![0u8; 4096];
    // SAFETY: every pointer in `arguments` points to a value of the type the kernel
    // declares for that parameter (checked by the caller); buffer pointers point to
    // live memory of the lengths the launch code sized (the buffers, which `args`
    // borrows for the whole call, or copies of them), and the kernel writes only
    // through those passed as Out* (non-const parameters).
    let status = unsafe {
        emu_launch(
            kernel.name.as_ptr(),
            kernel.launch.grid.as_ptr(),
            kernel.launch.block.as_ptr(),
            arguments.as_mut_ptr(),
            mode,
            seed,
            error.as_mut_ptr().cast(),
            error.len(),
        )
    };
    drop(tables);
    if status != 0 {
        let message = CStr::from_bytes_until_nul(&error)
            .map(|m| m.to_string_lossy().into_owned())
            .unwrap_or_else(|_| String::from_utf8_lossy(&error).into_owned());
        bail!("emu: {message}");
    }
    Ok(())
}

/// One kernel argument as the kernel reads it.
#[repr(C)]
#[derive(Clone, Copy)]
union Value {
    pointer: *mut c_void,
    int32: i32,
    float: f32,
    uint64: u64,
}

/// The C++ type (as cuda_emu.h's `describe_type` spells it) of the kernel parameter
/// each kind of argument must meet.
fn parameter_type(arg: &Arg) -> &'static str {
    match arg {
        Arg::F32(_) => "const float*",
        Arg::OutF32(_) => "float*",
        Arg::F32Table(_) => "const float**",
        Arg::OutF32Table(_) => "float**",
        Arg::U32s(_) | Arg::U32sAt(..) => "const uint32*",
        Arg::OutU32s(_) => "uint32*",
        Arg::U8s(_) => "const uint8*",
        Arg::I32(_) => "int32",
        Arg::Float(_) => "float",
        Arg::U64(_) => "uint64",
    }
}

/// Fails unless `args` match the kernel's parameters one for one. An unknown kernel
/// passes: emu_launch reports it.
fn check_arguments(name: &CStr, kernel: &str, args: &[Arg]) -> Result<()> {
    // SAFETY: a null buffer of length 0 only asks for the length.
    let len = unsafe { emu_kernel_parameters(name.as_ptr(), ptr::null_mut(), 0) };
    let Ok(len) = usize::try_from(len) else {
        return Ok(());
    };
    let mut text = vec![0u8; len + 1];
    // SAFETY: `text` has room for the `len` bytes and the terminating NUL.
    unsafe { emu_kernel_parameters(name.as_ptr(), text.as_mut_ptr().cast(), text.len()) };
    let text = CStr::from_bytes_until_nul(&text)?.to_str()?;
    let declared: Vec<&str> = text.split(',').filter(|t| !t.is_empty()).collect();
    let passed: Vec<&str> = args.iter().map(parameter_type).collect();
    if declared != passed {
        bail!(
            "emu: kernel `{kernel}` takes ({}) but was launched with ({})",
            declared.join(", "),
            passed.join(", ")
        );
    }
    Ok(())
}

#[allow(unreachable_patterns)] // Buffer::Host may one day be the only kind again
fn host<T>(buffer: &Buffer<T>) -> Result<&Vec<T>> {
    match buffer {
        Buffer::Host(v) => Ok(v),
        _ => Err(anyhow!(
            "emu: a buffer of another device was passed to the emulator"
        )),
    }
}

#[allow(unreachable_patterns)]
fn host_mut<T>(buffer: &mut Buffer<T>) -> Result<&mut Vec<T>> {
    match buffer {
        Buffer::Host(v) => Ok(v),
        _ => Err(anyhow!(
            "emu: a buffer of another device was passed to the emulator"
        )),
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

/// An exact-size copy of some memory from the C allocator: AddressSanitizer surrounds
/// it with poisoned memory, where the crate's Rust allocator (mimalloc) is invisible to
/// it, so an access just past the end of a vector would go unnoticed. The checks of
/// `checked.rs` run kernels on these copies too.
struct CopyOf {
    pointer: *mut u8,
    bytes: usize,
}

impl CopyOf {
    fn new(region: &Region) -> CopyOf {
        CopyOf::bytes(region.pointer, region.bytes)
    }

    fn bytes(original: *const u8, bytes: usize) -> CopyOf {
        // SAFETY: malloc of at least one byte (malloc(0) may return null).
        let pointer = unsafe { malloc(bytes.max(1)) }.cast::<u8>();
        assert!(!pointer.is_null(), "emu: malloc({bytes}) failed");
        // SAFETY: `original` points to `bytes` readable bytes, `pointer` to as many
        // writable ones, and they are distinct allocations.
        unsafe { ptr::copy_nonoverlapping(original, pointer, bytes) };
        CopyOf { pointer, bytes }
    }

    fn as_slice(&self) -> &[u8] {
        // SAFETY: `pointer` holds `bytes` initialised bytes, owned by self.
        unsafe { std::slice::from_raw_parts(self.pointer, self.bytes) }
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in as_slice, and self is borrowed mutably.
        unsafe { std::slice::from_raw_parts_mut(self.pointer, self.bytes) }
    }

    /// Copies the copy back over the region it was made of.
    fn write_back(&self, region: &Region) {
        debug_assert!(region.written && region.bytes == self.bytes);
        // SAFETY: the region came from a mutable borrow of the buffer that the launch
        // still holds; both are `bytes` long.
        unsafe { ptr::copy_nonoverlapping(self.pointer, region.pointer, self.bytes) };
    }
}

impl Drop for CopyOf {
    fn drop(&mut self) {
        // SAFETY: `pointer` came from malloc and is freed once.
        unsafe { free(self.pointer.cast()) };
    }
}
