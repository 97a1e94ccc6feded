#!/usr/bin/env bash
# The test suite, with its set-up: the README's test command, and what CI runs.
# Installs what the tests use when it is missing, then runs `cargo test --release`.
set -euo pipefail
cd "$(dirname "$0")/.."

# A C++ compiler, for the CUDA emulator that build.rs compiles.
if ! command -v c++ > /dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
        echo "installing g++ (the CUDA emulator is C++)..."
        apt-get update -qq && apt-get install -y -qq g++ > /dev/null
    else
        echo "error: no C++ compiler; install one (sudo apt-get install g++)" >&2
        exit 1
    fi
fi

# The real Fashion-MNIST files, for the tests that read them (they skip without).
dataset=/usr/share/datasets/fashion-mnist
if [ ! -d "$dataset" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
        echo "installing Debian's dataset-fashion-mnist..."
        apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist > /dev/null
    else
        echo "note: $dataset is missing; the tests on the real files will be skipped"
        echo "      (install it with: sudo apt-get install dataset-fashion-mnist)"
    fi
fi

# The pinned nvcc, so build.rs compiles and assembles every kernel (a kernel that
# does not compile fails the build). CI must have it; elsewhere the tests still run
# without it (the emulator needs only g++), and build.rs says what is missing.
if ! ./scripts/install-nvcc.sh > /dev/null; then
    if [ -n "${CI:-}" ]; then
        exit 1
    fi
    echo "warning: could not install nvcc; the kernels will not be compiled to PTX"
fi

cargo test --release "$@"
