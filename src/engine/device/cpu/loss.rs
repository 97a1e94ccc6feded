//! Softmax cross-entropy (mean over the batch) and accuracy on the CPU.
//!
//! Per row: `m = max_j z_j`, `s = ln Σ_j exp(z_j - m)` (subtracting the max keeps exp
//! from overflowing), `log p_j = (z_j - m) - s`, `loss_i = -log p_label`, `p_j = exp(log p_j)`.
//! The log-probabilities are grouped as PyTorch's log_softmax groups them: folding `m + s`
//! first would round away `s` against a large `m` (pytorch/pytorch#11752).
//! With label smoothing ε > 0 (nn.CrossEntropyLoss(label_smoothing=ε)) the target
//! is `t_j = (1-ε)·[j = label] + ε/classes`:
//! `loss_i = -(1-ε)·log p_label - (ε/classes)·Σ_j log p_j` (the sum is skipped at
//! ε = 0, where a log p_j of -inf would make it NaN).
//! `loss = Σ_i loss_i / n`; `dz_ij = dloss · (p_ij - t_ij) / n`.

pub fn cross_entropy_forward(
    logits: &[f32],
    labels: &[u32],
    classes: usize,
    smoothing: f32,
) -> (f32, Vec<f32>) {
    let n = labels.len();
    let mut probs = vec![0.0; logits.len()];
    let mut total = 0.0f32;
    for (i, (row, p_row)) in logits
        .chunks(classes)
        .zip(probs.chunks_mut(classes))
        .enumerate()
    {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sum: f32 = row.iter().map(|z| (z - max).exp()).sum();
        let log_sum = sum.ln();
        for (p, z) in p_row.iter_mut().zip(row) {
            *p = ((z - max) - log_sum).exp();
        }
        let at_label = (row[labels[i] as usize] - max) - log_sum;
        let term = if smoothing == 0.0 {
            at_label
        } else {
            let all: f32 = row.iter().map(|z| (z - max) - log_sum).sum();
            (1.0 - smoothing) * at_label + (smoothing / classes as f32) * all
        };
        total -= term;
    }
    (total / n as f32, probs)
}

pub fn cross_entropy_backward(
    probs: &[f32],
    labels: &[u32],
    dloss: f32,
    classes: usize,
    smoothing: f32,
) -> Vec<f32> {
    let scale = dloss / labels.len() as f32;
    let mut dz = vec![0.0; probs.len()];
    for (i, (p_row, d_row)) in probs
        .chunks(classes)
        .zip(dz.chunks_mut(classes))
        .enumerate()
    {
        for (j, (d, p)) in d_row.iter_mut().zip(p_row).enumerate() {
            let hit = if j == labels[i] as usize {
                1.0 - smoothing
            } else {
                0.0
            };
            let target = hit + smoothing / classes as f32;
            *d = (p - target) * scale;
        }
    }
    dz
}

pub fn correct_count(logits: &[f32], labels: &[u32], classes: usize) -> usize {
    logits
        .chunks(classes)
        .zip(labels)
        .filter(|(row, &label)| argmax(row) == label as usize)
        .count()
}

/// Index of the first largest value of a row (torch.argmax's tie rule).
pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (j, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = j;
        }
    }
    best
}
