#!/usr/bin/env bash
# Runs on the GPU machine, from the repository root, after scripts/gpu-prepare.sh built
# device-bin/ here: the kernel microbenchmarks (every kernel on GoogLeNet's shapes at
# batch 16 and 128, each convolution beside cuDNN) and the whole training step.
# Logs and JSON go to $OUT (the device tool brings that folder back); the console gets
# the summaries. Device tool: carry ["device-bin/benches"] (all it needs) or
# ["device-bin"], command "scripts/gpu-bench.sh",
# timeout_s 600. Extra arguments go to the kernel benchmark (e.g. --filter "conv fwd").
set -uo pipefail
out=${OUT:-/tmp/gpu-bench}
mkdir -p "$out"
nvidia-smi > "$out/nvidia-smi.txt" 2>&1

# cuDNN ships in python3's NVIDIA wheels (nvidia/cudnn/lib), where the loader does not
# look; cuDNN in turn loads cuBLAS and NVRTC for some of its engines.
libs=$(python3 - <<'EOF'
import glob, os
try:
    import nvidia
except ImportError:
    raise SystemExit
dirs = []
for root in nvidia.__path__:
    for name in ("libcudnn.so*", "libcublasLt.so*", "libnvrtc.so*"):
        for f in sorted(glob.glob(os.path.join(root, "**", name), recursive=True)):
            if os.path.dirname(f) not in dirs:
                dirs.append(os.path.dirname(f))
print(":".join(dirs))
EOF
)
if [ -n "$libs" ]; then
    export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
else
    echo "no libcudnn under python3's nvidia packages: the kernel table will have no cuDNN column"
fi
echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}" > "$out/env.txt"

status=0
timeout 400 device-bin/benches/kernels --bench --json "$out/bench-kernels.json" "$@" \
    > "$out/kernels.log" 2>&1 || status=1
# The whole table is in kernels.log and bench-kernels.json; print what fits the reply,
# the most important last.
grep -E "^(relu|max pool|avg pool|cross-entropy|adam|resize)" "$out/kernels.log" | cut -c1-140
grep -E "^(kernel microbenchmarks|H200 ceilings|cuDNN|GPU figures|convolutions of one step|cuda:0)|rror|panick" \
    "$out/kernels.log"
tail -2 "$out/kernels.log"

timeout 180 device-bin/benches/train_step --bench --gpu-only --json "$out/bench-train-step.json" \
    > "$out/train-step.log" 2>&1 || status=1
cat "$out/train-step.log"
exit $status
