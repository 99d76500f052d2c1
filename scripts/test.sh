#!/usr/bin/env bash
# Runs every test: a gcc Release build with warnings as errors, then a clang build under
# AddressSanitizer + UndefinedBehaviorSanitizer. Installs what it needs first (Debian 12).
# Usage: scripts/test.sh [--quick]   (--quick: the gcc build only)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh test
jobs=$(nproc)

echo "== gcc, Release, -Wall -Wextra -Wpedantic -Werror"
cmake --preset release -DLMF_WERROR=ON >/dev/null
cmake --build --preset release -j "$jobs"
ctest --preset release -j "$jobs"

if [ "${1:-}" != "--quick" ]; then
  echo "== clang, ASan + UBSan, -Werror"
  cmake --preset sanitize -DLMF_WERROR=ON >/dev/null
  cmake --build --preset sanitize -j "$jobs"
  ctest --preset sanitize -j "$jobs"
fi
