# Sourced by scripts/gpu-check.sh and scripts/gpu-bench.sh on the GPU machine: the
# Python with PyTorch, and the library path cuDNN needs. Sets:
#
#   torch_python  the python3 that imports torch: /opt/torch/.venv/bin/python3 where
#                 it exists (the lent machines' PyTorch), else $PEER_PYTHON, else
#                 python3; empty when none of them imports torch.
#   torch_found   what was found, in words, for the summary.
#   LD_LIBRARY_PATH  with the directories of cuDNN and of the libraries cuDNN loads
#                 for some of its engines (cuBLASLt, NVRTC), from torch's python's
#                 NVIDIA wheels, where the loader does not look. Without cuBLASLt and
#                 NVRTC, cuDNN has no working algorithm for some shapes.

torch_python=
torch_found=
for candidate in /opt/torch/.venv/bin/python3 "${PEER_PYTHON:-}" python3; do
    [ -n "$candidate" ] || continue
    if [ "${candidate#/}" != "$candidate" ] && [ ! -x "$candidate" ]; then
        torch_found="${torch_found:+$torch_found; }$candidate: absent"
        continue
    fi
    if version=$("$candidate" -c 'import torch; print(torch.__version__)' 2> /dev/null); then
        torch_python=$candidate
        torch_found="$candidate (torch $version)"
        break
    fi
    torch_found="${torch_found:+$torch_found; }$candidate: no torch"
done
torch_found=${torch_found:-"no python3"}

nvidia_libs=$("${torch_python:-python3}" - 2> /dev/null <<'EOF'
import glob, os
try:
    import nvidia
except ImportError:
    raise SystemExit
dirs = []
for root in nvidia.__path__:
    for name in ("libcudnn.so*", "libcublasLt.so*", "libnvrtc.so*"):
        for f in sorted(glob.glob(os.path.join(root, "**", name), recursive=True)):
            if os.path.dirname(f) not in dirs:
                dirs.append(os.path.dirname(f))
print(":".join(dirs))
EOF
)
if [ -n "$nvidia_libs" ]; then
    export LD_LIBRARY_PATH="$nvidia_libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
