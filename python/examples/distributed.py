"""torch.distributed with lmf_torch: two processes on one machine (gloo backend) each hold half of
a long-tailed batch. Each computes its shard's totals (what the reduction divides by, and the
seed preset's batch-mean sums), all-reduces them, and calls the loss with the sum: the shards'
values then add up to the single-process value, and each shard's gradient is its rows of the
single-process gradient. Checked here for four losses, in float64; exits 1 on a mismatch.

Run: PYTHONPATH=$(bash scripts/torch.sh | tail -1) python3 python/examples/distributed.py
"""
import os
import socket
import sys
import tempfile

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import lmf_torch

COUNTS = [4000, 1500, 600, 250, 100, 40, 16, 7, 3, 2]
WORLD = 2


def batch():
    g = torch.Generator().manual_seed(2212)
    n, c = 1000, len(COUNTS)
    p = torch.tensor(COUNTS, dtype=torch.float64)
    y = torch.multinomial(p / p.sum(), n, replacement=True, generator=g)
    y[::17] = -100  # some ignored rows
    x = torch.randn(n, c, generator=g, dtype=torch.float64) * 2
    return x, y


def losses():
    w = torch.tensor([1.0 / c for c in COUNTS], dtype=torch.float64)
    w = w / w.sum() * len(COUNTS)
    return {
        "LMFLoss (paper defaults)": lmf_torch.LMFLoss(COUNTS),
        "LMFLoss.official_code": lmf_torch.LMFLoss.official_code(COUNTS),
        "LMFLoss.seed_code (batch mean)": lmf_torch.LMFLoss.seed_code(COUNTS, class_weights=w),
        "CrossEntropyLoss (weighted)": lmf_torch.CrossEntropyLoss(class_weights=w),
    }


def worker(rank, port, out_dir):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    torch.set_num_threads(1)
    x, y = batch()
    rows = torch.tensor_split(torch.arange(x.shape[0]), WORLD)[rank]
    results = {}
    for name, loss in losses().items():
        xs = x[rows].clone().requires_grad_()
        ys = y[rows]
        totals = loss.totals(xs, ys)
        dist.all_reduce(totals)  # sum over the shards
        value = loss(xs, ys, totals=totals)
        value.backward()
        total_value = value.detach().clone()
        dist.all_reduce(total_value)
        results[name] = (total_value.item(), xs.grad)
    torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    with tempfile.TemporaryDirectory() as out_dir:
        mp.spawn(worker, args=(free_port(), out_dir), nprocs=WORLD, join=True)
        shards = [torch.load(os.path.join(out_dir, f"rank{r}.pt")) for r in range(WORLD)]
    x, y = batch()
    ok = True
    print(f"{WORLD} processes (gloo), {x.shape[0]} rows x {x.shape[1]} classes, float64\n")
    print("| loss | single process | sum over shards | relative difference | gradient difference |")
    print("|---|---|---|---|---|")
    for name, loss in losses().items():
        xr = x.clone().requires_grad_()
        v = loss(xr, y)
        v.backward()
        value = shards[0][name][0]
        grad = torch.cat([s[name][1] for s in shards])
        dv = abs(value - v.item()) / abs(v.item())
        dg = ((grad - xr.grad).abs().max() / xr.grad.abs().max()).item()
        ok &= dv <= 1e-12 and dg <= 1e-12
        print(f"| {name} | {v.item():.15g} | {value:.15g} | {dv:.1e} | {dg:.1e} |")
    print("\nshards agree with one process" if ok else "\nMISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
