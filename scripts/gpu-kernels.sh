#!/usr/bin/env bash
# Compiles kernels/*.cu (or the .cu FILEs named) into DIR as build/ptx.rs does (the
# same nvcc and ptxas flags, the same file names), with the nvcc found on this machine,
# so that the programs load them in place of their embedded kernels: `GOOGLENET_KERNELS=DIR device-bin/train ...`.
# For the GPU machine, which has nvcc but no Rust: a kernel fixed here is carried as
# source and rebuilt there in seconds, and the same executables run it. They refuse a
# module whose kernels or parameter lists differ from the build's (docs/GPU.md).
#
# Usage: scripts/gpu-kernels.sh DIR [FILE.cu...]. Naming FILEs rebuilds only those
# (a FILE anywhere, its name that of the module it replaces) into a DIR made before.
#
# Per kernels/NAME.cu: NAME.compute_90.ptx and NAME.sm_90.cubin (what an sm_90 GPU
# loads), NAME.compute_80.ptx (what any other GPU JIT-compiles) and NAME.sm_80.cubin
# (assembled as a check only, as the build does). A kernel that spills registers fails,
# as it fails the build.
#
# nvcc: $NVCC, else nvcc on PATH, else /usr/local/cuda/bin/nvcc or /usr/local/cuda-*/,
# else the pinned copy in .venv-cuda (scripts/install-nvcc.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if [ $# -lt 1 ]; then
    echo "usage: scripts/gpu-kernels.sh DIR [FILE.cu...]" >&2
    exit 2
fi
dir=$1
shift
files=("$@")
[ ${#files[@]} = 0 ] && files=("$root"/kernels/*.cu)
for file in "${files[@]}"; do
    if [ ! -f "$file" ] || [ "${file%.cu}" = "$file" ]; then
        echo "error: $file: not a .cu file" >&2
        exit 2
    fi
done
nvcc=${NVCC:-$(command -v nvcc || true)}
for candidate in /usr/local/cuda/bin/nvcc /usr/local/cuda-*/bin/nvcc "$root"/.venv-cuda/lib/python3*/site-packages/nvidia/cu13/bin/nvcc; do
    [ -n "$nvcc" ] && break
    [ -x "$candidate" ] && nvcc=$candidate
done
if [ -z "$nvcc" ] || [ ! -x "$nvcc" ]; then
    echo "error: no nvcc (set NVCC, put one on PATH, or run scripts/install-nvcc.sh)" >&2
    exit 1
fi
ptxas=$(dirname "$nvcc")/ptxas
mkdir -p "$dir"
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# compile FILE VIRTUAL REAL: build/ptx.rs's `compile`, with its spill check.
compile() {
    local file=$1 virtual=$2 real=$3 stem report
    stem=$(basename "$file" .cu)
    "$nvcc" -ptx -O3 -Werror all-warnings -arch="$virtual" -I "$root/kernels" "$file" \
        -o "$dir/$stem.$virtual.ptx" || return 1
    if ! report=$("$ptxas" -arch="$real" -v -Werror "$dir/$stem.$virtual.ptx" -o "$dir/$stem.$real.cubin" 2>&1); then
        echo "$report" >&2
        return 1
    fi
    if grep -Eq '[1-9][0-9]* bytes spill (stores|loads)' <<< "$report"; then
        echo "error: kernels/$stem.cu spills registers to local memory on $real:" >&2
        grep -B2 'bytes spill' <<< "$report" >&2
        return 1
    fi
}
export -f compile
export nvcc ptxas dir root

# Every file and architecture at once: the GPU machine has the cores.
status=0
for file in "${files[@]}"; do
    printf '%s\0compute_90\0sm_90\0%s\0compute_80\0sm_80\0' "$file" "$file"
done | xargs -0 -n 3 -P "$(nproc)" bash -c 'compile "$@"' _ > "$log" 2>&1 || status=$?
cat "$log"
if [ "$status" != 0 ]; then
    echo "error: the kernels did not compile (nvcc: $nvcc)" >&2
    exit 1
fi
echo "${#files[@]} kernel file(s) compiled into $dir by nvcc $("$nvcc" --version | sed -n 's/.*, V\([0-9.]*\)$/\1/p')"
