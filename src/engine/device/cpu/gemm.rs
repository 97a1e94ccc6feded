//! A safe face for `matrixmultiply::sgemm`, the CPU's one matrix multiply.

use rayon::prelude::*;

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
