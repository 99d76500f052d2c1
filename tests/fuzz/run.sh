#!/usr/bin/env bash
# Builds the libFuzzer harness (clang, ASan + UBSan) with one set of flags (baseline: the default,
# a user's plain build; native: -march=native) and fuzzes lmf's raw entry points for SECONDS,
# each input on every instruction set the CPU runs (the harness forces sse2, avx2, avx512 in
# turn), starting from the committed seed corpus (tests/fuzz/corpus: the regression inputs of the
# fuzz findings and small valid batches). New inputs go to a scratch corpus under build/, never
# into the repository. A crash leaves its input in build/fuzz/.
# Usage: tests/fuzz/run.sh baseline|native|avx2|avx512 SECONDS
set -euo pipefail
cd "$(dirname "$0")/../.."
isa=${1:-native} seconds=${2:-60}
case "$isa" in
  baseline) flags=() ;;
  avx2) flags=(-mavx2 -mfma) ;;
  avx512) flags=(-mavx2 -mfma -mavx512f -mavx512cd -mavx512bw -mavx512dq -mavx512vl) ;;
  native) flags=(-march=native) ;;
  *) echo "usage: $0 baseline|native|avx2|avx512 SECONDS" >&2; exit 2 ;;
esac
out=build/fuzz
mkdir -p "$out/work_$isa"
bin="$out/fuzz_entry_$isa"
if [ ! -x "$bin" ] || [ tests/fuzz/fuzz_entry.cpp -nt "$bin" ] || [ -n "$(find include -newer "$bin" -name '*.hpp' | head -1)" ]; then
  echo "== building the fuzzer ($isa)"
  clang++ -std=c++17 -O1 -g -fopenmp "${flags[@]}" -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
    -fno-omit-frame-pointer -Iinclude -isystem /usr/include/eigen3 tests/fuzz/fuzz_entry.cpp -o "$bin"
fi
echo "== fuzzing lmf's raw entry points for ${seconds}s ($isa)"
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ASAN_OPTIONS=detect_leaks=1 OMP_NUM_THREADS=2 \
  "$bin" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=4096 -print_final_stats=1 \
  -artifact_prefix="$out/crash_${isa}_" "$out/work_$isa" tests/fuzz/corpus 2>&1 | tail -n 25
