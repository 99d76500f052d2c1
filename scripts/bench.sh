#!/usr/bin/env bash
# Builds the benchmarks (Release) twice and prints the tables of docs/performance.md, per
# instruction set: ns/logit of lmf, its scalar kernel, naive Eigen, libtorch and memcpy with the
# ratios, and the subnormal check (the same call with and without FTZ/DAZ set by the caller).
#   build/bench           -march=native (libtorch's bench is built here)
#   build/bench-default   the compiler's default flags, what `target_link_libraries(... lmf::lmf)`
#                         gives a user who passes no -march: lmf dispatches at run time, and the
#                         default build is run once per set this CPU has (LMF_SIMD_ISA caps it)
# Installs what it needs first (Debian 12). Extra arguments go to bench/run.py
# (e.g. --filter 'C:1000$' --repetitions 1).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh bench
build() {  # directory, LMF_ARCH, build the libtorch bench
  cmake -S . -B "$1" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLMF_BUILD_TESTS=OFF -DLMF_BUILD_EXAMPLES=OFF \
    -DLMF_ARCH="$2" -DLMF_BENCH_TORCH="$3" >/dev/null
  cmake --build "$1" -j "$(nproc)"
}
build build/bench native ON
build build/bench-default baseline OFF
# the default build as it runs (the widest set), then capped to each narrower set the CPU has
narrower=(build/bench-default@sse2)
if grep -qw avx512f /proc/cpuinfo && grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo; then
  narrower+=(build/bench-default@avx2)
fi
python3 bench/run.py build/bench build/bench-default "${narrower[@]}" "$@"
