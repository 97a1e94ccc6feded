//! The recipe: the learning rate of each step (schedule.rs) and the augmentation views
//! of each batch (augment.rs).

mod augment;
mod schedule;

pub use augment::{batch_views, PAD};
pub use schedule::{Schedule, ScheduleKind};
