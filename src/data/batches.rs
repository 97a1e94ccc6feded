//! Shuffling a split per epoch (batches are then chunks of the order; the last
//! may be partial).

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

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

/// SplitMix64's finaliser: a bijection on u64 that scatters nearby inputs.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
