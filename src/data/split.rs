//! One split (train or test): images and their labels, as read, in host memory.

use crate::engine::device::ImageShape;

/// Images and their labels, in the source's order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    /// `len() * channels * rows * cols` bytes, image after image, each its channel
    /// planes one after the other (CHW), row after row; 0 = dark.
    pub images: Vec<u8>,
    /// One label per image, each below the data set's class count.
    pub labels: Vec<u8>,
    /// 1 (grey) or 3 (RGB).
    pub channels: usize,
    pub rows: usize,
    pub cols: usize,
}

impl Split {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The layout of one image.
    pub fn shape(&self) -> ImageShape {
        ImageShape {
            channels: self.channels,
            height: self.rows,
            width: self.cols,
        }
    }

    /// A copy of the first `limit` samples (all of them if there are fewer), for
    /// quick runs.
    pub fn truncated(&self, limit: usize) -> Split {
        let n = limit.min(self.len());
        Split {
            images: self.images[..n * self.shape().image_bytes()].to_vec(),
            labels: self.labels[..n].to_vec(),
            ..*self
        }
    }
}
