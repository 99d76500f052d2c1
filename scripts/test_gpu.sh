#!/usr/bin/env bash
# The CUDA header on a machine with an NVIDIA GPU, in one command: builds the CUDA suites and the
# GPU benchmark (Release, sm_80 + sm_90 + PTX), runs the suites (the GPU one must run, not be
# skipped), then the benchmark (bench_cuda: ns/logit, ratio to a device-to-device memcpy, ratio
# to a naive multi-kernel baseline; N*C = 64M unless LMF_GPU_ELEMENTS is set).
# Usage: scripts/test_gpu.sh [--no-bench]
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v apt-get >/dev/null 2>&1 && [ -r /etc/debian_version ]; then bash scripts/deps.sh build || true; fi
nvcc=${CUDACXX:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
[ -x "$nvcc" ] || { echo "test_gpu.sh: nvcc not found (set CUDACXX)" >&2; exit 1; }
command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
cmake -S . -B build/gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_COMPILER="$nvcc" -DLMF_CUDA=ON \
  -DLMF_BUILD_EXAMPLES=OFF -DLMF_BUILD_BENCH=ON -DLMF_TEST_ISAS=baseline >/dev/null
cmake --build build/gpu -j "$(nproc)" --target lmf_cuda_tests lmf_cuda_host_tests bench_cuda
echo "== the kernels' row math on the CPU"
build/gpu/tests/cuda/lmf_cuda_host_tests
echo "== the GPU suite"
set +e
build/gpu/tests/cuda/lmf_cuda_tests
rc=$?
set -e
if [ "$rc" -eq 77 ]; then echo "test_gpu.sh: no usable CUDA device: the GPU suite was skipped" >&2; exit 1; fi
[ "$rc" -eq 0 ] || exit "$rc"
if [ "${1:-}" != "--no-bench" ]; then
  echo "== bench_cuda"
  build/gpu/bench/bench_cuda --elements "${LMF_GPU_ELEMENTS:-67108864}"
fi
