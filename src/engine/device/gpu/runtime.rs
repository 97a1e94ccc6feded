//! `Runtime`: the driver as the op code sees it. It lends memory from the caching
//! allocator (memory.rs) and counts, for the cuda and emu devices alike, what a step
//! costs the host: kernel launches, device allocations, memsets, copies each way, and
//! host waits (synchronisations and blocking reads). Every op goes through here, so
//! the counts are the whole truth about the shared GPU layer.
//!
//! It also records steps for replay (`begin_recording`, `end_recording`, `replay`):
//! the driver records the launches (cuda's stream capture, the emulator's list), and
//! the runtime makes sure the recorded step does nothing a replay would not redo
//! (allocate, memset, copy, wait: each is an error while recording) and holds every
//! block the recorded launches use for as long as the recording lives.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Result;

use anyhow::bail;

use super::memory::{MemoryStats, Pool};
use super::{Arg, Driver, Launch, Recording};
use crate::engine::device::buffer::{raw, raw_mut};
use crate::engine::device::Buffer;

/// What the device did since the counters were last taken (`Runtime::take_counters`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Kernels the host launched one by one.
    pub launches: u64,
    /// Recorded steps replayed (each one call from the host), and the kernels the
    /// replays ran.
    pub graph_replays: u64,
    pub replayed_launches: u64,
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

/// A recorded step: the driver's recording and what it needs kept alive, the pooled
/// blocks and the constant tables its launches read and write.
pub struct Graph {
    recording: Recording,
    _f32s: Vec<Buffer<f32>>,
    _u32s: Vec<Buffer<u32>>,
    _u8s: Vec<Buffer<u8>>,
    _constants: Vec<Arc<Buffer<u32>>>,
}

