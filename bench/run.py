#!/usr/bin/env python3
"""Runs lmf's benchmarks and prints ns/logit and the ratios against the peers, as Markdown.

  bench/run.py BUILD_DIR [BUILD_DIR ...] [--min-time SECONDS] [--filter REGEX] [--json OUT]

Runs BUILD_DIR/bench/bench_lmf (lmf fast path, lmf scalar kernel, naive Eigen, memcpy floor,
the subnormal check) of each build directory (scripts/bench.sh makes two: -march=native and the
default flags; BUILD_DIR@ISA caps lmf's run-time dispatch to one instruction set) and
bench/bench_torch (libtorch, one thread) once, from
the first build that has it, all on the same batches: N * C ~ 4M logits, row-major. Every number
is wall time per logit from the same session; each build gets its own tables, with libtorch's
numbers beside.
"""
import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from collections import defaultdict


def run(binary, min_time, flt, repetitions, isa=None):
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    cmd = [binary, f"--benchmark_out={out}", "--benchmark_out_format=json", f"--benchmark_min_time={min_time}",
           f"--benchmark_repetitions={repetitions}", "--benchmark_report_aggregates_only=true"]
    if flt:
        cmd.append(f"--benchmark_filter={flt}")
    print("running", " ".join(cmd), file=sys.stderr)
    env = dict(os.environ)
    if isa:  # lmf's kernels capped to this instruction set (run-time dispatch, lmf/isa.hpp)
        env["LMF_SIMD_ISA"] = isa
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    with open(out) as f:
        text = f.read()
    os.unlink(out)
    # (a filter that matches nothing in this binary leaves the file empty)
    return json.loads(text) if text.strip() else {"benchmarks": []}


def parse(data, results):
    for b in data["benchmarks"]:
        if b.get("run_type") == "aggregate" and b.get("aggregate_name") != "median":
            continue  # the median of the repetitions is reported
        name = re.sub(r"/min_time:[0-9.]+", "", b.get("run_name", b["name"]))
        # impl/loss/op/type/C:c  or  memcpy_floor/type/C:c
        parts = name.split("/")
        c = int(parts[-1].split(":")[1])
        dtype = parts[-2]
        n_logits = b["N"] * b["C"]
        unit = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}[b.get("time_unit", "ns")]
        ns_per_logit = b["real_time"] * unit / n_logits
        if parts[0] == "memcpy_floor":
            results[(dtype, c)]["memcpy"] = ns_per_logit
        else:
            impl, loss, op = parts[0], parts[1], parts[2]
            results[(dtype, c)][(impl, loss, op)] = ns_per_logit
    return data.get("context", {})


# the single-term losses and the long-tail family, each beside LMF ("cost / LMF's": its time
# over LMF value_and_gradient's at the same C)
FAMILY = ("CE", "Focal", "LDAM", "LogitAdjusted", "BalancedSoftmax", "VS", "CE_smooth0.1", "Focal_LDAM-DRW",
          "SigmoidFocal")


def fmt(v):
    return "—" if v is None else (f"{v:.2f}" if v < 10 else f"{v:.1f}")


def ratio(a, b):
    return "—" if a is None or b is None else f"{a / b:.1f}×"


def subnormal_table(results):
    """The same call with the caller's MXCSR as a program starts and with FTZ/DAZ set by the
    caller: lmf flushes subnormals inside its kernels, so the ratio should be ~1."""
    rows = []
    for (dtype, c) in sorted(results, key=lambda k: (k[0] != "float", k[1])):
        r = results[(dtype, c)]
        for batch in ("untrained", "trained"):
            plain, ftz = r.get(("subnormals", "LMF", batch + "_plain")), r.get(("subnormals", "LMF", batch + "_callerftz"))
            if plain is None or ftz is None:
                continue
            rows.append(f"| {dtype} | {c} | {batch} | {fmt(plain)} | {fmt(ftz)} | {plain / ftz:.2f} |")
    if rows:
        print("\nSubnormals: LMF value_and_gradient, ns per logit, with the caller's MXCSR as a program starts "
              "(plain) and with FTZ/DAZ set by the caller; untrained = N(0, 1) logits, trained = a dominant "
              "target over a wide spread (bench/common.hpp)\n")
        print("| type | C | logits | plain | caller FTZ/DAZ | plain / FTZ |")
        print("|---|---|---|---|---|---|")
        print("\n".join(rows))


