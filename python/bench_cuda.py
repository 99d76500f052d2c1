"""Forward + backward of lmf_torch.LMFLoss on CUDA tensors against the same LMF written in PyTorch
ops (LDAM s 30 + focal gamma 2, the published formulas of tests/make_golden.py) on the same GPU,
float32 and bfloat16, N * C = 2^24 (--elements), C in {2, 10, 100, 1000, 32768}. Each side does
what a training step does: a leaf copy of the logits, the loss, backward. Median of 20, timed
with CUDA events.

Run: PYTHONPATH=$(bash scripts/torch.sh | tail -1) python3 python/bench_cuda.py
"""
import argparse
import os
import statistics
import sys

import torch

import lmf_torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
import make_golden as ref  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--elements", type=int, default=1 << 24)
p.add_argument("--reps", type=int, default=20)
args = p.parse_args()
if not torch.cuda.is_available() or not lmf_torch.cuda_built():
    sys.exit("bench_cuda.py: needs a CUDA device and lmf_torch built with CUDA")
torch.set_default_dtype(torch.float32)
dev = torch.device("cuda")


def timed(f):
    f()
    times = []
    for _ in range(args.reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        f()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


print(f"GPU: {torch.cuda.get_device_name()}; torch {torch.__version__}; LMF (LDAM s 30 + focal gamma 2), "
      f"forward + backward, N*C = {args.elements}")
print("| dtype | C | PyTorch ops ms | lmf_torch ms | speed-up |\n|---|---|---|---|---|")
for dtype in (torch.float32, torch.bfloat16):
    for C in (2, 10, 100, 1000, 32768):
        n = args.elements // C
        counts = [max(1, 5000 // (1 + c)) for c in range(C)]
        m = torch.as_tensor(ref.margins(counts, 0.5), dtype=dtype, device=dev)
        g = torch.Generator(device=dev).manual_seed(C)
        x = torch.randn(n, C, generator=g, device=dev).to(dtype)
        y = torch.randint(0, C, (n,), generator=g, device=dev)
        mine = lmf_torch.LMFLoss(counts)

        def torch_ops():
            xr = x.clone().requires_grad_()
            (ref.ldam(xr, y, m, 30.0, None, -100, "mean") + ref.focal(xr, y, 2.0, None, -100, "mean")).backward()

        def lmf_op():
            xl = x.clone().requires_grad_()
            mine(xl, y).backward()

        a, b = timed(torch_ops), timed(lmf_op)
        print(f"| {str(dtype)[6:]} | {C} | {a:.3f} | {b:.3f} | {a / b:.1f}x |", flush=True)
