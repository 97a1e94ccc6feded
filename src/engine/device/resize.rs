//! The resize op's parameters: the layout of the images it reads, how each image is
//! read (its augmentation view: a shift and a mirror) and how the resized pixels are
//! normalised.

/// The most channels an image may have: RGB.
pub const MAX_CHANNELS: usize = 3;

/// The layout of a set of u8 images: image after image, each `channels` planes of
/// `height x width` (CHW, as the tensors are), row after row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageShape {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl ImageShape {
    /// One-channel images of `height x width`.
    pub fn grey(height: usize, width: usize) -> ImageShape {
        ImageShape {
            channels: 1,
            height,
            width,
        }
    }

    /// The bytes of one plane.
    pub fn plane(&self) -> usize {
        self.height * self.width
    }

    /// The bytes of one image.
    pub fn image_bytes(&self) -> usize {
        self.channels * self.plane()
    }
}

/// `x -> (x - mean[c]) / std[c]` on channel `c` of freshly resized images
/// (torchvision's Normalize).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Normalize {
    pub mean: [f32; MAX_CHANNELS],
    pub std: [f32; MAX_CHANNELS],
}

impl Normalize {
    /// The same mean and std on every channel.
    pub const fn uniform(mean: f32, std: f32) -> Normalize {
        Normalize {
            mean: [mean; MAX_CHANNELS],
            std: [std; MAX_CHANNELS],
        }
    }

    /// The identity: inputs stay in [0, 1].
    pub const NONE: Normalize = Normalize::uniform(0.0, 1.0);
    /// Fashion-MNIST's training-set pixel mean and standard deviation.
    pub const FASHION_MNIST: Normalize = Normalize::uniform(0.2860, 0.3530);

    /// Channel `c`'s mean and std from `mean[c]` and `std[c]` (the channels beyond
    /// them unused): an error unless there are as many of each, at most
    /// `MAX_CHANNELS`, every std positive and every value finite.
    pub fn per_channel(mean: &[f32], std: &[f32]) -> anyhow::Result<Normalize> {
        anyhow::ensure!(
            mean.len() == std.len() && (1..=MAX_CHANNELS).contains(&mean.len()),
            "normalisation: {} means and {} standard deviations; expected one of each per \
             channel, 1 to {MAX_CHANNELS} channels",
            mean.len(),
            std.len()
        );
        anyhow::ensure!(
            mean.iter().all(|m| m.is_finite()) && std.iter().all(|s| s.is_finite() && *s > 0.0),
            "normalisation: means {mean:?} and standard deviations {std:?} must be finite, \
             the deviations positive"
        );
        let mut norm = Normalize::NONE;
        norm.mean[..mean.len()].copy_from_slice(mean);
        norm.std[..std.len()].copy_from_slice(std);
        Ok(norm)
    }
}

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
