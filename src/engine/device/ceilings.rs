//! What the sm_90 GPUs this project runs on can do at most, from their datasheets: the
//! ceilings the kernel benchmark (benches/kernels.rs) gives each row's rate a share
//! of. The lent machine is an H100 SXM more often than an H200 SXM: same compute,
//! other memory bandwidth, so the ceilings are chosen by the name the driver gives
//! the GPU at run time, never assumed.

use super::precision::Precision;

/// A GPU's ceilings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ceilings {
    /// The GPU, in words ("H100 SXM").
    pub gpu: &'static str,
    /// FP32 on the CUDA cores: the f32 GEMMs' ceiling (our f32 kernels are CUDA-core
    /// kernels).
    pub fp32_tflops: f64,
    /// TF32 on the tensor cores, dense (datasheets give twice this, with 2:4 sparsity).
    pub tf32_tflops: f64,
    /// bf16 on the tensor cores, dense.
    pub bf16_tflops: f64,
    /// HBM bandwidth: the memory-bound kernels' ceiling.
    pub hbm_gbps: f64,
    /// Where the figures come from.
    pub source: &'static str,
}

/// The H100 SXM (nvidia.com/en-us/data-center/h100, "H100 SXM" column): 132 SMs, HBM3
/// at 3.35 TB/s. (A device-to-device copy moved about 3.0 TB/s on this workplace's.)
pub const H100_SXM: Ceilings = Ceilings {
    gpu: "H100 SXM",
    fp32_tflops: 67.0,
    tf32_tflops: 494.7,
    bf16_tflops: 989.4,
    hbm_gbps: 3350.0,
    source: "NVIDIA H100 datasheet, H100 SXM column; tensor rates dense",
};

/// The H200 SXM (nvidia.com/en-us/data-center/h200, "H200 SXM" column): the H100 SXM's
/// compute with HBM3e at 4.8 TB/s. (A device-to-device copy moved about 4.3 TB/s on
/// this workplace's.)
pub const H200_SXM: Ceilings = Ceilings {
    gpu: "H200 SXM",
    hbm_gbps: 4800.0,
    source: "NVIDIA H200 datasheet, H200 SXM column; tensor rates dense",
    ..H100_SXM
};

impl Ceilings {
    /// The ceilings of the GPU the driver calls `name`: "NVIDIA H100 80GB HBM3" is the
    /// SXM module ("NVIDIA H100 PCIe" and "NVIDIA H100 NVL" are boards with other
    /// ceilings), "NVIDIA H200" the H200 SXM ("NVIDIA H200 NVL" another). `None` for
    /// any other GPU: no share rather than a wrong one.
    pub fn of(name: &str) -> Option<Ceilings> {
        if name.contains("NVL") {
            None
        } else if name.contains("H200") {
            Some(H200_SXM)
        } else if name.contains("H100") && name.contains("HBM3") {
            Some(H100_SXM)
        } else {
            None
        }
    }

    /// The ceiling of a GEMM in `precision`, in TFLOP/s.
    pub fn flops(&self, precision: Precision) -> f64 {
        match precision {
            Precision::F32 => self.fp32_tflops,
            Precision::Tf32 => self.tf32_tflops,
            Precision::Bf16 => self.bf16_tflops,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Ceilings, H100_SXM, H200_SXM};
    use crate::engine::device::Precision;

    #[test]
    fn ceilings_follow_the_gpus_name() {
        // As nvidia-smi and the driver name the lent machines' GPUs.
        let h100 = Ceilings::of("NVIDIA H100 80GB HBM3").unwrap();
        assert_eq!(h100, H100_SXM);
        assert_eq!(h100.hbm_gbps, 3350.0);
        let h200 = Ceilings::of("NVIDIA H200").unwrap();
        assert_eq!(h200.hbm_gbps, 4800.0);
        // The same tensor cores.
        for p in [Precision::F32, Precision::Tf32, Precision::Bf16] {
            assert_eq!(h100.flops(p), H200_SXM.flops(p));
        }
        assert_eq!(h100.flops(Precision::Tf32), 494.7);
        assert_eq!(h100.flops(Precision::Bf16), 989.4);
        for other in [
            "NVIDIA H100 PCIe",
            "NVIDIA H100 NVL",
            "NVIDIA H200 NVL",
            "NVIDIA A100-SXM4-80GB",
            "",
        ] {
            assert_eq!(Ceilings::of(other), None, "{other}");
        }
    }
}
