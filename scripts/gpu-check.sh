#!/usr/bin/env bash
# Runs on the GPU machine, from the repository root, after scripts/gpu-prepare.sh built
# device-bin/ here: every test's cuda variant, then a short run of the tutorial preset.
# Logs go to $OUT (the device tool brings that folder back).
set -u
out=${OUT:-/tmp/gpu-check}
mkdir -p "$out"
nvidia-smi > "$out/nvidia-smi.txt" 2>&1
status=0
for test in device-bin/tests/*; do
    name=$(basename "$test")
    # The cuda modules only: cpu and emu already ran in CI.
    timeout 300 "$test" --include-ignored cuda:: > "$out/test-$name.log" 2>&1 || status=1
    echo "$name: $(grep -E '^test result' "$out/test-$name.log" | tail -1)"
done
FASHION_MNIST_DIR=device-bin/data timeout 300 device-bin/train --preset tutorial --device cuda \
    --train-limit 6400 --test-limit 1000 --epochs 1 --log-every 50 --run-dir "$out/run" \
    > "$out/train.log" 2>&1 || status=1
tail -5 "$out/train.log"
exit $status
