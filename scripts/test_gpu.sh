#!/usr/bin/env bash
# The CUDA header on a machine with an NVIDIA GPU, in one command: builds the CUDA suites and the
# GPU benchmark (Release, sm_80 + sm_90 + PTX), runs the suites (the GPU one must run, not be
# skipped), the CUDA example, then the benchmarks: bench_cuda (ns/logit, ratio to a
# device-to-device memcpy, ratio to a naive multi-kernel baseline; N*C = 64M unless
# LMF_GPU_ELEMENTS is set) and, where python3 has PyTorch with CUDA, the same LMF in torch ops
# (bench/torch_gpu.py) for the ratio to PyTorch.
#
# Usage: scripts/test_gpu.sh [--no-bench]
#        scripts/test_gpu.sh --build-only DIR   build here (nvcc, CMake, Eigen; no GPU needed) and
#                                               copy the programs to DIR
#        LMF_GPU_BIN=DIR scripts/test_gpu.sh    run the programs in DIR (a GPU host without the
#                                               toolchain or Eigen: the binaries link the CUDA
#                                               runtime statically)
set -euo pipefail
cd "$(dirname "$0")/.."
programs=(tests/cuda/lmf_cuda_tests tests/cuda/lmf_cuda_host_tests bench/bench_cuda examples/cuda_quickstart)

build() {
  if command -v apt-get >/dev/null 2>&1 && [ -r /etc/debian_version ]; then bash scripts/deps.sh build || true; fi
  local nvcc=${CUDACXX:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
  [ -x "$nvcc" ] || { echo "test_gpu.sh: nvcc not found (set CUDACXX)" >&2; exit 1; }
  cmake -S . -B build/gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_COMPILER="$nvcc" -DLMF_CUDA=ON \
    -DLMF_BUILD_EXAMPLES=ON -DLMF_BUILD_BENCH=ON -DLMF_TEST_ISAS=baseline >/dev/null
  cmake --build build/gpu -j "$(nproc)" --target lmf_cuda_tests lmf_cuda_host_tests bench_cuda cuda_quickstart
}

if [ "${1:-}" = "--build-only" ]; then
  [ -n "${2:-}" ] || { echo "usage: $0 --build-only DIR" >&2; exit 2; }
  build
  mkdir -p "$2"
  for p in "${programs[@]}"; do cp "build/gpu/$p" "$2/"; done
  echo "test_gpu.sh: built into $2; run: LMF_GPU_BIN=$2 bash scripts/test_gpu.sh"
  exit 0
fi

if [ -n "${LMF_GPU_BIN:-}" ]; then
  bin=$LMF_GPU_BIN
else
  build
  bin=build/gpu/programs
  mkdir -p "$bin"
  for p in "${programs[@]}"; do cp "build/gpu/$p" "$bin/"; done
fi

command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
echo "== the kernels' row math on the CPU"
"$bin/lmf_cuda_host_tests"
echo "== the GPU suite"
set +e
"$bin/lmf_cuda_tests"
rc=$?
set -e
if [ "$rc" -eq 77 ]; then echo "test_gpu.sh: no usable CUDA device: the GPU suite was skipped" >&2; exit 1; fi
[ "$rc" -eq 0 ] || exit "$rc"
echo "== the CUDA example"
"$bin/cuda_quickstart"
if [ "${1:-}" != "--no-bench" ]; then
  echo "== bench_cuda"
  "$bin/bench_cuda" --elements "${LMF_GPU_ELEMENTS:-67108864}"
  if python3 -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "== the same LMF in PyTorch ops (bench/torch_gpu.py)"
    python3 bench/torch_gpu.py --elements "${LMF_GPU_ELEMENTS:-67108864}"
  else
    echo "(no python3 with CUDA PyTorch: the PyTorch comparison is skipped)"
  fi
fi
