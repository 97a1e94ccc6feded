#!/usr/bin/env bash
# Installs the pinned CUDA 13.0 compiler (nvcc, ptxas) from PyPI into .venv-cuda/.
# Pinned because PTX from a newer nvcc does not load on the 13.0 driver of our GPUs.
# build.rs finds it there; prints the nvcc path. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv-cuda
nvcc="$venv/lib/python3*/site-packages/nvidia/cu13/bin/nvcc"
if ! compgen -G "$nvcc" > /dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        nvidia-cuda-nvcc==13.0.88 nvidia-cuda-runtime==13.0.96 nvidia-cuda-crt==13.0.88 \
        nvidia-cuda-cccl==13.0.85 nvidia-nvvm==13.0.88
fi
compgen -G "$nvcc"
