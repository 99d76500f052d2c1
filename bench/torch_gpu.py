"""The peer of bench_cuda on the GPU: the same LMF (LDAM s 30 + focal gamma 2) written in PyTorch ops
(the published formulas of tests/make_golden.py), forward + autograd backward on a CUDA device,
row-major, N * C = 64M (or --elements E), fp32 and bf16, timed with CUDA events (median of --reps).
Prints one table; compare its ns/logit with bench_cuda's in the same session (scripts/test_gpu.sh
runs both).

Run: python3 bench/torch_gpu.py [--elements E] [--reps R]
"""
import argparse
import os
import statistics
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
import make_golden as ref  # noqa: E402


def median_ms(f, reps):
    f()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        f()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--elements", type=int, default=64 << 20)
    p.add_argument("--reps", type=int, default=20)
    args = p.parse_args()
    if not torch.cuda.is_available():
        print("torch_gpu.py: no CUDA device")
        return 77
    dev = torch.device("cuda")
    print(f"device: {torch.cuda.get_device_name(0)}; torch {torch.__version__}; LMF (LDAM s 30 + focal gamma 2) "
          f"in torch ops, forward + backward, row-major, N*C = {args.elements}, median of {args.reps}\n")
    print("| C | type | memcpy ns/logit | torch ops ns/logit | torch/memcpy |\n|---|---|---|---|---|")
    for C in (2, 10, 100, 1000, 32768, 131072):
        n = args.elements // C
        counts = [max(1, 5000 // (1 + c)) for c in range(C)]
        g = torch.Generator(device=dev).manual_seed(C)
        for dtype, name in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
            x = (2 * torch.randn(n, C, generator=g, device=dev)).to(dtype)
            y = torch.randint(0, C, (n,), generator=g, device=dev)
            m = torch.as_tensor(ref.margins(counts, 0.5), device=dev).to(dtype)
            out = torch.empty_like(x)

            def ops():
                xr = x.detach().requires_grad_()
                (ref.ldam(xr, y, m, 30.0, None, -100, "mean") + ref.focal(xr, y, 2.0, None, -100, "mean")).backward()

            t_copy = median_ms(lambda: out.copy_(x), args.reps)
            t_ops = median_ms(ops, args.reps)
            per = 1e6 / (n * C)
            print(f"| {C} | {name} | {t_copy * per:.4f} | {t_ops * per:.4f} | {t_ops / t_copy:.1f} |", flush=True)
            del x, y, m, out
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
