//! The test split held out of a folder that has none: per class, `round(n · fraction)`
//! of its `n` images (at most `n - 1`, so every class keeps one to train on), picked
//! by a shuffle seeded with the run's seed and the class; both parts keep the scan's
//! order. The same files, fraction and seed give the same split, so `eval` and a
//! resumed run test on the images the run did.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::scan::Sample;

/// `(train, test)` out of `samples` (see the module comment).
pub fn hold_out(samples: &[Sample], fraction: f64, seed: u64) -> (Vec<Sample>, Vec<Sample>) {
    let mut by_class: Vec<Vec<usize>> = Vec::new();
    for (i, sample) in samples.iter().enumerate() {
        let label = sample.label as usize;
        if by_class.len() <= label {
            by_class.resize(label + 1, Vec::new());
        }
        by_class[label].push(i);
    }
    let mut held = vec![false; samples.len()];
    for (label, members) in by_class.iter().enumerate() {
        let n = members.len();
        let count = ((n as f64 * fraction).round() as usize).min(n.saturating_sub(1));
        let mut order = members.clone();
        let mixed = seed ^ (label as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        order.shuffle(&mut StdRng::seed_from_u64(mixed));
        for &i in &order[..count] {
            held[i] = true;
        }
    }
    let (test, train): (Vec<_>, Vec<_>) =
        samples.iter().zip(&held).partition(|(_, &is_held)| is_held);
    let strip = |part: Vec<(&Sample, &bool)>| part.into_iter().map(|(s, _)| s.clone()).collect();
    (strip(train), strip(test))
}
