//! The CUDA device's driver: cudarc over the real GPU, running the code that build.rs
//! compiled from kernels/*.cu and embedded in this binary (src/engine/device/kernels.rs): the
//! sm_90 cubin on an sm_90 GPU, the compute_80 PTX, JIT-compiled, on any other; or, with
//! `GOOGLENET_KERNELS=DIR`, the same forms from DIR, checked against the embedded ones
//! (kernel_code/source.rs). Each kernel is looked up in the one module that declares it:
//! a lookup in a module without it would fail with CUDA_ERROR_NOT_FOUND, which
//! compute-sanitizer reports as an error.
//!
//! cudarc loads libcuda at run time and panics when it is missing, so `CudaDriver::new`
//! checks for the library first: on a machine without a GPU driver it is an error.
//!
//! `GOOGLENET_CUDA_SYNC=1` waits for each kernel and checks it, so that a fault names
//! the kernel that caused it (otherwise it surfaces at the next wait, under whatever
//! call came then).
//!
//! Recording (`Driver::begin_recording`) is CUDA stream capture on the device's own
//! stream: the launches become a CUDA graph, which a replay launches whole. Pointer
//! tables a recorded launch uses must be on the device already (built by a warm-up
//! run): an upload from pageable memory cannot be captured.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{bail, ensure, Context, Result};
use cudarc::driver::{
    result, sys, CudaContext, CudaFunction, CudaGraph, CudaModule, CudaSlice, CudaStream,
    DevicePtr, DevicePtrMut, DeviceRepr, LaunchConfig, PushKernelArg, ValidAsZeroBits,
};
use cudarc::nvrtc::Ptx;

use super::gpu::{Arg, Driver, Launch, Recording};
use super::kernel_code::{Code, KernelCode, Target};
use super::Buffer;

pub struct CudaDriver {
    ordinal: usize,
    stream: Arc<CudaStream>,
    /// Each kernels/*.cu file's module, and which of them holds each kernel.
    modules: Vec<Arc<CudaModule>>,
    module_of: HashMap<String, usize>,
    functions: Mutex<HashMap<String, CudaFunction>>,
    /// Device copies of the pointer tables `*Table` arguments become, by content.
    tables: Mutex<HashMap<Vec<u64>, Arc<CudaSlice<u64>>>>,
    /// While the stream is captured: the tables the captured launches read, kept
    /// alive with the graph.
    captured_tables: Mutex<Vec<Arc<CudaSlice<u64>>>>,
    capturing: AtomicBool,
    captured_kernels: AtomicU64,
    gpu_name: String,
    /// `GOOGLENET_KERNELS`'s directory, when the kernels came from there.
    kernels_directory: Option<std::path::PathBuf>,
    /// `GOOGLENET_CUDA_SYNC=1`: wait for and check every launch.
    sync_each_launch: bool,
}

/// Distinct pointer tables kept on the device; past this the cache starts over.
const TABLES_KEPT: usize = 16;

