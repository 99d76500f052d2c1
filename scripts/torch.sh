#!/usr/bin/env bash
# Builds the PyTorch extension lmf_torch from this checkout and prints, as its last line, the
# directory to put on PYTHONPATH:   export PYTHONPATH=$(bash scripts/torch.sh | tail -1)
#
# The extension is built for the first of $LMF_PYTHON, python3 and /usr/bin/python3 that
# imports torch (a pip or conda PyTorch: activate its environment or set LMF_PYTHON). When that
# is Debian's (or none is found), on Debian, it first installs what it needs (python3-torch,
# python3-dev, pybind11-dev, ninja-build, ...). Where the PyTorch has CUDA and nvcc is found,
# lmf's CUDA kernels are compiled in too (python/build.py: LMF_TORCH_CUDA=0 leaves them out,
# =1 requires them).
set -euo pipefail
cd "$(dirname "$0")/.."
pick() {
  local p
  for p in "${LMF_PYTHON:-}" python3 /usr/bin/python3; do
    if [ -n "$p" ] && command -v "$p" >/dev/null 2>&1 && "$p" -c 'import torch' >/dev/null 2>&1; then
      echo "$p"
      return 0
    fi
  done
  return 1
}
py=$(pick || true)
if { [ -z "$py" ] || [ "$(command -v "$py")" = /usr/bin/python3 ]; } &&
   command -v apt-get >/dev/null 2>&1 && [ -r /etc/debian_version ]; then
  bash scripts/deps.sh torch >&2
  py=$(pick || true)
fi
[ -n "$py" ] || { echo "torch.sh: no python3 that imports torch (set LMF_PYTHON)" >&2; exit 1; }
echo "torch.sh: building lmf_torch for $py ($("$py" -c 'import torch; print("torch", torch.__version__)'))" >&2
"$py" python/build.py | tail -1
