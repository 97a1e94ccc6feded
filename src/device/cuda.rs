//! The CUDA device's driver: cudarc over the real GPU, running the PTX that build.rs
//! compiled from kernels/*.cu and embedded in this binary.
//!
//! cudarc loads libcuda at run time and panics when it is missing, so `CudaDriver::new`
//! checks for the library first: on a machine without a GPU driver it is an error.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::{bail, ensure, Context, Result};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaStream, DevicePtr, DevicePtrMut, DeviceRepr,
    LaunchConfig, PushKernelArg, ValidAsZeroBits,
};
use cudarc::nvrtc::Ptx;

use super::gpu::{Arg, Driver, Launch};
use super::Buffer;

/// PTX of every kernels/*.cu: (file stem, PTX for sm_90, PTX for compute_80 to JIT on
/// older GPUs). Empty when nvcc was not found at build time.
mod embedded {
    include!(concat!(env!("OUT_DIR"), "/kernels_ptx.rs"));
}

pub struct CudaDriver {
    ordinal: usize,
    stream: Arc<CudaStream>,
    modules: Vec<Arc<CudaModule>>,
    functions: Mutex<HashMap<String, CudaFunction>>,
    gpu_name: String,
}

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
        ensure!(
            !embedded::MODULES.is_empty(),
            "this build has no GPU kernels: nvcc was not found when it was compiled. \
             Run scripts/install-nvcc.sh (or set NVCC) and rebuild"
        );
        let count = device_count();
        ensure!(
            ordinal < count,
            "--device cuda:{ordinal}: this machine has {count} GPU(s)"
        );
        let ctx =
            CudaContext::new(ordinal).with_context(|| format!("cannot open GPU {ordinal}"))?;
        // SAFETY: everything (cuDNN in the benchmark too) runs on the one default
        // stream, so cudarc's cross-stream tracking, two events per allocation, is
        // not needed.
        unsafe { ctx.disable_event_tracking() };
        let (major, minor) = ctx
            .compute_capability()
            .context("cannot read the GPU's compute capability")?;
        let gpu_name = ctx.name().unwrap_or_else(|_| "unknown GPU".to_string());
        let modules = embedded::MODULES
            .iter()
            .map(|(stem, sm90, compute80)| {
                let ptx = if major >= 9 { sm90 } else { compute80 };
                ctx.load_module(Ptx::from_src(*ptx)).with_context(|| {
                    format!("cannot load kernels/{stem}.cu's PTX on {gpu_name} (sm_{major}{minor})")
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(CudaDriver {
            ordinal,
            stream: ctx.default_stream(),
            modules,
            functions: Mutex::new(HashMap::new()),
            gpu_name,
        })
    }

    fn function(&self, kernel: &str) -> Result<CudaFunction> {
        let mut functions = self.functions.lock().expect("kernel cache lock");
        if let Some(f) = functions.get(kernel) {
            return Ok(f.clone());
        }
        let found = self
            .modules
            .iter()
            .find_map(|m| m.load_function(kernel).ok());
        let Some(f) = found else {
            bail!("no kernel named {kernel} in the embedded PTX")
        };
        functions.insert(kernel.to_string(), f.clone());
        Ok(f)
    }

    fn zeros<T: DeviceRepr + ValidAsZeroBits>(&self, len: usize) -> Result<Buffer<T>> {
        if len == 0 {
            // The driver refuses empty allocations; nothing reads an empty buffer.
            return Ok(Buffer::Host(Vec::new()));
        }
        Ok(Buffer::Cuda(self.stream.alloc_zeros::<T>(len)?))
    }

    fn upload<T: DeviceRepr>(&self, data: Vec<T>) -> Result<Buffer<T>> {
        if data.is_empty() {
            return Ok(Buffer::Host(data));
        }
        Ok(Buffer::Cuda(self.stream.clone_htod(&data)?))
    }
}

impl CudaDriver {
    fn download<T: DeviceRepr + Clone>(&self, buffer: &Buffer<T>) -> Result<Vec<T>> {
        match buffer {
            Buffer::Cuda(s) => Ok(self.stream.clone_dtoh(s)?),
            Buffer::Host(v) if v.is_empty() => Ok(Vec::new()),
            Buffer::Host(_) => bail!("a host buffer was passed to the CUDA device"),
        }
    }
}

/// The device memory of a buffer; host buffers are refused.
fn slice<T>(buffer: &Buffer<T>) -> Result<&cudarc::driver::CudaSlice<T>> {
    match buffer {
        Buffer::Cuda(s) => Ok(s),
        Buffer::Host(_) => bail!("a host buffer was passed to a CUDA kernel"),
    }
}

fn slice_mut<T>(buffer: &mut Buffer<T>) -> Result<&mut cudarc::driver::CudaSlice<T>> {
    match buffer {
        Buffer::Cuda(s) => Ok(s),
        Buffer::Host(_) => bail!("a host buffer was passed to a CUDA kernel"),
    }
}

impl Driver for CudaDriver {
    fn name(&self) -> String {
        format!("cuda:{} ({})", self.ordinal, self.gpu_name)
    }

    fn is_gpu(&self) -> bool {
        true
    }

    fn zeros_f32(&self, len: usize) -> Result<Buffer<f32>> {
        self.zeros(len)
    }

    fn zeros_u32(&self, len: usize) -> Result<Buffer<u32>> {
        self.zeros(len)
    }

    fn upload_f32(&self, data: Vec<f32>) -> Result<Buffer<f32>> {
        self.upload(data)
    }

    fn upload_u32(&self, data: Vec<u32>) -> Result<Buffer<u32>> {
        self.upload(data)
    }

    fn upload_u8(&self, data: Vec<u8>) -> Result<Buffer<u8>> {
        self.upload(data)
    }

    fn download_f32(&self, buffer: &Buffer<f32>) -> Result<Vec<f32>> {
        self.download(buffer)
    }

    fn download_u32(&self, buffer: &Buffer<u32>) -> Result<Vec<u32>> {
        self.download(buffer)
    }

    fn launch(&self, kernel: &str, launch: Launch, args: &mut [Arg]) -> Result<()> {
        let function = self.function(kernel)?;
        // Each `*Table` argument as an array of device pointers in device memory. They
        // are freed (stream-ordered) after the launch is enqueued, on the same stream.
        let mut tables = Vec::new();
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
            tables.push(self.stream.clone_htod(&pointers)?);
        }
        let mut tables = tables.iter();
        let mut builder = self.stream.launch_builder(&function);
        for arg in args.iter_mut() {
            match arg {
                Arg::F32Table(_) | Arg::OutF32Table(_) => {
                    builder.arg(tables.next().expect("one table per table argument"))
                }
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
        if cfg!(debug_assertions) {
            self.stream
                .synchronize()
                .with_context(|| format!("running {kernel}"))?;
        }
        Ok(())
    }

    fn synchronize(&self) -> Result<()> {
        self.stream
            .synchronize()
            .context("waiting for the GPU's queued kernels")
    }

    fn cuda_stream(&self) -> Option<Arc<CudaStream>> {
        Some(self.stream.clone())
    }

    fn memory_free(&self) -> Option<Result<u64>> {
        let info = self.stream.context().mem_get_info();
        Some(
            info.map(|(free, _total)| free as u64)
                .with_context(|| format!("cannot read {}'s free memory", self.gpu_name)),
        )
    }
}
