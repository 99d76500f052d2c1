#!/usr/bin/env bash
# The main job: trains an MLP on long-tailed Fashion-MNIST with each loss and prints the
# comparison table. Installs what it needs first (Debian 12), builds in Release.
# Extra arguments go to fashion_lt (e.g. --seeds 5 --epochs 20 --rho 50).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh demo
cmake -S . -B build/demo -G Ninja -DCMAKE_BUILD_TYPE=Release -DLMF_BUILD_TESTS=OFF -DLMF_BUILD_BENCH=OFF >/dev/null
cmake --build build/demo --target fashion_lt quickstart -j "$(nproc)"
./build/demo/examples/fashion_lt/fashion_lt --out build/demo/fashion_lt_out "$@"
