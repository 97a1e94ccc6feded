#!/usr/bin/env bash
# The GPU check: one call on the GPU machine (an sm_90 GPU, H100 or H200; PyTorch,
# nvcc, compute-sanitizer and the driver; no Rust, no internet) that yields every
# figure, after scripts/gpu-prepare.sh built device-bin/ here. Stages, most important
# first, each with a time cap:
#
#   1. smoke (90 s): the tensor-core instruction tests, the kernel tests, 50
#      graph-replayed steps of `train --device cuda`;
#   2. every other test's cuda variant (scripts/gpu-check-tests.txt: parity first);
#   3. 300 training steps (batch 16, 224x224) of the tutorial and recommended presets,
#      each with the step graph and with --no-graph: loss and steps/s;
#   4. the kernel and train-step benchmarks at batch 16 (batch 128: scripts/gpu-bench.sh,
#      a call of its own);
#   5. the PyTorch peer: eager, then torch.compile as a stage of its own;
#   6. the kernel override: kernels/*.cu compiled there (scripts/gpu-kernels.sh) and
#      loaded with GOOGLENET_KERNELS, and a mismatched module refused;
#   7. compute-sanitizer's memcheck, racecheck, synccheck and initcheck on the
#      tensor-core instruction and kernel tests at small shapes, last.
#
# The whole check has a budget (480 s; --budget; 1200 s in the rehearsal, whose caps
# are four times the GPU's) and ends inside it: a stage that no
# longer fits says "not run (out of time)". The summary is printed and written after
# every stage, so a call killed at its limit still returns what it did. Its result
# column is "ok" or why not; any other result than ok fails the check (exit 1): a
# stage that could not run is "not run", never ok.
#
# Output: $OUT, else --out DIR, else /tmp/gpu-check: summary.txt, tests.log (the
# sanitizer runs too), train.log, bench.log, peer.log, bench-kernels.json and
# bench-train-step.json. Seven files: the device tool brings 8 back, and a benchmark
# killed mid-write can leave an eighth (its JSON's .partial, removed after each stage).
#
# Device tool: carry ["device-bin.tar.xz"], command "scripts/gpu-check.sh",
# timeout_s 600. It unpacks device-bin/ from the archive (scripts/gpu-unpack.sh) unless
# device-bin/ already holds that archive. With GOOGLENET_KERNELS=DIR (see scripts/gpu-kernels.sh) every
# stage runs DIR's kernels.
#
# --rehearse (or GOOGLENET_GPU_CHECK_DEVICE=emu) runs the same stage list here, on the
# emulator at small sizes: test runs named in gpu-check-tests.txt with "cuda" made
# "emu" (the cuda group listed, not run: cargo test runs those), the benchmarks'
# smoke versions, the peer on the CPU, the override with the pinned nvcc, the archive
# unpacked with Python's tarfile. A stage it cannot run here says "skipped
# (rehearsal: why)"; any other result that is not ok fails the rehearsal, so a wrong
# path or flag shows here, not in GPU time. docs/GPU.md says more.
set -uo pipefail
cd "$(dirname "$0")/.."

device=${GOOGLENET_GPU_CHECK_DEVICE:-cuda}
out=${OUT:-/tmp/gpu-check}
budget=
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
    # The emulator runs each GPU thread as a fiber, far slower than a GPU: the
    # rehearsal's caps are four times the GPU's, a guard against a run that hangs.
    cuda) scale=1 budget=${budget:-480} ;;
    emu) scale=4 budget=${budget:-1200} ;;
    *) echo "error: GOOGLENET_GPU_CHECK_DEVICE=$device: expected cuda or emu" >&2; exit 2 ;;
esac
start=$(date +%s)
bin=device-bin
stages=scripts/gpu-check-tests.txt
mkdir -p "$out"
work=$(mktemp -d /tmp/gpu-check-work.XXXXXX)
trap 'rm -rf "$work"' EXIT
for log in summary.txt tests.log train.log bench.log peer.log; do
    : > "$out/$log"
