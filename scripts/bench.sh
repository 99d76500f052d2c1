#!/usr/bin/env bash
# Builds the benchmarks (Release) once per instruction set and prints the tables of
# docs/performance.md for each: ns/logit of lmf, its scalar kernel, naive Eigen, libtorch and
# memcpy with the ratios, and the subnormal check (the same call with and without FTZ/DAZ set by
# the caller). The builds:
#   build/bench           -march=native (this host's widest set; libtorch's bench is built here)
#   build/bench-avx2      -mavx2 -mfma (only on an AVX-512 host: elsewhere native is AVX2 already)
#   build/bench-default   the compiler's default flags, what `target_link_libraries(... lmf::lmf)`
#                         gives a user who passes no -march (SSE2 on x86-64)
# Installs what it needs first (Debian 12). Extra arguments go to bench/run.py
# (e.g. --filter 'C:1000$' --repetitions 1).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh bench
builds=()
build() {  # directory, LMF_ARCH, build the libtorch bench
  cmake -S . -B "$1" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLMF_BUILD_TESTS=OFF -DLMF_BUILD_EXAMPLES=OFF \
    -DLMF_ARCH="$2" -DLMF_BENCH_TORCH="$3" >/dev/null
  cmake --build "$1" -j "$(nproc)"
  builds+=("$1")
}
build build/bench native ON
if grep -qw avx512f /proc/cpuinfo && grep -qw avx2 /proc/cpuinfo; then
  build build/bench-avx2 "-mavx2 -mfma" OFF
fi
build build/bench-default baseline OFF
python3 bench/run.py "${builds[@]}" "$@"
