#!/usr/bin/env bash
# The GPU check: one call on the GPU machine (an H200; python3 with PyTorch, nvcc,
# compute-sanitizer, the driver; no Rust, no internet) that yields every figure, after
# scripts/gpu-prepare.sh built device-bin/ here. In order:
#   1. every test's cuda variant (the test executables with --include-ignored cuda::);
#   2. the cuda kernel tests (ops_forward, gradcheck: small shapes) under
#      compute-sanitizer's memcheck, racecheck, synccheck and initcheck;
#   3. 300 training steps (batch 16, 224x224) of the tutorial and recommended presets,
#      each with the step graph and with --no-graph: loss and steps/s;
#   4. the kernel and train-step benchmarks (the train step with the graph and without);
#   5. the PyTorch peer (scripts/pytorch_peer.py): eager and compile, batch 16 and 128.
# Each stage has a time cap and the whole check a budget (470 s), so it ends, with its
# summary, inside 8 minutes; what did not fit says so. Logs go to $OUT, else --out
# DIR, else /tmp/gpu-check: at most 8 files (the device tool brings 8 back). The
# summary table is printed last, and is summary.txt there.
#
# Device tool: carry ["device-bin.tar.xz"], command "scripts/gpu-check.sh", timeout_s 600
# (it unpacks device-bin/ from the archive when the folder is missing or older).
#
# --rehearse (or GOOGLENET_GPU_CHECK_DEVICE=emu) runs the same script here, with the
# emulator in place of the GPU at small sizes, skipping (and saying so) what needs the
# driver, compute-sanitizer or torch: a wrong path or flag shows here, not in GPU time.
set -uo pipefail
cd "$(dirname "$0")/.."

device=${GOOGLENET_GPU_CHECK_DEVICE:-cuda}
out=${OUT:-/tmp/gpu-check}
budget=470
while [ $# -gt 0 ]; do
    case $1 in
        --rehearse) device=emu ;;
        --out) out=${2:?--out needs a directory}; shift ;;
        --budget) budget=${2:?--budget needs seconds}; shift ;;
        *) echo "usage: scripts/gpu-check.sh [--rehearse] [--out DIR] [--budget SECONDS]" >&2; exit 2 ;;
    esac
    shift
done
case $device in
    cuda | emu) ;;
    *) echo "error: GOOGLENET_GPU_CHECK_DEVICE=$device: expected cuda or emu" >&2; exit 2 ;;
esac
bin=device-bin
if [ -f "$bin.tar.xz" ] && { [ ! -f "$bin/VERSION" ] || [ "$bin.tar.xz" -nt "$bin/VERSION" ]; }; then
    rm -rf "$bin" && tar -xJf "$bin.tar.xz"
fi
if [ ! -x "$bin/train" ] || [ ! -d "$bin/tests" ]; then
    echo "error: $bin/ is missing or incomplete: run scripts/gpu-prepare.sh first (here, where Rust is)" >&2
    exit 2
fi
mkdir -p "$out"
work=$(mktemp -d /tmp/gpu-check-work.XXXXXX)
trap 'rm -rf "$work"' EXIT
for log in summary.txt tests.log sanitizer.log train.log bench.log peer.log; do
    : > "$out/$log"
done

start=$(date +%s)
rows=()
failed=0
# row STAGE RESULT FIGURES: one line of the summary. A RESULT other than "ok" or
# "skipped (why)" fails the check.
row() {
    rows+=("| $1 | $2 | $3 |")
    case $2 in ok | skipped*) ;; *) failed=1 ;; esac
    echo "[$(($(date +%s) - start))s] $1: $2${3:+ ($3)}"
}
# capped CAP CMD...: runs CMD with a timeout of CAP seconds or what is left of the
# budget, whichever is less; 124 when it ran out of time, 125 when none was left.
capped() {
    local cap=$1 left
    shift
    left=$((budget - ($(date +%s) - start)))
    [ "$left" -lt "$cap" ] && cap=$left
    [ "$cap" -lt 5 ] && return 125
    timeout --kill-after=5 "$cap" "$@"
}
# status RC: the result column for a command's exit status.
status() {
    case $1 in
        0) echo ok ;;
        124 | 137) echo "timed out" ;;
        125) echo "not run (out of time)" ;;
        *) echo "failed (exit $1)" ;;
    esac
}

