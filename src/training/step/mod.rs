//! One training step and what feeds it: a split uploaded to the device (batch.rs), the
//! per-step values in one device buffer (params.rs), the step's ops (ops.rs), and the
//! stepper that runs them or replays their recording (stepper.rs).

mod batch;
mod ops;
mod params;
mod stepper;

pub use batch::DeviceSplit;
pub use ops::{train_step, train_step_logged};
pub use params::StepParams;
pub use stepper::{BatchSettings, Stepper};
