//! The CUDA emulator's execution model, through `EmuDriver`, on the self-test kernels of
//! kernels/emu/selftest.cu: barriers, shared memory, warp shuffles and votes, atomics,
//! 3-d indexing, half/bfloat16 conversions, and the errors (divergence, bad launches,
//! wrong argument lists) that must come back as messages, not hangs or crashes;
//! launches from several threads at once, big ones (shared with the emulator's helper
//! threads) of tensor-core kernels included; the sanitizer checks (GOOGLENET_EMU_CHECK):
//! each must report its planted bug and pass the bug's correct twin; the misuses of the tensor-core instructions, likewise; and
//! those instructions' results, on the emulator and on a GPU (tensor_cores.rs).
//!
//! `cargo test --release --test emulator -- --nocapture` also prints launch costs.

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Result;
use googlenet::engine::device::emu::{Checks, EmuDriver};
use googlenet::engine::device::gpu::{Arg, Driver, Launch};
use googlenet::engine::device::Buffer;
use rand::rngs::StdRng;
use rand::SeedableRng;

/// build.rs's rewriting of kernel files for the race check, tested here (build scripts
/// have no tests of their own).
#[path = "../build/emu_shared.rs"]
mod emu_shared;

/// The tensor-core instructions (kernels/mma.cuh), on the emulator and on a GPU.
#[path = "emulator/tensor_cores.rs"]
mod tensor_cores;

/// The driver with the checks GOOGLENET_EMU_CHECK asks for, as every device gets it.
const EMU: EmuDriver = EmuDriver::new();
/// The driver with every check on, and with none, whatever the environment says.
const CHECKED: EmuDriver = EmuDriver::with_checks(Checks::ALL);
const UNCHECKED: EmuDriver = EmuDriver::with_checks(Checks::NONE);

fn launch(grid: [u32; 3], block: [u32; 3]) -> Launch {
    Launch { grid, block }
}

fn download(buffer: &Buffer<f32>) -> Vec<f32> {
    EMU.download_f32(buffer).unwrap()
}

fn download_u32(buffer: &Buffer<u32>) -> Vec<u32> {
    EMU.download_u32(buffer).unwrap()
}

/// Runs `body` on another thread and fails if it takes longer than a minute: a broken
/// barrier must be reported, and a hang would otherwise stall the whole test run.
fn within_a_minute<T: Send + 'static>(body: impl FnOnce() -> T + Send + 'static) -> T {
    let (send, receive) = mpsc::channel();
    thread::spawn(move || send.send(body()));
    receive
        .recv_timeout(Duration::from_secs(60))
        .expect("the launch hung")
}

/// Launches a kernel that must fail, and returns its error message.
fn launch_error(kernel: &'static str, config: Launch, len: usize) -> String {
    within_a_minute(move || {
        let mut out = EMU.zeros_f32(len).unwrap();
        let result = EMU.launch(kernel, config, &mut [Arg::OutF32(&mut out)]);
        format!("{:#}", result.expect_err("the launch should fail"))
    })
}

#[test]
fn reverse_through_shared_memory_needs_a_real_barrier() -> Result<()> {
    for block in [256u32, 1024] {
        let blocks = 4;
        let n = (blocks * block) as usize;
        let input: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let x = EMU.upload_f32(input.clone())?;
        let mut y = EMU.zeros_f32(n)?;
        EMU.launch(
            "emu_reverse",
            launch([blocks, 1, 1], [block, 1, 1]),
            &mut [Arg::F32(&x), Arg::OutF32(&mut y), Arg::I32(n as i32)],
        )?;
        let b = block as usize;
        let expected: Vec<f32> = (0..n).map(|i| input[i / b * b + (b - 1 - i % b)]).collect();
        assert_eq!(download(&y), expected, "block of {block}");
    }
    Ok(())
}

#[test]
fn block_sum_by_tree_reduction() -> Result<()> {
    let n: usize = 1000; // 4 blocks of 256, the last one partial
    let input: Vec<f32> = (0..n).map(|i| (i % 17) as f32).collect();
    let x = EMU.upload_f32(input.clone())?;
    let mut sums = EMU.zeros_f32(4)?;
    EMU.launch(
        "emu_block_sum",
        launch([4, 1, 1], [256, 1, 1]),
        &mut [Arg::F32(&x), Arg::OutF32(&mut sums), Arg::I32(n as i32)],
    )?;
    // Small integers: every order of summation is exact.
    let expected: Vec<f32> = input.chunks(256).map(|c| c.iter().sum()).collect();
    assert_eq!(download(&sums), expected);
    Ok(())
}

#[test]
fn warp_shuffles_and_votes() -> Result<()> {
    // Two blocks of two warps. Warp 1 is all positive, warp 3 has a value above 100.
    let n = 128;
    let input: Vec<f32> = (0..n)
        .map(|i| match i / 32 {
            0 => {
                if i % 3 == 0 {
                    -(i as f32)
                } else {
                    i as f32
                }
            }
            3 if i % 32 == 7 => 1000.0,
            _ => i as f32 + 1.0,
        })
        .collect();
    let x = EMU.upload_f32(input.clone())?;
    let mut sums = EMU.zeros_f32(4 * n)?;
    let mut votes = EMU.zeros_u32(4 * (n / 32))?;
    EMU.launch(
        "emu_warp_ops",
        launch([2, 1, 1], [64, 1, 1]),
        &mut [
            Arg::F32(&x),
            Arg::OutF32(&mut sums),
            Arg::OutU32s(&mut votes),
        ],
    )?;
    let sums = download(&sums);
    let votes = download_u32(&votes);
    for (w, warp) in input.chunks(32).enumerate() {
        let total: f32 = warp.iter().sum();
        let mut ballot = 0u32;
        for (lane, &v) in warp.iter().enumerate() {
            let i = 32 * w + lane;
            let s = &sums[4 * i..4 * i + 4];
            assert_eq!(s[0], total, "butterfly sum, thread {i}");
            if lane == 0 {
                assert_eq!(s[1], total, "shfl_down sum, warp {w}");
            }
            let prefix: f32 = warp[..=lane].iter().sum();
            assert_eq!(s[2], prefix, "prefix sum, thread {i}");
            assert_eq!(
                s[3],
                warp[5] + warp[(lane & !7) + 3],
                "broadcasts, thread {i}"
            );
            if v > 0.0 {
                ballot |= 1 << lane;
            }
        }
        let vote = &votes[4 * w..4 * w + 4];
        assert_eq!(vote[0], ballot, "ballot, warp {w}");
        assert_eq!(
            vote[1],
            warp.iter().any(|&v| v > 100.0) as u32,
            "any, warp {w}"
        );
        assert_eq!(
            vote[2],
            warp.iter().all(|&v| v >= 0.0) as u32,
            "all, warp {w}"
        );
        assert_eq!(vote[3], u32::MAX, "activemask, warp {w}");
    }
    Ok(())
}

