//! A run's settings: what decides what it computes (config.rs), the named presets
//! (presets.rs), and what a resumed run may change (resume.rs).

mod config;
mod presets;
mod resume;

pub use config::{
    Channels, DataSource, Preset, TrainConfig, DEFAULT_TEST_FRACTION, MAX_BATCH_SIZE, MAX_EPOCHS,
    MAX_IMAGES, MAX_IMAGE_SIZE, MAX_LR, MAX_STEPS,
};
pub use presets::preset;
pub use resume::{resume_config, same_data};
