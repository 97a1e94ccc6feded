#!/usr/bin/env bash
# Builds, on this machine, everything scripts/gpu-check.sh runs on the GPU machine
# (which has no Rust toolchain): the programs, the test executables that
# scripts/gpu-check-tests.txt names and the benchmarks, stripped, and the part of
# Fashion-MNIST the check trains on, into device-bin/ (git-ignored), packed into
# device-bin.tar.xz. It refuses binaries without the sm_90 cubin.
#
# Then, with the device tool: carry ["device-bin.tar.xz"] (device-bin/ itself is over
# the tool's 64 MiB), command "scripts/gpu-check.sh", timeout_s 600 (the check ends
# itself inside its budget, 480 s by default). Here, first: `scripts/gpu-check.sh
# --rehearse` runs the same script on the emulator. docs/GPU.md says more.
#
# Built with the release profile the tests use, so after `cargo test --release` (CI's
# scripts/test.sh) only the two benchmarks are compiled anew.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-nvcc.sh > /dev/null
rm -rf device-bin && mkdir -p device-bin/tests device-bin/benches device-bin/data

# Each executable of `kind` (bin, test or bench) named in `names` (comma-separated;
# empty: all) that the cargo command builds, copied into `dir` under its target's name;
# prints the names. A bin's own unit tests (a test build of it) are not the program.
copy_executables() {
    local kind=$1 dir=$2 names=$3
    shift 3
    cargo "$@" --message-format=json 2> /dev/null | python3 -c '
import json, shutil, sys
kind, dir, names = sys.argv[1], sys.argv[2], sys.argv[3]
for line in sys.stdin:
    msg = json.loads(line)
    name = msg.get("target", {}).get("name")
    if (msg.get("reason") == "compiler-artifact" and msg.get("executable")
            and msg["target"]["kind"] == [kind] and not (kind == "bin" and msg["profile"]["test"])
            and (not names or name in names.split(","))):
        shutil.copy(msg["executable"], dir + "/" + name)
        print(name)
' "$kind" "$dir" "$names"
}
# The test executables the check runs, and nothing else: the carried archive must stay
# well under the device tool's 64 MiB.
mapfile -t wanted < <(awk '!/^#/ && NF >= 5 { print $4 }' scripts/gpu-check-tests.txt | sort -u)
test_args=()
for name in "${wanted[@]}"; do
    test_args+=(--test "$name")
done
# The programs as `cargo test` builds them for the tests that run them: a plain `cargo
# build` would compile the whole crate again, without the dev-dependencies' features.
copy_executables test device-bin/tests "" test --release --no-run "${test_args[@]}" > /dev/null
copy_executables bin device-bin train,eval test --release --no-run "${test_args[@]}" > /dev/null
for program in train eval; do
    if [ ! -x "device-bin/$program" ]; then
        echo "error: cargo test built no $program program" >&2
        exit 1
    fi
done
copy_executables bench device-bin/benches "" build --release --bench kernels --bench train_step > /dev/null
for name in "${wanted[@]}"; do
    if [ ! -x "device-bin/tests/$name" ]; then
        echo "error: scripts/gpu-check-tests.txt names tests/$name.rs, which did not build" >&2
        exit 1
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
# Carried to the GPU machine packed: the folder is larger than the device tool's 64 MiB.
# xz's fastest level packs it about fourfold in seconds (the default level, twice as
# small, takes half a minute on 2 cores). scripts/gpu-check.sh unpacks it there.
XZ_OPT="-T0 -1" tar -cJf device-bin.tar.xz device-bin
size=$(stat -c %s device-bin.tar.xz)
if [ "$size" -gt $((60 << 20)) ]; then
    echo "error: device-bin.tar.xz is $((size >> 20)) MiB, over the 60 MiB the device tool can carry" >&2
    exit 1
fi
# What gpu-check.sh compares to know device-bin/ is this archive's (tar restores the
# files' old dates, so dates cannot tell).
sha256sum device-bin.tar.xz | cut -d' ' -f1 > device-bin/.archive-sha256
echo "device-bin.tar.xz: $((size >> 20)) MiB (carry it: [\"device-bin.tar.xz\"])"
