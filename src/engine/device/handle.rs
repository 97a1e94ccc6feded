//! `Device`: the cheap, cloneable handle a tensor carries, and how a `--device` value
//! picks one.

use std::fmt;
use std::sync::Arc;

use anyhow::{bail, Result};

use super::backend::Backend;
use super::cpu::{self, CpuBackend, CpuGemm};
use super::cuda::{self, CudaDriver};
use super::emu::EmuDriver;
use super::gpu::{Counters, GpuBackend};
use super::kernels;
use super::precision::Precision;

/// A device handle; cloning it shares the device.
#[derive(Clone)]
pub struct Device(Arc<dyn Backend>);

impl Device {
    pub fn cpu() -> Device {
        cpu::keep_freed_memory();
        Device(Arc::new(CpuBackend))
    }

    /// The CUDA kernels run on the CPU by the emulator (kernels/emu/): slow, for tests.
    /// At the GPU's default precision (TF32), as the GPU it imitates.
    pub fn emu() -> Device {
        Device::emu_at(Precision::GPU_DEFAULT)
    }

    pub fn emu_at(precision: Precision) -> Device {
        Device(Arc::new(GpuBackend::new(
            EmuDriver::new().with_recording(),
            precision,
        )))
    }

    /// GPU `ordinal` at the default precision (TF32); an error (never a panic) without
    /// a driver, a GPU or kernels.
    pub fn cuda(ordinal: usize) -> Result<Device> {
        Device::cuda_at(ordinal, Precision::GPU_DEFAULT)
    }

    pub fn cuda_at(ordinal: usize, precision: Precision) -> Result<Device> {
        Ok(Device(Arc::new(GpuBackend::new(
            CudaDriver::new(ordinal)?,
            precision,
        ))))
    }

    /// A `--device` value (see `parse`) at `--precision` `precision`, or at the
    /// device's default (tf32 on cuda and emu, f32 on the CPU) when none is given.
    /// The CPU with tf32 or bf16 is an error naming the flag.
    pub fn parse_at(name: &str, precision: Option<Precision>) -> Result<Device> {
        let device = Device::parse(name)?;
        if let Some(precision) = precision {
            device.set_precision(precision)?;
        }
        Ok(device)
    }

    /// The arithmetic of the conv and linear GEMMs (`--precision`).
    pub fn precision(&self) -> Precision {
        self.0.precision()
    }

    /// Chooses it for every op launched from now on (on every handle of this device);
    /// an error naming `--precision` on the CPU for anything but f32.
    pub fn set_precision(&self, precision: Precision) -> Result<()> {
        self.0.set_precision(precision)
    }

    /// Parses a `--device` value: auto (the first GPU when there is a working one,
    /// else the CPU), cpu, emu, cuda, cuda:N.
    pub fn parse(name: &str) -> Result<Device> {
        // The CPU's matrix multiply is picked once, from the environment: a bad value is
        // refused here, before anything runs.
        CpuGemm::from_environment()?;
        match name {
            "cpu" => Ok(Device::cpu()),
            "emu" => Ok(Device::emu()),
            "cuda" => Device::cuda(0),
            "auto" if cuda::device_count() == 0 => Ok(Device::cpu()),
            "auto" => Device::cuda(0).or_else(|err| {
                // Said first and loudly: the run that follows is the CPU's, hours long
                // where the GPU's would take minutes.
                let rule = "=".repeat(78);
                eprintln!(
                    "{rule}\nWARNING: this machine has a GPU, but it cannot be used, so this run is on the CPU.\n\
                     why: {err:#}\n\
                     fix: {}\n{rule}",
                    unusable_gpu_fix()
                );
                Ok(Device::cpu())
            }),
            other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(ordinal)) => Device::cuda(ordinal),
                _ => {
                    bail!("--device {other:?} is unknown: expected auto, cpu, emu, cuda or cuda:N")
                }
            },
        }
    }

    pub fn name(&self) -> String {
        self.0.name()
    }

    pub fn is_gpu(&self) -> bool {
        self.0.is_gpu()
    }

    /// Waits until every op queued on this device so far has finished: on a GPU, ops
    /// return once launched, so host timers must synchronize first. A no-op on the CPU
    /// and the emulator, whose ops have finished when they return.
    pub fn synchronize(&self) -> Result<()> {
        self.0.synchronize()
    }

    /// The stream a cuda device runs every op on (`None` on the CPU and the emulator),
    /// so that benchmarks can time ops with CUDA events recorded on it and run other
    /// libraries' kernels (cuDNN) in the same order on the same GPU.
    pub fn cuda_stream(&self) -> Option<Arc<cudarc::driver::CudaStream>> {
        self.0.cuda_stream()
    }

    /// On a GPU device (cuda or emu), what it did since the last call: kernel launches,
    /// allocations, memsets, copies, host waits and peak memory. `None` on the CPU.
    pub fn take_counters(&self) -> Option<Counters> {
        self.0.take_counters()
    }

    /// Free bytes of a GPU's own memory (cuMemGetInfo); `None` on the CPU and the
    /// emulator, whose tensors live in host memory.
    pub fn memory_free(&self) -> Option<Result<u64>> {
        self.0.memory_free()
    }

    pub(crate) fn backend(&self) -> &dyn Backend {
        self.0.as_ref()
    }
}

/// What to do about a GPU that `Device::cuda` refused.
fn unusable_gpu_fix() -> &'static str {
    if kernels::MODULES.is_empty() {
        "run scripts/install-nvcc.sh, then rebuild (cargo build --release); `train --version` \
         then names the GPU code it holds"
    } else {
        "check the driver (nvidia-smi); pass --device cuda to see the error alone, or \
         --device cpu to choose the CPU and silence this"
    }
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Device({})", self.name())
    }
}
