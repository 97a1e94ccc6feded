//! Copies of every S-th element: the strided reads of pooling's and Winograd's phase
//! planes. Inlined into their callers' AVX2 versions.

/// `to[j] = from[S·j]`: all but the last from whole chunks of S, which the compiler
/// vectorises without bounds checks.
#[inline(always)]
pub fn every<const S: usize>(to: &mut [f32], from: &[f32]) {
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
pub fn every_nth(to: &mut [f32], from: &[f32], s: usize) {
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
}
