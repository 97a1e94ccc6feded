//! A safe face for `matrixmultiply::sgemm`, the CPU's one matrix multiply.

/// A row-major `rows x cols` matrix in a slice, optionally read transposed.
#[derive(Clone, Copy)]
pub struct Mat<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub transposed: bool,
}

impl<'a> Mat<'a> {
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Mat {
            data,
            rows,
            cols,
            transposed: false,
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
            (1, self.cols as isize)
        } else {
            (self.cols as isize, 1)
        }
    }
}

/// `c = a · b + beta · c`, with `c` row-major `m x n`.
pub fn gemm(a: Mat, b: Mat, c: &mut [f32], beta: f32) {
    let (m, k) = a.dims();
    let (kb, n) = b.dims();
    assert_eq!(k, kb, "gemm: inner dimensions differ");
    assert!(a.data.len() >= a.rows * a.cols && b.data.len() >= b.rows * b.cols);
    assert_eq!(c.len(), m * n, "gemm: output has the wrong size");
    if m == 0 || n == 0 {
        return;
    }
    let (rsa, csa) = a.strides();
    let (rsb, csb) = b.strides();
    // SAFETY: the asserts above keep every access of an m x k, k x n and m x n
    // matrix with these strides inside the three slices.
    unsafe {
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
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}
