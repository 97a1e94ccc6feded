#!/usr/bin/env bash
# Builds, on this machine, everything scripts/gpu-check.sh runs on the GPU machine
# (which has no Rust toolchain): the test and benchmark executables and the programs,
# stripped, and the part of Fashion-MNIST the check trains on, into device-bin/
# (git-ignored). It refuses binaries without the sm_90 cubin.
#
# Then, with the device tool: carry ["device-bin"], command "scripts/gpu-check.sh",
# timeout_s 600 (the check ends itself before 8 minutes). Here, first:
# `scripts/gpu-check.sh --rehearse` runs the same script on the emulator.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-nvcc.sh > /dev/null
rm -rf device-bin && mkdir -p device-bin/tests device-bin/benches device-bin/data
cargo build --release --bins
cp target/release/train target/release/eval device-bin/
# Each executable of `kind` (test or bench) that the cargo command builds, copied into
# `dir` under its target's name.
copy_executables() {
    local kind=$1 dir=$2
    shift 2
    cargo "$@" --no-run --message-format=json 2> /dev/null | python3 -c '
import json, shutil, sys
kind, dir = sys.argv[1], sys.argv[2]
for line in sys.stdin:
    msg = json.loads(line)
    if msg.get("reason") == "compiler-artifact" and msg.get("executable") and msg["target"]["kind"] == [kind]:
        shutil.copy(msg["executable"], dir + "/" + msg["target"]["name"])
' "$kind" "$dir"
}
copy_executables test device-bin/tests test --release
copy_executables bench device-bin/benches bench
# Only the test executables with a cuda variant go: the rest have nothing to run on a
# GPU, and the carried folder must stay well under the device tool's 64 MiB.
for test in device-bin/tests/*; do
    listed=$("$test" --list --include-ignored cuda:: 2> /dev/null || true)
    if ! grep -q ': test$' <<< "$listed"; then
        rm "$test"
    fi
done
strip device-bin/train device-bin/eval device-bin/tests/* device-bin/benches/*

version=$(device-bin/train --version)
case "$version" in
    *"sm_90 (cubin)"*) ;;
    *) echo "error: device-bin/train holds no sm_90 code: $version" >&2; exit 1 ;;
esac
echo "$version, built from $(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo ' with local changes')" \
    > device-bin/VERSION

# The check trains 300 steps of batch 16 and tests on 1000 images: the first 4800
# training and 1000 test images of the installed set, as IDX files of that size (so
# `train` is run with --no-verify: their MD5 is not the full set's).
python3 - /usr/share/datasets/fashion-mnist device-bin/data 4800 1000 <<'EOF'
import gzip, struct, sys
source, target, train, test = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
for name, count in [("train-images-idx3-ubyte", train), ("train-labels-idx1-ubyte", train),
                    ("t10k-images-idx3-ubyte", test), ("t10k-labels-idx1-ubyte", test)]:
    data = gzip.open(f"{source}/{name}.gz").read()
    dims = data[3]
    shape = list(struct.unpack(f">{dims}I", data[4:4 + 4 * dims]))
    item = 1
    for d in shape[1:]:
        item *= d
    head = data[:4] + struct.pack(f">{dims}I", count, *shape[1:])
    body = data[4 + 4 * dims:][:count * item]
    with gzip.open(f"{target}/{name}.gz", "wb") as f:
        f.write(head + body)
EOF
cat device-bin/VERSION
du -sh device-bin
# Carried to the GPU machine packed: the folder is larger than the device tool's 64 MiB,
# its executables compress about tenfold. scripts/gpu-check.sh unpacks it there.
XZ_OPT=-T0 tar -cJf device-bin.tar.xz device-bin
size=$(stat -c %s device-bin.tar.xz)
if [ "$size" -gt $((60 << 20)) ]; then
    echo "error: device-bin.tar.xz is $((size >> 20)) MiB, over the 60 MiB the device tool can carry" >&2
    exit 1
fi
echo "device-bin.tar.xz: $((size >> 20)) MiB (carry it: [\"device-bin.tar.xz\"])"
