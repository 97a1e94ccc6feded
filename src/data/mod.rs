//! Data: the splits training reads (split.rs), each epoch's order over them
//! (batches.rs), a data set whichever its source (set.rs) and what a model must know
//! of it (description.rs), and where they come from: Fashion-MNIST's IDX files
//! (fashion_mnist/) or a folder of class folders (folder/).

mod batches;
mod description;
pub mod fashion_mnist;
pub mod folder;
mod set;
mod split;

pub use batches::epoch_order;
pub use description::DataDescription;
pub use fashion_mnist::{
    load, load_dir, DataFile, DataOptions, FashionMnist, Kind, CLASS_NAMES, FILES, IMAGE_SIDE,
    OFFICIAL_MIRROR, TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS,
};
pub use set::DataSet;
pub use split::Split;
