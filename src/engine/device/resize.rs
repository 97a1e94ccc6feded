//! The resize op's parameters: how each image is read (its augmentation view: a
//! shift and a mirror) and how the resized pixels are normalised.

/// `x -> (x - mean) / std`, applied to freshly resized images.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Normalize {
    pub mean: f32,
    pub std: f32,
}

impl Normalize {
    /// The identity: inputs stay in [0, 1].
    pub const NONE: Normalize = Normalize {
        mean: 0.0,
        std: 1.0,
    };
    /// Fashion-MNIST's training-set pixel mean and standard deviation.
    pub const FASHION_MNIST: Normalize = Normalize {
        mean: 0.2860,
        std: 0.3530,
    };
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