#[test]
fn atomics_from_every_thread() -> Result<()> {
    // Big enough to be shared with the helper OS thread, so the atomics really race.
    let n: usize = 200_003;
    let blocks = n.div_ceil(256) as u32;
    let mut counts = EMU.upload_u32(vec![0, 0, 0, 0, 0, 0, 0, 0])?;
    let mut sum = EMU.zeros_f32(1)?;
    EMU.launch(
        "emu_atomics",
        launch([blocks, 1, 1], [256, 1, 1]),
        &mut [
            Arg::OutU32s(&mut counts),
            Arg::OutF32(&mut sum),
            Arg::I32(n as i32),
        ],
    )?;
    let counts = download_u32(&counts);
    let per_residue: Vec<u32> = (0..4)
        .map(|r| (0..n).filter(|i| i % 4 == r).count() as u32)
        .collect();
    assert_eq!(counts[..4], per_residue[..], "atomicAdd counters");
    assert_eq!(counts[4] as i32, n as i32 - 1, "atomicMax");
    assert_eq!(counts[5] as i32, -(n as i32 - 1), "atomicMin");
    assert_eq!(counts[6], n as u32, "atomicCAS increments");
    assert_eq!(counts[7], 7, "atomicExch");
    assert_eq!(download(&sum), [n as f32], "float atomicAdd");
    Ok(())
}

#[test]
fn predicate_barriers_count_and_or() -> Result<()> {
    // Block 0: 40 positives; block 1: all positive; block 2: none.
    let input: Vec<f32> = (0..3 * 128)
        .map(|i| match (i / 128, i % 128) {
            (0, lane) if lane < 40 => 1.0,
            (1, _) => 1.0,
            _ => -1.0,
        })
        .collect();
    let x = EMU.upload_f32(input)?;
    let mut out = EMU.zeros_u32(9)?;
    EMU.launch(
        "emu_sync_predicates",
        launch([3, 1, 1], [128, 1, 1]),
        &mut [Arg::F32(&x), Arg::OutU32s(&mut out)],
    )?;
    assert_eq!(download_u32(&out), [40, 0, 1, 128, 1, 1, 0, 0, 0]);
    Ok(())
}

/// Checks what the index kernels wrote: `stride` words per thread, the first two
/// being blockIdx and threadIdx packed as x | y << 8 | z << 16.
fn check_indices(out: &[u32], grid: [u32; 3], block: [u32; 3], stride: usize) {
    let threads = (block[0] * block[1] * block[2]) as usize;
    let blocks = (grid[0] * grid[1] * grid[2]) as usize;
    assert_eq!(out.len(), stride * threads * blocks);
    for g in 0..threads * blocks {
        let (b, t) = ((g / threads) as u32, (g % threads) as u32);
        let block_idx = [b % grid[0], b / grid[0] % grid[1], b / grid[0] / grid[1]];
        let thread_idx = [
            t % block[0],
            t / block[0] % block[1],
            t / block[0] / block[1],
        ];
        let pack = |i: [u32; 3]| i[0] | i[1] << 8 | i[2] << 16;
        assert_eq!(out[stride * g], pack(block_idx), "blockIdx of thread {g}");
        assert_eq!(
            out[stride * g + 1],
            pack(thread_idx),
            "threadIdx of thread {g}"
        );
    }
}

#[test]
fn three_d_grid_of_three_d_blocks() -> Result<()> {
    let (grid, block) = ([3, 2, 2], [4, 3, 2]);
    let mut out = EMU.zeros_u32(2 * 12 * 24)?;
    EMU.launch(
        "emu_index_3d",
        launch(grid, block),
        &mut [Arg::OutU32s(&mut out)],
    )?;
    check_indices(&download_u32(&out), grid, block, 2);
    Ok(())
}

#[test]
fn three_d_indices_survive_barriers_and_partial_warps() -> Result<()> {
    // 5 * 4 * 3 = 60 threads a block: one full warp and one of 28 lanes.
    let (grid, block) = ([2, 1, 3], [5, 4, 3]);
    let threads = 60;
    let mut out = EMU.zeros_u32(3 * threads * 6)?;
    EMU.launch(
        "emu_index_3d_ballot",
        launch(grid, block),
        &mut [Arg::OutU32s(&mut out)],
    )?;
    let out = download_u32(&out);
    check_indices(&out, grid, block, 3);
    // The ballot of "threadIdx.y is odd" over each warp's existing lanes.
    for g in 0..threads * 6 {
        let t = g % threads;
        let warp = t / 32 * 32;
        let ballot = (warp..(warp + 32).min(threads))
            .filter(|&u| (u / 5 % 4) % 2 == 1)
            .fold(0u32, |bits, u| bits | 1 << (u - warp));
        assert_eq!(out[3 * g + 2], ballot, "ballot seen by thread {g}");
    }
    Ok(())
}