done
rm -f "$out"/*.json "$out"/*.partial

unpacked=$(scripts/gpu-unpack.sh) || exit 2
if [ ! -x "$bin/train" ] || [ ! -d "$bin/tests" ]; then
    echo "error: $bin/ is missing or incomplete: run scripts/gpu-prepare.sh first (here, where Rust is)" >&2
    exit 2
fi

# shellcheck source=scripts/gpu-env.sh
. scripts/gpu-env.sh
if [ "$device" = cuda ]; then
    gpu=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2> /dev/null | head -1)
    gpu=${gpu:-"no GPU that nvidia-smi sees"}
    mode="GPU check on $gpu"
    nvidia-smi > "$out/tests.log" 2>&1
else
    gpu="none: rehearsal"
    mode="GPU check REHEARSAL on the emulator (no GPU figures)"
fi
if [ -n "${GOOGLENET_KERNELS:-}" ]; then
    kernels="GOOGLENET_KERNELS=$GOOGLENET_KERNELS (checked against the build's)"
else
    kernels="the build's own (embedded)"
fi
header=(
    "$mode, $(date -u '+%Y-%m-%d %H:%M UTC')"
    "build: $(cat "$bin/VERSION" 2> /dev/null || "$bin/train" --version)"
    "kernels: $kernels"
    "device-bin: $unpacked"
    "PyTorch: $torch_found; library path: ${LD_LIBRARY_PATH:-none}"
    "budget: $budget s"
)

rows=()
failed=0
# accepted RESULT: ok; in the rehearsal also a stage it cannot run here, saying why.
accepted() {
    case $1 in
        ok) return 0 ;;
        "skipped (rehearsal: "*) [ "$device" = emu ] ;;
        *) return 1 ;;
    esac
}
# summary STATE: summary.txt as it stands: the header, the rows so far, STATE.
summary() {
    {
        printf '%s\n' "${header[@]}"
        echo
        echo "| stage | result | figures |"
        echo "|---|---|---|"
        printf '%s\n' "${rows[@]}"
        echo
        echo "$1 after $(($(date +%s) - start)) s; logs in $out: $(cd "$out" && ls | tr '\n' ' ')"
    } > "$out/summary.txt"
}
# row STAGE RESULT FIGURES: one line of the summary, printed and written at once.
row() {
    rows+=("| $1 | $2 | $3 |")
    accepted "$2" || failed=1
    echo "[$(($(date +%s) - start))s] $1: $2${3:+ ($3)}"
    summary "running"
}
# capped CAP CMD...: CMD with a time limit of CAP seconds (times the rehearsal's
# scale) or what is left of the budget, whichever is less (`limit`, for `result`);
# 124 when it ran out of time, 125 when none was left.
limit=0
capped() {
    local left
    limit=$(($1 * scale))
    shift
    left=$((budget - ($(date +%s) - start)))
    [ "$left" -lt "$limit" ] && limit=$left
    [ "$limit" -lt 5 ] && return 125
    timeout --kill-after=5 "$limit" "$@"
}
# result RC: the result column for the exit status of the last `capped` command.
result() {
    case $1 in
        0) echo ok ;;
        124 | 137) echo "timed out (limit $limit s)" ;;
        125) echo "not run (out of time)" ;;
        *) echo "failed (exit $1)" ;;
    esac
}
printf '%s\n' "${header[@]}"
summary "starting"

# tests GROUP [list|first]: the runs of GROUP in gpu-check-tests.txt, "cuda" made "emu"
# in the rehearsal; each launch checked (GOOGLENET_CUDA_SYNC=1), so a fault names its
# kernel. With `list`, each selection is listed instead (the rehearsal's cuda group:
# cargo test runs those tests on the emulator); with `first`, the first line runs and
# the others are listed (the rehearsal's smoke group: one run shows the path works).
tests() {
    local group=$1 how=${2:-run} g name cap exe args path rc log passed failures first
    while read -r g name cap exe args <&3; do
        [ "$g" = "$group" ] || continue
        [ "$device" = emu ] && args=${args//cuda/emu}
        read -ra argv <<< "$args"
        path=$bin/tests/$exe
        if [ ! -x "$path" ]; then
            row "$group: $name" "not run (no $path: rebuild with scripts/gpu-prepare.sh)" ""
            continue
        fi
        if [ "$how" = first ]; then
            how=list
        elif [ "$how" = list ]; then
            passed=$("$path" --list "${argv[@]}" 2> /dev/null | grep -c ': test$')
            if [ "$passed" -gt 0 ]; then
                row "$group: $name" "skipped (rehearsal: cargo test runs these)" "$exe ${argv[*]}: $passed tests selected"
            else
                row "$group: $name" "failed (selects no test)" "$exe ${argv[*]}"
            fi
            continue
        fi
        capped "$cap" env GOOGLENET_CUDA_SYNC=1 "$path" "${argv[@]}" > "$work/test.log" 2>&1
        rc=$?
        { echo "### $exe ${argv[*]}: exit $rc"; cat "$work/test.log"; } >> "$out/tests.log"
        log=$(grep -E '^test result' "$work/test.log" | tail -1)
        passed=$(sed -nE 's/.* ([0-9]+) passed.*/\1/p' <<< "$log")
        failures=$(sed -nE 's/.* ([0-9]+) failed.*/\1/p' <<< "$log")
        first=$(grep -m1 -E '^test .* FAILED$' "$work/test.log" | sed -E 's/^test (.*) \.\.\. FAILED$/\1/')
        if [ "$rc" = 0 ] && [ "${passed:-0}" -gt 0 ]; then
            row "$group: $name" ok "$passed passed"
        elif [ "$rc" = 0 ]; then
            row "$group: $name" "failed (no test ran)" "$exe ${argv[*]}"
        else
            row "$group: $name" "$(result "$rc")" "${passed:-0} passed, ${failures:-?} failed${first:+, first $first}: see tests.log"
        fi
    done 3< <(grep -vE '^[[:space:]]*(#|$)' "$stages")
}

