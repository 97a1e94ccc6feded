//! Shuffling a split per epoch and cutting it into batches.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

/// The samples of one training step: images as bytes (as `ByteImages` takes them)
/// and labels as `u32` (as `Labels` takes them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    /// `len() * rows * cols` bytes.
    pub images: Vec<u8>,
    pub labels: Vec<u32>,
    pub rows: usize,
    pub cols: usize,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// The order to visit `count` samples in during `epoch`: a permutation of
/// `0..count` that depends only on `(seed, epoch)`, so a run can be repeated and
/// resumed at any epoch. `count` must fit in `u32`.
pub fn epoch_order(count: usize, seed: u64, epoch: usize) -> Vec<u32> {
    assert!(
        u32::try_from(count).is_ok(),
        "{count} samples do not fit u32 indices"
    );
    let mut order: Vec<u32> = (0..count as u32).collect();
    // Mixed rather than added, so that (seed, epoch + 1) and (seed + 1, epoch) differ.
    let mut rng = StdRng::seed_from_u64(splitmix64(splitmix64(seed) ^ epoch as u64));
    order.shuffle(&mut rng);
    order
}

/// Batches of `batch_size` over `order`; the last one holds the rest, so every
/// sample is used once. Panics if `batch_size` is 0.
pub fn batches(order: &[u32], batch_size: usize) -> std::slice::Chunks<'_, u32> {
    order.chunks(batch_size)
}

/// How many batches `batches` cuts `count` samples into. Panics if `batch_size`
/// is 0.
pub fn batch_count(count: usize, batch_size: usize) -> usize {
    assert!(batch_size > 0, "batch size must be at least 1");
    count.div_ceil(batch_size)
}

/// SplitMix64's finaliser: a bijection on u64 that scatters nearby inputs.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
