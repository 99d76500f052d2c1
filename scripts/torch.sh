#!/usr/bin/env bash
# Builds the PyTorch extension lmf_torch from this checkout (installing what it needs from
# Debian: python3-torch, python3-dev, pybind11-dev, ninja-build) and prints, as its last line,
# the directory to put on PYTHONPATH:   export PYTHONPATH=$(bash scripts/torch.sh | tail -1)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh torch >&2
/usr/bin/python3 python/build.py | tail -1