if [ "$device" = cuda ]; then
    gpu=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2> /dev/null | head -1)
    gpu=${gpu:-"no GPU that nvidia-smi sees"}
    tests_filter=(--include-ignored cuda::)
    train_sizes=(--train-limit 4800 --test-limit 1000 --log-every 50)
    mode="GPU check on $gpu"
else
    gpu="none: rehearsal"
    tests_filter=(emu::)
    # 4 steps of batch 4 at 32x32: the emulator runs each GPU thread as a fiber.
    train_sizes=(--image-size 32 --batch-size 4 --train-limit 16 --test-limit 16 --log-every 2)
    mode="GPU check REHEARSAL on the emulator (no GPU figures)"
fi
{
    echo "$mode, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "build: $(cat "$bin/VERSION" 2> /dev/null || "$bin/train" --version)"
} | tee -a "$out/summary.txt"

# 1. Every test's variant for this device; each launch checked, so a fault names its kernel.
export GOOGLENET_CUDA_SYNC=1
passed=0
failures=0
for test in "$bin"/tests/*; do
    name=$(basename "$test")
    capped 120 "$test" "${tests_filter[@]}" > "$work/test.log" 2>&1
    rc=$?
    { echo "### $name ${tests_filter[*]}: exit $rc"; cat "$work/test.log"; } >> "$out/tests.log"
    result=$(grep -E '^test result' "$work/test.log" | tail -1)
    ran=$(sed -nE 's/.* ([0-9]+) passed; ([0-9]+) failed.*/\1 \2/p' <<< "$result")
    read -r ok bad <<< "${ran:-0 0}"
    passed=$((passed + ok))
    if [ "$rc" != 0 ] || [ "$bad" != 0 ]; then
        failures=$((failures + 1))
        row "tests $device: $name" "$(status "$rc")" "$ok passed, $bad failed: see tests.log"
    elif [ "$ok" -gt 0 ]; then
        row "tests $device: $name" ok "$ok passed"
    fi
done
if [ "$failures" = 0 ] && [ "$passed" -gt 0 ]; then
    row "tests $device: all executables" ok "$passed passed in all"
else
    row "tests $device: all executables" failed "$passed passed; $failures executable(s) failed"
fi

