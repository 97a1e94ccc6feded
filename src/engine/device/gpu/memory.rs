//! The GPU device's caching allocator: device memory is allocated once and then lent
//! out again and again, so a steady-state training step allocates nothing.
//!
//! Blocks are kept by exact length (a step asks for the same lengths every time). A
//! request takes the free block of that length with the lowest id, the order blocks
//! were first allocated in; so whenever the same requests come in the same order from
//! the same set of free blocks (every step after the first, whatever order the
//! previous step freed them in), they get the same blocks, at the same addresses.
//! That is what a captured CUDA graph needs, and it makes runs reproducible to the
//! address. Nothing is given back to the driver while the device lives, unless an
//! allocation fails: then the free blocks go back and the allocation is tried again.
//!
//! A block dropped while a kernel queued on the GPU still uses it can be lent again at
//! once: everything runs on one stream, so its next user's kernels run after that one.

use std::collections::HashMap;
use std::mem::size_of;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Result;

use crate::engine::device::buffer::{Buffer, Lender, Pooled};

/// The allocator's side of the device's counters (see runtime.rs), shared by the pools
/// of every element type.
#[derive(Default)]
pub struct MemoryStats {
    /// Blocks allocated from the driver (pool misses).
    pub allocations: AtomicU64,
    /// Bytes lent out right now, and the most lent out at once since the last reset.
    pub bytes_in_use: AtomicU64,
    pub peak_bytes: AtomicU64,
    /// Bytes held by the pool, lent or free.
    pub bytes_reserved: AtomicU64,
    /// A running hash of the ids of the blocks lent out, in order: two stretches of
    /// work with the same hash got the same blocks (the same addresses) in the same order.
    pub lent_hash: AtomicU64,
}

impl MemoryStats {
    fn lend(&self, id: u64, bytes: u64) {
        let now = self.bytes_in_use.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.peak_bytes.fetch_max(now, Ordering::Relaxed);
        // FNV-1a style mixing: order-sensitive, cheap.
        let _ = self
            .lent_hash
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |h| {
                Some((h ^ id).wrapping_mul(0x0000_0100_0000_01B3))
            });
    }
}

/// Free blocks by length, each list sorted by descending id (the lowest pops first).
type FreeLists<T> = HashMap<usize, Vec<(u64, Buffer<T>)>>;

/// The free blocks of one element type.
pub struct Pool<T> {
    free: Mutex<FreeLists<T>>,
    next_id: AtomicU64,
    stats: Arc<MemoryStats>,
    /// While a step is recorded: the ids of the blocks lent meanwhile (`track`).
    tracked: Mutex<Option<Vec<u64>>>,
}

impl<T: Send + 'static> Pool<T> {
    pub fn new(stats: Arc<MemoryStats>) -> Arc<Pool<T>> {
        Arc::new(Pool {
            free: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            stats,
            tracked: Mutex::new(None),
        })
    }

    /// A block of `len` elements with unspecified contents: a free one when there is
    /// one (passed to `recycle` first), else a fresh one from `allocate` (counted).
    /// Empty buffers are not pooled: they hold no device memory.
    pub fn take(
        self: &Arc<Self>,
        len: usize,
        allocate: impl Fn(usize) -> Result<Buffer<T>>,
        recycle: impl Fn(&mut Buffer<T>) -> Result<()>,
    ) -> Result<Buffer<T>> {
        if len == 0 {
            return allocate(0);
        }
        let bytes = (len * size_of::<T>()) as u64;
        let reused = self
            .free
            .lock()
            .expect("pool lock")
            .get_mut(&len)
            .and_then(Vec::pop);
        let (id, raw) = match reused {
            Some((id, mut raw)) => {
                recycle(&mut raw)?;
                (id, raw)
            }
            None => {
                let raw = match allocate(len) {
                    Ok(raw) => raw,
                    // Out of memory, perhaps only because free blocks of other lengths
                    // hold it: give those back to the driver and try once more.
                    Err(_) => {
                        self.release_free();
                        allocate(len)?
                    }
                };
                self.stats.allocations.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .bytes_reserved
                    .fetch_add(bytes, Ordering::Relaxed);
                (self.next_id.fetch_add(1, Ordering::Relaxed), raw)
            }
        };
        self.stats.lend(id, bytes);
        if let Some(tracked) = self.tracked.lock().expect("pool lock").as_mut() {
            tracked.push(id);
        }
        Ok(Buffer::Pooled(Pooled::new(raw, id, self.clone())))
    }

    /// Starts noting the blocks lent (for a recorded step, see `hold`).
    pub fn track(&self) {
        *self.tracked.lock().expect("pool lock") = Some(Vec::new());
    }

    /// Stops noting, and takes every block lent since `track` out of the pool for the
    /// caller to hold: a recorded step's launches use them at every replay, so no one
    /// else may be lent them while it lives. They come back when the holder drops
    /// them. Each must have been given back by now (a buffer that outlived the
    /// recorded step would be written by every replay under its new owner).
    pub fn hold(self: &Arc<Self>) -> Result<Vec<Buffer<T>>> {
        let mut ids = self
            .tracked
            .lock()
            .expect("pool lock")
            .take()
            .unwrap_or_default();
        ids.sort_unstable();
        ids.dedup();
        let mut free = self.free.lock().expect("pool lock");
        let mut held = Vec::with_capacity(ids.len());
        let mut live = 0;
        for id in ids {
            let found = free.values_mut().find_map(|list| {
                let at = list.iter().position(|(other, _)| *other == id)?;
                Some(list.remove(at))
            });
            let Some((id, raw)) = found else {
                live += 1;
                continue;
            };
            let bytes = (raw.len() * size_of::<T>()) as u64;
            self.stats.bytes_in_use.fetch_add(bytes, Ordering::Relaxed);
            held.push(Buffer::Pooled(Pooled::new(raw, id, self.clone())));
        }
        anyhow::ensure!(
            live == 0,
            "{live} buffer(s) made inside a recorded step outlive it: the replays would \
             write them under their next owner"
        );
        Ok(held)
    }

    /// Returns every free block to the driver.
    fn release_free(&self) {
        let released: Vec<Buffer<T>> = {
            let mut free = self.free.lock().expect("pool lock");
            free.drain()
                .flat_map(|(_, list)| list)
                .map(|(_, raw)| raw)
                .collect()
        };
        let bytes: usize = released.iter().map(|raw| raw.len() * size_of::<T>()).sum();
        self.stats
            .bytes_reserved
            .fetch_sub(bytes as u64, Ordering::Relaxed);
    }
}

impl<T: Send + 'static> Lender<T> for Pool<T> {
    fn give_back(&self, id: u64, raw: Buffer<T>) {
        let bytes = (raw.len() * size_of::<T>()) as u64;
        self.stats.bytes_in_use.fetch_sub(bytes, Ordering::Relaxed);
        let mut free = self.free.lock().expect("pool lock");
        let list = free.entry(raw.len()).or_default();
        let at = list.partition_point(|(other, _)| *other > id);
        list.insert(at, (id, raw));
    }
}
