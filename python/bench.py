"""Forward + backward of lmf_torch.LMFLoss against the same LMF written in PyTorch ops (LDAM + focal,
the published formulas of tests/make_golden.py), float32, one thread, N * C = 2^20, C in {10, 1000}
(issue 12's targets), plus C = 2 and 100; then a training step's batch (N = 256 rows), where the
per-call work counts. Medians of repetitions, in alternating blocks.

Run: PYTHONPATH=$(bash scripts/torch.sh | tail -1) python3 python/bench.py
"""
import os
import platform
import statistics
import sys
import time

import torch

import lmf_torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
import make_golden as ref  # noqa: E402

torch.set_default_dtype(torch.float32)  # (make_golden sets float64)

STEP_ROWS = 256  # rows of the second table: a common training batch size


def training_steps(C, n, dtype=torch.float32, device="cpu"):
    """The two sides of the comparison on one batch (n x C, LMF with counts 5000 / (1 + c)), each
    doing a training step's work: a leaf copy of the logits, the loss, backward."""
    counts = [max(1, 5000 // (1 + c)) for c in range(C)]
    # margins in the logits' dtype (float64 margins would promote the torch path)
    m = torch.as_tensor(ref.margins(counts, 0.5), dtype=dtype, device=device)
    g = torch.Generator(device=device).manual_seed(C)
    x = torch.randn(n, C, generator=g, device=device, dtype=torch.float32).to(dtype)
    y = torch.randint(0, C, (n,), generator=g, device=device)
    mine = lmf_torch.LMFLoss(counts)

    def torch_ops():
        xr = x.clone().requires_grad_()
        (ref.ldam(xr, y, m, 30.0, None, -100, "mean") + ref.focal(xr, y, 2.0, None, -100, "mean")).backward()

    def lmf_op():
        xl = x.clone().requires_grad_()
        mine(xl, y).backward()

    return torch_ops, lmf_op


def timed_pair(f, g, reps, rounds=5):
    """Median times of f and g over `rounds` alternating blocks of reps // rounds calls, each
    block after one untimed call: each side is timed in its own steady state (its cache and
    allocator state, as in a training loop that uses one of them), while a slow spell of a shared
    or throttled host falls on both sides rather than on one (timing one side after the other
    moved a ratio by 50% between runs on a 2-vCPU VM; interleaving single calls instead timed
    each side on the cache the other had just flushed)."""
    tf, tg = [], []
    for _ in range(rounds):
        for fn, times in ((f, tf), (g, tg)):
            fn()
            for _ in range(max(1, reps // rounds)):
                t = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t)
    return statistics.median(tf), statistics.median(tg)


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main():
    torch.set_num_threads(1)
    print(f"CPU: {cpu_model()}; torch {torch.__version__}, 1 thread; LMF (LDAM s 30 + focal gamma 2), float32, "
          "forward + backward, N*C = 2^20")
    print("| C | PyTorch ops ms | lmf_torch ms | speed-up |\n|---|---|---|---|")
    for C in (2, 10, 100, 1000):
        torch_ops, lmf_op = training_steps(C, (1 << 20) // C)
        reps = 20 if C >= 10 else 10
        a, b = timed_pair(torch_ops, lmf_op, reps)
        print(f"| {C} | {a * 1e3:.2f} | {b * 1e3:.2f} | {a / b:.1f}x |")
    # a training step's batch, where the per-call work (Python, the autograd node, PyTorch's
    # per-op dispatch, allocations) weighs as much as the logits
    print(f"\nA training step's batch: N = {STEP_ROWS} rows, the same LMF, forward + backward")
    print("| C | PyTorch ops us | lmf_torch us | speed-up |\n|---|---|---|---|")
    for C in (2, 10, 100, 1000):
        torch_ops, lmf_op = training_steps(C, STEP_ROWS)
        a, b = timed_pair(torch_ops, lmf_op, 500)
        print(f"| {C} | {a * 1e6:.1f} | {b * 1e6:.1f} | {a / b:.1f}x |")


if __name__ == "__main__":
    main()