if [ "$device" = cuda ]; then
    # The presets' own size and batch: 224x224, 16.
    train_sizes=()
    smoke_sizes=(--train-limit 800 --test-limit 160 --log-every 10)
    smoke_steps=50
    full_sizes=(--train-limit 4800 --test-limit 1000 --log-every 50)
else
    # Two steps of batch 4 at 32x32, in f32 (the emulated tensor cores are slower).
    train_sizes=(--image-size 32 --batch-size 4 --precision f32)
    smoke_sizes=(--train-limit 8 --test-limit 8 --log-every 1)
    smoke_steps=2
    full_sizes=(--train-limit 8 --test-limit 8 --log-every 1)
fi
# train NAME CAP ARGS...: one `train` run on device-bin/data (4800 training and 1000
# test images) and its row.
train() {
    local name=$1 cap=$2 rc last figures accuracy
    shift 2
    capped "$cap" "$bin/train" --device "$device" --data-dir "$bin/data" --no-verify --epochs 1 \
        "${train_sizes[@]}" "$@" --run-dir "$work/run-$(date +%s%N)" > "$work/train.log" 2>&1
    rc=$?
    { echo "### train $*: exit $rc"; cat "$work/train.log"; } >> "$out/train.log"
    # "epoch 1 batch   300 (step    300)  loss 2.3026  accuracy 0.1000     12.3s"
    last=$(grep -E '^epoch [0-9]+ batch' "$work/train.log" | tail -1)
    figures=$(awk '{ for (i = 1; i <= NF; i++) { if ($i == "(step") step = $(i + 1) + 0; if ($i == "loss") loss = $(i + 1) }
                     t = $NF; sub("s$", "", t)
                     if (t > 0) printf "step %d: loss %s, %.1f steps/s over the run", step, loss, step / t }' <<< "$last")
    accuracy=$(sed -nE 's/^finished: test accuracy ([0-9.]+).*/\1/p' "$work/train.log")
    row "$name" "$(result "$rc")" "${figures:-no step logged: see train.log}${accuracy:+; test accuracy $accuracy}"
}

