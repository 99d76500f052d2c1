#!/usr/bin/env python3
"""Golden values for lmf's parity tests, computed by PyTorch running the reference formulas.

Each loss is written the way the published code writes it, in torch ops, and differentiated by
autograd in float64:

  ce            F.cross_entropy(x, y, weight, ignore_index, reduction)
  focal         per sample, as github adeelh/pytorch-multi-class-focal-loss (used by the official
                LMF code): log_p = log_softmax(x); ce = nll_loss(log_p, y, weight, 'none');
                L_i = (1 - p_t)^gamma * ce_i; lmf's mean divides by sum of w_y (= N unweighted)
  ldam          github kaidic/LDAM-DRW: x_m = where(onehot, x - m_y, x);
                F.cross_entropy(s * x_m, y, weight, ignore_index, reduction)
  lmf           ldam_weight * ldam + focal_weight * focal (lmf's default LMFLoss)
  lmf_seed      github SanaNazari/LMFLoss (first version): logp = F.cross_entropy(x, y, w);
                p = exp(-logp); focal = mean((1 - p)^gamma * logp); focal + ldam
  lmf_official  github Adnan-Sadi/LMFLOSS: 1.5 * ldam(weight = margins) + 1.0 * focal(alpha =
                margins, gamma 1.5, mean over the counted rows)
  ce_smooth     ce with label_smoothing eps > 0 (F.cross_entropy(..., label_smoothing=eps));
                ce, ldam, la, bs and vs cases get a random eps too
  la            Menon et al. 2021: F.cross_entropy(x + tau * log(prior), y, ...)
  bs            Ren et al. 2020: F.cross_entropy(x + log(n), y, ...)
  vs            Kini et al. 2021, as github orparask/VS-Loss: Delta = (1/n)^gamma / min((1/n)^gamma),
                iota = tau * log(prior); F.cross_entropy(x / Delta + iota, y, ...)
  vs_smooth     vs with label_smoothing eps > 0
  focal_repo    the focal-repository convention (AdeelH): alpha = the class weights as nll_loss
                weights, (1 - p_t)^gamma * ce, mean over the counted rows
  focal_drw     github kaidic/LDAM-DRW FocalLoss: v = F.cross_entropy(x, y, weight=w,
                reduction='none'); p = exp(-v); mean((1 - p)^gamma * v) over every row
  lmf_seed2024  the seed code's 2024 revision: 0.2 * seed focal (weight w) + 0.2 * LDAM (s 5,
                max_m 0.8, unweighted)
  sigmoid       torchvision.ops.sigmoid_focal_loss(x, t, alpha, gamma, reduction) (times class
                weights per column when given), targets in [0, 1] (written in "sigmoid" blocks)
  generic       lmf's model with every per-class vector (shared/DESIGN.md section 1), two terms:
                z = s (a x - m_y e_y) + b, l = -log_softmax(z)_y, w_y (1 - e^-l)^gamma l, mean over
                the counted rows; plus 0.25 x the same with gamma 0, weighted mean. a, b, m and the
                default w are exact binary fractions of the class index (generic_vectors), the
                same in tests/support.hpp.

Margins: m_j = 1 / n_j^(1/4), rescaled so max m = max_m (LDAM-DRW's get_mlist).
Class-balanced weights: (1 - beta) / (1 - beta^n), normalized to sum to C (LDAM-DRW).

Logits are written as float32 (shortest round-trip text: read them with strtof); everything
else as float64 (17 significant digits).

Usage:  /usr/bin/python3 tests/make_golden.py --seed 1 --cases 450 --sigmoid-cases 60 --out tests/data/golden.txt
The file is plain text (see tests/golden.hpp for the reader). Logits are float32 values, so the
same inputs serve the float and the double tests.
"""
import argparse
import math
import sys

import numpy as np
import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)


def margins(counts, max_m):
    m = 1.0 / np.sqrt(np.sqrt(np.asarray(counts, dtype=np.float64)))
    return m * (max_m / np.max(m))


def class_balanced(counts, beta):
    eff = 1.0 - np.power(beta, np.asarray(counts, dtype=np.float64))
    w = (1.0 - beta) / eff
    return w / np.sum(w) * len(counts)