# 2. The kernel tests under compute-sanitizer (cuda only), on PATH or in a CUDA install.
sanitizer=$(command -v compute-sanitizer ||
    ls /usr/local/cuda*/bin/compute-sanitizer /opt/nvidia/*/compute-sanitizer 2> /dev/null | head -1)
if [ "$device" != cuda ]; then
    row "compute-sanitizer" "skipped (rehearsal: needs the driver)" "memcheck, racecheck, synccheck, initcheck"
    echo "skipped: the rehearsal has no GPU driver" >> "$out/sanitizer.log"
elif [ -z "$sanitizer" ]; then
    row "compute-sanitizer" "not found" "neither on PATH nor in /usr/local/cuda*/bin"
else
    for tool in memcheck racecheck synccheck initcheck; do
        for name in ops_forward gradcheck; do
            capped 40 "$sanitizer" --tool "$tool" --error-exitcode 86 --print-limit 20 \
                "$bin/tests/$name" --include-ignored cuda:: > "$work/san.log" 2>&1
            rc=$?
            { echo "### $tool $name: exit $rc"; cat "$work/san.log"; } >> "$out/sanitizer.log"
            summary=$(grep -E '(ERROR|RACECHECK) SUMMARY' "$work/san.log" | tail -1 | sed 's/^=* *//')
            tests=$(grep -E '^test result' "$work/san.log" | tail -1 | sed -nE 's/.* ([0-9]+) passed; ([0-9]+) failed.*/\1 passed, \2 failed/p')
            result=$(status "$rc")
            [ "$rc" = 86 ] && result="ERRORS"
            row "$tool: $name" "$result" "${summary:-no summary}; ${tests:-no test result}"
        done
    done
fi

# 3. 300 training steps of each preset (timed: launches unchecked again).
unset GOOGLENET_CUDA_SYNC
for run in tutorial tutorial:no-graph recommended recommended:no-graph; do
    preset=${run%%:*}
    graph=()
    [ "$run" != "$preset" ] && graph=(--no-graph)
    capped 45 "$bin/train" --preset "$preset" --device "$device" --data-dir "$bin/data" --no-verify \
        --epochs 1 "${train_sizes[@]}" "${graph[@]}" --run-dir "$work/run-${run/:/-}" > "$work/train.log" 2>&1
    rc=$?
    { echo "### train --preset $preset ${graph[*]}: exit $rc"; cat "$work/train.log"; } >> "$out/train.log"
    # "epoch 1 batch   300 (step    300)  loss 2.3026  accuracy 0.1000     12.3s"
    last=$(grep -E '^epoch [0-9]+ batch' "$work/train.log" | tail -1)
    figures=$(awk '{ for (i = 1; i <= NF; i++) { if ($i == "(step") step = $(i + 1) + 0; if ($i == "loss") loss = $(i + 1) }
                     t = $NF; sub("s$", "", t)
                     if (t > 0) printf "step %d: loss %s, %.1f steps/s over the run", step, loss, step / t }' <<< "$last")
    accuracy=$(sed -nE 's/^finished: test accuracy ([0-9.]+).*/\1/p' "$work/train.log")
    row "train $preset${graph:+ ${graph[*]}} ($device)" "$(status "$rc")" "${figures:-no step logged}${accuracy:+; test accuracy $accuracy}"
done

# 4. The benchmarks: without a GPU they run their smoke versions (the kernel one on the
# emulator and the CPU; the train step has none with --gpu-only).
capped 100 "$bin/benches/kernels" --bench --json "$out/bench-kernels.json" > "$work/kernels.log" 2>&1
rc=$?
{ echo "### benches/kernels --bench: exit $rc"; cat "$work/kernels.log"; } >> "$out/bench.log"
# "convolutions of one step: 3.10 ms, 20.1 TFLOP/s; cuDNN 1.2 ms, ...; ours/cuDNN 2.6", per batch.
convs=$(sed -nE 's/^convolutions of one step: //p' "$work/kernels.log" | paste -sd '|' | sed 's/|/ · /g')
grep -q '^GPU figures need a GPU' "$work/kernels.log" && convs="smoke run, not GPU figures: ${convs}"
row "bench kernels" "$(status "$rc")" "convolutions of one step: ${convs:-none; see bench.log}"
capped 60 "$bin/benches/train_step" --bench --gpu-only --json "$out/bench-train-step.json" > "$work/step.log" 2>&1
rc=$?
{ echo "### benches/train_step --bench --gpu-only: exit $rc"; cat "$work/step.log"; } >> "$out/bench.log"
steps=$(grep -E 'ms/step' "$work/step.log" | sed -E 's/ +/ /g; s/^ //; s/ \(median.*//' | tr '\n' ';')
if grep -q '^GPU figures need a GPU' "$work/step.log"; then
    row "bench train step" "skipped (needs a GPU)" "$(grep '^GPU figures' "$work/step.log")"
else
    row "bench train step" "$(status "$rc")" "${steps:-see bench.log}"
fi

# 5. The PyTorch peer.
if ! python3 -c 'import torch' 2> /dev/null; then
    row "pytorch peer" "skipped (no torch here)" "eager and compile, batch 16 and 128"
    echo "skipped: python3 here cannot import torch" >> "$out/peer.log"
else
    if [ "$device" = cuda ]; then
        peer=(--device cuda --batch-sizes 16,128 --precision fp32 --warmup 5 --steps 20)
    else
        peer=(--device cpu --image-size 32 --batch-sizes 16 --warmup 1 --steps 2)
    fi
    capped 100 python3 scripts/pytorch_peer.py "${peer[@]}" --modes eager,compile > "$work/peer.log" 2>&1
    rc=$?
    { echo "### pytorch_peer.py ${peer[*]}: exit $rc"; cat "$work/peer.log"; } >> "$out/peer.log"
    # "eager    fp32         16       12.3     1300.0        2.1"
    figures=$(awk '$1 == "eager" || $1 == "compile" { printf "%s b%s %s; ", $1, $3, ($4 == "failed:" ? "failed" : $4 " ms") }' "$work/peer.log")
    row "pytorch peer" "$(status "$rc")" "${figures:-see peer.log}"
fi

{
    echo
    echo "| stage | result | figures |"
    echo "|---|---|---|"
    printf '%s\n' "${rows[@]}"
    echo
    echo "$(($(date +%s) - start)) s; logs in $out: $(cd "$out" && ls | tr '\n' ' ')"
} > "$work/table"
cat "$work/table" >> "$out/summary.txt"
echo
cat "$out/summary.txt"
exit $failed