/// Whether this machine has the CUDA driver library (libcuda), without loading cudarc.
pub fn driver_present() -> bool {
    // SAFETY: only tries to open the library; nothing from it is called.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

/// How many GPUs the driver sees; 0 when there is no driver.
pub fn device_count() -> usize {
    if !driver_present() {
        return 0;
    }
    CudaContext::device_count().map_or(0, |n| n.max(0) as usize)
}

impl CudaDriver {
    pub fn new(ordinal: usize) -> Result<CudaDriver> {
        ensure!(
            driver_present(),
            "no CUDA driver on this machine (libcuda.so was not found); use --device cpu"
        );
        let count = device_count();
        ensure!(
            ordinal < count,
            "--device cuda:{ordinal}: this machine has {count} GPU(s)"
        );
        let ctx =
            CudaContext::new(ordinal).with_context(|| format!("cannot open GPU {ordinal}"))?;
        // SAFETY: everything (cuDNN in the benchmark too) runs on the one stream made
        // below, so cudarc's cross-stream tracking, two events per allocation, is
        // not needed.
        unsafe { ctx.disable_event_tracking() };
        let (major, minor) = ctx
            .compute_capability()
            .context("cannot read the GPU's compute capability")?;
        let gpu_name = ctx.name().context("cannot read the GPU's name")?;
        // An sm_90 cubin runs on compute capability 9.x; other GPUs JIT the PTX.
        let code = KernelCode::for_target(Target::for_compute_capability(major))?;
        let modules = code
            .modules
            .iter()
            .map(|m| {
                let image = match &m.code {
                    Code::Cubin(bytes) => Ptx::from_binary(bytes.to_vec()),
                    Code::Ptx(text) => Ptx::from_src(text.as_ref()),
                };
                ctx.load_module(image).with_context(|| {
                    format!(
                        "cannot load {} on {gpu_name} (sm_{major}{minor}); the driver may be \
                         older than the nvcc that built it",
                        m.origin
                    )
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let module_of = code
            .modules
            .iter()
            .enumerate()
            .flat_map(|(i, m)| m.interface.kernels().map(move |k| (k.to_string(), i)))
            .collect();
        keep_freed_memory(&ctx)?;
        // A stream of the device's own: CUDA graphs cannot be captured on the legacy
        // default stream.
        let stream = ctx
            .new_stream()
            .with_context(|| format!("cannot create a stream on GPU {ordinal}"))?;
        Ok(CudaDriver {
            ordinal,
            stream,
            modules,
            module_of,
            functions: Mutex::new(HashMap::new()),
            tables: Mutex::new(HashMap::new()),
            captured_tables: Mutex::new(Vec::new()),
            capturing: AtomicBool::new(false),
            captured_kernels: AtomicU64::new(0),
            gpu_name,
            kernels_directory: code.directory,
            sync_each_launch: std::env::var_os("GOOGLENET_CUDA_SYNC").is_some_and(|v| v == "1"),
        })
    }

    /// Errors cudarc recorded where it could not return them (frees and event calls in
    /// `Drop`): a kernel fault often shows up first there, so they are reported, not lost.
    fn deferred_errors(&self, after: &str) -> Result<()> {
        self.stream.context().check_err().with_context(|| {
            format!("the GPU reported an error in a deferred call (a free, on drop) {after}")
        })
    }

    fn function(&self, kernel: &str) -> Result<CudaFunction> {
        let mut functions = self.functions.lock().expect("kernel cache lock");
        if let Some(f) = functions.get(kernel) {
            return Ok(f.clone());
        }
        let Some(&module) = self.module_of.get(kernel) else {
            bail!("no kernel named {kernel} in any module of kernels/*.cu")
        };
        let f = self.modules[module]
            .load_function(kernel)
            .with_context(|| format!("cannot find {kernel} in the module that declares it"))?;
        functions.insert(kernel.to_string(), f.clone());
        Ok(f)
    }

    fn alloc<T: DeviceRepr>(&self, len: usize) -> Result<Buffer<T>> {
        if len == 0 {
            // The driver refuses empty allocations; nothing reads an empty buffer.
            return Ok(Buffer::Host(Vec::new()));
        }
        // SAFETY: the contents are unspecified until written; the `Driver` contract
        // (alloc_* vs zeros_*) makes op code write before it reads.
        Ok(Buffer::Cuda(unsafe { self.stream.alloc::<T>(len) }?))
    }

    fn fill_zeros<T: DeviceRepr + ValidAsZeroBits>(&self, buffer: &mut Buffer<T>) -> Result<()> {
        if buffer.is_empty() {
            return Ok(());
        }
        Ok(self.stream.memset_zeros(slice_mut(buffer)?)?)
    }

    fn write<T: DeviceRepr>(&self, buffer: &mut Buffer<T>, data: &[T]) -> Result<()> {
        ensure!(
            buffer.len() == data.len(),
            "{} elements written to a GPU buffer of {}",
            data.len(),
            buffer.len()
        );
        if data.is_empty() {
            return Ok(());
        }
        Ok(self.stream.memcpy_htod(data, slice_mut(buffer)?)?)
    }
}

impl CudaDriver {
    /// The buffer's contents, once the stream has finished everything before the copy:
    /// cudarc's `clone_dtoh` only queues the copy (cuMemcpyDtoHAsync) and returns, so
    /// the wait here is what makes the values there to read.
    fn download<T: DeviceRepr + Clone>(&self, buffer: &Buffer<T>) -> Result<Vec<T>> {
        match buffer {
            Buffer::Cuda(s) => {
                let values = self.stream.clone_dtoh(s)?;
                self.stream
                    .synchronize()
                    .context("waiting for a copy from the GPU")?;
                Ok(values)
            }
            Buffer::Host(v) if v.is_empty() => Ok(Vec::new()),
            _ => bail!("a host buffer was passed to the CUDA device"),
        }
    }
}

/// The device memory of a buffer; host buffers are refused.
fn slice<T>(buffer: &Buffer<T>) -> Result<&cudarc::driver::CudaSlice<T>> {
    match buffer {
        Buffer::Cuda(s) => Ok(s),
        _ => bail!("a host buffer was passed to a CUDA kernel"),
    }
}

fn slice_mut<T>(buffer: &mut Buffer<T>) -> Result<&mut cudarc::driver::CudaSlice<T>> {
    match buffer {
        Buffer::Cuda(s) => Ok(s),
        _ => bail!("a host buffer was passed to a CUDA kernel"),
    }
}

impl Driver for CudaDriver {
    fn name(&self) -> String {
        match &self.kernels_directory {
            Some(dir) => format!(
                "cuda:{} ({}; kernels from {})",
                self.ordinal,
                self.gpu_name,
                dir.display()
            ),
            None => format!("cuda:{} ({})", self.ordinal, self.gpu_name),
        }
    }

    fn is_gpu(&self) -> bool {
        true
    }

    fn alloc_f32(&self, len: usize) -> Result<Buffer<f32>> {
        self.alloc(len)
    }

    fn alloc_u32(&self, len: usize) -> Result<Buffer<u32>> {
        self.alloc(len)
    }

    fn alloc_u8(&self, len: usize) -> Result<Buffer<u8>> {
        self.alloc(len)
    }

    fn fill_zeros_f32(&self, buffer: &mut Buffer<f32>) -> Result<()> {
        self.fill_zeros(buffer)
    }

    fn fill_zeros_u32(&self, buffer: &mut Buffer<u32>) -> Result<()> {
        self.fill_zeros(buffer)
    }

    fn write_f32(&self, buffer: &mut Buffer<f32>, data: &[f32]) -> Result<()> {
        self.write(buffer, data)
    }

    fn write_u32(&self, buffer: &mut Buffer<u32>, data: &[u32]) -> Result<()> {
        self.write(buffer, data)
    }

    fn write_u8(&self, buffer: &mut Buffer<u8>, data: &[u8]) -> Result<()> {
        self.write(buffer, data)
    }

    fn download_f32(&self, buffer: &Buffer<f32>) -> Result<Vec<f32>> {
        self.download(buffer)
    }

    fn download_u32(&self, buffer: &Buffer<u32>) -> Result<Vec<u32>> {
        self.download(buffer)
    }

    fn launch(&self, kernel: &str, launch: Launch, args: &mut [Arg]) -> Result<()> {
        let function = self.function(kernel)?;
        // Each `*Table` argument as an array of device pointers in device memory, built
        // the first time these pointers come together and kept (Adam's tables are the
        // same every step, so a steady-state step uploads none).
        let mut tables = self.tables.lock().expect("pointer table lock");
        let mut keys = Vec::new();
        for arg in args.iter_mut() {
            let pointers: Vec<u64> = match arg {
                Arg::F32Table(buffers) => buffers
                    .iter()
                    .map(|b| Ok(slice(b)?.device_ptr(&self.stream).0))
                    .collect::<Result<_>>()?,
                Arg::OutF32Table(buffers) => buffers
                    .iter_mut()
                    .map(|b| Ok(slice_mut(b)?.device_ptr_mut(&self.stream).0))
                    .collect::<Result<_>>()?,
                _ => continue,
            };
            ensure!(
                !pointers.is_empty(),
                "an empty table of buffers for {kernel}"
            );
            let capturing = self.capturing.load(Ordering::Relaxed);
            if !tables.contains_key(&pointers) {
                ensure!(
                    !capturing,
                    "{kernel}: a new table of buffers inside a recorded step (its upload \
                     cannot be captured; a warm-up run of the step builds it)"
                );
                if tables.len() >= TABLES_KEPT {
                    tables.clear();
                }
                let table = Arc::new(self.stream.clone_htod(&pointers)?);
                tables.insert(pointers.clone(), table);
            }
            if capturing {
                self.captured_tables
                    .lock()
                    .expect("captured tables lock")
                    .push(tables[&pointers].clone());
            }
            keys.push(pointers);
        }
        // The views `U32sAt` arguments pass, made before the builder borrows them.
        let views = args
            .iter()
            .filter_map(|arg| match arg {
                Arg::U32sAt(b, at, len) => Some(slice(b).and_then(|s| {
                    ensure!(
                        *at + *len <= s.len(),
                        "{kernel}: words {at}..{} of a buffer of {}",
                        *at + *len,
                        s.len()
                    );
                    Ok(s.slice(*at..*at + *len))
                })),
                _ => None,
            })
            .collect::<Result<Vec<_>>>()?;
        let mut views = views.iter();
        let mut keys = keys.iter();
        let mut builder = self.stream.launch_builder(&function);
        for arg in args.iter_mut() {
            match arg {
                Arg::F32Table(_) | Arg::OutF32Table(_) => {
                    let key = keys.next().expect("one table per table argument");
                    builder.arg(&*tables[key])
                }
                Arg::U32sAt(..) => builder.arg(views.next().expect("one view per argument")),
                Arg::F32(b) => builder.arg(slice(b)?),
                Arg::OutF32(b) => builder.arg(slice_mut(b)?),
                Arg::U32s(b) => builder.arg(slice(b)?),
                Arg::OutU32s(b) => builder.arg(slice_mut(b)?),
                Arg::U8s(b) => builder.arg(slice(b)?),
                Arg::I32(v) => builder.arg(&*v),
                Arg::Float(v) => builder.arg(&*v),
                Arg::U64(v) => builder.arg(&*v),
            };
        }
        let config = LaunchConfig {
            grid_dim: (launch.grid[0], launch.grid[1], launch.grid[2]),
            block_dim: (launch.block[0], launch.block[1], launch.block[2]),
            shared_mem_bytes: 0,
        };
        // SAFETY: the argument list matches the kernel's parameters: each op's launch
        // code in device/gpu/ builds it from the kernel's signature, and the emulator
        // tests run the same lists against the same kernels.
        unsafe { builder.launch(config) }.with_context(|| format!("launching {kernel}"))?;
        // A captured launch does not run (and a captured stream cannot be waited for).
        let capturing = self.capturing.load(Ordering::Relaxed);
        if capturing {
            self.captured_kernels.fetch_add(1, Ordering::Relaxed);
        }
        if (self.sync_each_launch || cfg!(debug_assertions)) && !capturing {
            self.deferred_errors(&format!("before or while running {kernel}"))?;
            self.stream.synchronize().with_context(|| {
                format!(
                    "running {kernel} (grid {:?}, block {:?})",
                    launch.grid, launch.block
                )
            })?;
        }
        Ok(())
    }

    fn synchronize(&self) -> Result<()> {
        self.deferred_errors("since the last wait")?;
        self.stream
            .synchronize()
            .context("waiting for the GPU's queued kernels (GOOGLENET_CUDA_SYNC=1 names the kernel that failed)")
    }

    fn cuda_stream(&self) -> Option<Arc<CudaStream>> {
        Some(self.stream.clone())
    }

    fn can_record(&self) -> bool {
        true
    }

    fn begin_recording(&self) -> Result<()> {
        ensure!(
            !self.capturing.load(Ordering::Relaxed),
            "the stream is being captured already"
        );
        // Thread-local: another thread's unrelated CUDA calls (another test's device)
        // do not break this capture.
        self.stream
            .begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
            .with_context(|| format!("cannot start capturing a CUDA graph on {}", self.gpu_name))?;
        self.capturing.store(true, Ordering::Relaxed);
        Ok(())
    }

    fn end_recording(&self) -> Result<Recording> {
        ensure!(
            self.capturing.swap(false, Ordering::Relaxed),
            "end_recording without begin_recording"
        );
        let tables =
            std::mem::take(&mut *self.captured_tables.lock().expect("captured tables lock"));
        let graph = self
            .stream
            .end_capture(sys::CUgraphInstantiate_flags(0))
            .with_context(|| {
                format!(
                    "cannot capture or instantiate the step's CUDA graph on {}",
                    self.gpu_name
                )
            })?;
        let Some(graph) = graph else {
            bail!("the captured step is an empty CUDA graph");
        };
        Ok(Box::new(Captured {
            graph,
            _tables: tables,
            kernels: self.captured_kernels.swap(0, Ordering::Relaxed),
        }))
    }

    fn replay(&self, recording: &Recording) -> Result<u64> {
        let Some(captured) = recording.downcast_ref::<Captured>() else {
            bail!(
                "a recording of another driver was replayed on {}",
                self.gpu_name
            );
        };
        captured
            .graph
            .launch()
            .with_context(|| format!("launching the step's CUDA graph on {}", self.gpu_name))?;
        if self.sync_each_launch || cfg!(debug_assertions) {
            self.synchronize()
                .context("running the step's CUDA graph")?;
        }
        Ok(captured.kernels)
    }

    fn memory_free(&self) -> Option<Result<u64>> {
        let info = self.stream.context().mem_get_info();
        Some(
            info.map(|(free, _total)| free as u64)
                .with_context(|| format!("cannot read {}'s free memory", self.gpu_name)),
        )
    }
}

/// A captured step: its CUDA graph and the pointer tables its launches read.
struct Captured {
    graph: CudaGraph,
    _tables: Vec<Arc<CudaSlice<u64>>>,
    /// The kernels captured, as counted by the launches.
    kernels: u64,
}

// SAFETY: the graph is only launched on the device's stream, from the one thread at a
// time that holds the backend's graph table lock; cudarc's stream and slices are
// Send and Sync themselves.
unsafe impl Send for Captured {}
unsafe impl Sync for Captured {}

/// Raises the release threshold of the device's memory pool (its default one: nothing
/// sets another), from which cudarc allocates (stream-ordered, `cuMemAllocAsync`) when
/// the driver supports it, to keep everything: by default the pool hands freed memory
/// back to the driver at every synchronisation, and the next step's allocations have to
/// map it in again.
fn keep_freed_memory(ctx: &Arc<CudaContext>) -> Result<()> {
    if !ctx.has_async_alloc() {
        return Ok(());
    }
    let mut threshold = u64::MAX;
    // SAFETY: the device comes from a live context; the attribute takes a u64 (cuuint64_t).
    unsafe {
        let pool = result::device::get_mem_pool(ctx.cu_device())?;
        result::mem_pool::set_attribute(
            pool,
            sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
            (&mut threshold as *mut u64).cast(),
        )
    }
    .context("cannot raise the GPU memory pool's release threshold")
}

impl Drop for CudaDriver {
    /// Reports what would otherwise be lost at exit: a fault of the last kernels, or
    /// an error cudarc recorded while freeing.
    fn drop(&mut self) {
        if let Err(err) = self.synchronize() {
            eprintln!("error: the GPU failed after the last wait: {err:#}");
        }
    }
}
