//! Training-time augmentation: a random crop of the image padded with black, then a
//! random left-right mirror, as torchvision's `RandomCrop(28, padding=PAD)` followed
//! by `RandomHorizontalFlip()`.
//!
//! Each image of a batch gets a `View` (engine/device/resize.rs): a shift `(dy, dx)` in `[-PAD, PAD]` and a
//! flip bit. The augmented image reads the source at
//!
//!   aug(y, x) = image(y + dy, x' + dx),  x' = w - 1 - x if flip else x
//!
//! and is 0 (black, before normalisation) where that falls outside the image. The
//! resize (kernels/resize.cu, src/engine/device/cpu/resize.rs) applies the view while it
//! gathers source pixels, so augmentation costs no extra pass and runs on every
//! device. Views come from a hash of (seed, step, position in the batch), so a
//! resumed run draws exactly the views the uninterrupted one would have.

use crate::engine::device::View;

/// Largest shift, in source pixels (the crop's padding).
pub const PAD: i32 = 2;

/// The views of the `count` images of the batch at `step`.
pub fn batch_views(seed: u64, step: u64, count: usize) -> Vec<View> {
    let key = mix(mix(seed ^ 0xA076_1D64_78BD_642F) ^ step);
    let side = (2 * PAD + 1) as u64;
    (0..count as u64)
        .map(|i| {
            let h = mix(key ^ i);
            View {
                dy: (h % side) as i32 - PAD,
                dx: ((h >> 16) % side) as i32 - PAD,
                flip: (h >> 32) & 1 == 1,
            }
        })
        .collect()
}

/// SplitMix64's finaliser: scatters nearby inputs over all of u64.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
