//! Adam (adam.rs) and the step log (step_log.rs): each step's loss and correct count,
//! kept on the device, and the divergence flag Adam checks before it updates.

mod adam;
mod step_log;

pub use adam::Adam;
pub use step_log::{StepLog, StepResult};
