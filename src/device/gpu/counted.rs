//! A driver that counts the kernel launches it passes on. At small batches a GPU step
//! costs what the host spends queueing kernels, so the count per step is the figure
//! to keep small (tests/launches.rs holds it to a budget).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Result;

use super::{Arg, Driver, Launch};
use crate::device::Buffer;

pub struct Counted<D> {
    inner: D,
    launches: AtomicU64,
}

impl<D> Counted<D> {
    pub fn new(inner: D) -> Self {
        Counted {
            inner,
            launches: AtomicU64::new(0),
        }
    }

    /// Kernel launches so far.
    pub fn launches(&self) -> u64 {
        self.launches.load(Ordering::Relaxed)
    }
}

impl<D: Driver> Driver for Counted<D> {
    fn name(&self) -> String {
        self.inner.name()
    }

    fn is_gpu(&self) -> bool {
        self.inner.is_gpu()
    }

    fn zeros_f32(&self, len: usize) -> Result<Buffer<f32>> {
        self.inner.zeros_f32(len)
    }

    fn zeros_u32(&self, len: usize) -> Result<Buffer<u32>> {
        self.inner.zeros_u32(len)
    }

    fn upload_f32(&self, data: Vec<f32>) -> Result<Buffer<f32>> {
        self.inner.upload_f32(data)
    }

    fn upload_u32(&self, data: Vec<u32>) -> Result<Buffer<u32>> {
        self.inner.upload_u32(data)
    }

    fn upload_u8(&self, data: Vec<u8>) -> Result<Buffer<u8>> {
        self.inner.upload_u8(data)
    }

    fn download_f32(&self, buffer: &Buffer<f32>) -> Result<Vec<f32>> {
        self.inner.download_f32(buffer)
    }

    fn download_u32(&self, buffer: &Buffer<u32>) -> Result<Vec<u32>> {
        self.inner.download_u32(buffer)
    }

    fn launch(&self, kernel: &str, launch: Launch, args: &mut [Arg]) -> Result<()> {
        self.launches.fetch_add(1, Ordering::Relaxed);
        self.inner.launch(kernel, launch, args)
    }

    fn synchronize(&self) -> Result<()> {
        self.inner.synchronize()
    }

    fn cuda_stream(&self) -> Option<Arc<cudarc::driver::CudaStream>> {
        self.inner.cuda_stream()
    }
}