pub struct Runtime<D: Driver> {
    raw: D,
    launches: AtomicU64,
    graph_replays: AtomicU64,
    replayed_launches: AtomicU64,
    /// While a step is recorded: the constant tables it has used.
    recording: Mutex<Option<Vec<Arc<Buffer<u32>>>>>,
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
            graph_replays: AtomicU64::new(0),
            replayed_launches: AtomicU64::new(0),
            recording: Mutex::new(None),
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
            graph_replays: take(&self.graph_replays),
            replayed_launches: take(&self.replayed_launches),
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
            if let Some(used) = self.recording.lock().expect("recording lock").as_mut() {
                used.push(buffer.clone());
            }
            return Ok(buffer.clone());
        }
        if constants.len() >= CONSTANTS_KEPT {
            constants.clear();
        }
        let buffer = Arc::new(self.upload_u32(data.to_vec())?);
        constants.insert(data.to_vec(), buffer.clone());
        Ok(buffer)
    }

    fn is_recording(&self) -> bool {
        self.recording.lock().expect("recording lock").is_some()
    }

    /// Fails while a step is recorded: `what` would not be redone by a replay.
    fn refuse_while_recording(&self, what: &str) -> Result<()> {
        if self.is_recording() {
            bail!(
                "{what} inside a recorded step: a replay would not redo it (a recording \
                 must follow a warm-up run of the same step, which allocates and uploads \
                 everything it needs)"
            );
        }
        Ok(())
    }

    /// Records the launches from now until `end_recording` instead of running them.
    pub fn begin_recording(&self) -> Result<()> {
        self.refuse_while_recording("a second recording")?;
        self.raw.begin_recording()?;
        *self.recording.lock().expect("recording lock") = Some(Vec::new());
        self.f32s.track();
        self.u32s.track();
        self.u8s.track();
        Ok(())
    }

    /// The recording, holding the blocks its launches use.
    pub fn end_recording(&self) -> Result<Graph> {
        let Some(constants) = self.recording.lock().expect("recording lock").take() else {
            bail!("end_recording without begin_recording");
        };
        // Both ended, whatever fails: the driver's capture and the pools' tracking.
        let recording = self.raw.end_recording();
        let (f32s, u32s, u8s) = (self.f32s.hold(), self.u32s.hold(), self.u8s.hold());
        Ok(Graph {
            recording: recording?,
            _f32s: f32s?,
            _u32s: u32s?,
            _u8s: u8s?,
            _constants: constants,
        })
    }

    /// Runs a recorded step again: one call, counted as a replay (the kernels it ran
    /// as `replayed_launches`, not as host launches).
    pub fn replay(&self, graph: &Graph) -> Result<()> {
        self.refuse_while_recording("a replay")?;
        count(&self.graph_replays);
        let kernels = self.raw.replay(&graph.recording)?;
        self.replayed_launches.fetch_add(kernels, Ordering::Relaxed);
        Ok(())
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
        Arg::U32sAt(b, at, len) => Arg::U32sAt(raw(b), *at, *len),
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
            |len| {
                self.refuse_while_recording("a device allocation")?;
                self.raw.alloc_f32(len)
            },
            |b| self.raw.recycle_f32(b),
        )
    }

    fn alloc_u32(&self, len: usize) -> Result<Buffer<u32>> {
        self.u32s.take(
            len,
            |len| {
                self.refuse_while_recording("a device allocation")?;
                self.raw.alloc_u32(len)
            },
            |b| self.raw.recycle_u32(b),
        )
    }

    fn alloc_u8(&self, len: usize) -> Result<Buffer<u8>> {
        self.u8s.take(
            len,
            |len| {
                self.refuse_while_recording("a device allocation")?;
                self.raw.alloc_u8(len)
            },
            |_| Ok(()),
        )
    }

    fn fill_zeros_f32(&self, buffer: &mut Buffer<f32>) -> Result<()> {
        if buffer.is_empty() {
            return Ok(());
        }
        self.refuse_while_recording("a memset")?;
        count(&self.memsets);
        self.raw.fill_zeros_f32(raw_mut(buffer))
    }

    fn fill_zeros_u32(&self, buffer: &mut Buffer<u32>) -> Result<()> {
        if buffer.is_empty() {
            return Ok(());
        }
        self.refuse_while_recording("a memset")?;
        count(&self.memsets);
        self.raw.fill_zeros_u32(raw_mut(buffer))
    }

    fn write_f32(&self, buffer: &mut Buffer<f32>, data: &[f32]) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        self.refuse_while_recording("a copy from the host")?;
        count(&self.copies_to_device);
        self.raw.write_f32(raw_mut(buffer), data)
    }

    fn write_u32(&self, buffer: &mut Buffer<u32>, data: &[u32]) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        self.refuse_while_recording("a copy from the host")?;
        count(&self.copies_to_device);
        self.raw.write_u32(raw_mut(buffer), data)
    }

    fn write_u8(&self, buffer: &mut Buffer<u8>, data: &[u8]) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        self.refuse_while_recording("a copy from the host")?;
        count(&self.copies_to_device);
        self.raw.write_u8(raw_mut(buffer), data)
    }

    fn download_f32(&self, buffer: &Buffer<f32>) -> Result<Vec<f32>> {
        self.refuse_while_recording("a read back to the host")?;
        count(&self.copies_to_host);
        count(&self.host_waits);
        self.raw.download_f32(raw(buffer))
    }

    fn download_u32(&self, buffer: &Buffer<u32>) -> Result<Vec<u32>> {
        self.refuse_while_recording("a read back to the host")?;
        count(&self.copies_to_host);
        count(&self.host_waits);
        self.raw.download_u32(raw(buffer))
    }

    /// A launch while recording is not counted: it does not run until a replay, which
    /// counts it as a replayed launch.
    fn launch(&self, kernel: &str, launch: Launch, args: &mut [Arg]) -> Result<()> {
        if !self.is_recording() {
            count(&self.launches);
        }
        let mut args: Vec<Arg> = args.iter_mut().map(unpooled).collect();
        self.raw.launch(kernel, launch, &mut args)
    }

    fn synchronize(&self) -> Result<()> {
        self.refuse_while_recording("a wait for the device")?;
        count(&self.host_waits);
        self.raw.synchronize()
    }

    fn cuda_stream(&self) -> Option<Arc<cudarc::driver::CudaStream>> {
        self.raw.cuda_stream()
    }

    fn can_record(&self) -> bool {
        self.raw.can_record()
    }
}
