"""Forward + backward of lmf_torch.LMFLoss on CUDA tensors against the same LMF written in PyTorch
ops (LDAM s 30 + focal gamma 2, the published formulas of tests/make_golden.py) on the same GPU,
float32 and bfloat16, N * C = 2^24 (--elements), C in {2, 10, 100, 1000, 32768}. Each side does
what a training step does: a leaf copy of the logits, the loss, backward. Median of 20, timed
with CUDA events.

Run: PYTHONPATH=$(bash scripts/torch.sh | tail -1) python3 python/bench_cuda.py
"""
import argparse
import os
import sys

import torch

import lmf_torch
from bench import training_steps  # the same two sides as the CPU bench (python/bench.py)

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "bench"))
from torch_gpu import median_ms  # noqa: E402  (CUDA-event timing, as bench/torch_gpu.py)

p = argparse.ArgumentParser()
p.add_argument("--elements", type=int, default=1 << 24)
p.add_argument("--reps", type=int, default=20)
args = p.parse_args()
if not torch.cuda.is_available() or not lmf_torch.cuda_built():
    sys.exit("bench_cuda.py: needs a CUDA device and lmf_torch built with CUDA")

print(f"GPU: {torch.cuda.get_device_name()}; torch {torch.__version__}; LMF (LDAM s 30 + focal gamma 2), "
      f"forward + backward, N*C = {args.elements}")
print("| dtype | C | PyTorch ops ms | lmf_torch ms | speed-up |\n|---|---|---|---|---|")
for dtype in (torch.float32, torch.bfloat16):
    for C in (2, 10, 100, 1000, 32768):
        torch_ops, lmf_op = training_steps(C, args.elements // C, dtype, "cuda")
        a, b = median_ms(torch_ops, args.reps), median_ms(lmf_op, args.reps)
        print(f"| {str(dtype)[6:]} | {C} | {a:.3f} | {b:.3f} | {a / b:.1f}x |", flush=True)
