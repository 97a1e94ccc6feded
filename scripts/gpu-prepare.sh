#!/usr/bin/env bash
# Builds, on this machine, everything the GPU machine runs (it has no Rust toolchain):
# the test and benchmark executables, the programs and the data set, into device-bin/
# (git-ignored). Then, with the device tool: carry ["device-bin"], command
# "scripts/gpu-check.sh" (tests) or "scripts/gpu-bench.sh" (benchmarks).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-nvcc.sh > /dev/null
rm -rf device-bin && mkdir -p device-bin/tests device-bin/benches device-bin/data
cargo build --release --bins
cp target/release/train target/release/eval device-bin/
cargo test --release --no-run --message-format=json 2>/dev/null \
    | python3 -c '
import json, shutil, sys
for line in sys.stdin:
    msg = json.loads(line)
    if msg.get("reason") == "compiler-artifact" and msg.get("executable") and msg["target"]["kind"] == ["test"]:
        shutil.copy(msg["executable"], "device-bin/tests/" + msg["target"]["name"])
'
cargo bench --no-run --message-format=json 2>/dev/null \
    | python3 -c '
import json, shutil, sys
for line in sys.stdin:
    msg = json.loads(line)
    if msg.get("reason") == "compiler-artifact" and msg.get("executable") and msg["target"]["kind"] == ["bench"]:
        shutil.copy(msg["executable"], "device-bin/benches/" + msg["target"]["name"])
'
strip device-bin/train device-bin/eval device-bin/tests/* device-bin/benches/*
cp /usr/share/datasets/fashion-mnist/*.gz device-bin/data/
du -sh device-bin
