#!/usr/bin/env bash
# Unpacks device-bin.tar.xz (scripts/gpu-prepare.sh packs it) into device-bin/ on the
# GPU machine, unless device-bin/ holds that archive already: device-bin/.archive-sha256
# records which, since tar restores the files' old dates and so dates cannot tell. With
# tar and xz, or with Python's tarfile where the machine has no xz. Prints one line
# saying what it did. scripts/gpu-check.sh and scripts/gpu-bench.sh run it first.
#
# --python DIR: unpacks into DIR with Python's tarfile whatever is there (the
# rehearsal's check of that path).
set -euo pipefail
cd "$(dirname "$0")/.."
archive=device-bin.tar.xz

# python_untar DIR: the archive extracted into DIR by Python alone.
python_untar() {
    python3 - "$archive" "$1" <<'EOF'
import sys, tarfile
with tarfile.open(sys.argv[1], "r:xz") as archive:
    if hasattr(tarfile, "data_filter"):
        archive.extractall(sys.argv[2], filter="data")
    else:
        archive.extractall(sys.argv[2])
EOF
}

if [ ! -f "$archive" ]; then
    echo "no $archive: device-bin/ as it is"
    exit 0
fi
if [ "${1:-}" = --python ]; then
    mkdir -p "${2:?--python needs a directory}"
    python_untar "$2"
    echo "$archive unpacked into $2 with Python's tarfile"
    exit 0
fi
began=$(date +%s)
sum=$(sha256sum "$archive" | cut -d' ' -f1)
if [ "$(cat device-bin/.archive-sha256 2> /dev/null)" = "$sum" ]; then
    echo "device-bin/ holds $archive already"
    exit 0
fi
rm -rf device-bin
if command -v xz > /dev/null && tar -xJf "$archive"; then
    how="tar and xz"
else
    rm -rf device-bin
    python_untar .
    how="Python's tarfile (no xz here)"
fi
echo "$sum" > device-bin/.archive-sha256
echo "unpacked from $archive with $how in $(($(date +%s) - began)) s"
