//! The CPU's one matrix multiply, behind a safe face: `matrixmultiply::sgemm` (AVX2 and
//! FMA kernels), or on a CPU with AVX-512 the `gemm` crate's AVX-512 kernels, picked once
//! per process at run time (`CpuGemm`), so one binary runs well on either.
//!
//! Each output element is one dot product over k in a fixed order for a given product
//! shape: matrixmultiply's k-blocking is a constant, the gemm crate's depends on k and
//! the caches only, and each path splits the output between threads along m or n. So
//! the results do not depend on the number of threads (tests/cpu_threads.rs).

use std::sync::atomic::{AtomicU8, Ordering};

use anyhow::{bail, Result};
use gemm_common::Parallelism;
use rayon::prelude::*;

/// The environment variable that picks the matrix multiply (`CpuGemm`), to compare the
/// two on one machine.
pub const GEMM_VARIABLE: &str = "GOOGLENET_CPU_GEMM";

/// `CpuGemm::active`'s choice: none yet, or one of the two.
static ACTIVE: AtomicU8 = AtomicU8::new(UNCHOSEN);
const UNCHOSEN: u8 = 0;
const MATRIXMULTIPLY: u8 = 1;
const GEMM_CRATE: u8 = 2;

/// Which matrix multiply the CPU device runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuGemm {
    /// matrixmultiply's kernels: AVX2 and FMA where the CPU has them (it picks at run
    /// time), SSE2 elsewhere. The default without AVX-512.
    Matrixmultiply,
    /// The `gemm` crate (with its `x86-v4` feature): AVX-512 kernels where the CPU has
    /// AVX-512F, AVX2 ones elsewhere. The default with AVX-512.
    GemmCrate,
}

impl CpuGemm {
    /// The one running now: `select`'s choice, else `GOOGLENET_CPU_GEMM`
    /// (`matrixmultiply` or `gemm`) if set, else the gemm crate where the CPU has
    /// AVX-512 and matrixmultiply where it does not. A bad value is refused by
    /// `Device::parse` (the programs' path); here it falls back to the default, said
    /// once on stderr.
    pub fn active() -> CpuGemm {
        match ACTIVE.load(Ordering::Relaxed) {
            MATRIXMULTIPLY => CpuGemm::Matrixmultiply,
            GEMM_CRATE => CpuGemm::GemmCrate,
            _ => {
                let chosen = CpuGemm::from_environment().unwrap_or_else(|err| {
                    eprintln!("warning: {err:#}; using the default");
                    CpuGemm::default_for_this_cpu()
                });
                // Another thread may have chosen meanwhile: the first choice stands.
                let _ = ACTIVE.compare_exchange(
                    UNCHOSEN,
                    chosen.code(),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
                CpuGemm::active()
            }
        }
    }

    /// Runs every later product on `self`, as the benchmark does to time both on one
    /// machine in one run. Between two ops, never during one.
    pub fn select(self) {
        ACTIVE.store(self.code(), Ordering::Relaxed);
    }

    fn code(self) -> u8 {
        match self {
            CpuGemm::Matrixmultiply => MATRIXMULTIPLY,
            CpuGemm::GemmCrate => GEMM_CRATE,
        }
    }

    /// `GOOGLENET_CPU_GEMM`'s choice, or the default for this CPU when it is not set.
    pub fn from_environment() -> Result<CpuGemm> {
        match std::env::var(GEMM_VARIABLE) {
            Err(_) => Ok(CpuGemm::default_for_this_cpu()),
            Ok(name) => match name.as_str() {
                "matrixmultiply" => Ok(CpuGemm::Matrixmultiply),
                "gemm" => Ok(CpuGemm::GemmCrate),
                other => {
                    bail!("{GEMM_VARIABLE}={other:?} is unknown: expected matrixmultiply or gemm")
                }
            },
        }
    }

    fn default_for_this_cpu() -> CpuGemm {
        if simd_level() == SimdLevel::Avx512 {
            CpuGemm::GemmCrate
        } else {
            CpuGemm::Matrixmultiply
        }
    }

    /// What a benchmark row says it measured.
    pub fn describe(self) -> String {
        let kernels = match (self, simd_level()) {
            (CpuGemm::GemmCrate, SimdLevel::Avx512) => "AVX-512",
            (_, SimdLevel::Avx512 | SimdLevel::Avx2Fma) => "AVX2+FMA",
            (_, SimdLevel::Baseline) => "SSE2",
        };
        match self {
            CpuGemm::Matrixmultiply => format!("matrixmultiply 0.3, {kernels} kernels"),
            CpuGemm::GemmCrate => format!("gemm 0.19, {kernels} kernels"),
        }
    }
}

/// The widest vector instructions this CPU offers the matrix multiply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimdLevel {
    /// AVX-512F (with BW, VL, DQ: x86-64-v4).
    Avx512,
    Avx2Fma,
    Baseline,
}

