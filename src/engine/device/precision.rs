//! The arithmetic of a GPU device's convolution and linear GEMMs (`--precision`).
//!
//! - `f32`: the SIMT kernels of kernels/tiled_gemm.cuh, the reference every fast
//!   kernel is tested against, and the CPU device's only mode.
//! - `tf32`: tensor cores (kernels/mma_gemm.cuh), operands rounded to TF32 (10
//!   mantissa bits, round to nearest), products accumulated in f32. PyTorch's default
//!   for convolutions on a GPU, and ours on cuda and emu (the emulator imitates the GPU).
//! - `bf16`: tensor cores, operands rounded to bf16 (7 mantissa bits), f32 accumulation.
//!
//! Only the GEMM operands change: weights, Adam's state, the loss and every other op
//! stay f32, and so do checkpoints.

use std::fmt;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    F32,
    Tf32,
    Bf16,
}

impl Precision {
    pub const ALL: [Precision; 3] = [Precision::F32, Precision::Tf32, Precision::Bf16];

    /// Parses a `--precision` value.
    pub fn parse(name: &str) -> Result<Precision> {
        match name {
            "f32" => Ok(Precision::F32),
            "tf32" => Ok(Precision::Tf32),
            "bf16" => Ok(Precision::Bf16),
            other => bail!("--precision {other:?} is unknown: expected tf32, bf16 or f32"),
        }
    }

    /// The name `--precision` takes, and the suffix of the GEMM kernels that compute in it
    /// (`conv_fwd_tf32`).
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Tf32 => "tf32",
            Precision::Bf16 => "bf16",
        }
    }

    /// The default of a GPU device, cuda or emu: TF32, as PyTorch's convolutions.
    pub const GPU_DEFAULT: Precision = Precision::Tf32;
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_name_the_flag() {
        for p in Precision::ALL {
            assert_eq!(Precision::parse(p.name()).unwrap(), p);
        }
        let err = Precision::parse("fp16").unwrap_err().to_string();
        assert!(err.contains("--precision") && err.contains("fp16"), "{err}");
    }
}
