//! `Runtime`: the driver as the op code sees it. It lends memory from the caching
//! allocator (memory.rs) and counts, for the cuda and emu devices alike, what a step
//! costs the host: kernel launches, device allocations, memsets, copies each way, and
//! host waits (synchronisations and blocking reads). Every op goes through here, so
//! the counts are the whole truth about the shared GPU layer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Result;

use super::memory::{raw, raw_mut, MemoryStats, Pool};
use super::{Arg, Driver, Launch};
use crate::device::Buffer;

/// What the device did since the counters were last taken (`Runtime::take_counters`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub launches: u64,
    /// Device allocations: the caching allocator's misses.
    pub allocations: u64,
    pub memsets: u64,
    pub copies_to_device: u64,
    pub copies_to_host: u64,
    /// Synchronisations and blocking reads: each drains the GPU's queue.
    pub host_waits: u64,
    /// The most device memory lent out at once.
    pub peak_bytes: u64,
    /// Device memory the allocator holds (lent or free) now.
    pub reserved_bytes: u64,
    /// A hash of the blocks lent out, in order (see `MemoryStats::lent_hash`).
    pub lent_hash: u64,
}

/// Small constant tables (an op's per-launch metadata) kept on the device after their
/// first upload, by content; more than this many distinct ones and the cache starts over.
const CONSTANTS_KEPT: usize = 64;

pub struct Runtime<D: Driver> {
    raw: D,
    launches: AtomicU64,
    memsets: AtomicU64,
    copies_to_device: AtomicU64,
    copies_to_host: AtomicU64,
    host_waits: AtomicU64,
    memory: Arc<MemoryStats>,
    f32s: Arc<Pool<f32>>,
    u32s: Arc<Pool<u32>>,
    u8s: Arc<Pool<u8>>,
    constants: Mutex<HashMap<Vec<u32>, Arc<Buffer<u32>>>>,
}

impl<D: Driver> Runtime<D> {
    pub fn new(raw: D) -> Runtime<D> {
        let memory = Arc::new(MemoryStats::default());
        Runtime {
            raw,
            launches: AtomicU64::new(0),
            memsets: AtomicU64::new(0),
            copies_to_device: AtomicU64::new(0),
            copies_to_host: AtomicU64::new(0),
            host_waits: AtomicU64::new(0),
            f32s: Pool::new(memory.clone()),
            u32s: Pool::new(memory.clone()),
            u8s: Pool::new(memory.clone()),
            memory,
            constants: Mutex::new(HashMap::new()),
        }
    }

    /// The counts since the last call (or since the device was made), and starts
    /// counting afresh; the peak restarts from what is lent out now.
    pub fn take_counters(&self) -> Counters {
        let take = |counter: &AtomicU64| counter.swap(0, Ordering::Relaxed);
        let m = &self.memory;
        let in_use = m.bytes_in_use.load(Ordering::Relaxed);
        Counters {
            launches: take(&self.launches),
            allocations: take(&m.allocations),
            memsets: take(&self.memsets),
            copies_to_device: take(&self.copies_to_device),
            copies_to_host: take(&self.copies_to_host),
            host_waits: take(&self.host_waits),
            peak_bytes: m.peak_bytes.swap(in_use, Ordering::Relaxed).max(in_use),
            reserved_bytes: m.bytes_reserved.load(Ordering::Relaxed),
            lent_hash: take(&m.lent_hash),
        }
    }

    /// `data` on the device, uploaded the first time it is asked for and shared after:
    /// for small tables that stay the same from step to step (Adam's).
    pub fn constant_u32(&self, data: &[u32]) -> Result<Arc<Buffer<u32>>> {
        let mut constants = self.constants.lock().expect("constants lock");
        if let Some(buffer) = constants.get(data) {
            return Ok(buffer.clone());
        }
        if constants.len() >= CONSTANTS_KEPT {
            constants.clear();
        }
        let buffer = Arc::new(self.upload_u32(data.to_vec())?);
        constants.insert(data.to_vec(), buffer.clone());
        Ok(buffer)
    }
}