#[test]
fn half_and_bfloat16_round_to_nearest_even_with_cuda_bits() -> Result<()> {
    // (input, half bits, bfloat16 bits). Each matches CUDA's own conversions (the
    // emulator's were also compared with cuda_fp16.hpp / cuda_bf16.hpp on every float).
    let cases: [(f32, u16, u16); 22] = [
        (1.0, 0x3c00, 0x3f80),
        (-2.5, 0xc100, 0xc020),
        (65504.0, 0x7bff, 0x4780), // largest half; bf16 rounds up to 65536
        (65519.0, 0x7bff, 0x4780), // just below half's midpoint to infinity
        (65520.0, 0x7c00, 0x4780), // the midpoint: to even, which is infinity
        (1.0 / 3.0, 0x3555, 0x3eab), // rounds down in half, up in bf16
        (0.1, 0x2e66, 0x3dcd),
        (f32::from_bits(0x3380_0000), 0x0001, 0x3380), // 2^-24: the smallest half subnormal
        (f32::from_bits(0x3300_0000), 0x0000, 0x3300), // 2^-25: a tie, to even (zero)
        (f32::from_bits(0x33c0_0000), 0x0002, 0x33c0), // 3 * 2^-25: a tie, to even (2)
        (f32::from_bits(0x387f_c000), 0x03ff, 0x3880), // the largest half subnormal
        (f32::from_bits(0x3f80_1000), 0x3c00, 0x3f80), // 1 + 2^-11: half tie, to even
        (f32::from_bits(0x3f80_3000), 0x3c02, 0x3f80), // 1 + 3 * 2^-11: half tie, to even
        (f32::from_bits(0x3f80_8000), 0x3c04, 0x3f80), // 1 + 2^-8: bf16 tie, to even
        (f32::from_bits(0x3f81_8000), 0x3c0c, 0x3f82), // 1 + 3 * 2^-8: bf16 tie, to even
        (f32::MAX, 0x7c00, 0x7f80),
        (1e-40, 0x0000, 0x0001), // a float subnormal: zero in half, kept by bf16
        (-0.0, 0x8000, 0x8000),
        (f32::INFINITY, 0x7c00, 0x7f80),
        (f32::NEG_INFINITY, 0xfc00, 0xff80),
        (f32::NAN, 0x7fff, 0x7fff),                    // the canonical NaN
        (f32::from_bits(0xffc0_0001), 0x7fff, 0x7fff), // any NaN, any sign
    ];
    let n = cases.len();
    let x = EMU.upload_f32(cases.iter().map(|c| c.0).collect())?;
    let mut bits = EMU.zeros_u32(2 * n)?;
    let mut back = EMU.zeros_f32(2 * n)?;
    EMU.launch(
        "emu_half_convert",
        launch([1, 1, 1], [32, 1, 1]),
        &mut [
            Arg::F32(&x),
            Arg::OutU32s(&mut bits),
            Arg::OutF32(&mut back),
            Arg::I32(n as i32),
        ],
    )?;
    let (bits, back) = (download_u32(&bits), download(&back));
    for (i, &(input, half, bf16)) in cases.iter().enumerate() {
        assert_eq!(
            bits[2 * i],
            half as u32,
            "half bits of {input:e} ({:#010x})",
            input.to_bits()
        );
        assert_eq!(bits[2 * i + 1], bf16 as u32, "bfloat16 bits of {input:e}");
        // Back to float: bf16 is the top half of a float; half is worked out here.
        assert_eq!(
            back[2 * i + 1].to_bits(),
            (bf16 as u32) << 16,
            "bfloat16 of {input:e}"
        );
        let expected = half_to_f32(half);
        assert_eq!(
            back[2 * i].to_bits(),
            expected.to_bits(),
            "half of {input:e}"
        );
    }
    Ok(())
}

/// binary16 to float, exactly: (-1)^s * 2^(e-15) * 1.m, subnormals 2^-24 * m; any NaN
/// becomes 0x7fffffff as in CUDA.
fn half_to_f32(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0f32 } else { 1.0 };
    let (e, m) = ((h >> 10) & 0x1f, (h & 0x3ff) as f32);
    match e {
        0 => sign * m * 2f32.powi(-24),
        0x1f if m == 0.0 => sign * f32::INFINITY,
        0x1f => f32::from_bits(0x7fff_ffff),
        _ => sign * (1.0 + m / 1024.0) * 2f32.powi(e as i32 - 15),
    }
}

#[test]
fn a_warp_may_shuffle_after_another_warp_exited() -> Result<()> {
    let mut out = EMU.zeros_f32(64)?;
    EMU.launch(
        "emu_second_warp_shuffles",
        launch([1, 1, 1], [64, 1, 1]),
        &mut [Arg::OutF32(&mut out)],
    )?;
    let out = download(&out);
    assert!(out[..32].iter().all(|&v| v == 0.0));
    let expected: Vec<f32> = (32..64).map(|i| (i ^ 1) as f32).collect();
    assert_eq!(out[32..], expected[..]);
    Ok(())
}

#[test]
fn big_frames_fit_on_fiber_stacks() -> Result<()> {
    let mut out = EMU.zeros_f32(64)?;
    EMU.launch(
        "emu_big_frame",
        launch([1, 1, 1], [64, 1, 1]),
        &mut [Arg::OutF32(&mut out)],
    )?;
    // The kernel's sum, in the same order and precision.
    for (t, &v) in download(&out).iter().enumerate() {
        let expected = (0..8192).fold(0.0f32, |s, i| s + (t + i % 7) as f32);
        assert_eq!(v, expected, "thread {t}");
    }
    Ok(())
}

#[test]
fn an_exited_thread_at_a_barrier_is_divergence() {
    let error = launch_error("emu_diverge_exit", launch([1, 1, 1], [64, 1, 1]), 64);
    for part in [
        "kernel `emu_diverge_exit`, block (0,0,0)",
        "barrier divergence",
        "1 thread (0,0,0) exited",
        "63 threads (first (1,0,0)) wait at __syncthreads() (selftest.cu:",
    ] {
        assert!(error.contains(part), "{part:?} missing from: {error}");
    }
}

#[test]
fn two_barrier_sites_are_divergence_and_name_the_block() {
    let error = launch_error("emu_diverge_sites", launch([4, 1, 1], [64, 1, 1]), 256);
    assert!(
        error.contains("kernel `emu_diverge_sites`, block (2,0,0)"),
        "{error}"
    );
    assert!(
        error.contains("32 threads (first (32,0,0)) wait at __syncthreads()"),
        "{error}"
    );
}