def floor_table(results):
    """The compute floors: the same call on a batch that stays in cache (no memory traffic), CE
    (one exponential per logit) likewise, and the exponential alone, beside what issue 7's
    25x-libtorch target asks."""
    exp = {}
    for (dtype, c), r in results.items():
        if ("exp_floor", "exp", "one_per_logit") in r:
            exp[dtype] = r[("exp_floor", "exp", "one_per_logit")]
    rows = []
    for (dtype, c) in sorted(results, key=lambda k: (k[0] != "float", k[1])):
        r = results[(dtype, c)]
        lmf, cached = r.get(("lmf_fast", "LMF", "value_and_gradient")), r.get(("lmf_incache", "LMF", "value_and_gradient"))
        if lmf is None or cached is None:
            continue
        torch = r.get(("libtorch", "LMF", "value_and_gradient"))
        torch_cached = r.get(("libtorch_incache", "LMF", "value_and_gradient"))
        two = 2 * exp[dtype] if dtype in exp else None
        rows.append(f"| {dtype} | {c} | {fmt(lmf)} | {fmt(cached)} | "
                    f"{fmt(r.get(('lmf_incache', 'CE', 'value_and_gradient')))} | {fmt(two)} | "
                    f"{fmt(torch / 25 if torch else None)} | {fmt(torch_cached)} | {ratio(torch_cached, cached)} |")
    if rows:
        print("\nCompute floors: LMF value_and_gradient at N·C ≈ 4M; the same call on N·C ≈ 32K logits (a "
              "training step's batch), which stay in cache; CE (one exponential per logit) likewise; two of lmf's "
              "exponentials per logit alone (stored and summed, in cache); what 25× libtorch at 4M asks; and "
              "libtorch on the 32K batch. ns per logit, one thread\n")
        print("| type | C | LMF | LMF, 32K | CE, 32K | two exponentials | libtorch / 25 | libtorch, 32K | "
              "libtorch / lmf, 32K |")
        print("|---|---|---|---|---|---|---|---|---|")
        print("\n".join(rows))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build_dirs", nargs="+", help="BUILD_DIR, or BUILD_DIR@ISA to cap lmf's kernels to ISA "
                    "(sse2, avx2, avx512: the environment variable LMF_SIMD_ISA)")
    ap.add_argument("--min-time", default="0.5")
    ap.add_argument("--filter", default="")
    ap.add_argument("--json", default="")
    ap.add_argument("--repetitions", default="3", help="runs per benchmark; the median is reported")
    args = ap.parse_args()
    torch = defaultdict(dict)
    torch_bins = [os.path.join(d.split("@")[0], "bench", "bench_torch") for d in args.build_dirs]
    torch_bins = [b for b in torch_bins if os.path.exists(b)]
    has_torch = bool(torch_bins)
    if has_torch:
        parse(run(torch_bins[0], args.min_time, args.filter, args.repetitions), torch)
    everything = {}
    for build in args.build_dirs:
        build_dir, _, isa = build.partition("@")
        results = defaultdict(dict)
        context = parse(run(os.path.join(build_dir, "bench", "bench_lmf"), args.min_time, args.filter,
                            args.repetitions, isa or None), results)
        for key, d in torch.items():
            results[key].update(d)
        everything[build] = results
        table(results, context, args, has_torch)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({b: {f"{k[0]}/{k[1]}": {("/".join(kk) if isinstance(kk, tuple) else kk): v for kk, v in d.items()}
                           for k, d in res.items()} for b, res in everything.items()}, f, indent=1)


def table(results, context, args, has_torch):

    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print(f"\n### lmf kernels: {context.get('lmf_simd', '?')} ({context.get('lmf_flags', '?')}); subnormals flushed "
          f"inside lmf: {context.get('lmf_flushes_subnormals', '?')}\n")
    print(f"Machine: {cpu or platform.processor()}, {context.get('num_cpus', '?')} CPUs, "
          f"{context.get('mhz_per_cpu', '?')} MHz; {context.get('date', '')}\n")
    print(f"ns per logit (wall time, median of {args.repetitions} runs, one thread unless noted), "
          "N·C ≈ 4M logits, row-major\n")
    print("| type | C | op | lmf fast | lmf scalar | naive Eigen | libtorch | memcpy | libtorch / lmf | lmf / memcpy | "
          "2 threads speed-up | cost / LMF's |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for (dtype, c) in sorted(results, key=lambda k: (k[0] != "float", k[1])):
        r = results[(dtype, c)]
        mem = r.get("memcpy")
        for op in ("value_and_gradient", "value"):
            fast = r.get(("lmf_fast", "LMF", op))
            if fast is None:
                continue
            two = r.get(("lmf_fast_2threads", "LMF", op))
            print(f"| {dtype} | {c} | LMF {op} | {fmt(fast)} | {fmt(r.get(('lmf_scalar', 'LMF', op)))} | "
                  f"{fmt(r.get(('naive_eigen', 'LMF', op)))} | {fmt(r.get(('libtorch', 'LMF', op)))} | {fmt(mem)} | "
                  f"{ratio(r.get(('libtorch', 'LMF', op)), fast)} | {ratio(fast, mem)} | "
                  f"{ratio(fast, two) if two else '—'} | {'1.0×' if op == 'value_and_gradient' else '—'} |")
        lmf_fast = r.get(("lmf_fast", "LMF", "value_and_gradient"))
        for loss in FAMILY:
            fast = r.get(("lmf_fast", loss, "value_and_gradient"))
            if fast is None:
                continue
            print(f"| {dtype} | {c} | {loss} value_and_gradient | {fmt(fast)} | — | — | "
                  f"{fmt(r.get(('libtorch', loss, 'value_and_gradient')))} | {fmt(mem)} | "
                  f"{ratio(r.get(('libtorch', loss, 'value_and_gradient')), fast)} | {ratio(fast, mem)} | "
                  f"— | {ratio(fast, lmf_fast)} |")
    subnormal_table(results)
    floor_table(results)
    if not has_torch:
        print("\n(libtorch not built: install libtorch-dev for the peer column)")


if __name__ == "__main__":
    main()