def ldam(x, y, m, s, w, ignore, reduction, eps=0.0):
    valid = y != ignore
    yc = torch.where(valid, y, torch.zeros_like(y))
    index = torch.zeros_like(x, dtype=torch.bool)
    index.scatter_(1, yc.view(-1, 1), True)
    index &= valid.view(-1, 1)
    batch_m = torch.as_tensor(m)[yc].view(-1, 1)
    x_m = torch.where(index, x - batch_m, x)
    return F.cross_entropy(s * x_m, y, weight=w, ignore_index=ignore, reduction=reduction, label_smoothing=eps)


def focal_rows(x, y, gamma, w, ignore):
    """Per-row focal values (0 on ignored rows), the adeelh formulation."""
    log_p = F.log_softmax(x, dim=-1)
    ce = F.nll_loss(log_p, y, weight=w, reduction="none", ignore_index=ignore)
    valid = y != ignore
    yc = torch.where(valid, y, torch.zeros_like(y))
    log_pt = log_p.gather(1, yc.view(-1, 1)).view(-1)
    pt = log_pt.exp()
    return torch.where(valid, (1 - pt) ** gamma * ce, torch.zeros_like(ce))


def focal(x, y, gamma, w, ignore, reduction, mean_over_rows=False):
    rows = focal_rows(x, y, gamma, w, ignore)
    if reduction == "none":
        return rows
    if reduction == "sum":
        return rows.sum()
    valid = y != ignore
    if mean_over_rows or w is None:
        return rows.sum() / valid.sum()
    return rows.sum() / w[y[valid]].sum()


def seed_focal(x, y, gamma, w, ignore):
    logp = F.cross_entropy(x, y, weight=w, ignore_index=ignore)
    p = torch.exp(-logp)
    return torch.mean((1 - p) ** gamma * logp)


def generic_vectors(C):
    c = np.arange(C)
    return 0.5 + 0.125 * (c % 9), -1.0 + 0.25 * (c % 7), 0.0625 * (1 + c % 5), 0.25 * (1 + c % 8)


def model_rows(x, y, s, gamma, a, b, m, w, ignore):
    """Per-row w_y * phi(l) of one term of the model (0 on ignored rows)."""
    valid = y != ignore
    yc = torch.where(valid, y, torch.zeros_like(y))
    onehot = F.one_hot(yc, x.shape[1]).to(x.dtype)
    z = s * (torch.as_tensor(a) * x - torch.as_tensor(m)[yc].view(-1, 1) * onehot) + torch.as_tensor(b)
    l = -F.log_softmax(z, dim=-1).gather(1, yc.view(-1, 1)).view(-1)
    phi = (1 - torch.exp(-l)) ** gamma * l
    return torch.where(valid, torch.as_tensor(w)[yc] * phi, torch.zeros_like(phi)), valid, yc


def generic(case, x, y, ignore, red):
    a, b, m, w = generic_vectors(case["C"])
    if case["weights"] is not None:
        w = np.asarray(case["weights"])
    r0, valid, yc = model_rows(x, y, case["s"], case["gamma"], a, b, m, w, ignore)
    r1, _, _ = model_rows(x, y, case["s"], 0.0, a, b, m, w, ignore)
    if red == "none":
        return r0 + 0.25 * r1
    if red == "sum":
        return r0.sum() + 0.25 * r1.sum()
    return r0.sum() / valid.sum() + 0.25 * r1.sum() / torch.as_tensor(w)[yc][valid].sum()


def priors(counts):
    n = torch.as_tensor(np.asarray(counts, dtype=np.float64))
    return n / n.sum()


def ldam_drw_focal(x, y, gamma, w, ignore):
    """github kaidic/LDAM-DRW losses.py (FocalLoss after the Nov 2019 fix)."""
    v = F.cross_entropy(x, y, reduction="none", weight=w, ignore_index=ignore)
    p = torch.exp(-v)
    return ((1 - p) ** gamma * v).mean()


