//! The recipe: the learning rate of each step (schedule.rs), the augmentation views
//! of each batch (augment.rs), and how many steps a time budget allows (budget.rs).

mod augment;
mod budget;
mod schedule;

pub use augment::{batch_views, PAD};
pub use budget::{deadline_seconds, planned_steps, PlanInputs, CALIBRATION_END, CALIBRATION_START};
pub use schedule::{Schedule, ScheduleKind};
