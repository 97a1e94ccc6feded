//! A small deep-learning engine that trains GoogLeNet (Inception v1) on Fashion-MNIST.
//!
//! The layers, top down; each imports only those below it (`tests/module_cycles.rs`
//! enforces it, docs/ARCHITECTURE.md describes them):
//! - the programs (`src/bin/`: train, eval, predict) and `fuzz_targets`;
//! - `training`: the training application (settings, recipe, the loop and its step,
//!   checkpoints, the memory check, run directories, metrics and plots, predict);
//! - `data`: the data sets and their files;
//! - `engine`: nn → autograd → ops → tensor → device → kernels;
//! - `sys`: what the process learns of the machine.

// Every op allocates its output: glibc's allocator returns big blocks to the kernel
// and faults them in again each time, which cost a third of a small training step.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod data;
pub mod engine;
pub mod fuzz_targets;
pub mod sys;
pub mod training;

pub use engine::autograd::{Gradients, Parameters, Tape, Var};
pub use engine::device::{Counters, Device, Normalize, Precision};
pub use engine::nn::{GoogLeNet, GoogLeNetConfig, Init, Mode};
pub use engine::ops::{ByteImages, Labels, Seed};
pub use engine::optim::Adam;
pub use engine::tensor::Tensor;
