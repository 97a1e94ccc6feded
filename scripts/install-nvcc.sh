#!/usr/bin/env bash
# Installs the pinned CUDA 13.0 compiler (nvcc, ptxas) from PyPI into .venv-cuda/.
# Pinned because PTX from a newer nvcc does not load on the 13.0 driver of our GPUs.
# The one place the pins are named: build.rs (build/nvcc.rs) runs this script itself
# when it finds no nvcc, and uses the copy here first. Prints the nvcc path. Safe to
# run again, and at the same time (two builds at once wait for each other).
set -euo pipefail
if [ -z "${GOOGLENET_NVCC_LOCKED:-}" ] && command -v flock > /dev/null; then
    exec env GOOGLENET_NVCC_LOCKED=1 flock "$0" "$0" "$@"
fi
cd "$(dirname "$0")/.."
venv=.venv-cuda
nvcc="$venv/lib/python3*/site-packages/nvidia/cu13/bin/nvcc"
if ! compgen -G "$nvcc" > /dev/null; then
    if ! python3 -m venv "$venv" > /dev/null 2>&1; then
        # Debian and Ubuntu ship venv separately.
        if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
            apt-get update -qq && apt-get install -y -qq python3-venv > /dev/null
            rm -rf "$venv" && python3 -m venv "$venv"
        else
            echo "error: python3 -m venv failed; install python3-venv (sudo apt-get install python3-venv)" >&2
            exit 1
        fi
    fi
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        nvidia-cuda-nvcc==13.0.88 nvidia-cuda-runtime==13.0.96 nvidia-cuda-crt==13.0.88 \
        nvidia-cuda-cccl==13.0.85 nvidia-nvvm==13.0.88
fi
compgen -G "$nvcc"
