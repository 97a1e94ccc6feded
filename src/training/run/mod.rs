//! The run: the training loop in phases (train.rs), evaluation (evaluate.rs), and what
//! its caller sees (observer.rs).

mod evaluate;
mod observer;
mod train;

pub use evaluate::{eval_batch_size, evaluate, evaluate_split};
pub use observer::{Observer, Outcome};
pub use train::{data_set_shape, data_shape, train, workload};
