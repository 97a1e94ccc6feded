//! The emulated GPU: the CUDA kernels of kernels/ compiled for the host (build.rs),
//! run on the CPU by the emulator in kernels/emu/, with host memory standing in for
//! device memory. It takes the same launches as the real GPU (`GpuBackend` is generic
//! over the `Driver`), so CI, which has no GPU, runs the real kernels and the real
//! launch code.
//!
//! Before a launch the arguments are checked against the kernel's parameter types,
//! which the emulator records at registration: a wrong argument list fails here with
//! both lists shown, where on a GPU it would be read as garbage.

use std::ffi::{c_char, c_int, c_long, c_uint, c_void, CStr, CString};
use std::ptr;

use anyhow::{anyhow, bail, Result};

use super::gpu::{Arg, Driver, Launch};
use super::Buffer;

extern "C" {
    /// kernels/emu/cuda_emu.cpp: runs `kernel` over `grid` x `block` threads; `args[i]`
    /// points to the value of parameter i (as cuLaunchKernel's kernelParams). 0, or
    /// nonzero with a message in `error`.
    fn emu_launch(
        kernel: *const c_char,
        grid: *const c_uint,
        block: *const c_uint,
        args: *mut *mut c_void,
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

/// The emulator as a GPU driver. Buffers are `Buffer::Host` vectors.
#[derive(Clone, Copy, Debug, Default)]
pub struct EmuDriver;

impl EmuDriver {
    pub fn new() -> EmuDriver {
        EmuDriver
    }

    /// Whether the kernels were built with AddressSanitizer (GOOGLENET_EMU_ASAN=1).
    pub fn address_sanitizer() -> bool {
        // SAFETY: no arguments, returns a constant.
        unsafe { emu_address_sanitizer() != 0 }
    }
}

impl Driver for EmuDriver {
    fn name(&self) -> String {
        "emu".into()
    }

    fn is_gpu(&self) -> bool {
        false
    }

    fn alloc_f32(&self, len: usize) -> Result<Buffer<f32>> {
        Ok(Buffer::Host(vec![0.0; len]))
    }

    fn alloc_u32(&self, len: usize) -> Result<Buffer<u32>> {
        Ok(Buffer::Host(vec![0; len]))
    }

    fn alloc_u8(&self, len: usize) -> Result<Buffer<u8>> {
        Ok(Buffer::Host(vec![0; len]))
    }

    fn fill_zeros_f32(&self, buffer: &mut Buffer<f32>) -> Result<()> {
        host_mut(buffer)?.fill(0.0);
        Ok(())
    }

    fn fill_zeros_u32(&self, buffer: &mut Buffer<u32>) -> Result<()> {
        host_mut(buffer)?.fill(0);
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
        Ok(host(buffer)?.clone())
    }

    fn download_u32(&self, buffer: &Buffer<u32>) -> Result<Vec<u32>> {
        Ok(host(buffer)?.clone())
    }

    fn launch(&self, kernel: &str, launch: Launch, args: &mut [Arg]) -> Result<()> {
        let name = CString::new(kernel)?;
        check_arguments(&name, kernel, args)?;
        let watched = EmuDriver::address_sanitizer();

        // Each argument's value; the kernel gets a pointer to each.
        let mut values = Vec::with_capacity(args.len());
        // Under AddressSanitizer, the copies the kernel works on instead of the buffers.
        let mut staged = Vec::new();
        // The arrays of pointers that `*Table` arguments point to (their heap storage
        // stays put when the vector moves in here).
        let mut tables: Vec<Vec<*mut c_void>> = Vec::new();
        for arg in args.iter_mut() {
            let value = match arg {
                Arg::F32(b) => buffer_value(host(b)?, watched, &mut staged),
                Arg::U32s(b) => buffer_value(host(b)?, watched, &mut staged),
                Arg::U8s(b) => buffer_value(host(b)?, watched, &mut staged),
                Arg::OutF32(b) => out_buffer_value(host_mut(b)?, watched, &mut staged),
                Arg::OutU32s(b) => out_buffer_value(host_mut(b)?, watched, &mut staged),
                Arg::F32Table(buffers) => {
                    let mut table = Vec::with_capacity(buffers.len());
                    for b in buffers.iter() {
                        let value = buffer_value(host(b)?, watched, &mut staged);
                        // SAFETY: buffer_value returns a pointer.
                        table.push(unsafe { value.pointer });
                    }
                    table_value(table, watched, &mut staged, &mut tables)
                }
                Arg::OutF32Table(buffers) => {
                    let mut table = Vec::with_capacity(buffers.len());
                    for b in buffers.iter_mut() {
                        let value = out_buffer_value(host_mut(b)?, watched, &mut staged);
                        // SAFETY: out_buffer_value returns a pointer.
                        table.push(unsafe { value.pointer });
                    }
                    table_value(table, watched, &mut staged, &mut tables)
                }
                Arg::I32(v) => Value { int32: *v },
                Arg::Float(v) => Value { float: *v },
                Arg::U64(v) => Value { uint64: *v },
            };
            values.push(value);
        }
        let mut pointers: Vec<*mut c_void> = values
            .iter_mut()
            .map(|value| ptr::from_mut(value).cast())
            .collect();

        let mut error = vec![0u8; 4096];
        // SAFETY: every pointer in `pointers` points to a value of the type the kernel
        // declares for that parameter (checked above); buffer pointers point to live
        // vectors (or their staged copies) of the lengths the launch code sized, and the
        // kernel writes only through those passed as Out* (non-const parameters), which
        // `args` borrows mutably for the whole call.
        let status = unsafe {
            emu_launch(
                name.as_ptr(),
                launch.grid.as_ptr(),
                launch.block.as_ptr(),
                pointers.as_mut_ptr(),
                error.as_mut_ptr().cast(),
                error.len(),
            )
        };
        for copy in &staged {
            copy.write_back();
        }
        if status != 0 {
            let message = CStr::from_bytes_until_nul(&error)
                .map(|m| m.to_string_lossy().into_owned())
                .unwrap_or_else(|_| String::from_utf8_lossy(&error).into_owned());
            bail!("emu: {message}");
        }
        Ok(())
    }
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
        Arg::U32s(_) => "const uint32*",
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

fn write<T: Copy>(buffer: &mut [T], data: &[T]) -> Result<()> {
    if buffer.len() != data.len() {
        bail!(
            "emu: {} elements written to a buffer of {}",
            data.len(),
            buffer.len()
        );
    }
    buffer.copy_from_slice(data);
    Ok(())
}

/// The pointer a kernel gets for a buffer it only reads.
fn buffer_value<T>(data: &[T], watched: bool, staged: &mut Vec<Staged>) -> Value {
    let pointer = data.as_ptr().cast_mut().cast::<c_void>();
    stage(pointer, size_of_val(data), false, watched, staged)
}

/// The pointer a kernel gets for a buffer it writes.
fn out_buffer_value<T>(data: &mut [T], watched: bool, staged: &mut Vec<Staged>) -> Value {
    let bytes = size_of_val(data);
    stage(data.as_mut_ptr().cast(), bytes, true, watched, staged)
}

/// The pointer a kernel gets for a table of buffer pointers (which it only reads);
/// `tables` keeps the table alive until the launch is over.
fn table_value(
    table: Vec<*mut c_void>,
    watched: bool,
    staged: &mut Vec<Staged>,
    tables: &mut Vec<Vec<*mut c_void>>,
) -> Value {
    let pointer = table.as_ptr().cast_mut().cast::<c_void>();
    let value = stage(
        pointer,
        size_of_val(table.as_slice()),
        false,
        watched,
        staged,
    );
    tables.push(table);
    value
}

fn stage(
    pointer: *mut c_void,
    bytes: usize,
    written: bool,
    watched: bool,
    staged: &mut Vec<Staged>,
) -> Value {
    if !watched {
        return Value { pointer };
    }
    let copy = Staged::new(pointer, bytes, written);
    let pointer = copy.copy;
    staged.push(copy);
    Value { pointer }
}

/// Under AddressSanitizer a kernel works on an exact-size copy of each buffer taken
/// from the C allocator, which ASan surrounds with poisoned memory: the crate's Rust
/// allocator (mimalloc) is invisible to ASan, so an access just past the end of a
/// vector would go unnoticed. Copies of written buffers go back after the launch.
struct Staged {
    original: *mut c_void,
    copy: *mut c_void,
    bytes: usize,
    written: bool,
}

impl Staged {
    fn new(original: *mut c_void, bytes: usize, written: bool) -> Staged {
        // SAFETY: malloc of any size; ASan's malloc never returns null for 0 bytes
        // (it aborts when out of memory).
        let copy = unsafe { malloc(bytes) };
        assert!(!copy.is_null(), "emu: malloc({bytes}) failed");
        // SAFETY: `original` points to `bytes` readable bytes, `copy` to as many
        // writable ones, and they are distinct allocations.
        unsafe { ptr::copy_nonoverlapping(original.cast::<u8>(), copy.cast::<u8>(), bytes) };
        Staged {
            original,
            copy,
            bytes,
            written,
        }
    }

    fn write_back(&self) {
        if self.written {
            // SAFETY: `original` came from a mutable borrow of the buffer that the
            // launch still holds; both regions are `bytes` long.
            unsafe {
                ptr::copy_nonoverlapping(
                    self.copy.cast::<u8>(),
                    self.original.cast::<u8>(),
                    self.bytes,
                )
            };
        }
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        // SAFETY: `copy` came from malloc and is freed once.
        unsafe { free(self.copy) };
    }
}
