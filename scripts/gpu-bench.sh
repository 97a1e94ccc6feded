#!/usr/bin/env bash
# The benchmarks at batch 128, a GPU call of their own after scripts/gpu-check.sh (which
# runs them at batch 16): the kernel microbenchmarks (every kernel on GoogLeNet's
# shapes, each convolution beside cuDNN, about 500 rows) and the whole training step.
# Runs on the GPU machine from the repository root, after scripts/gpu-prepare.sh built
# device-bin.tar.xz here. Device tool: carry ["device-bin.tar.xz"], command
# "scripts/gpu-bench.sh", timeout_s 600.
#
# `--batch N` benchmarks another batch size; other arguments go to the kernel benchmark
# (e.g. --filter "conv fwd"). Logs and JSON go to $OUT (the device tool brings that
# folder back), rewritten row by row, so a call cut short keeps what it measured; the
# console gets the summaries.
set -uo pipefail
cd "$(dirname "$0")/.."
batch=128
if [ "${1:-}" = --batch ]; then
    batch=${2:?--batch needs a size}
    shift 2
fi
out=${OUT:-/tmp/gpu-bench}
mkdir -p "$out"
scripts/gpu-unpack.sh || exit 2
nvidia-smi > "$out/nvidia-smi.txt" 2>&1

# shellcheck source=scripts/gpu-env.sh
. scripts/gpu-env.sh
echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}" > "$out/env.txt"

status=0
timeout 400 device-bin/benches/kernels --bench --batches "$batch" --json "$out/bench-kernels.json" "$@" \
    > "$out/kernels.log" 2>&1 || status=1
# The whole table is in kernels.log and bench-kernels.json; print what fits the reply,
# the most important last.
grep -E "^(relu|max pool|avg pool|cross-entropy|adam|resize)" "$out/kernels.log" | cut -c1-140
grep -E "^(kernel microbenchmarks|.* ceilings|ceilings:|cuDNN|GPU figures|convolutions of one step|cuda:0)|rror|panick" \
    "$out/kernels.log"
tail -2 "$out/kernels.log"

timeout 150 device-bin/benches/train_step --bench --gpu-only --batch-sizes "$batch" \
    --json "$out/bench-train-step.json" > "$out/train-step.log" 2>&1 || status=1
cat "$out/train-step.log"
exit $status
