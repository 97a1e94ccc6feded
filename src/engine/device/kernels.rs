//! What GPU code this build holds (build/ptx.rs compiled it): per kernels/*.cu file an
//! sm_90 cubin and compute_80 PTX, the line `--version` prints about them, and ptxas's
//! per-kernel resources on sm_90 with the occupancy they allow (the README's table).

/// One kernels/*.cu file, compiled.
pub struct Module {
    /// The file's stem ("conv" for kernels/conv.cu).
    pub file: &'static str,
    /// Machine code for sm_90 (H100, H200): loaded as is, no JIT.
    pub cubin_sm90: &'static [u8],
    /// PTX for compute_80, which the driver JIT-compiles on every other GPU.
    pub ptx_compute80: &'static str,
}

/// One kernel's resources on sm_90, from ptxas's report.
#[derive(Clone, Copy, Debug)]
pub struct KernelResources {
    pub kernel: &'static str,
    pub file: &'static str,
    pub registers: u32,
    /// Static `__shared__` bytes (no kernel uses dynamic shared memory).
    pub shared_bytes: u32,
    pub stack_bytes: u32,
}

mod embedded {
    use super::{KernelResources, Module};
    include!(concat!(env!("OUT_DIR"), "/kernels_embedded.rs"));
}

/// Every kernels/*.cu file; empty when the build found no nvcc.
pub const MODULES: &[Module] = embedded::MODULES;

/// Every kernel's sm_90 resources, file by file; empty without nvcc.
pub const RESOURCES: &[KernelResources] = embedded::RESOURCES;

/// The GPU code of this build, e.g. "kernels: sm_90 (cubin), compute_80 (PTX), nvcc
/// 13.0.88", or "no GPU kernels (why, and how to get them)".
pub const GPU_CODE: &str = env!("GOOGLENET_GPU_CODE");

/// What `train --version` and `eval --version` print after the program's name.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " — ", env!("GOOGLENET_GPU_CODE"));

/// The block size every kernel is launched with (`BLOCK`, `GEMM_THREADS` and the
/// reductions' block sizes in src/engine/device/gpu/).
pub const BLOCK_THREADS: u32 = 256;

/// An sm_90 multiprocessor's limits (CUDA programming guide, compute capability 9.0).
const SM90_REGISTERS: u32 = 65536;
const SM90_SUB_PARTITIONS: u32 = 4;
const SM90_SHARED_BYTES: u32 = 228 * 1024;
const SM90_MAX_THREADS: u32 = 2048;
const SM90_MAX_BLOCKS: u32 = 32;
/// Registers are allocated per warp, in units of 256 (8 per thread).
const REGISTER_UNIT: u32 = 256;
/// Shared memory is allocated in units of 128 bytes, plus 1 KB the system reserves per block.
const SHARED_UNIT: u32 = 128;
const SHARED_RESERVED_PER_BLOCK: u32 = 1024;

/// How many blocks of `block_threads` threads fit on one sm_90 multiprocessor, and the
/// resource that stops there being more. The same arithmetic as CUDA's occupancy
/// calculator (cuda_occupancy.h): each warp gets `registers x 32` registers rounded up
/// to 256, out of the 16384 of each of the 4 sub-partitions; each block gets its shared
/// memory plus 1 KB rounded up to 128 bytes, out of 228 KB; at most 64 warps and 32
/// blocks.
pub fn sm90_blocks_per_sm(
    registers: u32,
    shared_bytes: u32,
    block_threads: u32,
) -> (u32, &'static str) {
    let warps = block_threads.div_ceil(32);
    let mut limits = vec![
        (SM90_MAX_THREADS / 32 / warps, "warps"),
        (SM90_MAX_BLOCKS, "blocks"),
    ];
    if registers > 0 {
        let per_warp = (registers * 32).div_ceil(REGISTER_UNIT) * REGISTER_UNIT;
        let warps_per_partition = SM90_REGISTERS / SM90_SUB_PARTITIONS / per_warp;
        limits.push((
            warps_per_partition * SM90_SUB_PARTITIONS / warps,
            "registers",
        ));
    }
    let shared = (shared_bytes + SHARED_RESERVED_PER_BLOCK).div_ceil(SHARED_UNIT) * SHARED_UNIT;
    limits.push((SM90_SHARED_BYTES / shared, "shared memory"));
    // The first of the smallest: warps before registers when both allow the same.
    limits
        .into_iter()
        .reduce(|best, l| if l.0 < best.0 { l } else { best })
        .expect("limits is not empty")
}

/// The README's kernel resource table: one row per kernel, from `RESOURCES`.
pub fn resource_table() -> String {
    let mut table = format!(
        "| kernel | file | registers | static shared memory | threads/SM on sm_90 (blocks of {BLOCK_THREADS}) | limited by |\n\
         |---|---|---:|---:|---:|---|\n"
    );
    for r in RESOURCES {
        let (blocks, limit) = sm90_blocks_per_sm(r.registers, r.shared_bytes, BLOCK_THREADS);
        let threads = blocks * BLOCK_THREADS;
        table += &format!(
            "| `{}` | {}.cu | {} | {} B | {threads} ({}%) | {limit} |\n",
            r.kernel,
            r.file,
            r.registers,
            r.shared_bytes,
            threads * 100 / SM90_MAX_THREADS,
        );
    }
    table
}

#[cfg(test)]
mod tests {
    use super::sm90_blocks_per_sm;

    #[test]
    fn occupancy_follows_registers_shared_memory_and_warps() {
        // 32 registers: 1024 per warp, 16 warps per sub-partition: the whole SM.
        assert_eq!(sm90_blocks_per_sm(32, 0, 256), (8, "warps"));
        // 29 rounds up to 32.
        assert_eq!(sm90_blocks_per_sm(29, 1024, 256), (8, "warps"));
        // 64 registers: 2048 per warp, 8 warps per sub-partition, 32 per SM: 4 blocks.
        assert_eq!(sm90_blocks_per_sm(64, 8320, 256), (4, "registers"));
        // 71 rounds up to 72: 2304 per warp, 7 per sub-partition, 28 per SM: 3 blocks.
        assert_eq!(sm90_blocks_per_sm(71, 8320, 256), (3, "registers"));
        // 255 registers: 8192 per warp, 2 per sub-partition: one block of 8 warps.
        assert_eq!(sm90_blocks_per_sm(255, 0, 256), (1, "registers"));
        // 48 KB of shared memory: 49 KB per block, 4 in 228 KB.
        assert_eq!(sm90_blocks_per_sm(16, 48 * 1024, 256), (4, "shared memory"));
        // Small blocks run into the 32-block limit.
        assert_eq!(sm90_blocks_per_sm(16, 0, 32), (32, "blocks"));
    }
}