impl SimdLevel {
    pub fn name(self) -> &'static str {
        match self {
            SimdLevel::Avx512 => "AVX-512",
            SimdLevel::Avx2Fma => "AVX2+FMA",
            SimdLevel::Baseline => "SSE2",
        }
    }
}

/// This CPU's `SimdLevel`.
pub fn simd_level() -> SimdLevel {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512dq")
        {
            return SimdLevel::Avx512;
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            return SimdLevel::Avx2Fma;
        }
    }
    SimdLevel::Baseline
}

/// A row-major `rows x cols` matrix inside a slice (rows `row_stride` apart),
/// optionally read transposed.
#[derive(Clone, Copy)]
pub struct Mat<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub transposed: bool,
}

impl<'a> Mat<'a> {
    /// A dense matrix: rows follow each other with no gap.
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Mat {
            data,
            rows,
            cols,
            row_stride: cols,
            transposed: false,
        }
    }

    /// Rows `start .. start + len` as read (after the optional transpose).
    fn rows_of_product(self, start: usize, len: usize) -> Self {
        if self.transposed {
            self.t().cols_of_product(start, len).t()
        } else {
            assert!(start + len <= self.rows);
            Mat {
                data: &self.data[start * self.row_stride..],
                rows: len,
                ..self
            }
        }
    }

    /// Columns `start .. start + len` as read (after the optional transpose).
    fn cols_of_product(self, start: usize, len: usize) -> Self {
        if self.transposed {
            self.t().rows_of_product(start, len).t()
        } else {
            assert!(start + len <= self.cols);
            Mat {
                data: &self.data[start..],
                cols: len,
                ..self
            }
        }
    }

    pub fn t(self) -> Self {
        Mat {
            transposed: !self.transposed,
            ..self
        }
    }

    /// Shape as read (after the optional transpose).
    fn dims(&self) -> (usize, usize) {
        if self.transposed {
            (self.cols, self.rows)
        } else {
            (self.rows, self.cols)
        }
    }

    /// (row stride, column stride) as read.
    fn strides(&self) -> (isize, isize) {
        if self.transposed {
            (1, self.row_stride as isize)
        } else {
            (self.row_stride as isize, 1)
        }
    }

    /// Whether every element lies inside `data`.
    fn fits(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.cols <= self.row_stride
                && (self.rows - 1) * self.row_stride + self.cols <= self.data.len())
    }
}

/// `c = a · b + beta · c`, with `c` dense row-major `m x n`.
pub fn gemm(a: Mat, b: Mat, c: &mut [f32], beta: f32) {
    let (m, _) = a.dims();
    let (_, n) = b.dims();
    assert_eq!(c.len(), m * n, "gemm: output has the wrong size");
    // SAFETY: `c` is exactly the m x n output.
    unsafe { gemm_into(a, b, c.as_mut_ptr(), n, beta) }
}

/// `a · b` as a fresh dense row-major matrix, with no pass to clear it first.
pub fn product(a: Mat, b: Mat) -> Vec<f32> {
    let (m, n) = (a.dims().0, b.dims().1);
    // SAFETY: one product into the m x n output, beta 0.
    unsafe { written_by(m * n, |c| gemm_into(a, b, c, n, 0.0)) }
}

/// `product`, split across the rayon threads along the longer side of the output, one
/// block per thread so each packs its operand once. Each element is still one dot
/// product in a fixed order: the result does not depend on the split.
pub fn par_product(a: Mat, b: Mat) -> Vec<f32> {
    let (m, k) = a.dims();
    let (_, n) = b.dims();
    let threads = rayon::current_num_threads();
    if threads == 1 || m * n * k < 1 << 18 {
        return product(a, b);
    }
    if CpuGemm::active() == CpuGemm::GemmCrate {
        // The crate splits the output between the threads itself, the whole product
        // packed once.
        // SAFETY: one product into the m x n output, beta 0.
        return unsafe {
            written_by(m * n, |c| {
                gemm_crate(a, b, c, n, 0.0, Parallelism::Rayon(threads))
            })
        };
    }
    let blocks = |c: *mut f32| {
        let out = SendPtr(c);
        if m >= n {
            let rows = m.div_ceil(threads).next_multiple_of(8);
            (0..m.div_ceil(rows)).into_par_iter().for_each(|i| {
                let (start, len) = (i * rows, rows.min(m - i * rows));
                let a_rows = a.rows_of_product(start, len);
                // SAFETY: block i writes only rows start..start+len of the m x n output.
                unsafe { gemm_into(a_rows, b, out.get().add(start * n), n, 0.0) }
            });
        } else {
            let cols = n.div_ceil(threads).next_multiple_of(16);
            (0..n.div_ceil(cols)).into_par_iter().for_each(|i| {
                let (start, len) = (i * cols, cols.min(n - i * cols));
                let b_cols = b.cols_of_product(start, len);
                // SAFETY: block i writes only columns start..start+len of the m x n
                // output, rows n apart; no two blocks share a column.
                unsafe { gemm_into(a, b_cols, out.get().add(start), n, 0.0) }
            });
        }
    };
    // SAFETY: the blocks' products, beta 0, cover the m x n output between them.
    unsafe { written_by(m * n, blocks) }
}