#[test]
fn big_launches_report_their_lowest_failing_block() {
    // Big enough to share the blocks with the helper OS thread: still the same report.
    for _ in 0..5 {
        let error = launch_error(
            "emu_diverge_sites",
            launch([1000, 1, 1], [64, 1, 1]),
            64_000,
        );
        assert!(
            error.contains("kernel `emu_diverge_sites`, block (2,0,0)"),
            "{error}"
        );
        let error = launch_error("emu_diverge_exit", launch([1000, 1, 1], [64, 1, 1]), 64);
        assert!(
            error.contains("kernel `emu_diverge_exit`, block (0,0,0)"),
            "{error}"
        );
    }
}

#[test]
fn mismatched_warp_operations_are_divergence() {
    let error = launch_error("emu_diverge_warp", launch([1, 1, 1], [32, 1, 1]), 32);
    assert!(
        error.contains("kernel `emu_diverge_warp`, block (0,0,0)"),
        "{error}"
    );
    assert!(
        error.contains("wait at __shfl_xor_sync(0xffffffff, ...)"),
        "{error}"
    );
    assert!(
        error.contains("wait at __ballot_sync(0xffffffff, ...)"),
        "{error}"
    );
}

#[test]
fn a_mask_without_the_calling_lane_is_an_error() {
    let error = launch_error("emu_bad_mask", launch([1, 1, 1], [32, 1, 1]), 32);
    assert!(
        error.contains("thread (1,0,0) calls __shfl_sync with mask 0x00000001"),
        "{error}"
    );
}

#[test]
fn bad_launches_are_errors() -> Result<()> {
    let x = EMU.upload_f32(vec![1.0; 64])?;
    let mut y = EMU.zeros_f32(64)?;
    let mut scale = |kernel: &str, grid: [u32; 3], block: [u32; 3]| {
        let args = &mut [
            Arg::F32(&x),
            Arg::OutF32(&mut y),
            Arg::Float(2.0),
            Arg::I32(64),
        ];
        format!(
            "{:#}",
            EMU.launch(kernel, launch(grid, block), args).unwrap_err()
        )
    };
    let error = scale("no_such_kernel", [1, 1, 1], [64, 1, 1]);
    assert!(error.contains("unknown kernel `no_such_kernel`"), "{error}");
    let error = scale("emu_scale", [1, 1, 1], [1025, 1, 1]);
    assert!(error.contains("at most 1024 threads"), "{error}");
    let error = scale("emu_scale", [1, 1, 1], [32, 32, 2]);
    assert!(error.contains("at most 1024 threads"), "{error}");
    let error = scale("emu_scale", [1, 0, 1], [64, 1, 1]);
    assert!(
        error.contains("every dimension must be at least 1"),
        "{error}"
    );
    let error = scale("emu_scale", [1, 1, 1], [64, 0, 1]);
    assert!(
        error.contains("every dimension must be at least 1"),
        "{error}"
    );
    Ok(())
}

#[test]
fn argument_lists_are_checked_against_the_kernel() -> Result<()> {
    let x = EMU.upload_f32(vec![1.0; 64])?;
    let mut y = EMU.zeros_f32(64)?;
    let config = launch([1, 1, 1], [64, 1, 1]);
    // A buffer the kernel writes passed as read-only, and a missing argument.
    let error = EMU
        .launch(
            "emu_scale",
            config,
            &mut [Arg::F32(&x), Arg::F32(&y), Arg::Float(2.0), Arg::I32(64)],
        )
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "emu: kernel `emu_scale` takes (const float*, float*, float, int32) but was launched \
         with (const float*, const float*, float, int32)"
    );
    let error = EMU
        .launch(
            "emu_scale",
            config,
            &mut [Arg::F32(&x), Arg::OutF32(&mut y), Arg::Float(2.0)],
        )
        .unwrap_err();
    assert!(error
        .to_string()
        .contains("launched with (const float*, float*, float)"));
    Ok(())
}

