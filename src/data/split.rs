//! One split (train or test): images and their labels, as read, in host memory.

/// Images and their labels, in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    /// `len() * rows * cols` bytes, image after image, row after row, 0 = background.
    pub images: Vec<u8>,
    /// One label per image, each below 10 (see `CLASS_NAMES`).
    pub labels: Vec<u8>,
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

    /// A copy of the first `limit` samples (all of them if there are fewer), for
    /// quick runs.
    pub fn truncated(&self, limit: usize) -> Split {
        let n = limit.min(self.len());
        Split {
            images: self.images[..n * self.rows * self.cols].to_vec(),
            labels: self.labels[..n].to_vec(),
            rows: self.rows,
            cols: self.cols,
        }
    }
}
