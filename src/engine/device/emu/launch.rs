//! One launch on the emulator: the C entry points of kernels/emu/, a launch's arguments
//! as memory regions and parameter values, the check of those against the kernel's
//! parameter types, and exact-size copies that AddressSanitizer watches.

use std::ffi::{c_char, c_int, c_long, c_uint, c_void, CStr};
use std::ptr;
use std::sync::OnceLock;

use anyhow::{anyhow, bail, Result};

use super::asan;

use crate::engine::device::gpu::{Arg, Launch};
use crate::engine::device::Buffer;

extern "C" {
    /// kernels/emu/cuda_emu.cpp: runs `kernel` over `grid` x `block` threads; `args[i]`
    /// points to the value of parameter i (as cuLaunchKernel's kernelParams); `mode` is
    /// a set of the mode bits below, `seed` the block shuffle's. 0, or nonzero with a
    /// message in `error`.
    pub(super) fn emu_launch(
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
    pub(super) fn emu_kernel_parameters(
        kernel: *const c_char,
        out: *mut c_char,
        out_len: usize,
    ) -> c_long;
    /// Whether the emulator was built with AddressSanitizer (asan.rs).
    pub(super) fn emu_address_sanitizer() -> c_int;

    // The C allocator, for the copies AddressSanitizer watches (see `Staged`).
    pub(super) fn malloc(size: usize) -> *mut c_void;
    pub(super) fn free(ptr: *mut c_void);
}

/// emu_launch's mode bits (kernels/emu/cuda_emu.cpp): run the race-check build of the
/// kernel, hand out the blocks shuffled, share them with the helper threads however
/// few they are, run them all on the calling thread in order.
pub(super) const RACE_CHECK: c_uint = 1;
pub(super) const SHUFFLE: c_uint = 2;
pub(super) const SHARE: c_uint = 4;
pub(super) const SERIAL: c_uint = 8;

/// The bits of "unwritten" memory: what `EmuDriver::invalidate` fills a buffer with (a
/// NaN, or u32::MAX), so that a read of it shows even with the init check off.
pub(super) const POISON: u32 = 0x7fff_ffff;

/// One launch: the kernel and its arguments, with buffers as indices into the launch's
/// regions.
type LaunchFn = unsafe extern "C" fn(
    *const c_char,
    *const c_uint,
    *const c_uint,
    *mut *mut c_void,
    c_uint,
    u64,
    *mut c_char,
    usize,
) -> c_int;
type ParametersFn = unsafe extern "C" fn(*const c_char, *mut c_char, usize) -> c_long;
type FlagFn = unsafe extern "C" fn() -> c_int;

/// The emulator's entry points: those linked in, or the sanitized build's
/// (GOOGLENET_EMU_ASAN=1, asan.rs).
struct EntryPoints {
    launch: LaunchFn,
    kernel_parameters: ParametersFn,
    address_sanitizer: bool,
    /// Keeps the sanitized build loaded.
    _library: Option<asan::Library>,
}

/// The entry points this process uses, chosen at its first launch; the error of a
/// sanitized build that could not be had.
fn entry_points() -> Result<&'static EntryPoints> {
    static CHOSEN: OnceLock<Result<EntryPoints, String>> = OnceLock::new();
    CHOSEN
        .get_or_init(|| choose_entry_points().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow!("emu: {e}"))
}

fn choose_entry_points() -> Result<EntryPoints> {
    let flag = |f: FlagFn| {
        // SAFETY: no arguments, returns a constant.
        unsafe { f() != 0 }
    };
    if !asan::requested()? {
        return Ok(EntryPoints {
            launch: emu_launch,
            kernel_parameters: emu_kernel_parameters,
            address_sanitizer: flag(emu_address_sanitizer),
            _library: None,
        });
    }
    let library = asan::Library::load()?;
    // SAFETY: the library is the emulator compiled from the same unit as the one linked
    // in, so each symbol has the type of its extern declaration above.
    let entry_points = unsafe {
        EntryPoints {
            launch: std::mem::transmute::<*mut c_void, LaunchFn>(library.symbol(c"emu_launch")?),
            kernel_parameters: std::mem::transmute::<*mut c_void, ParametersFn>(
                library.symbol(c"emu_kernel_parameters")?,
            ),
            address_sanitizer: flag(std::mem::transmute::<*mut c_void, FlagFn>(
                library.symbol(c"emu_address_sanitizer")?,
            )),
            _library: Some(library),
        }
    };
    if !entry_points.address_sanitizer {
        bail!(
            "{}=1: the library loaded was not built with AddressSanitizer",
            asan::SWITCH
        );
    }
    Ok(entry_points)
}

/// Whether the kernels run under AddressSanitizer (GOOGLENET_EMU_ASAN=1, asan.rs); an
/// error when it was asked for and cannot be had.
pub(super) fn address_sanitizer() -> Result<bool> {
    Ok(entry_points()?.address_sanitizer)
}

pub(super) struct Kernel<'a> {
    pub(super) name: &'a CStr,
    pub(super) kernel: &'a str,
    pub(super) launch: Launch,
    pub(super) params: &'a [Param],
}

/// A kernel argument, its buffers as indices into the launch's `Region`s.
pub(super) enum Param {
    Buffer(usize),
    Table(Vec<usize>),
    Value(Value),
}

/// One buffer a launch passes, as memory.
pub(super) struct Region {
    pub(super) pointer: *mut u8,
    pub(super) bytes: usize,
    /// Bytes per element.
    pub(super) element: usize,
    /// Passed as Out*: the kernel may write it.
    pub(super) written: bool,
    /// Holds floats (for messages).
    pub(super) float: bool,
    /// Which argument it is, and its place in the argument's table if it is in one.
    pub(super) arg: usize,
    pub(super) entry: Option<usize>,
    pub(super) parameter: &'static str,
}

