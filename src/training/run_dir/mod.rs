//! A run's directory: its name and what goes where in it (layout.rs), and the lock
//! that keeps a second process out of it (lock.rs).

mod layout;
mod lock;

pub use layout::{checkpoints_dir, create_run_dir, local_timestamp, metrics_path};
pub use lock::{RunLock, LOCK_FILE};
