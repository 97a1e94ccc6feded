//! The tensor-core instructions of kernels/mma.cuh, on the kernels of
//! kernels/mma_selftest.cu: the conversions bit for bit against host references over
//! their edge cases; mma on identities and one-hot matrices (a wrong lane mapping of A,
//! B, C or D moves a value and fails), on random matrices against an f64 reference,
//! and the truncation of unrounded TF32 operands; every ldmatrix form on a pattern
//! whose every value names its matrix, row and column; cp.async of each size, zero
//! fill and groups; all three as a GEMM stages them. Each body runs on the emulator
//! (`emu::`) and on a GPU (`cuda::`, ignored without one: scripts/gpu-check.sh runs
//! it), so the emulator is held to the hardware. The emulator-only misuses (partial
//! warps, reads before a wait, ...) are in the parent file.

use anyhow::Result;
use googlenet::engine::device::gpu::{Arg, Driver, Launch};
use googlenet::engine::device::Buffer;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Stamps each test body, `fn name(driver: &dyn Driver) -> Result<()>`, for the
/// emulator and for GPU 0.
macro_rules! instruction_tests {
    ($($name:ident),* $(,)?) => {
        mod emu {
            $(
                #[test]
                fn $name() -> anyhow::Result<()> {
                    super::$name(&googlenet::engine::device::emu::EmuDriver::new())
                }
            )*
        }
        mod cuda {
            $(
                #[test]
                #[ignore = "needs a CUDA GPU: run with --include-ignored where there is one"]
                fn $name() -> anyhow::Result<()> {
                    super::$name(&googlenet::engine::device::cuda::CudaDriver::new(0)?)
                }
            )*
        }
    };
}

instruction_tests!(
    tf32_and_bf16_conversions_are_bit_exact,
    mma_tf32_on_identities_and_one_hot_matrices,
    mma_tf32_on_random_matrices,
    mma_tf32_ignores_the_low_13_bits_of_its_operands,
    mma_bf16_on_identities_and_one_hot_matrices,
    mma_bf16_on_random_matrices,
    ldmatrix_every_form,
    cp_async_sizes_zero_fill_and_groups,
    cp_async_ldmatrix_and_mma_stage_a_gemm,
);

/// A word no kernel writes: outputs start as it, so an element left unwritten fails.
const POISON: u32 = 0x7fba_dbad;

fn one_warp(blocks: usize) -> Launch {
    Launch {
        grid: [blocks as u32, 1, 1],
        block: [32, 1, 1],
    }
}

fn poisoned_f32(driver: &dyn Driver, len: usize) -> Result<Buffer<f32>> {
    driver.upload_f32(vec![f32::from_bits(POISON); len])
}

// ---------------------------------------------------------------------------------
// Conversions.

/// cvt.rna.tf32.f32 worked out in f64, independently of the emulator's bit trick: the
/// value to 11 significant bits (or to TF32's subnormal step, 2^-136), ties away from
/// zero; past the largest TF32, infinity. None for a NaN (which NaN is unspecified).
fn tf32_reference(x: f32) -> Option<u32> {
    round_reference(x, 10, false)
}

/// cvt.rn.bf16.f32: to 8 significant bits (subnormal step 2^-133), ties to even, as the
/// top 16 bits of the f32.
fn bf16_reference(x: f32) -> Option<u16> {
    round_reference(x, 7, true).map(|bits| (bits >> 16) as u16)
}

/// `x` rounded to `mantissa` fraction bits, as f32 bits.
fn round_reference(x: f32, mantissa: i32, ties_to_even: bool) -> Option<u32> {
    if x.is_nan() {
        return None;
    }
    if x.is_infinite() || x == 0.0 {
        return Some(x.to_bits());
    }
    let magnitude = f64::from(x.abs());
    let exponent = (magnitude.log2().floor() as i32).max(-126);
    let step = 2f64.powi(exponent - mantissa);
    let units = magnitude / step; // exact: a power-of-two scaling
    let floor = units.floor();
    let rest = units - floor;
    let up = rest > 0.5 || (rest == 0.5 && (!ties_to_even || floor % 2.0 == 1.0));
    let rounded = (floor + f64::from(u8::from(up))) * step;
    let bits = if rounded >= 2f64.powi(128) {
        f32::INFINITY.to_bits()
    } else {
        (rounded as f32).to_bits() // exact: at most 11 significant bits
    };
    Some(bits | (x.to_bits() & 0x8000_0000))
}

