//! Device memory: a device's buffers, and words of a buffer that kernels read per step.

use std::sync::Arc;

use anyhow::Result;

/// Memory owned by a device: plain vectors on the CPU (and the emulator, whose
/// "device memory" is host memory), device memory on a CUDA GPU. A GPU device lends
/// its buffers from a caching allocator (`Pooled`), which takes them back on drop.
pub enum Buffer<T> {
    Host(Vec<T>),
    Cuda(cudarc::driver::CudaSlice<T>),
    Pooled(Pooled<T>),
}

impl<T> Buffer<T> {
    pub fn len(&self) -> usize {
        match self {
            Buffer::Host(v) => v.len(),
            Buffer::Cuda(s) => s.len(),
            Buffer::Pooled(p) => p.raw().len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `len` words of a u32 buffer from word `at`: per-step values (the step parameters,
/// src/training/step/params.rs) that kernels read from device memory rather than from their
/// launch arguments, so that a recorded step replays with the next step's values.
#[derive(Clone, Copy)]
pub struct Words<'a> {
    pub buffer: &'a Buffer<u32>,
    pub at: usize,
    pub len: usize,
}

impl<'a> Words<'a> {
    /// All of `buffer`.
    pub fn whole(buffer: &'a Buffer<u32>) -> Words<'a> {
        Words {
            buffer,
            at: 0,
            len: buffer.len(),
        }
    }

    /// Fails unless the words lie inside the buffer.
    pub fn check(&self, what: &str) -> Result<()> {
        anyhow::ensure!(
            self.at
                .checked_add(self.len)
                .is_some_and(|end| end <= self.buffer.len()),
            "{what}: words {}..{} of a buffer of {}",
            self.at,
            self.at.saturating_add(self.len),
            self.buffer.len()
        );
        Ok(())
    }
}

/// A block lent by a `Pool`: the driver's own buffer inside, returned to the pool
/// when this is dropped.
pub struct Pooled<T> {
    /// `Some` until dropped. Boxed because `Buffer` holds `Pooled`.
    raw: Option<Box<Buffer<T>>>,
    id: u64,
    home: Arc<dyn Lender<T>>,
}

/// Where a `Pooled` block goes back to when it is dropped (the GPU's caching
/// allocator, gpu/memory.rs).
pub trait Lender<T>: Send + Sync {
    fn give_back(&self, id: u64, raw: Buffer<T>);
}

impl<T> Pooled<T> {
    /// `raw`, lent as block `id` by `home`.
    pub fn new(raw: Buffer<T>, id: u64, home: Arc<dyn Lender<T>>) -> Pooled<T> {
        Pooled {
            raw: Some(Box::new(raw)),
            id,
            home,
        }
    }

    /// The driver's buffer (never itself `Pooled`).
    pub fn raw(&self) -> &Buffer<T> {
        self.raw
            .as_deref()
            .expect("a pooled buffer is live until dropped")
    }

    pub fn raw_mut(&mut self) -> &mut Buffer<T> {
        self.raw
            .as_deref_mut()
            .expect("a pooled buffer is live until dropped")
    }
}

impl<T> Drop for Pooled<T> {
    fn drop(&mut self) {
        if let Some(raw) = self.raw.take() {
            self.home.give_back(self.id, *raw);
        }
    }
}

/// The driver's buffer behind `buffer`: itself unless it is pooled.
pub fn raw<T>(buffer: &Buffer<T>) -> &Buffer<T> {
    match buffer {
        Buffer::Pooled(p) => p.raw(),
        other => other,
    }
}

pub fn raw_mut<T>(buffer: &mut Buffer<T>) -> &mut Buffer<T> {
    match buffer {
        Buffer::Pooled(p) => p.raw_mut(),
        other => other,
    }
}
