//! Helpers shared by the integration tests.

#![allow(dead_code)]

pub mod idx;
pub mod images;
pub mod kernels;
pub mod runs;
pub mod system_data;

use anyhow::Result;
use googlenet::{Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Stamps each named test body, a `fn(Device) -> anyhow::Result<()>` in the calling
/// file, as one `#[test]` per device, in a module named after the device:
/// `device_tests!(a, b)` on every device, `device_tests!(on [cpu, cuda]: a, b)` on some.
///
/// - `cpu`: the reference device.
/// - `emu`: the CUDA kernels, run on the CPU by the emulator, at f32 (the reference
///   kernels, whose bounds these tests state; tests/tensor_cores.rs tests tf32 and bf16).
/// - `cuda`: the GPU, at f32 too. These tests are ignored unless asked for (`--include-ignored`),
///   so a machine without a GPU reports them as ignored, never as passed; asked for
///   without a GPU, they fail.
#[macro_export]
macro_rules! device_tests {
    (on [$($device:ident),*]: $($name:ident),* $(,)?) => {
        $crate::device_tests!(@each [$($device),*] ($($name),*));
    };
    (@each [$($device:ident),*] $names:tt) => {
        $( $crate::device_tests!(@module $device $names); )*
    };
    ($($name:ident),* $(,)?) => {
        $crate::device_tests!(on [cpu, emu, cuda]: $($name),*);
    };
    (@module cpu ($($name:ident),*)) => {
        mod cpu {
            $(
                #[test]
                fn $name() -> anyhow::Result<()> {
                    super::$name(googlenet::Device::cpu())
                }
            )*
        }
    };
    (@module emu ($($name:ident),*)) => {
        mod emu {
            $(
                #[test]
                fn $name() -> anyhow::Result<()> {
                    super::$name(googlenet::Device::emu_at(googlenet::Precision::F32))
                }
            )*
        }
    };
    (@module cuda ($($name:ident),*)) => {
        mod cuda {
            $(
                #[test]
                #[ignore = "needs a CUDA GPU: run with --include-ignored where there is one"]
                fn $name() -> anyhow::Result<()> {
                    super::$name(googlenet::Device::cuda_at(0, googlenet::Precision::F32)?)
                }
            )*
        }
    };
}

/// A tensor of uniform values in [lo, hi) drawn from `seed`.
pub fn random_tensor(
    device: &Device,
    shape: &[usize],
    lo: f32,
    hi: f32,
    seed: u64,
) -> Result<Tensor> {
    let mut rng = StdRng::seed_from_u64(seed);
    let n = shape.iter().product();
    Tensor::from_vec(
        device,
        shape,
        (0..n).map(|_| rng.gen_range(lo..hi)).collect(),
    )
}

/// Asserts `|a - b| <= atol + rtol * |b|` elementwise, naming the first offender.
pub fn assert_close(actual: &[f32], expected: &[f32], atol: f32, rtol: f32, what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: lengths differ");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!(
            (a - e).abs() <= atol + rtol * e.abs(),
            "{what}: element {i}: got {a}, expected {e} (atol {atol}, rtol {rtol})"
        );
    }
}