# 1. Smoke: what shows at once whether anything works at all (the rehearsal runs the
# first line: cargo test ran all of them on the emulator).
if [ "$device" = cuda ]; then tests smoke; else tests smoke first; fi
train "smoke: train $smoke_steps steps ($device, graph)" 35 --preset tutorial "${smoke_sizes[@]}"

# 2. Every other cuda variant (the rehearsal lists them: cargo test ran their emu twins).
if [ "$device" = cuda ]; then tests cuda; else tests cuda list; fi

# 3. 300 training steps of each preset (timed: launches unchecked).
for preset in tutorial recommended; do
    train "train $preset ($device)" 45 --preset "$preset" "${full_sizes[@]}"
    train "train $preset --no-graph ($device)" 45 --preset "$preset" "${full_sizes[@]}" --no-graph
done

# 4. The benchmarks at batch 16 (the rehearsal: their versions without a GPU).
if [ "$device" = cuda ]; then
    kernel_bench=(--batches 16)
    step_bench=(--batch-sizes 16)
    benched="batch 16"
else
    kernel_bench=()
    step_bench=(--gpu-device emu --batch-sizes 1 --size 32 --precisions f32 --steps 1 --no-graph)
    benched="smoke: emu, batch 1, 32x32"
fi
capped 100 "$bin/benches/kernels" --bench "${kernel_bench[@]}" --json "$out/bench-kernels.json" > "$work/bench.log" 2>&1
rc=$?
{ echo "### benches/kernels --bench ${kernel_bench[*]}: exit $rc"; cat "$work/bench.log"; } >> "$out/bench.log"
# "convolutions of one step in tf32: 3.10 ms, 20.1 TFLOP/s; cuDNN 1.2 ms, ...; ours/cuDNN 2.6"
convs=$(sed -nE 's/^convolutions of one step in //p' "$work/bench.log" | paste -sd '|' | sed 's/|/ · /g')
rows_done=$(python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["rows"]))' "$out/bench-kernels.json" 2> /dev/null)
grep -q '^GPU figures need a GPU' "$work/bench.log" && convs="smoke run, not GPU figures: $convs"
rm -f "$out"/*.partial
row "bench kernels ($benched)" "$(result "$rc")" "${rows_done:-no} rows; ${convs:-no convolution summary: see bench.log}"
capped 60 "$bin/benches/train_step" --bench --gpu-only "${step_bench[@]}" --json "$out/bench-train-step.json" > "$work/step.log" 2>&1
rc=$?
{ echo "### benches/train_step --bench --gpu-only ${step_bench[*]}: exit $rc"; cat "$work/step.log"; } >> "$out/bench.log"
steps=$(grep -E 'ms/step' "$work/step.log" | sed -E 's/ +/ /g; s/^ //; s/ \(median.*//' | paste -sd ';' | sed 's/;/; /g')
grep -q '^GPU figures need a GPU' "$work/step.log" && steps="not GPU figures: $steps"
rm -f "$out"/*.partial
row "bench train step ($benched)" "$(result "$rc")" "${steps:-no step timed: see bench.log}"

if [ "$device" = emu ]; then
    # What a benchmark killed at its cap leaves: a whole JSON file with the rows so far.
    timeout -s KILL 8 "$bin/benches/kernels" --bench --json "$work/killed.json" > /dev/null 2>&1
    kept=$(python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["rows"]))' "$work/killed.json" 2> /dev/null)
    if [ "${kept:-0}" -gt 0 ]; then
        row "bench rows as they go" ok "the kernel bench killed (SIGKILL) after 8 s: its JSON whole, $kept rows"
    else
        row "bench rows as they go" "failed (nothing kept)" "the kernel bench killed after 8 s left no readable rows"
    fi
fi

# 5. The PyTorch peer: eager first, then a cold torch.compile, each capped on its own.
# peer NAME CAP ARGS...
peer() {
    local name=$1 cap=$2 rc figures
    shift 2
    capped "$cap" env PYTHONUNBUFFERED=1 "$torch_python" scripts/pytorch_peer.py "$@" > "$work/peer.log" 2>&1
    rc=$?
    { echo "### pytorch_peer.py $*: exit $rc"; cat "$work/peer.log"; } >> "$out/peer.log"
    # "eager    fp32         16       12.3     1300.0        2.1"
    figures=$(awk '$1 == "eager" || $1 == "compile" { printf "%sbatch %s %s\n", ($2 == "fp32" ? "" : $2 " "), $3, ($4 == "failed:" ? "failed" : $4 " ms/step") }' "$work/peer.log" | paste -sd ';' | sed 's/;/; /g')
    row "$name" "$(result "$rc")" "${figures:-no row: see peer.log}"
}
if [ -z "$torch_python" ]; then
    if [ "$device" = cuda ]; then
        why="not run (no python3 here imports torch)"
    else
        why="skipped (rehearsal: no torch here)"
    fi
    row "pytorch peer: eager" "$why" "$torch_found"
    row "pytorch peer: compile" "$why" "$torch_found"
elif [ "$device" = cuda ]; then
    peer "pytorch peer: eager" 60 --device cuda --batch-sizes 16,128 --precision fp32 --modes eager --warmup 5 --steps 20
    peer "pytorch peer: compile" 120 --device cuda --batch-sizes 16 --precision fp32 --modes compile --warmup 3 --steps 10
else
    peer "pytorch peer: eager (cpu)" 60 --device cpu --image-size 32 --batch-sizes 4 --modes eager --warmup 1 --steps 2
    row "pytorch peer: compile" "skipped (rehearsal: a cold torch.compile takes minutes on a CPU)" ""
fi

# 6. The kernel override: kernels/*.cu compiled with this machine's nvcc and run by the
# same executables; then a module with a changed parameter list, refused by name.
override() {
    local dir=$work/kernels bad=$work/kernels-mismatched rc began figures
    began=$(date +%s)
    capped 90 scripts/gpu-kernels.sh "$dir" > "$work/kernels.log" 2>&1
    rc=$?
    { echo "### scripts/gpu-kernels.sh: exit $rc"; cat "$work/kernels.log"; } >> "$out/tests.log"
    if [ "$rc" != 0 ]; then
        [ "$rc" = 125 ] || figures="scripts/gpu-kernels.sh failed: see tests.log"
        row "kernel override" "$(result "$rc")" "${figures:-}"
        return
    fi
    figures="$(tail -1 "$work/kernels.log") in $(($(date +%s) - began)) s"
    capped 20 env GOOGLENET_KERNELS="$dir" "$bin/tests/emulator" --include-ignored "tensor_cores::$device::" > "$work/test.log" 2>&1
    rc=$?
    { echo "### GOOGLENET_KERNELS=$dir emulator tensor_cores::$device::: exit $rc"; cat "$work/test.log"; } >> "$out/tests.log"
    if [ "$rc" != 0 ]; then
        row "kernel override" "$(result "$rc")" "$figures; the instruction tests failed with them: see tests.log"
        return
    fi
    figures="$figures; instruction tests $(grep -oE '[0-9]+ passed' "$work/test.log" | tail -1) with them"
    cp -r "$dir" "$bad" && mkdir -p "$work/edited"
    sed 's/float\* y, int len) {/float* y, int len, int stride) {/' kernels/relu.cu > "$work/edited/relu.cu"
    capped 30 scripts/gpu-kernels.sh "$bad" "$work/edited/relu.cu" >> "$work/kernels.log" 2>&1
    capped 20 env GOOGLENET_KERNELS="$bad" "$bin/tests/emulator" --include-ignored "tensor_cores::$device::" > "$work/test.log" 2>&1
    { echo "### GOOGLENET_KERNELS=$bad (relu_fwd_f32 with a parameter more): exit $?"; cat "$work/test.log"; } >> "$out/tests.log"
    if grep -q 'kernel relu_fwd_f32: the build has' "$work/test.log"; then
        row "kernel override" ok "$figures; a changed relu_fwd_f32 refused by name"
    else
        row "kernel override" "failed (a mismatched module was not refused)" "$figures; see tests.log"
    fi
}
override

# 7. compute-sanitizer, last: the tensor-core instructions and kernels at small shapes.
sanitizer=$(command -v compute-sanitizer ||
    ls /usr/local/cuda*/bin/compute-sanitizer /opt/nvidia/*/compute-sanitizer 2> /dev/null | head -1)
while read -r g name cap exe args <&3; do
    [ "$g" = sanitize ] || continue
    if [ "$device" = emu ]; then
        read -ra argv <<< "${args//cuda/emu}"
        n=$("$bin/tests/$exe" --list "${argv[@]}" 2> /dev/null | grep -c ': test$')
        if [ "$n" -gt 0 ]; then
            row "sanitize: $name" "skipped (rehearsal: compute-sanitizer needs the driver)" "$exe: $n tests selected, under memcheck, racecheck, synccheck, initcheck"
        else
            row "sanitize: $name" "failed (selects no test)" "$exe ${argv[*]}"
        fi
        continue
    fi
    read -ra argv <<< "$args"
    for tool in memcheck racecheck synccheck initcheck; do
        if [ -z "$sanitizer" ]; then
            row "$tool: $name" "not run (no compute-sanitizer on PATH or in /usr/local/cuda*/bin)" ""
            continue
        fi
        capped "$cap" env GOOGLENET_CUDA_SYNC=1 "$sanitizer" --tool "$tool" --error-exitcode 86 --print-limit 20 \
            "$bin/tests/$exe" "${argv[@]}" > "$work/san.log" 2>&1
        rc=$?
        { echo "### compute-sanitizer --tool $tool $exe ${argv[*]}: exit $rc"; cat "$work/san.log"; } >> "$out/tests.log"
        found=$(grep -E '(ERROR|RACECHECK) SUMMARY' "$work/san.log" | tail -1 | sed 's/^=* *//')
        ran=$(grep -E '^test result' "$work/san.log" | tail -1 | sed -nE 's/.* ([0-9]+) passed; ([0-9]+) failed.*/\1 passed, \2 failed/p')
        verdict=$(result "$rc")
        [ "$rc" = 86 ] && verdict="ERRORS"
        row "$tool: $name" "$verdict" "${found:-no summary}; ${ran:-no test result}"
    done
done 3< <(grep -vE '^[[:space:]]*(#|$)' "$stages")

if [ "$device" = emu ]; then
    # The archive as the GPU machine unpacks it where it has no xz: Python's tarfile,
    # giving device-bin/ as built.
    if [ ! -f "$bin.tar.xz" ]; then
        row "packaging" "failed (no $bin.tar.xz: run scripts/gpu-prepare.sh)" ""
    elif scripts/gpu-unpack.sh --python "$work/unpacked" > /dev/null &&
        diff -r -x .archive-sha256 "$bin" "$work/unpacked/$bin" > "$work/diff.log" 2>&1; then
        row "packaging" ok "$(du -h "$bin.tar.xz" | cut -f1) archive; Python's tarfile unpacks it as built; $unpacked"
    else
        row "packaging" "failed (the archive does not unpack as built)" "$(head -3 "$work/diff.log" | tr '\n' ' ')"
    fi
fi

summary "finished"
echo
cat "$out/summary.txt"
exit $failed
