//! A folder of class folders as a data set: walking it (scan.rs), holding out a test
//! split (holdout.rs), reading and fitting one image file (image_file.rs), the whole
//! set from headers to decoded splits (plan.rs), with a progress bar (progress.rs).

mod holdout;
pub mod image_file;
mod plan;
mod progress;
mod scan;

pub use plan::{ChannelsChosen, FolderOptions, Loaded, ModeCount, Plan, TestSource};
pub use scan::{scan, BadFile, Sample, Scan, IMAGE_EXTENSIONS, MAX_CLASSES};