def evaluate(case, x):
    kind, red, ignore = case["kind"], case["reduction"], case["ignore_index"]
    y = torch.as_tensor(case["labels"], dtype=torch.int64)
    w = None if case["weights"] is None else torch.as_tensor(case["weights"])
    m = margins(case["counts"], case["max_m"])
    eps = case["label_smoothing"]
    if kind in ("ce", "ce_smooth"):
        return F.cross_entropy(x, y, weight=w, ignore_index=ignore, reduction=red, label_smoothing=eps)
    if kind == "la":
        z = x + case["tau"] * torch.log(priors(case["counts"]))
        return F.cross_entropy(z, y, weight=w, ignore_index=ignore, reduction=red, label_smoothing=eps)
    if kind == "bs":
        z = x + torch.log(torch.as_tensor(np.asarray(case["counts"], dtype=np.float64)))
        return F.cross_entropy(z, y, weight=w, ignore_index=ignore, reduction=red, label_smoothing=eps)
    if kind in ("vs", "vs_smooth"):
        temp = (1.0 / np.asarray(case["counts"], dtype=np.float64)) ** case["gamma"]
        delta = torch.as_tensor(temp / np.min(temp))
        iota = case["tau"] * torch.log(priors(case["counts"]))
        return F.cross_entropy(x / delta + iota, y, weight=w, ignore_index=ignore, reduction=red,
                               label_smoothing=eps)
    if kind == "focal_repo":
        return focal(x, y, case["gamma"], w, ignore, red, mean_over_rows=True)
    if kind == "focal_drw":
        return ldam_drw_focal(x, y, case["gamma"], w, ignore)
    if kind == "lmf_seed2024":
        return 0.2 * seed_focal(x, y, 2.0, w, ignore) + 0.2 * ldam(x, y, margins(case["counts"], 0.8), 5.0, None,
                                                                   ignore, "mean")
    if kind == "focal":
        return focal(x, y, case["gamma"], w, ignore, red)
    if kind == "ldam":
        return ldam(x, y, m, case["s"], w, ignore, red, eps)
    if kind == "lmf":
        return (case["ldam_weight"] * ldam(x, y, m, case["s"], w, ignore, red)
                + case["focal_weight"] * focal(x, y, case["gamma"], w, ignore, red))
    if kind == "lmf_seed":
        return (seed_focal(x, y, 2.0, w, ignore) + ldam(x, y, m, 30.0, w, ignore, "mean"))
    if kind == "lmf_official":
        mw = torch.as_tensor(margins(case["counts"], 0.5))
        return (1.5 * ldam(x, y, m, 30.0, mw, ignore, "mean")
                + 1.0 * focal(x, y, 1.5, mw, ignore, "mean", mean_over_rows=True))
    if kind == "generic":
        return generic(case, x, y, ignore, red)
    raise ValueError(kind)


# Every loss of the C++ test registry (tests/support.hpp, registry_kinds); the parity test checks
# that each one has golden cases.
KINDS = ["ce", "focal", "ldam", "lmf", "lmf_seed", "lmf_official", "generic", "ce_smooth", "la", "bs", "vs",
         "vs_smooth", "focal_repo", "focal_drw", "lmf_seed2024"]
MEAN_ONLY = ("lmf_seed", "lmf_official", "focal_drw", "lmf_seed2024")
SMOOTHABLE = ("ce", "ldam", "la", "bs", "vs")
NEEDS_COUNTS = ("ldam", "lmf", "lmf_seed", "lmf_official", "la", "bs", "vs", "vs_smooth", "lmf_seed2024")