fn tf32_and_bf16_conversions_are_bit_exact(driver: &dyn Driver) -> Result<()> {
    let edges: [u32; 30] = [
        0x0000_0000, // +0, -0
        0x8000_0000,
        0x3f80_0000, // 1
        0x3f80_1000, // 1 + 2^-11: a TF32 tie, away from zero (up)
        0xbf80_1000, // its negative: away from zero (down)
        0x3f80_0fff, // just below the tie: down
        0x3f80_1001, // just above: up
        0x3f80_3000, // 1 + 3 * 2^-11: a tie, away (TF32 has no ties to even)
        0x3f80_8000, // 1 + 2^-8: a bf16 tie, to even (down)
        0x3f81_8000, // 1 + 3 * 2^-8: a bf16 tie, to even (up)
        0x3fff_ffff, // just below 2: both round up into the next exponent
        0x7f7f_ffff, // the largest float: both round to infinity
        0x7f7f_efff, // the largest that TF32 keeps finite
        0x7f7f_7fff, // the largest that bf16 keeps finite
        0x0000_0001, // the smallest subnormal: to zero
        0x0000_1000, // a subnormal TF32 tie: up to 0x2000
        0x0000_0fff, // below it: zero
        0x007f_ffff, // the largest subnormal: up to the smallest normal
        0x0000_8000, // a subnormal bf16 tie, to even (zero)
        0x0001_8000, // a subnormal bf16 tie, to even (up)
        0x0080_0000, // the smallest normal
        0x7f80_0000, // infinities
        0xff80_0000,
        0x7fc0_0000, // NaNs: quiet, signalling, negative, with payloads
        0x7f80_0001,
        0xffc0_0001,
        0x7fff_ffff,
        0x3eaa_aaab, // 1/3
        0x3dcc_cccd, // 0.1
        0xc2f6_e979, // -123.456
    ];
    let mut rng = StdRng::seed_from_u64(10);
    let mut inputs: Vec<f32> = edges.iter().map(|&b| f32::from_bits(b)).collect();
    inputs.extend((0..2000).map(|_| f32::from_bits(rng.gen())));
    let n = inputs.len();
    let x = driver.upload_f32(inputs.clone())?;
    let mut tf32 = driver.upload_u32(vec![POISON; n])?;
    let mut bf16 = driver.upload_u32(vec![POISON; n])?;
    driver.launch(
        "mma_selftest_convert",
        Launch::linear(n, 256),
        &mut [
            Arg::F32(&x),
            Arg::OutU32s(&mut tf32),
            Arg::OutU32s(&mut bf16),
            Arg::I32(n as i32),
        ],
    )?;
    let (tf32, bf16) = (driver.download_u32(&tf32)?, driver.download_u32(&bf16)?);
    for (i, &input) in inputs.iter().enumerate() {
        let bits = input.to_bits();
        match tf32_reference(input) {
            Some(expected) => assert_eq!(
                tf32[i], expected,
                "to_tf32({input:e} = {bits:#010x}): {:#010x}, expected {expected:#010x}",
                tf32[i]
            ),
            None => assert!(
                f32::from_bits(tf32[i]).is_nan(),
                "to_tf32 of the NaN {bits:#010x}: {:#010x}",
                tf32[i]
            ),
        }
        // pack_bf16x2(x[i], x[n-1-i]): x[i] in the low half.
        let halves = [(bf16[i] & 0xffff) as u16, (bf16[n - 1 - i] >> 16) as u16];
        for (half, place) in halves.into_iter().zip(["low", "high"]) {
            match bf16_reference(input) {
                Some(expected) => assert_eq!(
                    half, expected,
                    "bf16 of {input:e} ({bits:#010x}) in the {place} half: {half:#06x}, \
                     expected {expected:#06x}"
                ),
                None => assert!(
                    half & 0x7f80 == 0x7f80 && half & 0x7f != 0,
                    "bf16 of the NaN {bits:#010x} in the {place} half: {half:#06x}"
                ),
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// mma.

/// Runs `mma_selftest_tf32` on `a.len() / 128` cases (A 16x8, B 8x8, C 16x8 each).
pub(super) fn mma_tf32(
    driver: &dyn Driver,
    a: &[f32],
    b: &[f32],
    c: &[f32],
    round: bool,
) -> Result<Vec<f32>> {
    let cases = a.len() / 128;
    assert_eq!((b.len(), c.len()), (64 * cases, 128 * cases));
    let (a, b, c) = (
        driver.upload_f32(a.to_vec())?,
        driver.upload_f32(b.to_vec())?,
        driver.upload_f32(c.to_vec())?,
    );
    let mut d = poisoned_f32(driver, 128 * cases)?;
    driver.launch(
        "mma_selftest_tf32",
        one_warp(cases),
        &mut [
            Arg::F32(&a),
            Arg::F32(&b),
            Arg::F32(&c),
            Arg::OutF32(&mut d),
            Arg::I32(i32::from(round)),
        ],
    )?;
    driver.download_f32(&d)
}

/// Runs `mma_selftest_bf16` on `a.len() / 256` cases (A 16x16, B 16x8, C 16x8 each).
pub(super) fn mma_bf16(driver: &dyn Driver, a: &[f32], b: &[f32], c: &[f32]) -> Result<Vec<f32>> {
    let cases = a.len() / 256;
    assert_eq!((b.len(), c.len()), (128 * cases, 128 * cases));
    let (a, b, c) = (
        driver.upload_f32(a.to_vec())?,
        driver.upload_f32(b.to_vec())?,
        driver.upload_f32(c.to_vec())?,
    );
    let mut d = poisoned_f32(driver, 128 * cases)?;
    driver.launch(
        "mma_selftest_bf16",
        one_warp(cases),
        &mut [
            Arg::F32(&a),
            Arg::F32(&b),
            Arg::F32(&c),
            Arg::OutF32(&mut d),
        ],
    )?;
    driver.download_f32(&d)
}

/// D = A·B + C in f64, per case: A m x k, B k x n, C and D m x n, all row-major.
pub(super) fn gemm_reference(
    a: &[f32],
    b: &[f32],
    c: &[f32],
    m: usize,
    k: usize,
    n: usize,
) -> Vec<f64> {
    let cases = c.len() / (m * n);
    let mut d = Vec::with_capacity(c.len());
    for case in 0..cases {
        let (a, b, c) = (
            &a[case * m * k..][..m * k],
            &b[case * k * n..][..k * n],
            &c[case * m * n..][..m * n],
        );
        for i in 0..m {
            for j in 0..n {
                let dot: f64 = (0..k)
                    .map(|p| f64::from(a[i * k + p]) * f64::from(b[p * n + j]))
                    .sum();
                d.push(dot + f64::from(c[i * n + j]));
            }
        }
    }
    d
}

/// Small integers in [-8, 8]: every product and partial sum is exact, in any order.
pub(super) fn small_integers(rng: &mut StdRng, len: usize) -> Vec<f32> {
    (0..len).map(|_| rng.gen_range(-8i32..=8) as f32).collect()
}

/// Asserts D equals the reference exactly, naming the case and the element.
pub(super) fn assert_exact(d: &[f32], reference: &[f64], what: &str) {
    for (e, (&got, &want)) in d.iter().zip(reference).enumerate() {
        assert!(
            f64::from(got) == want,
            "{what}: case {}, D[{}][{}] is {got}, expected {want}",
            e / 128,
            e % 128 / 8,
            e % 8
        );
    }
}

/// Cases of A·B + C with one of the three one-hot (or an identity) and the others
/// small integers: for A m x k, B k x n. A wrong lane mapping of A, B, C or D puts a
/// value in the wrong place of some case's D.
fn hand_checkable_cases(m: usize, k: usize, n: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut rng = StdRng::seed_from_u64(11);
    let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
    let one_hot = |len: usize, hot: usize| -> Vec<f32> {
        (0..len).map(|i| if i == hot { 1.0 } else { 0.0 }).collect()
    };
    let mut push = |ca: Vec<f32>, cb: Vec<f32>, cc: Vec<f32>| {
        a.extend(ca);
        b.extend(cb);
        c.extend(cc);
    };
    // A one-hot at (i, p): D's row i is B's row p, plus C.
    for hot in 0..m * k {
        push(
            one_hot(m * k, hot),
            small_integers(&mut rng, k * n),
            small_integers(&mut rng, m * n),
        );
    }
    // B one-hot at (p, j): D's column j is A's column p.
    for hot in 0..k * n {
        push(
            small_integers(&mut rng, m * k),
            one_hot(k * n, hot),
            vec![0.0; m * n],
        );
    }
    // C one-hot, A zero: D is C.
    for hot in 0..m * n {
        push(
            vec![0.0; m * k],
            small_integers(&mut rng, k * n),
            one_hot(m * n, hot),
        );
    }
    // Identities: A = [I; 2I] (k = 8 or [I I; I -I] for k = 16), and B = I (its top
    // 8 rows): D shows the other operand whole.
    let identity_a: Vec<f32> = (0..m * k)
        .map(|e| {
            let (i, p) = (e / k, e % k);
            let diagonal = p % 8 == i % 8;
            match (diagonal, i < 8, p < 8) {
                (false, ..) => 0.0,
                (true, true, _) | (true, false, true) => (1 + usize::from(k == 8 && i >= 8)) as f32,
                (true, false, false) => -1.0,
            }
        })
        .collect();
    let identity_b: Vec<f32> = (0..k * n)
        .map(|e| f32::from(u8::from(e / n == e % n)))
        .collect();
    push(
        identity_a,
        small_integers(&mut rng, k * n),
        small_integers(&mut rng, m * n),
    );
    push(
        small_integers(&mut rng, m * k),
        identity_b,
        small_integers(&mut rng, m * n),
    );
    (a, b, c)
}

fn mma_tf32_on_identities_and_one_hot_matrices(driver: &dyn Driver) -> Result<()> {
    let (a, b, c) = hand_checkable_cases(16, 8, 8);
    let d = mma_tf32(driver, &a, &b, &c, true)?;
    assert_exact(
        &d,
        &gemm_reference(&a, &b, &c, 16, 8, 8),
        "mma_tf32_m16n8k8",
    );
    Ok(())
}

fn mma_bf16_on_identities_and_one_hot_matrices(driver: &dyn Driver) -> Result<()> {
    let (a, b, c) = hand_checkable_cases(16, 16, 8);
    let d = mma_bf16(driver, &a, &b, &c)?;
    assert_exact(
        &d,
        &gemm_reference(&a, &b, &c, 16, 16, 8),
        "mma_bf16_m16n8k16",
    );
    Ok(())
}

/// Asserts |D - reference| <= 2 (k + 1) 2^-24 (|C| + Σ|A·B|) per element: the bound of
/// k + 1 f32 roundings of the sum (the emulator's fmaf chain), doubled for the
/// hardware, whose order and rounding of the sum are not documented. Operands are the
/// values the instruction multiplies (already rounded), so the products are exact.
fn assert_close(d: &[f32], a: &[f32], b: &[f32], c: &[f32], k: usize, what: &str) {
    let reference = gemm_reference(a, b, c, 16, k, 8);
    let abs = |v: &[f32]| v.iter().map(|x| x.abs()).collect::<Vec<_>>();
    let magnitude = gemm_reference(&abs(a), &abs(b), &abs(c), 16, k, 8);
    let unit = 2f64.powi(-24);
    for (e, ((&got, &want), &size)) in d.iter().zip(&reference).zip(&magnitude).enumerate() {
        let bound = 2.0 * (k as f64 + 1.0) * unit * size;
        let error = (f64::from(got) - want).abs();
        assert!(
            error <= bound,
            "{what}: case {}, D[{}][{}] is {got}, expected {want} within {bound:e} (off by {error:e})",
            e / 128,
            e % 128 / 8,
            e % 8
        );
    }
}

fn uniform(rng: &mut StdRng, len: usize) -> Vec<f32> {
    (0..len).map(|_| rng.gen_range(-1.0f32..1.0)).collect()
}

fn mma_tf32_on_random_matrices(driver: &dyn Driver) -> Result<()> {
    let mut rng = StdRng::seed_from_u64(12);
    let cases = 64;
    let (a, b, c) = (
        uniform(&mut rng, 128 * cases),
        uniform(&mut rng, 64 * cases),
        uniform(&mut rng, 128 * cases),
    );
    let d = mma_tf32(driver, &a, &b, &c, true)?;
    let round = |v: &[f32]| -> Vec<f32> {
        v.iter()
            .map(|&x| f32::from_bits(tf32_reference(x).unwrap()))
            .collect()
    };
    assert_close(
        &d,
        &round(&a),
        &round(&b),
        &c,
        8,
        "mma_tf32_m16n8k8, random",
    );
    Ok(())
}

fn mma_bf16_on_random_matrices(driver: &dyn Driver) -> Result<()> {
    let mut rng = StdRng::seed_from_u64(13);
    let cases = 64;
    let (a, b, c) = (
        uniform(&mut rng, 256 * cases),
        uniform(&mut rng, 128 * cases),
        uniform(&mut rng, 128 * cases),
    );
    let d = mma_bf16(driver, &a, &b, &c)?;
    let round = |v: &[f32]| -> Vec<f32> {
        v.iter()
            .map(|&x| f32::from_bits(u32::from(bf16_reference(x).unwrap()) << 16))
            .collect()
    };
    assert_close(
        &d,
        &round(&a),
        &round(&b),
        &c,
        16,
        "mma_bf16_m16n8k16, random",
    );
    Ok(())
}

fn mma_tf32_ignores_the_low_13_bits_of_its_operands(driver: &dyn Driver) -> Result<()> {
    // A = x I over both halves (x = 1 + 2^-11 + 2^-20, which TF32 rounding takes up to
    // 1 + 2^-10 and truncation down to 1), B = I, C = 0: D's diagonal shows the operand
    // the instruction multiplied.
    let x = f32::from_bits(0x3f80_1008);
    let a: Vec<f32> = (0..128)
        .map(|e| if e / 8 % 8 == e % 8 { x } else { 0.0 })
        .collect();
    let b: Vec<f32> = (0..64)
        .map(|e| f32::from(u8::from(e / 8 == e % 8)))
        .collect();
    let c = vec![0.0; 128];
    for (round, expected) in [(true, 1.0 + 2f32.powi(-10)), (false, 1.0)] {
        let d = mma_tf32(driver, &a, &b, &c, round)?;
        for i in 0..16 {
            assert_eq!(
                d[i * 8 + i % 8],
                expected,
                "round {round}: D[{i}][{}]",
                i % 8
            );
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// ldmatrix.

/// The 16-bit value at row r, column c of matrix m: it names its place.
fn pattern(m: usize, r: usize, c: usize) -> u32 {
    (0x1000 * (m + 1) + 0x100 * r + c) as u32
}

fn ldmatrix_every_form(driver: &dyn Driver) -> Result<()> {
    let input: Vec<u32> = (0..128)
        .map(|w| {
            let (m, r, c) = (w / 32, w % 32 / 4, 2 * (w % 4));
            pattern(m, r, c) | pattern(m, r, c + 1) << 16
        })
        .collect();
    let input = driver.upload_u32(input)?;
    let mut out = driver.upload_u32(vec![POISON; 6 * 128])?;
    driver.launch(
        "mma_selftest_ldmatrix",
        one_warp(1),
        &mut [Arg::U32s(&input), Arg::OutU32s(&mut out)],
    )?;
    let out = driver.download_u32(&out)?;
    for (form, (count, trans)) in [
        (1, false),
        (2, false),
        (4, false),
        (1, true),
        (2, true),
        (4, true),
    ]
    .into_iter()
    .enumerate()
    {
        for lane in 0..32 {
            for i in 0..4 {
                let got = out[(32 * form + lane) * 4 + i];
                let (row, col) = (lane / 4, 2 * (lane % 4));
                let expected = if i >= count {
                    POISON
                } else if trans {
                    pattern(i, col, row) | pattern(i, col + 1, row) << 16
                } else {
                    pattern(i, row, col) | pattern(i, row, col + 1) << 16
                };
                assert_eq!(
                    got,
                    expected,
                    "ldmatrix x{count}{}: lane {lane}, register {i}: {got:#010x}, expected \
                     {expected:#010x}",
                    if trans { ".trans" } else { "" }
                );
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// cp.async.

fn cp_async_sizes_zero_fill_and_groups(driver: &dyn Driver) -> Result<()> {
    let source: Vec<f32> = (0..224).map(|i| i as f32 + 1.0).collect();
    let src = driver.upload_f32(source.clone())?;
    let mut out = poisoned_f32(driver, 224)?;
    driver.launch(
        "mma_selftest_cp_async",
        one_warp(1),
        &mut [Arg::F32(&src), Arg::OutF32(&mut out)],
    )?;
    let out = driver.download_f32(&out)?;
    let mut expected = source[..128].to_vec();
    for t in 0..32 {
        let mirror = 31 - t;
        expected.push(source[128 + 2 * mirror]);
        expected.push(source[128 + 2 * mirror + 1]);
    }
    for t in 0..32 {
        let mirror = 31 - t;
        expected.push(if mirror % 2 == 0 {
            source[192 + mirror]
        } else {
            0.0
        });
    }
    assert_eq!(out, expected);
    Ok(())
}

fn cp_async_ldmatrix_and_mma_stage_a_gemm(driver: &dyn Driver) -> Result<()> {
    let mut rng = StdRng::seed_from_u64(14);
    // TF32: A 16x8, B 8x8 given n-major (bt).
    let (a, b) = (small_integers(&mut rng, 128), small_integers(&mut rng, 64));
    let bt: Vec<f32> = (0..64).map(|e| b[e % 8 * 8 + e / 8]).collect();
    let (da, dbt) = (driver.upload_f32(a.clone())?, driver.upload_f32(bt)?);
    let mut d = poisoned_f32(driver, 128)?;
    driver.launch(
        "mma_selftest_staged_tf32",
        one_warp(1),
        &mut [Arg::F32(&da), Arg::F32(&dbt), Arg::OutF32(&mut d)],
    )?;
    let zero = vec![0.0; 128];
    let reference = gemm_reference(&a, &b, &zero, 16, 8, 8);
    assert_exact(&driver.download_f32(&d)?, &reference, "staged TF32 GEMM");

    // bf16: A 16x16, B 16x8 (k-major), as bf16 pairs (small integers are exact).
    let (a, b) = (small_integers(&mut rng, 256), small_integers(&mut rng, 128));
    let pairs = |v: &[f32]| -> Vec<u32> {
        v.chunks(2)
            .map(|p| (p[0].to_bits() >> 16) | (p[1].to_bits() & 0xffff_0000))
            .collect()
    };
    let (da, db) = (driver.upload_u32(pairs(&a))?, driver.upload_u32(pairs(&b))?);
    let mut d = poisoned_f32(driver, 128)?;
    driver.launch(
        "mma_selftest_staged_bf16",
        one_warp(1),
        &mut [Arg::U32s(&da), Arg::U32s(&db), Arg::OutF32(&mut d)],
    )?;
    let reference = gemm_reference(&a, &b, &zero, 16, 16, 8);
    assert_exact(&driver.download_f32(&d)?, &reference, "staged bf16 GEMM");
    Ok(())
}
