//! The training application: what runs the engine on a data set, and everything a
//! run keeps on disk.
//!
//! - `settings`: a run's configuration, the presets, what a resume may change;
//! - `recipe`: the learning-rate schedule and augmentation views;
//! - `step`: one training step, its batch and per-step values, run or replayed;
//! - `run`: the loop in phases, evaluation, what the caller observes;
//! - `checkpoint`: weights, Adam's moments and the run state, written atomically;
//! - `memory`: the memory check before a run starts (and before a folder is decoded);
//! - `model`: the model a data set gets;
//! - `source`: the data a run's settings name, read;
//! - `run_dir`: run directories and their lock;
//! - `metrics`: records, summaries, plots;
//! - `predict`: a trained checkpoint applied to a user's images.

pub mod checkpoint;
pub mod memory;
pub mod metrics;
pub mod model;
pub mod predict;
pub mod recipe;
pub mod run;
pub mod run_dir;
pub mod settings;
pub mod source;
pub mod step;

pub use run::{evaluate, train, Observer, Outcome};
pub use settings::{preset, Preset, TrainConfig};