def random_case(rng, index):
    kind = KINDS[index % len(KINDS)]
    C = int(rng.choice([1, 2, 2, 3, 4, 5, 7, 10, 16, 17, 33, 100, 1000] if kind not in NEEDS_COUNTS
                       else [2, 3, 4, 5, 7, 10, 16, 17, 33, 100, 1000]))
    N = min(int(rng.choice([1, 2, 3, 5, 8, 17, 40, 100])), max(1, 600 // C))
    ratio = float(rng.choice([1.0, 10.0, 100.0, 1000.0]))
    counts = [max(1, int(round(5000 * ratio ** (-j / max(C - 1, 1))))) for j in range(C)]
    rng.shuffle(counts)
    ignore = -100 if rng.random() < 0.85 else int(rng.integers(0, C))
    labels = rng.integers(0, C, size=N)
    if rng.random() < 0.3:
        labels[rng.random(N) < 0.25] = ignore
    if not np.any(labels != ignore):  # at least one counted row (all-ignored is tested apart)
        labels[0] = (ignore + 1) % C if ignore >= 0 else 0
        if C == 1 and ignore == 0:
            ignore = -100
    weights = None
    if kind != "lmf_official" and rng.random() < 0.5:
        weights = (class_balanced(counts, float(rng.choice([0.9, 0.999, 0.9999])))
                   if rng.random() < 0.5 else rng.uniform(0.1, 3.0, size=C)).tolist()
    reduction = "mean" if kind in MEAN_ONLY else str(rng.choice(["mean", "mean", "sum", "none"]))
    scale = float(rng.choice([0.3, 1.0, 3.0, 8.0]))
    logits = (rng.standard_normal((N, C)) * scale).astype(np.float32)
    # Some rows strongly favour their label (p_t -> 1), where focal's gradient is delicate.
    if rng.random() < 0.3:
        for i in range(N):
            if labels[i] != ignore:
                logits[i, labels[i]] += np.float32(rng.uniform(5.0, 20.0))
    return {
        "name": f"{kind}_{index}", "kind": kind, "reduction": reduction, "N": N, "C": C,
        "gamma": (float(rng.choice([0.0, 0.5, 1.0, 1.5, 2.0, 5.0])) if kind in ("focal", "lmf", "generic", "focal_repo",
                                                                             "focal_drw")
                  else float(rng.choice([0.1, 0.3, 0.5])) if kind in ("vs", "vs_smooth") else 0.0),
        "tau": float(rng.choice([0.5, 1.0, 1.5])) if kind in ("la", "vs", "vs_smooth") else 1.0,
        "label_smoothing": (float(rng.choice([0.05, 0.1, 0.3])) if kind in ("ce_smooth", "vs_smooth")
                            else float(rng.choice([0.0, 0.0, 0.1, 0.3])) if kind in SMOOTHABLE else 0.0),
        "s": (float(rng.choice([1.0, 10.0, 30.0, 64.0])) if kind in ("ldam", "lmf")
              else float(rng.choice([0.5, 1.0, 2.0])) if kind == "generic" else 30.0),
        "max_m": float(rng.choice([0.1, 0.5, 1.0])) if kind in ("ldam", "lmf") else 0.5,
        "ldam_weight": float(rng.choice([1.0, 0.5, 1.5])) if kind == "lmf" else 1.0,
        "focal_weight": float(rng.choice([1.0, 0.2, 2.0])) if kind == "lmf" else 1.0,
        "ignore_index": ignore, "counts": counts, "weights": weights,
        "labels": labels.tolist(), "logits": logits,
    }


def fmt(v):
    return repr(float(v))


def write_case(out, case):
    x = torch.tensor(case["logits"].astype(np.float64), requires_grad=True)
    loss = evaluate(case, x)
    total = loss.sum() if case["reduction"] == "none" else loss
    total.backward()
    g = x.grad.detach().numpy()
    values = loss.detach().numpy().reshape(-1)
    if not (np.all(np.isfinite(values)) and np.all(np.isfinite(g))):
        return False  # PyTorch gives NaN here (e.g. gamma < 1 with p_t -> 1); lmf tests those apart
    c = case
    out.write(f"case {c['name']} {c['kind']} {c['reduction']} {c['N']} {c['C']} {fmt(c['gamma'])} {fmt(c['s'])} "
              f"{fmt(c['max_m'])} {fmt(c['ldam_weight'])} {fmt(c['focal_weight'])} {c['ignore_index']} "
              f"{0 if c['weights'] is None else 1} {fmt(c['tau'])} {fmt(c['label_smoothing'])}\n")
    out.write("counts " + " ".join(str(v) for v in c["counts"]) + "\n")
    if c["weights"] is not None:
        out.write("weights " + " ".join(fmt(v) for v in c["weights"]) + "\n")
    out.write("labels " + " ".join(str(int(v)) for v in c["labels"]) + "\n")
    # shortest text that reads back (strtof) as the same float32
    out.write("logits " + " ".join(str(v) for v in c["logits"].reshape(-1)) + "\n")
    out.write(f"values {values.size} " + " ".join(fmt(v) for v in values) + "\n")
    out.write("grad " + " ".join(fmt(v) for v in g.reshape(-1)) + "\n")
    return True


def random_sigmoid(rng, index):
    C = int(rng.choice([1, 2, 3, 5, 7, 10, 16, 17, 33, 100]))
    N = min(int(rng.choice([1, 2, 3, 5, 8, 17, 40])), max(1, 600 // C))
    scale = float(rng.choice([0.5, 2.0, 4.0]))
    logits = (rng.standard_normal((N, C)) * scale).astype(np.float32)
    if rng.random() < 0.5:  # multi-hot labels, as in multi-label classification
        targets = (rng.random((N, C)) < 0.3).astype(np.float32)
    else:  # soft targets
        targets = rng.random((N, C)).astype(np.float32)
    weights = None
    if rng.random() < 0.4:
        weights = rng.uniform(0.1, 3.0, size=C).tolist()
    return {"name": f"sigmoid_{index}", "N": N, "C": C, "logits": logits, "targets": targets,
            "alpha": float(rng.choice([0.25, -1.0, 0.5, 0.75])), "gamma": float(rng.choice([0.0, 1.0, 2.0, 3.0, 1.5])),
            "reduction": str(rng.choice(["mean", "mean", "sum", "none"])), "weights": weights}


def write_sigmoid(out, c):
    from torchvision.ops import sigmoid_focal_loss
    x = torch.tensor(c["logits"].astype(np.float64), requires_grad=True)
    t = torch.tensor(c["targets"].astype(np.float64))
    elems = sigmoid_focal_loss(x, t, alpha=c["alpha"], gamma=c["gamma"], reduction="none")
    if c["weights"] is not None:
        elems = elems * torch.as_tensor(c["weights"]).view(1, -1)
    loss = elems.mean() if c["reduction"] == "mean" else elems.sum() if c["reduction"] == "sum" else elems
    loss.sum().backward()
    g = x.grad.detach().numpy()
    values = loss.detach().numpy().reshape(-1)
    if not (np.all(np.isfinite(values)) and np.all(np.isfinite(g))):
        return False
    out.write(f"sigmoid {c['name']} {c['N']} {c['C']} {fmt(c['alpha'])} {fmt(c['gamma'])} {c['reduction']} "
              f"{0 if c['weights'] is None else 1}\n")
    if c["weights"] is not None:
        out.write("weights " + " ".join(fmt(v) for v in c["weights"]) + "\n")
    out.write("logits " + " ".join(str(v) for v in c["logits"].reshape(-1)) + "\n")
    out.write("targets " + " ".join(str(v) for v in c["targets"].reshape(-1)) + "\n")
    out.write(f"values {values.size} " + " ".join(fmt(v) for v in values) + "\n")
    out.write("grad " + " ".join(fmt(v) for v in g.reshape(-1)) + "\n")
    return True


def write_stats(out, rng, count):
    for _ in range(count):
        C = int(rng.integers(1, 20))
        counts = rng.integers(1, 10000, size=C).tolist()
        max_m = float(rng.choice([0.1, 0.5, 0.8, 1.0]))
        beta = float(rng.choice([0.0, 0.9, 0.99, 0.999, 0.9999]))
        out.write(f"stats {C} {fmt(max_m)} {fmt(beta)}\n")
        out.write("counts " + " ".join(str(v) for v in counts) + "\n")
        out.write("margins " + " ".join(fmt(v) for v in margins(counts, max_m)) + "\n")
        out.write("class_balanced " + " ".join(fmt(v) for v in class_balanced(counts, beta)) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cases", type=int, default=450)
    ap.add_argument("--sigmoid-cases", type=int, default=60)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    written = skipped = 0
    with open(args.out, "w") as out:
        import torchvision
        out.write(f"# lmf golden values: tests/make_golden.py --seed {args.seed} --cases {args.cases} "
                  f"--sigmoid-cases {args.sigmoid_cases}; torch {torch.__version__}, torchvision "
                  f"{torchvision.__version__}\n")
        index = 0
        while written < args.cases:
            if write_case(out, random_case(rng, index)):
                written += 1
            else:
                skipped += 1
            index += 1
        write_stats(out, rng, 30)
        sig = 0
        while sig < args.sigmoid_cases:
            sig += 1 if write_sigmoid(out, random_sigmoid(rng, sig)) else 0
        out.write("end\n")
    print(f"make_golden: seed {args.seed}: {written} cases written, {skipped} skipped (non-finite in PyTorch) "
          f"-> {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
