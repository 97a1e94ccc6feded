//! The CPU device: the reference every other device is tested against, and a
//! reasonably fast one (rayon across images and planes, GEMM from matrixmultiply).

mod adam;
mod backend;
mod conv;
mod elementwise;
mod fresh;
mod gemm;
mod linear;
mod loss;
mod pool;
mod resize;
mod strided;
mod winograd;

pub use backend::{keep_freed_memory, CpuBackend};
pub use gemm::{simd_level, CpuGemm, SimdLevel, GEMM_VARIABLE};
pub use loss::argmax;
