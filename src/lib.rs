//! A small deep-learning engine that trains GoogLeNet (Inception v1) on Fashion-MNIST.
//!
//! Layers: `tensor` (data on a device) → `device` (the op set, per device) → `ops`
//! (shape-checked calls into the device) → `autograd` (the tape) → `nn` (layers,
//! GoogLeNet) and `optim` (Adam).

// Every op allocates its output: glibc's allocator returns big blocks to the kernel
// and faults them in again each time, which cost a third of a small training step.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod augment;
pub mod autograd;
pub mod batch;
pub mod checkpoint;
pub mod data;
pub mod device;
pub mod fuzz_targets;
pub mod memory;
pub mod metrics;
pub mod nn;
pub mod ops;
pub mod optim;
pub mod plot;
pub mod predict;
pub mod presets;
pub mod reconcile;
pub mod run_lock;
pub mod runs;
pub mod schedule;
pub mod step_log;
pub mod step_params;
pub mod stepper;
pub mod tensor;
pub mod train;

pub use autograd::{Gradients, Tape, Var};
pub use device::{Counters, Device, Precision};
pub use nn::{GoogLeNet, GoogLeNetConfig, Init, Mode, Parameters};
pub use ops::{ByteImages, Labels, Normalize, Seed};
pub use optim::Adam;
pub use tensor::Tensor;
