#!/usr/bin/env bash
# Runs every test. Installs what it needs first (Debian 12).
#   1. the SECTION-in-a-loop check of the test sources;
#   2. gcc, Release, -Werror: the suite once per instruction set the host supports (the x86-64
#      baseline, AVX2+FMA, AVX-512 where present), the README example, install + find_package,
#      -fno-exceptions, live PyTorch parity;
#   3. gcc, Debug (-O0, host instruction set): builds and runs the suite;
#   4. clang, ASan + UBSan, -Werror: the suite for the baseline and the host's set;
#   5. the libFuzzer harness (clang, ASan + UBSan) for the baseline and the host's set,
#      LMF_FUZZ_SECONDS each (default 60).
# Usage: scripts/test.sh [--quick]   (--quick: steps 1 and 2 only)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh test
jobs=$(nproc)

echo "== SECTIONs inside loops (Catch2 v2 runs them on the first pass only)"
python3 scripts/check_sections.py

echo "== gcc, Release, -Wall -Wextra -Wpedantic -Werror, every instruction set of this host"
cmake --preset release -DLMF_WERROR=ON >/dev/null
cmake --build --preset release -j "$jobs"
ctest --preset release -j "$jobs"

if [ "${1:-}" != "--quick" ]; then
  echo "== gcc, Debug, -march=native -Werror"
  cmake --preset debug -DLMF_WERROR=ON -DLMF_TEST_ISAS=native -DLMF_BUILD_EXAMPLES=OFF -DLMF_BUILD_BENCH=OFF >/dev/null
  cmake --build --preset debug -j "$jobs"
  ctest --preset debug -j "$jobs" -R '^\[native\]' -E 'finite differences|PyTorch running'

  echo "== clang, ASan + UBSan, -Werror, baseline and native"
  cmake --preset sanitize -DLMF_WERROR=ON "-DLMF_TEST_ISAS=baseline;native" >/dev/null
  cmake --build --preset sanitize -j "$jobs"
  ctest --preset sanitize -j "$jobs"

  for isa in baseline native; do
    bash tests/fuzz/run.sh "$isa" "${LMF_FUZZ_SECONDS:-60}"
  done
fi