fn count(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// `arg` with every pooled buffer replaced by the driver's buffer inside it.
fn unpooled<'b>(arg: &'b mut Arg<'_>) -> Arg<'b> {
    match arg {
        Arg::F32(b) => Arg::F32(raw(b)),
        Arg::OutF32(b) => Arg::OutF32(raw_mut(b)),
        Arg::F32Table(bs) => Arg::F32Table(bs.iter().map(|b| raw(b)).collect()),
        Arg::OutF32Table(bs) => Arg::OutF32Table(bs.iter_mut().map(|b| raw_mut(b)).collect()),
        Arg::U32s(b) => Arg::U32s(raw(b)),
        Arg::OutU32s(b) => Arg::OutU32s(raw_mut(b)),
        Arg::U8s(b) => Arg::U8s(raw(b)),
        Arg::I32(v) => Arg::I32(*v),
        Arg::Float(v) => Arg::Float(*v),
        Arg::U64(v) => Arg::U64(*v),
    }
}

impl<D: Driver> Driver for Runtime<D> {
    fn name(&self) -> String {
        self.raw.name()
    }

    fn is_gpu(&self) -> bool {
        self.raw.is_gpu()
    }

    /// The driver's own figure: memory the pool holds but has not lent out counts as
    /// used, which errs on the safe side for a check made before training.
    fn memory_free(&self) -> Option<Result<u64>> {
        self.raw.memory_free()
    }

    fn alloc_f32(&self, len: usize) -> Result<Buffer<f32>> {
        self.f32s.take(
            len,
            |len| self.raw.alloc_f32(len),
            |b| self.raw.recycle_f32(b),
        )
    }

    fn alloc_u32(&self, len: usize) -> Result<Buffer<u32>> {
        self.u32s.take(
            len,
            |len| self.raw.alloc_u32(len),
            |b| self.raw.recycle_u32(b),
        )
    }

    fn alloc_u8(&self, len: usize) -> Result<Buffer<u8>> {
        self.u8s.take(len, |len| self.raw.alloc_u8(len), |_| Ok(()))
    }

    fn fill_zeros_f32(&self, buffer: &mut Buffer<f32>) -> Result<()> {
        if buffer.is_empty() {
            return Ok(());
        }
        count(&self.memsets);
        self.raw.fill_zeros_f32(raw_mut(buffer))
    }

    fn fill_zeros_u32(&self, buffer: &mut Buffer<u32>) -> Result<()> {
        if buffer.is_empty() {
            return Ok(());
        }
        count(&self.memsets);
        self.raw.fill_zeros_u32(raw_mut(buffer))
    }

    fn write_f32(&self, buffer: &mut Buffer<f32>, data: &[f32]) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        count(&self.copies_to_device);
        self.raw.write_f32(raw_mut(buffer), data)
    }

    fn write_u32(&self, buffer: &mut Buffer<u32>, data: &[u32]) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        count(&self.copies_to_device);
        self.raw.write_u32(raw_mut(buffer), data)
    }

    fn write_u8(&self, buffer: &mut Buffer<u8>, data: &[u8]) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        count(&self.copies_to_device);
        self.raw.write_u8(raw_mut(buffer), data)
    }

    fn download_f32(&self, buffer: &Buffer<f32>) -> Result<Vec<f32>> {
        count(&self.copies_to_host);
        count(&self.host_waits);
        self.raw.download_f32(raw(buffer))
    }

    fn download_u32(&self, buffer: &Buffer<u32>) -> Result<Vec<u32>> {
        count(&self.copies_to_host);
        count(&self.host_waits);
        self.raw.download_u32(raw(buffer))
    }

    fn launch(&self, kernel: &str, launch: Launch, args: &mut [Arg]) -> Result<()> {
        count(&self.launches);
        let mut args: Vec<Arg> = args.iter_mut().map(unpooled).collect();
        self.raw.launch(kernel, launch, &mut args)
    }

    fn synchronize(&self) -> Result<()> {
        count(&self.host_waits);
        self.raw.synchronize()
    }

    fn cuda_stream(&self) -> Option<Arc<cudarc::driver::CudaStream>> {
        self.raw.cuda_stream()
    }
}
