#!/usr/bin/env bash
# Builds the PyTorch extension lmf_torch from this checkout and prints, as its last line, the
# directory to put on PYTHONPATH:   export PYTHONPATH=$(bash scripts/torch.sh | tail -1)
#
# On Debian it first installs what it needs (python3-torch, python3-dev, pybind11-dev,
# ninja-build, ...). The extension is built for the first of $LMF_PYTHON, /usr/bin/python3 and
# python3 that imports torch (a pip or conda PyTorch: set LMF_PYTHON, or activate its
# environment). Where that PyTorch has CUDA and nvcc is found, lmf's CUDA kernels are compiled
# in too (python/build.py: LMF_TORCH_CUDA=0 leaves them out, =1 requires them).
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v apt-get >/dev/null 2>&1 && [ -r /etc/debian_version ]; then bash scripts/deps.sh torch >&2; fi
py=""
for p in "${LMF_PYTHON:-}" /usr/bin/python3 python3; do
  if [ -n "$p" ] && command -v "$p" >/dev/null 2>&1 && "$p" -c 'import torch' >/dev/null 2>&1; then py=$p; break; fi
done
[ -n "$py" ] || { echo "torch.sh: no python3 that imports torch (set LMF_PYTHON)" >&2; exit 1; }
echo "torch.sh: building lmf_torch for $py ($("$py" -c 'import torch; print("torch", torch.__version__)'))" >&2
"$py" python/build.py | tail -1
