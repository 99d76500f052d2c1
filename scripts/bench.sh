#!/usr/bin/env bash
# Builds the benchmarks (Release, -march=native) and prints the table of docs/performance.md:
# ns/logit of lmf, its scalar kernel, naive Eigen, libtorch and memcpy, with the ratios.
# Installs what it needs first (Debian 12). Extra arguments go to bench/run.py.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh bench
cmake -S . -B build/bench -G Ninja -DCMAKE_BUILD_TYPE=Release -DLMF_BUILD_TESTS=OFF -DLMF_BUILD_EXAMPLES=OFF >/dev/null
cmake --build build/bench -j "$(nproc)"
python3 bench/run.py build/bench "$@"