impl Region {
    pub(super) fn elements(&self) -> usize {
        self.bytes / self.element
    }

    /// Which argument it is, for messages: "argument 1 (float*)".
    pub(super) fn what(&self) -> String {
        let what = format!("argument {} ({})", self.arg, self.parameter);
        match self.entry {
            Some(entry) => format!("{what} entry {entry}"),
            None => what,
        }
    }
}

/// The regions and parameters of `args`.
pub(super) fn regions(args: &mut [Arg]) -> Result<(Vec<Region>, Vec<Param>)> {
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

pub(super) fn read_only<T>(
    data: &[T],
    add: &mut impl FnMut(*mut u8, usize, usize, bool) -> usize,
) -> usize {
    add(
        data.as_ptr().cast_mut().cast(),
        size_of_val(data),
        size_of::<T>(),
        false,
    )
}

pub(super) fn writable<T>(
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
pub(super) fn in_place(kernel: &Kernel, regions: &[Region], mode: c_uint) -> Result<()> {
    if !address_sanitizer()? {
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
pub(super) fn run(
    kernel: &Kernel,
    pointers: &[*mut c_void],
    mode: c_uint,
    seed: u64,
) -> Result<()> {
    // The arrays of pointers that `Table` arguments point to: malloc'd copies under
    // AddressSanitizer, like the buffers.
    let watched = address_sanitizer()?;
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
    let launch = entry_points()?.launch;
    let status = unsafe {
        launch(
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
pub(super) union Value {
    pointer: *mut c_void,
    int32: i32,
    float: f32,
    uint64: u64,
}

/// The C++ type (as cuda_emu.h's `describe_type` spells it) of the kernel parameter
/// each kind of argument must meet.
pub(super) fn parameter_type(arg: &Arg) -> &'static str {
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

/// The parameter types the emulator registered for the kernel `name`; `None` for a
/// kernel it does not have.
pub(super) fn kernel_parameters(name: &CStr) -> Option<Vec<String>> {
    // Without entry points, the launch reports why.
    let parameters = entry_points().ok()?.kernel_parameters;
    // SAFETY: a null buffer of length 0 only asks for the length.
    let len = unsafe { parameters(name.as_ptr(), ptr::null_mut(), 0) };
    let len = usize::try_from(len).ok()?;
    let mut text = vec![0u8; len + 1];
    // SAFETY: `text` has room for the `len` bytes and the terminating NUL.
    unsafe { parameters(name.as_ptr(), text.as_mut_ptr().cast(), text.len()) };
    let text = CStr::from_bytes_until_nul(&text).ok()?.to_str().ok()?;
    Some(
        text.split(',')
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect(),
    )
}

/// Fails unless `args` match the kernel's parameters one for one. An unknown kernel
/// passes: emu_launch reports it.
pub(super) fn check_arguments(name: &CStr, kernel: &str, args: &[Arg]) -> Result<()> {
    let Some(declared) = kernel_parameters(name) else {
        return Ok(());
    };
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

/// An exact-size copy of some memory from the C allocator: AddressSanitizer surrounds
/// it with poisoned memory, where the crate's Rust allocator (mimalloc) is invisible to
/// it, so an access just past the end of a vector would go unnoticed. The checks of
/// `checked.rs` run kernels on these copies too.
pub(super) struct CopyOf {
    pub(super) pointer: *mut u8,
    pub(super) bytes: usize,
}

impl CopyOf {
    pub(super) fn new(region: &Region) -> CopyOf {
        CopyOf::bytes(region.pointer, region.bytes)
    }

    pub(super) fn bytes(original: *const u8, bytes: usize) -> CopyOf {
        // SAFETY: malloc of at least one byte (malloc(0) may return null).
        let pointer = unsafe { malloc(bytes.max(1)) }.cast::<u8>();
        assert!(!pointer.is_null(), "emu: malloc({bytes}) failed");
        // SAFETY: `original` points to `bytes` readable bytes, `pointer` to as many
        // writable ones, and they are distinct allocations.
        unsafe { ptr::copy_nonoverlapping(original, pointer, bytes) };
        CopyOf { pointer, bytes }
    }

    pub(super) fn as_slice(&self) -> &[u8] {
        // SAFETY: `pointer` holds `bytes` initialised bytes, owned by self.
        unsafe { std::slice::from_raw_parts(self.pointer, self.bytes) }
    }

    pub(super) fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in as_slice, and self is borrowed mutably.
        unsafe { std::slice::from_raw_parts_mut(self.pointer, self.bytes) }
    }

    /// Copies the copy back over the region it was made of.
    pub(super) fn write_back(&self, region: &Region) {
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

#[allow(unreachable_patterns)] // Buffer::Host may one day be the only kind again
pub(super) fn host<T>(buffer: &Buffer<T>) -> Result<&Vec<T>> {
    match buffer {
        Buffer::Host(v) => Ok(v),
        _ => Err(anyhow!(
            "emu: a buffer of another device was passed to the emulator"
        )),
    }
}

#[allow(unreachable_patterns)]
pub(super) fn host_mut<T>(buffer: &mut Buffer<T>) -> Result<&mut Vec<T>> {
    match buffer {
        Buffer::Host(v) => Ok(v),
        _ => Err(anyhow!(
            "emu: a buffer of another device was passed to the emulator"
        )),
    }
}
