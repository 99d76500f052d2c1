#!/bin/sh
# Live parity with PyTorch: fresh golden cases from a new seed, then the [parity] tests on them.
# Usage: run_live_parity.sh PYTHON make_golden.py lmf_tests OUT   (LMF_PARITY_SEED to repeat a run)
set -eu
python=$1 script=$2 tests=$3 out=$4
seed=${LMF_PARITY_SEED:-$(date +%s)}
echo "live PyTorch parity: seed $seed (repeat with LMF_PARITY_SEED=$seed)"
"$python" "$script" --seed "$seed" --cases 220 --out "$out"
LMF_GOLDEN="$out" "$tests" "[parity]"
