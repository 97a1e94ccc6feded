#!/usr/bin/env bash
# Runs a command with AddressSanitizer's runtime loaded first, as the emulator built with
# it needs (GOOGLENET_EMU_ASAN=1, src/engine/device/emu/asan.rs). CI runs the kernel
# tests through it as cargo's runner:
#   GOOGLENET_EMU_ASAN=1 CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER=scripts/with-asan.sh \
#     cargo test --release --test emulator
set -euo pipefail
runtime=$(${CXX:-c++} -print-file-name=libasan.so)
if [ ! -e "$runtime" ]; then
    echo "error: the C++ compiler has no AddressSanitizer runtime (libasan.so); install it (Debian/Ubuntu: sudo apt-get install g++)" >&2
    exit 1
fi
LD_PRELOAD="$runtime${LD_PRELOAD:+:$LD_PRELOAD}" exec "$@"