/// A `len`-long vector that `write` fills through the pointer it is given.
///
/// # Safety
/// `write` must store every one of the `len` elements (as `gemm_into` does with beta
/// 0: matrixmultiply then writes all of C without reading it, zeros where k is 0).
unsafe fn written_by(len: usize, write: impl FnOnce(*mut f32)) -> Vec<f32> {
    let mut c = Vec::with_capacity(len);
    write(c.as_mut_ptr());
    // SAFETY: `write` initialised the first `len` elements (the caller's promise).
    unsafe { c.set_len(len) };
    c
}

struct SendPtr(*mut f32);
// SAFETY: used only to hand disjoint row or column blocks of one output to rayon tasks.
unsafe impl Sync for SendPtr {}
impl SendPtr {
    fn get(&self) -> *mut f32 {
        self.0
    }
}

/// `c = a · b + beta · c` into an `m x n` output whose rows are `c_row_stride` apart.
///
/// # Safety
/// `c` must be valid for writes of `m` rows of `n` elements at that stride.
unsafe fn gemm_into(a: Mat, b: Mat, c: *mut f32, c_row_stride: usize, beta: f32) {
    let (m, k) = a.dims();
    let (kb, n) = b.dims();
    assert_eq!(k, kb, "gemm: inner dimensions differ");
    assert!(a.fits() && b.fits(), "gemm: operand outside its slice");
    if m == 0 || n == 0 {
        return;
    }
    if CpuGemm::active() == CpuGemm::GemmCrate {
        // SAFETY: as below.
        return unsafe { gemm_crate(a, b, c, c_row_stride, beta, Parallelism::None) };
    }
    let (rsa, csa) = a.strides();
    let (rsb, csb) = b.strides();
    // SAFETY: `fits` keeps every element of a and b inside their slices; the caller
    // vouches for c.
    matrixmultiply::sgemm(
        m,
        k,
        n,
        1.0,
        a.data.as_ptr(),
        rsa,
        csa,
        b.data.as_ptr(),
        rsb,
        csb,
        beta,
        c,
        c_row_stride as isize,
        1,
    );
}

/// `gemm_into` by the gemm crate, whose `dst = alpha · dst + beta · lhs · rhs` names
/// the scalars the other way round.
///
/// # Safety
/// As `gemm_into`, whose checks the caller has made.
unsafe fn gemm_crate(
    a: Mat,
    b: Mat,
    c: *mut f32,
    c_row_stride: usize,
    beta: f32,
    parallelism: Parallelism,
) {
    let (m, k) = a.dims();
    let n = b.dims().1;
    if k == 0 {
        // The crate leaves dst alone for an empty sum; matrixmultiply's contract, which
        // the callers rely on, is C = beta · C (all of C written when beta is 0).
        for row in 0..m {
            // SAFETY: row `row` of the m x n output.
            let row = unsafe { std::slice::from_raw_parts_mut(c.add(row * c_row_stride), n) };
            row.iter_mut()
                .for_each(|x| *x = if beta == 0.0 { 0.0 } else { beta * *x });
        }
        return;
    }
    let (rsa, csa) = a.strides();
    let (rsb, csb) = b.strides();
    let (a, b) = (a.data.as_ptr(), b.data.as_ptr());
    let read_c = beta != 0.0;
    let kernels = gemm_f32::gemm::f32::get_gemm_fn();
    // The kernels prefer a destination stored column by column; a row-major C with rows
    // apart is given to them as its transpose, Cᵀ = Bᵀ·Aᵀ, every stride swapped: what
    // the gemm crate's generic entry point does before it dispatches to these f32
    // kernels (called directly, the build skips its c32, c64 and f64 ones).
    let (rows, cols, c_cs, c_rs, lhs, lhs_cs, lhs_rs, rhs, rhs_cs, rhs_rs) = if c_row_stride > 1 {
        (n, m, c_row_stride as isize, 1, b, rsb, csb, a, rsa, csa)
    } else {
        (m, n, 1, c_row_stride as isize, a, csa, rsa, b, csb, rsb)
    };
    // SAFETY: every element of a and b lies inside their slices (`fits`), c is the
    // caller's.
    unsafe {
        kernels(
            rows,
            cols,
            k,
            c,
            c_cs,
            c_rs,
            read_c,
            lhs,
            lhs_cs,
            lhs_rs,
            rhs,
            rhs_cs,
            rhs_rs,
            beta,
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    }
}
