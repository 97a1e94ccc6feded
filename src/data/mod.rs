//! Data: the splits training reads (split.rs), each epoch's order over them
//! (batches.rs), and where they come from: Fashion-MNIST's IDX files
//! (fashion_mnist/).

mod batches;
pub mod fashion_mnist;
mod split;

pub use batches::epoch_order;
pub use fashion_mnist::{
    load, load_dir, DataFile, DataOptions, FashionMnist, Kind, CLASS_NAMES, FILES, IMAGE_SIDE,
    OFFICIAL_MIRROR, TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS,
};
pub use split::Split;