#[test]
fn launches_from_several_threads_at_once() {
    let workers: Vec<_> = (0..4)
        .map(|k| {
            thread::spawn(move || {
                for round in 0..20 {
                    let n = 512;
                    let input: Vec<f32> = (0..n).map(|i| (i * (k + 1) + round) as f32).collect();
                    let x = EMU.upload_f32(input.clone()).unwrap();
                    let mut y = EMU.zeros_f32(n).unwrap();
                    EMU.launch(
                        "emu_reverse",
                        launch([2, 1, 1], [256, 1, 1]),
                        &mut [Arg::F32(&x), Arg::OutF32(&mut y), Arg::I32(n as i32)],
                    )
                    .unwrap();
                    let y = download(&y);
                    for i in 0..n {
                        assert_eq!(y[i], input[i / 256 * 256 + 255 - i % 256]);
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
}

/// Big launches (at least 16,384 threads, which the calling thread shares with the
/// emulator's helper threads) from several threads at once, of tensor-core kernels,
/// whose blocks are slow (every mma is a warp barrier), so one launch is often still
/// running on a helper when its caller has run out of blocks and another launch comes
/// in. The helpers once let that launch take them over while they still ran the first
/// one, whose caller then returned: its results came back with blocks missing, the
/// helper went on writing into the finished launch's frame on the caller's stack
/// (SIGSEGV, seen with parallel parity tests), and the counts that the new launch
/// waits on went wrong (a hang).
#[test]
fn big_tensor_core_launches_from_several_threads_at_once() {
    within_a_minute(|| {
        let workers: Vec<_> = (0..4u64)
            .map(|k| {
                thread::spawn(move || {
                    let mut rng = StdRng::seed_from_u64(k);
                    for round in 0..24 {
                        // 512 blocks of one warp: just big enough to be shared.
                        let cases = 512;
                        let bf16 = (k + round) % 2 == 1;
                        let (depth, name) = if bf16 { (16, "bf16") } else { (8, "tf32") };
                        let a = tensor_cores::small_integers(&mut rng, 16 * depth * cases);
                        let b = tensor_cores::small_integers(&mut rng, depth * 8 * cases);
                        let c = tensor_cores::small_integers(&mut rng, 128 * cases);
                        let d = if bf16 {
                            tensor_cores::mma_bf16(&EMU, &a, &b, &c)
                        } else {
                            tensor_cores::mma_tf32(&EMU, &a, &b, &c, true)
                        }
                        .unwrap();
                        let reference = tensor_cores::gemm_reference(&a, &b, &c, 16, depth, 8);
                        let what = format!("thread {k}, round {round}, {name}");
                        tensor_cores::assert_exact(&d, &reference, &what);
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().unwrap();
        }
    });
}

#[test]
fn launch_cost_over_a_million_threads() -> Result<()> {
    let n = 1_000_000;
    let x = EMU.upload_f32(vec![1.5; n])?;
    let mut y = EMU.zeros_f32(n)?;
    for kernel in ["emu_scale", "emu_scale_sync"] {
        let mut best = Duration::MAX;
        for _ in 0..3 {
            let start = Instant::now();
            EMU.launch(
                kernel,
                Launch::linear(n, 256),
                &mut [
                    Arg::F32(&x),
                    Arg::OutF32(&mut y),
                    Arg::Float(2.0),
                    Arg::I32(n as i32),
                ],
            )?;
            best = best.min(start.elapsed());
        }
        assert!(download(&y).iter().all(|&v| v == 3.0));
        println!(
            "{kernel}: {:.1} ms for {n} threads in blocks of 256 ({:.1} ns a thread)",
            best.as_secs_f64() * 1e3,
            best.as_secs_f64() * 1e9 / n as f64
        );
    }
    Ok(())
}

/// Run in a child process by `address_sanitizer_catches_out_of_bounds`.
#[test]
#[ignore = "aborts under AddressSanitizer; run by address_sanitizer_catches_out_of_bounds"]
fn out_of_bounds_read() {
    let x = EMU.upload_f32(vec![1.0; 100]).unwrap();
    let mut y = EMU.zeros_f32(100).unwrap();
    EMU.launch(
        "emu_out_of_bounds",
        launch([1, 1, 1], [128, 1, 1]),
        &mut [Arg::F32(&x), Arg::OutF32(&mut y), Arg::I32(100)],
    )
    .unwrap();
}

#[test]
fn address_sanitizer_catches_out_of_bounds() {
    // An error (this test fails) where GOOGLENET_EMU_ASAN=1 asks for it and it cannot
    // be had.
    if !EmuDriver::address_sanitizer().unwrap() {
        println!("skipped: the emulator runs without AddressSanitizer (GOOGLENET_EMU_ASAN=1 runs it with)");
        return;
    }
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "out_of_bounds_read",
            "--test-threads=1",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "the out-of-bounds kernel passed:\n{stderr}"
    );
    assert!(
        stderr.contains("AddressSanitizer: heap-buffer-overflow")
            && stderr.contains("emu_out_of_bounds"),
        "no AddressSanitizer report naming the kernel:\n{stderr}"
    );
}

// ---- The sanitizer checks. ----

/// Runs `emu_race_block` (`hazard`, `synced`) on 2 blocks of 256 with `driver`.
fn race_block(driver: EmuDriver, hazard: i32, synced: i32) -> Result<Vec<f32>> {
    let n = 512;
    let x = driver.upload_f32((0..n).map(|i| i as f32).collect())?;
    let mut out = driver.zeros_f32(n)?;
    driver.launch(
        "emu_race_block",
        launch([2, 1, 1], [256, 1, 1]),
        &mut [
            Arg::F32(&x),
            Arg::OutF32(&mut out),
            Arg::I32(hazard),
            Arg::I32(synced),
        ],
    )?;
    driver.download_f32(&out)
}

#[test]
fn race_check_reports_each_hazard_between_threads_of_a_block() {
    let cases = [
        (
            0,
            "race on shared `float s[256]` (selftest.cu:259), element [0] (flat index 0): \
             thread (1,0,0) reads it after thread (0,0,0) wrote it, with no barrier between \
             them (one warp, but no __syncwarp, shuffle or vote of both lanes orders them): \
             read after write",
        ),
        (
            1,
            "element [1] (flat index 1): thread (1,0,0) writes it after thread (0,0,0) read \
             it, with no barrier between them (one warp, but no __syncwarp, shuffle or vote \
             of both lanes orders them): write after read",
        ),
        (
            2,
            "element [0] (flat index 0): thread (1,0,0) writes it after thread (0,0,0) wrote \
             it, with no barrier between them (one warp, but no __syncwarp, shuffle or vote \
             of both lanes orders them): write after write",
        ),
    ];
    for (hazard, expected) in cases {
        let error = format!("{:#}", race_block(CHECKED, hazard, 0).unwrap_err());
        assert!(
            error.starts_with("emu: kernel `emu_race_block`, block (0,0,0): race on shared"),
            "hazard {hazard}: {error}"
        );
        assert!(error.contains(expected), "hazard {hazard}: {error}");
        // Unchecked, the same launch passes: the fibers' order hides the race.
        race_block(UNCHECKED, hazard, 0).unwrap();
    }
}

#[test]
fn race_check_passes_the_synchronised_twins() -> Result<()> {
    for hazard in 0..3 {
        let checked = race_block(CHECKED, hazard, 1)?;
        assert_eq!(
            checked,
            race_block(UNCHECKED, hazard, 1)?,
            "hazard {hazard}"
        );
        let expected: Vec<f32> = (0..512usize)
            .map(|i| {
                let (block, t) = (i / 256 * 256, i % 256);
                match hazard {
                    0 => (block + (t + 255) % 256) as f32,
                    1 => 2.0 * (block + (t + 1) % 256) as f32,
                    _ => (block + 1) as f32,
                }
            })
            .collect();
        assert_eq!(checked, expected, "hazard {hazard}");
    }
    Ok(())
}

/// Runs `emu_race_warp` with `order` (0 none, 1 __syncwarp, 2 a shuffle).
fn race_warp(driver: EmuDriver, order: i32) -> Result<f32> {
    let x = driver.upload_f32((1..=32).map(|i| i as f32).collect())?;
    let mut out = driver.zeros_f32(1)?;
    driver.launch(
        "emu_race_warp",
        launch([1, 1, 1], [32, 1, 1]),
        &mut [Arg::F32(&x), Arg::OutF32(&mut out), Arg::I32(order)],
    )?;
    Ok(driver.download_f32(&out)?[0])
}

#[test]
fn race_check_reports_reliance_on_implicit_warp_synchronous_order() {
    let error = format!("{:#}", race_warp(CHECKED, 0).unwrap_err());
    assert!(
        error.contains(
            "race on shared `float s[32]` (selftest.cu:289), element [1] (flat index 1): \
             thread (1,0,0) writes it after thread (0,0,0) read it, with no barrier between \
             them (one warp, but no __syncwarp, shuffle or vote of both lanes orders them): \
             write after read"
        ),
        "{error}"
    );
}

#[test]
fn race_check_accepts_a_syncwarp_or_a_shuffle_between_warp_steps() -> Result<()> {
    for order in [1, 2] {
        assert_eq!(race_warp(CHECKED, order)?, 528.0, "order {order}");
    }
    Ok(())
}

#[test]
fn race_check_catches_shared_indices_out_of_bounds() {
    let error = within_a_minute(|| {
        let mut out = CHECKED.zeros_f32(32).unwrap();
        let config = launch([1, 1, 1], [32, 1, 1]);
        let result = CHECKED.launch(
            "emu_shared_out_of_bounds",
            config,
            &mut [Arg::OutF32(&mut out)],
        );
        format!("{:#}", result.unwrap_err())
    });
    assert!(
        error.contains(
            "thread (31,0,0) indexes shared `float s[32]` (selftest.cu:305) with 32 on \
             dimension 0, whose extent is 32"
        ),
        "{error}"
    );
}

/// Launches `emu_scale` (y = 2x, i < n) with `driver`.
fn scale(driver: EmuDriver, x: &Buffer<f32>, y: &mut Buffer<f32>, n: usize) -> Result<()> {
    driver.launch(
        "emu_scale",
        Launch::linear(n, 32),
        &mut [
            Arg::F32(x),
            Arg::OutF32(y),
            Arg::Float(2.0),
            Arg::I32(n as i32),
        ],
    )
}

#[test]
fn init_check_names_the_unwritten_element_a_kernel_reads() -> Result<()> {
    // x: its first 40 elements written by a kernel, the other 24 by nothing.
    let ones = CHECKED.upload_f32(vec![1.0; 64])?;
    let mut x = CHECKED.uninit_f32(64)?;
    scale(CHECKED, &ones, &mut x, 40)?;
    let mut y = CHECKED.zeros_f32(64)?;
    scale(CHECKED, &x, &mut y, 40)?; // reads only what was written: fine
    assert_eq!(CHECKED.download_f32(&y)?[..40], [4.0; 40]);

    let error = format!("{:#}", scale(CHECKED, &x, &mut y, 64).unwrap_err());
    assert_eq!(
        error,
        "emu: init check: kernel `emu_scale` reads memory that no upload, memset or kernel \
         wrote: element 40 of argument 0 (const float*) (24 of its 64 elements are \
         unwritten); what it holds changes element 40 of argument 1 (float*)"
    );
    // Unchecked, the read gives the NaNs an uninitialised buffer holds in the emulator.
    scale(UNCHECKED, &x, &mut y, 64)?;
    assert!(UNCHECKED.download_f32(&y)?[40..].iter().all(|v| v.is_nan()));
    Ok(())
}

#[test]
fn init_check_catches_a_kernel_that_relies_on_a_zeroed_output() -> Result<()> {
    let x = CHECKED.upload_f32(vec![1.5; 100])?;
    let config = Launch::linear(100, 32);
    let mut y = CHECKED.uninit_f32(100)?;
    let args = &mut [Arg::F32(&x), Arg::OutF32(&mut y), Arg::I32(100)];
    let error = format!(
        "{:#}",
        CHECKED.launch("emu_accumulate", config, args).unwrap_err()
    );
    assert!(
        error.contains("kernel `emu_accumulate` reads memory that no upload, memset or kernel wrote: element 0 of argument 1 (float*) (100 of its 100 elements are unwritten); what it holds changes element 0 of argument 1 (float*)"),
        "{error}"
    );
    // The twin: the output zeroed first.
    let mut y = CHECKED.zeros_f32(100)?;
    let args = &mut [Arg::F32(&x), Arg::OutF32(&mut y), Arg::I32(100)];
    CHECKED.launch("emu_accumulate", config, args)?;
    assert_eq!(CHECKED.download_f32(&y)?, vec![1.5; 100]);
    Ok(())
}

#[test]
fn init_check_catches_downloads_of_what_nothing_wrote() -> Result<()> {
    let ones = CHECKED.upload_f32(vec![1.0; 64])?;
    let mut y = CHECKED.uninit_f32(64)?;
    scale(CHECKED, &ones, &mut y, 50)?;
    let error = format!("{:#}", CHECKED.download_f32(&y).unwrap_err());
    assert_eq!(
        error,
        "emu: init check: a download of a buffer of 64 elements reads 14 that no upload, \
         memset or kernel wrote (the first is element 50)"
    );
    scale(CHECKED, &ones, &mut y, 64)?;
    assert_eq!(CHECKED.download_f32(&y)?, vec![2.0; 64]);
    Ok(())
}

/// Runs `emu_block_chain` (`chained`) over 64 blocks of 32 with `driver`.
fn block_chain(driver: EmuDriver, chained: i32) -> Result<Vec<f32>> {
    let mut out = driver.zeros_f32(64)?;
    driver.launch(
        "emu_block_chain",
        launch([64, 1, 1], [32, 1, 1]),
        &mut [Arg::OutF32(&mut out), Arg::I32(chained)],
    )?;
    driver.download_f32(&out)
}

#[test]
fn order_check_catches_blocks_that_depend_on_each_other() -> Result<()> {
    let error = format!("{:#}", block_chain(CHECKED, 1).unwrap_err());
    assert!(
        error.starts_with(
            "emu: order check: the blocks of kernel `emu_block_chain` depend on each other: \
             element "
        ) && error.contains("of argument 0 (float*) is ")
            && error.contains("with the blocks run in order,")
            && error.contains("with them shuffled (seed 0x"),
        "{error}"
    );
    // Unchecked, in order, the chain happens to work.
    let expected: Vec<f32> = (1..=64).map(|b| b as f32).collect();
    assert_eq!(block_chain(UNCHECKED, 1)?, expected);
    // The twin computes the same without the dependency.
    assert_eq!(block_chain(CHECKED, 0)?, expected);
    Ok(())
}

#[test]
fn the_checks_are_parsed_from_a_list() -> Result<()> {
    assert_eq!(Checks::parse("")?, Checks::NONE);
    assert_eq!(Checks::parse("all")?, Checks::ALL);
    assert_eq!(
        Checks::parse("race, order")?,
        Checks {
            race: true,
            init: false,
            order: true,
        }
    );
    assert_eq!(
        Checks::parse("race,bogus").unwrap_err().to_string(),
        "GOOGLENET_EMU_CHECK=\"race,bogus\": unknown check \"bogus\" (expected race, init, \
         order or all, comma-separated)"
    );
    Ok(())
}

/// Run in a child process with GOOGLENET_EMU_CHECK=race by
/// `the_environment_turns_the_checks_on`.
#[test]
#[ignore = "run by the_environment_turns_the_checks_on, with GOOGLENET_EMU_CHECK=race"]
fn planted_race_with_the_default_driver() {
    let error = race_block(EmuDriver::new(), 0, 0).unwrap_err();
    println!("reported: {error:#}");
}

#[test]
fn the_environment_turns_the_checks_on() {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "planted_race_with_the_default_driver",
            "--nocapture",
        ])
        .env("GOOGLENET_EMU_CHECK", "race")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("reported: emu: kernel `emu_race_block`"),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn race_check_copies_rewrite_shared_declarations_and_extern_c_in_code_only() {
    let source = "// __shared__ float not_code[2];\n\
                  extern \"C\" __global__ void k() {\n\
                  \x20   __shared__ float a[16][4 + 1], b[8];\n\
                  \x20   __shared__ volatile int\n        n;\n\
                  \x20   const char* s = \"__shared__ x;\";\n\
                  \x20   extern __shared__ float dynamic[];\n\
                  }\n\
                  extern \"C\" { void f(); }\n";
    let (copy, warnings) = emu_shared::instrument(source, "k.cu");
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(
        copy,
        "// __shared__ float not_code[2];\n\
         \x20__global__ void k() {\n\
         \x20   static thread_local ::emu::Shared<float[16][4 + 1]> a{\"float a[16][4 + 1]\", \
         \"k.cu\", 3}; static thread_local ::emu::Shared<float[8]> b{\"float b[8]\", \
         \"k.cu\", 3};\n\
         \x20   static thread_local ::emu::Shared<int> n{\"volatile int n\", \"k.cu\", 4};\n\n\
         \x20   const char* s = \"__shared__ x;\";\n\
         \x20   extern __shared__ float dynamic[];\n\
         }\n\
         inline namespace emu_extern_c { void f(); }\n"
    );
    // An alignment stays on the declaration, outside the wrapper's type.
    let (copy, warnings) = emu_shared::instrument("__shared__ __align__(16) float t[8];", "k.cu");
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(
        copy,
        "static thread_local __align__(16) ::emu::Shared<float[8]> t{\"float t[8]\", \"k.cu\", 1};"
    );
    // A form it does not know stays as it is, with a warning.
    let (copy, warnings) = emu_shared::instrument("__shared__ float x = 1;", "k.cu");
    assert_eq!(copy, "__shared__ float x = 1;");
    assert_eq!(
        warnings,
        [
            "k.cu:1: this __shared__ declaration is not of the form `__shared__ T name[N]...;`, \
          so the race check does not watch it"
        ]
    );
}

// ---- Misuses of the tensor-core instructions (kernels/mma.cuh), each with its correct
// twin; their results are tested in tensor_cores.rs. ----

fn mma_misuse(how: i32, threads: u32) -> Result<()> {
    let mut out = EMU.zeros_f32(128)?;
    EMU.launch(
        "emu_mma_misuse",
        launch([1, 1, 1], [threads, 1, 1]),
        &mut [Arg::OutF32(&mut out), Arg::I32(how)],
    )
}

#[test]
fn mma_needs_every_lane_of_a_full_warp() {
    within_a_minute(|| {
        mma_misuse(0, 32).unwrap();
        let exited = format!("{:#}", mma_misuse(1, 32).unwrap_err());
        assert!(
            exited.contains("kernel `emu_mma_misuse`, block (0,0,0): barrier divergence")
                && exited.contains(
                    "31 threads (first (0,0,0)) wait at mma_tf32_m16n8k8() (selftest.cu:"
                )
                && exited.contains("1 thread (5,0,0) exited"),
            "{exited}"
        );
        let partial = format!("{:#}", mma_misuse(2, 16).unwrap_err());
        assert!(
            partial.contains(
                "thread (0,0,0) calls mma_tf32_m16n8k8 in a warp of 16 threads: it needs all \
                 32 lanes (blocks of a multiple of 32 threads) (selftest.cu:"
            ),
            "{partial}"
        );
    });
}

fn ldmatrix_misuse(driver: EmuDriver, how: i32) -> Result<Vec<u32>> {
    let mut out = driver.zeros_u32(128)?;
    driver.launch(
        "emu_ldmatrix_misuse",
        launch([1, 1, 1], [32, 1, 1]),
        &mut [Arg::OutU32s(&mut out), Arg::I32(how)],
    )?;
    driver.download_u32(&out)
}

#[test]
fn ldmatrix_rows_must_be_aligned_shared_and_the_same_instruction() -> Result<()> {
    // The twin: lane l gets row l / 4, columns 2 (l % 4) and + 1 of matrix i, whose
    // row r is tile row 8 i + r, holding 8 (8 i + r) + c.
    let out = ldmatrix_misuse(CHECKED, 0)?;
    for lane in 0..32 {
        for i in 0..4 {
            let first = 8 * (8 * i + lane / 4) + 2 * (lane % 4);
            assert_eq!(
                out[4 * lane + i],
                (first | (first + 1) << 16) as u32,
                "lane {lane}, {i}"
            );
        }
    }
    let error = |how| format!("{:#}", ldmatrix_misuse(EMU, how).unwrap_err());
    let misaligned = error(1);
    assert!(
        misaligned.contains("thread (0,0,0) passes ldmatrix_x4 the row address 0x")
            && misaligned.contains(", which is not 16-byte aligned (selftest.cu:"),
        "{misaligned}"
    );
    for how in [2, 3] {
        let outside = error(how);
        assert!(
            outside.contains(", which is not in shared memory (selftest.cu:"),
            "{outside}"
        );
    }
    let mixed = within_a_minute(move || error(4));
    assert!(
        mixed.contains("16 threads (first (0,0,0)) wait at ldmatrix_x4() (selftest.cu:")
            && mixed.contains("16 threads (first (16,0,0)) wait at ldmatrix_x2() (selftest.cu:"),
        "{mixed}"
    );
    // The race check sees each lane's row as its read: the next lane writes it after.
    let race = format!("{:#}", ldmatrix_misuse(CHECKED, 5).unwrap_err());
    assert!(
        race.contains("race on shared `unsigned short tile[32][8]` (selftest.cu:")
            && race.contains("thread (1,0,0) writes it after thread (0,0,0) read it")
            && race.ends_with("write after read"),
        "{race}"
    );
    ldmatrix_misuse(UNCHECKED, 5)?; // the same kernel runs without the check
    Ok(())
}

fn cp_async_order(driver: EmuDriver, early: i32) -> Result<Vec<f32>> {
    let src = driver.upload_f32((0..64).map(|i| i as f32).collect())?;
    let mut out = driver.zeros_f32(96)?;
    driver.launch(
        "emu_cp_async_order",
        launch([1, 1, 1], [32, 1, 1]),
        &mut [Arg::F32(&src), Arg::OutF32(&mut out), Arg::I32(early)],
    )?;
    driver.download_f32(&out)
}

#[test]
fn cp_async_lands_at_its_wait_and_wait_1_leaves_the_newest_group() -> Result<()> {
    // Unchecked, the read before the wait that covers it gets the old contents.
    let out = cp_async_order(UNCHECKED, 1)?;
    let expected: Vec<f32> = (0..32)
        .map(|i| i as f32)
        .chain([-1.0; 32])
        .chain((32..64).map(|i| i as f32))
        .collect();
    assert_eq!(out, expected);
    // The race check reports that read; its twin, without it, passes.
    let error = format!("{:#}", cp_async_order(CHECKED, 1).unwrap_err());
    assert!(
        error.contains("thread (0,0,0) reads shared `float s1[32]` (selftest.cu:")
            && error
                .contains("element [0] (flat index 0), while a cp.async into it has not landed"),
        "{error}"
    );
    let out = cp_async_order(CHECKED, 0)?;
    assert_eq!(out[64..], expected[64..]);
    Ok(())
}

fn cp_async_mirror(driver: EmuDriver, synced: i32) -> Result<Vec<f32>> {
    let src = driver.upload_f32((0..32).map(|i| i as f32).collect())?;
    let mut out = driver.zeros_f32(32)?;
    driver.launch(
        "emu_cp_async_mirror",
        launch([1, 1, 1], [32, 1, 1]),
        &mut [Arg::F32(&src), Arg::OutF32(&mut out), Arg::I32(synced)],
    )?;
    driver.download_f32(&out)
}

#[test]
fn cp_async_copies_reach_other_threads_after_a_barrier() -> Result<()> {
    // Thread 15 reads s[16] before thread 16's copy is even issued (threads run in
    // order): the copy is a write from its issue on, so the check names it.
    let error = format!("{:#}", cp_async_mirror(CHECKED, 0).unwrap_err());
    assert!(
        error.contains("race on shared `float s[32]` (selftest.cu:")
            && error.contains(
                "element [16] (flat index 16): thread (16,0,0) writes it after thread \
                 (15,0,0) read it"
            )
            && error.ends_with("write after read"),
        "{error}"
    );
    let out = cp_async_mirror(CHECKED, 1)?;
    assert_eq!(out, (0..32).rev().map(|i| i as f32).collect::<Vec<_>>());
    Ok(())
}

fn cp_async_misuse(driver: EmuDriver, src: &Buffer<f32>, how: i32, valid: i32) -> Result<Vec<f32>> {
    let mut out = driver.zeros_f32(128)?;
    driver.launch(
        "emu_cp_async_misuse",
        launch([1, 1, 1], [32, 1, 1]),
        &mut [
            Arg::F32(src),
            Arg::OutF32(&mut out),
            Arg::I32(how),
            Arg::I32(valid),
        ],
    )?;
    driver.download_f32(&out)
}

#[test]
fn cp_async_addresses_waits_and_reads_are_checked() -> Result<()> {
    let values: Vec<f32> = (0..132).map(|i| i as f32 + 0.5).collect();
    let src = EMU.upload_f32(values.clone())?;
    assert_eq!(cp_async_misuse(CHECKED, &src, 0, 1)?, values[..128]);
    let error = |how| format!("{:#}", cp_async_misuse(EMU, &src, how, 1).unwrap_err());
    for how in [1, 2] {
        let misaligned = error(how);
        assert!(
            misaligned.contains("calls cp_async<16> from 0x")
                && misaligned.contains(": both addresses must be 16-byte aligned (selftest.cu:"),
            "{misaligned}"
        );
    }
    let global = error(3);
    assert!(
        global.contains(", which is not in shared memory (selftest.cu:"),
        "{global}"
    );
    for how in [4, 5] {
        let unwaited = error(how);
        assert!(
            unwaited.contains(
                "thread (0,0,0) exits with 1 cp.async copies that no cp_async_wait covered \
                 (the last from selftest.cu:"
            ),
            "{unwaited}"
        );
    }
    // The init check sees what a copy reads; a zero fill reads nothing.
    let unwritten = CHECKED.uninit_f32(132)?;
    let error = format!(
        "{:#}",
        cp_async_misuse(CHECKED, &unwritten, 6, 1).unwrap_err()
    );
    assert!(
        error.contains(
            "init check: kernel `emu_cp_async_misuse` reads memory that no upload, memset or \
             kernel wrote: element 0 of argument 0 (const float*)"
        ),
        "{error}"
    );
    assert_eq!(cp_async_misuse(CHECKED, &unwritten, 6, 0)?, vec![0.0; 128]);
    Ok(())
}
