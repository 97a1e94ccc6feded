//! Training-time augmentation: a random crop of the image padded with black, then a
//! random left-right mirror, as torchvision's `RandomCrop(28, padding=PAD)` followed
//! by `RandomHorizontalFlip()`.
//!
//! Each image of a batch gets a [`View`]: a shift `(dy, dx)` in `[-PAD, PAD]` and a
//! flip bit. The augmented image reads the source at
//!
//!   aug(y, x) = image(y + dy, x' + dx),  x' = w - 1 - x if flip else x
//!
//! and is 0 (black, before normalisation) where that falls outside the image. The
//! resize (kernels/resize.cu, src/device/cpu/resize.rs) applies the view while it
//! gathers source pixels, so augmentation costs no extra pass and runs on every
//! device. Views come from a hash of (seed, step, position in the batch), so a
//! resumed run draws exactly the views the uninterrupted one would have.

/// Largest shift, in source pixels (the crop's padding).
pub const PAD: i32 = 2;

/// How one image is moved before it is resized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct View {
    pub dy: i32,
    pub dx: i32,
    pub flip: bool,
}

impl View {
    /// The image as it is.
    pub const IDENTITY: View = View {
        dy: 0,
        dx: 0,
        flip: false,
    };

    /// The view as the kernels take it: `dy + 128` in bits 0-7, `dx + 128` in bits
    /// 8-15, the flip in bit 16 (`view_words` refuses shifts beyond ±127).
    pub fn word(self) -> u32 {
        (self.dy + 128) as u32 | ((self.dx + 128) as u32) << 8 | (self.flip as u32) << 16
    }

    pub fn from_word(word: u32) -> View {
        View {
            dy: (word & 0xff) as i32 - 128,
            dx: ((word >> 8) & 0xff) as i32 - 128,
            flip: (word >> 16) & 1 == 1,
        }
    }
}

/// The kernels' words of `views`, one per image of `count`: an error when their
/// number differs or a shift does not fit a word's field (±127).
pub fn view_words(views: &[View], count: usize) -> anyhow::Result<Vec<u32>> {
    anyhow::ensure!(
        views.len() == count,
        "{} augmentation views for {count} images",
        views.len()
    );
    if let Some(bad) = views.iter().find(|v| v.dy.abs() > 127 || v.dx.abs() > 127) {
        anyhow::bail!("augmentation view {bad:?} shifts by more than 127 pixels");
    }
    Ok(views.iter().map(|v| v.word()).collect())
}

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
