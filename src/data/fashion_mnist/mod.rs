//! Fashion-MNIST: finding (locate.rs), downloading (download.rs), reading and
//! checking (files.rs, idx.rs, read.rs) the four IDX files of the release, as one data
//! set of two splits (dataset.rs).

mod dataset;
mod download;
pub(crate) mod files;
pub(crate) mod idx;
mod locate;
mod read;

pub use dataset::{load, load_dir, DataOptions, FashionMnist};
pub use download::OFFICIAL_MIRROR;
pub use files::{
    DataFile, Kind, CLASS_NAMES, FILES, IMAGE_SIDE, TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES,
    TRAIN_LABELS,
};
