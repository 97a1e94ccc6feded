#include "common.cuh"

// Softmax cross-entropy with mean reduction (nn.CrossEntropyLoss) over logits
// [n, classes] and labels [n], and the correct-prediction count. Per row, as
// src/engine/device/cpu/loss.rs (PyTorch's log_softmax grouping):
//   m = max_j z_j,  s = ln Σ_j exp(z_j - m),  log p_j = (z_j - m) - s,
//   loss_i = -log p_label                                  (smoothing ε = 0),
//   loss_i = -(1 - ε)·log p_label - (ε / classes)·Σ_j log p_j   (label smoothing ε > 0,
//            as nn.CrossEntropyLoss(label_smoothing=ε): the target is (1-ε)·onehot + ε/classes).
// Rows are short (10 classes), so one thread takes a whole row, in the CPU's order.

// Forward, per row i: probs[i, j] = exp((z_ij - m) - s) and term[i] = -loss_i's sum,
// log p_{i, label_i} when ε = 0 (the loss is the negated mean of the terms, see
// cross_entropy_mean_f32).
// Launch: one thread per row, blocks of 256.
extern "C" __global__ void cross_entropy_fwd_f32(const float* logits, const unsigned int* labels,
                                                 float* probs, float* term, int n, int classes,
                                                 float smoothing) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const float* z = logits + i * classes;
    float* p = probs + i * classes;

    float m = -INFINITY;
    for (int j = 0; j < classes; ++j) m = fmaxf(m, z[j]);
    float sum = 0.0f;
    for (int j = 0; j < classes; ++j) sum += expf(z[j] - m);
    const float log_sum = logf(sum);
    for (int j = 0; j < classes; ++j) p[j] = expf((z[j] - m) - log_sum);
    const float at_label = (z[labels[i]] - m) - log_sum;
    if (smoothing == 0.0f) {
        term[i] = at_label;  // no Σ_j log p_j: it may be -inf where p_j underflows
        return;
    }
    float all = 0.0f;
    for (int j = 0; j < classes; ++j) all += (z[j] - m) - log_sum;
    term[i] = (1.0f - smoothing) * at_label + (smoothing / (float)classes) * all;
}
EMU_REGISTER(cross_entropy_fwd_f32)

constexpr int MEAN_THREADS = 256;  // the block size cross_entropy_mean_f32 is launched with

// The mean: loss[0] = -(Σ_i term[i]) / n, summed in a fixed order (thread t takes rows
// t, t + 256, ..., then a fixed tree in shared memory), so it is deterministic without
// float atomics. Launch: one block of 256 threads.
extern "C" __global__ void cross_entropy_mean_f32(const float* term, float* loss, int n) {
    __shared__ float partial[MEAN_THREADS];
    const int tid = threadIdx.x;
    float sum = 0.0f;
    for (int i = tid; i < n; i += MEAN_THREADS) sum += term[i];
    partial[tid] = sum;
    __syncthreads();
    for (int half = MEAN_THREADS / 2; half > 0; half /= 2) {
        if (tid < half) partial[tid] += partial[tid + half];
        __syncthreads();
    }
    if (tid == 0) loss[0] = __fdiv_rn(-partial[0], (float)n);
}
EMU_REGISTER(cross_entropy_mean_f32)

// Backward: dz[i, j] = (p_ij - t_ij) · (dloss / n), dloss the one-element loss gradient,
// t_ij = (1 - ε)·[j = label_i] + ε / classes the (smoothed) target. Launch: one thread per element of dz, blocks of 256.
extern "C" __global__ void cross_entropy_bwd_f32(const float* probs, const unsigned int* labels,
                                                 const float* dloss, float* dz, int n,
                                                 int classes, float smoothing) {
    const int e = blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= n * classes) return;
    const int i = e / classes, j = e % classes;
    const float scale = __fdiv_rn(dloss[0], (float)n);
    const float target = ((unsigned int)j == labels[i] ? 1.0f - smoothing : 0.0f) +
                         __fdiv_rn(smoothing, (float)classes);
    dz[e] = __fmul_rn(probs[e] - target, scale);
}
EMU_REGISTER(cross_entropy_bwd_f32)

// Correct count: count[0] += 1 for each row whose first largest logit (torch.argmax's
// tie rule; a strict > scan as ops::argmax) sits at the label. An integer atomic, so the
// total does not depend on the order. `count` must start at 0.
// Launch: one thread per row, blocks of 256.
extern "C" __global__ void correct_count_fwd_f32(const float* logits, const unsigned int* labels,
                                                 unsigned int* count, int n, int classes) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const float* z = logits + i * classes;
    int best = 0;
    for (int j = 1; j < classes; ++j)
        if (z[j] > z[best]) best = j;
    if ((unsigned int)best == labels[i]) atomicAdd(count, 1u);
}
EMU_REGISTER(correct_count_fwd_f32)

// A training step's record, kept on the device so the step never waits for the host:
// with slot = cursor[0] (then cursor[0] = slot + 1),
//   losses[slot] = loss[0],  correct[slot] = #rows whose first largest logit (as
//   correct_count_fwd_f32) sits at the label,
//   diverged[0] = 1 if loss[0] is NaN or infinite (it stays set; Adam skips its
//   update while it is, see adam_step_f32).
// The slot comes from device memory, not from an argument, so a captured step replays
// into the next slot each time. The host reads the slots every --log-every steps and
// then zeroes the cursor; it never lets more than `capacity` steps in between (a slot
// past the end is not written). Launch: one block of one thread (a batch is a few
// hundred logits; a single thread counts in a fixed order).
extern "C" __global__ void record_step_f32(const float* loss, const float* logits,
                                           const unsigned int* labels, int n, int classes,
                                           unsigned int* cursor, int capacity, float* losses,
                                           unsigned int* correct, unsigned int* diverged) {
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    unsigned int count = 0;
    for (int i = 0; i < n; ++i) {
        const float* z = logits + i * classes;
        int best = 0;
        for (int j = 1; j < classes; ++j)
            if (z[j] > z[best]) best = j;
        if ((unsigned int)best == labels[i]) ++count;
    }
    const float value = loss[0];
    if (!isfinite(value)) diverged[0] = 1u;
    const unsigned int slot = cursor[0];
    if (slot >= (unsigned int)capacity) return;
    losses[slot] = value;
    correct[slot] = count;
    cursor[0] = slot + 1;
}
EMU_REGISTER(record_step_f32)
