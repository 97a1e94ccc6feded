//! The rows of phase planes, as the max pool and Winograd's transforms read their
//! inputs: every S-th element of a source row, padded either side. Inlined into their
//! callers' AVX2 versions.

use std::ops::Range;

/// How a phase plane's rows read their source rows (`len` long): column `j` reads
/// element `stride·j + phase - pad`, which lies inside the source for `j` in `inside`.
pub struct PhaseColumns {
    stride: usize,
    phase: usize,
    pad: usize,
    inside: Range<usize>,
}

impl PhaseColumns {
    pub fn new(len: usize, stride: usize, phase: usize, pad: usize) -> Self {
        // 0 <= stride·j + phase - pad < len.
        let end = (len + pad).saturating_sub(phase).div_ceil(stride);
        let start = pad.saturating_sub(phase).div_ceil(stride).min(end);
        PhaseColumns {
            stride,
            phase,
            pad,
            inside: start..end,
        }
    }

    /// `row[j] = src[stride·j + phase - pad]` where that lies inside `src`, `outside`
    /// elsewhere, and everywhere when there is no `src` (a row outside the plane).
    #[inline(always)]
    pub fn write(&self, row: &mut [f32], src: Option<&[f32]>, outside: f32) {
        let end = self.inside.end.min(row.len());
        let start = self.inside.start.min(end);
        let Some(src) = src.filter(|_| start < end) else {
            row.fill(outside);
            return;
        };
        row[..start].fill(outside);
        row[end..].fill(outside);
        let from = &src[self.stride * start + self.phase - self.pad..];
        let to = &mut row[start..end];
        match self.stride {
            1 => to.copy_from_slice(&from[..to.len()]),
            // GoogLeNet's strided pools and Winograd's tiles: a constant stride
            // vectorises.
            2 => every::<2>(to, from),
            s => every_nth(to, from, s),
        }
    }
}

/// `to[j] = from[S·j]`: all but the last from whole chunks of S, which the compiler
/// vectorises without bounds checks.
#[inline(always)]
fn every<const S: usize>(to: &mut [f32], from: &[f32]) {
    let Some((last, to)) = to.split_last_mut() else {
        return;
    };
    for (v, chunk) in to.iter_mut().zip(from.chunks_exact(S)) {
        *v = chunk[0];
    }
    *last = from[S * to.len()];
}

/// `to[j] = from[s·j]`, for strides not known until run time.
#[inline(always)]
fn every_nth(to: &mut [f32], from: &[f32], s: usize) {
    for (v, &x) in to.iter_mut().zip(from.iter().step_by(s)) {
        *v = x;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_takes_each_strided_element_to_the_last() {
        let from: Vec<f32> = (0..40).map(|i| i as f32).collect();
        for len in [0, 1, 2, 7, 13] {
            for s in [2, 3] {
                let want: Vec<f32> = (0..len).map(|j| (s * j) as f32).collect();
                let mut got = vec![-1.0; len];
                // The source ends right after the last element read.
                let end = if len == 0 { 0 } else { s * (len - 1) + 1 };
                if s == 2 {
                    every::<2>(&mut got, &from[..end]);
                } else {
                    every_nth(&mut got, &from[..end], s);
                }
                assert_eq!(got, want, "len {len}, stride {s}");
            }
        }
    }

    #[test]
    fn phase_rows_read_the_source_inside_and_pad_outside() {
        let src: Vec<f32> = (0..11).map(|i| i as f32 + 1.0).collect();
        for (stride, phase, pad) in [
            (1, 0, 1),
            (1, 2, 1),
            (2, 0, 1),
            (2, 1, 1),
            (2, 1, 0),
            (3, 2, 2),
        ] {
            let columns = PhaseColumns::new(src.len(), stride, phase, pad);
            for row_len in [0, 3, 7, 12] {
                let want: Vec<f32> = (0..row_len)
                    .map(|j| {
                        let at = (stride * j + phase).checked_sub(pad);
                        at.and_then(|at| src.get(at)).copied().unwrap_or(-9.0)
                    })
                    .collect();
                let mut got = vec![0.0; row_len];
                columns.write(&mut got, Some(&src), -9.0);
                assert_eq!(
                    got, want,
                    "s{stride} phase {phase} pad {pad}, {row_len} long"
                );
                columns.write(&mut got, None, -9.0);
                assert!(got.iter().all(|&v| v == -9.0));
            }
        }
    }
}
