#!/usr/bin/env python3
"""Writes the regression seeds of the fuzz corpus: each finding of the first fuzzing campaign,
and starting points for the long-tail family's kinds, encoded the way tests/fuzz/fuzz_entry.cpp decodes its input (keep the two in step).

Usage: python3 tests/fuzz/make_seeds.py tests/fuzz/corpus
"""
import pathlib
import struct
import sys

LABEL_TYPES = {"int32": 0, "int64": 1, "uint64": 2, "uint32": 3}
KINDS = {"ce": 0, "focal": 1, "ldam": 2, "lmf": 3, "lmf_seed": 4, "lmf_official": 5, "generic": 6, "la": 7, "bs": 8,
         "vs": 9, "focal_drw": 10, "generic_smooth": 11}  # kinds 7-9 and 11 read more bytes (see fuzz_entry.cpp)
REDUCTIONS = {"none": 0, "sum": 1, "mean": 2}
KERNELS = {"automatic": 0, "scalar": 1, "rows": 2, "lanes": 3}


def u32(v):
    return list(struct.pack(">I", v))


def logit(v):
    """One logit: a special or an int32 / 2^24 value."""
    specials = {"nan": [0], "inf": [1], "-inf": [2], "max/2": [3], "1e4": [4, 1], "-1e4": [4, 0],
                "denorm": [5], "1e30": [6, 1], "-1e30": [6, 0], "max/32": [7, 1], "-max/32": [7, 0]}
    if isinstance(v, str):
        return specials[v]
    return [8] + list(struct.pack(">i", int(round(v * (1 << 24)))))


def label(v, C):
    if v == "ignore":
        return [200]
    if v == "-1":
        return [230]
    if v == "huge":  # 2^64 - 100 in the label type
        return [240]
    assert 0 <= v < C
    return [v]


def seed(*, double=False, labels="int32", C=3, counts=None, weights=None, reduction="mean", kind="ce",
         gamma2=4, s=30, samples=4, classes=None, inner_zero=False, form=0, form_bytes=(),
         logits=(), label_values=(), threads=1, kernel="automatic", kind_bytes=()):
    b = [(1 if double else 0) | (LABEL_TYPES[labels] << 1)]
    b.append(C - 1)
    b += counts or [1] * C
    if weights is None:
        b.append(0)
    else:
        b.append(1)
        b += weights  # per class: 0 -> 0, 1 -> 1e30, 2 -> denorm_min, k -> k / 16
    b.append(REDUCTIONS[reduction])
    b.append(1)  # ignore_index -100
    b.append(gamma2)  # gamma = gamma2 / 2
    b += [1, s - 1] if s != "big" else [0]
    b.append(KINDS[kind])
    b += list(kind_bytes)  # kinds 7-9: label smoothing * 10, tau * 2; kind 11: label smoothing * 10
    b.append(samples)
    b += [1] if classes is None else [0] + classes
    b += [0] if inner_zero else [1]
    b.append(form)
    b += list(form_bytes)
    for v in logits:
        b += logit(v)
    for v in label_values:
        b += label(v, C)
    b += [threads - 1, KERNELS[kernel]]
    return bytes(b)


def seeds():
    yield "regress_empty_batch_2e33_classes", seed(samples=0, classes=u32(8) + [30])
    yield "regress_2e62_classes", seed(samples=1, classes=u32(0xFFFFFFFF) + [30])
    # gradient entries aliasing each other (strides 1, 1): once a race between threads
    yield "regress_aliasing_gradient", seed(double=True, C=39, samples=39, form=3, form_bytes=(1, 1, 0),
                                            logits=[0.5] * 77, label_values=[0] * 39, threads=2)
    # a sample stride of ~2^62: offsets beyond the limit
    yield "regress_huge_stride", seed(samples=3, C=2, form=4, form_bytes=u32(0xFFFFFFFF) + [30])
    # float CE, weights {1e30, 1}: w_y * l overflowed float
    yield "regress_huge_weight", seed(C=2, weights=[1, 16], samples=1, logits=["-1e30", "1e30"], label_values=[0],
                                      kernel="lanes")
    # double CE rows of (max/32, -max/32): the sum of the rows overflowed
    yield "regress_row_sum_overflow", seed(double=True, C=2, samples=12, logits=["max/32", "-max/32"] * 12,
                                           label_values=[1] * 12)
    # subnormal class weights: weight / denominator overflowed
    yield "regress_subnormal_weights", seed(double=True, C=3, weights=[2, 2, 2], samples=5,
                                            logits=[0.25 * i for i in range(15)], label_values=[0, 1, 2, 0, 1])
    yield "regress_subnormal_weights_float", seed(C=3, weights=[2, 2, 2], samples=5,
                                                  logits=[0.25 * i for i in range(15)], label_values=[0, 1, 2, 0, 1])
    # an ignored row holding (1e30, NaN, 0) in CE<double> on the lanes kernel: UB in xsimd
    yield "regress_ignored_row_extremes", seed(double=True, C=3, samples=20,
                                               logits=["1e30", "nan", 0.0] + [0.5, -0.5, 1.0] * 19,
                                               label_values=["ignore"] + [0, 1] * 9 + [2], kernel="lanes")
    # LDAM with s = 64 and large logits; focal gamma 20 (the limit)
    yield "regress_ldam_s64", seed(double=True, C=3, kind="ldam", s=64, samples=4, logits=["1e4", "-1e4", 0.0] * 4,
                                   label_values=[0, 1, 2, 1])
    yield "regress_gamma_limit", seed(C=5, kind="focal", gamma2=40, samples=17, logits=[0.1 * i for i in range(85)],
                                      label_values=[i % 5 for i in range(17)], kernel="lanes")
    # a uint64 label 2^64 - 100: once taken for ignore_index -100
    yield "regress_uint64_label", seed(labels="uint64", C=3, samples=2, logits=[0.5] * 6, label_values=[0, "huge"])
    # NaN in value() at a late row: the error path
    yield "regress_nan_late_row", seed(C=4, samples=39, logits=[0.5] * 150 + ["nan"] + [0.5] * 5,
                                       label_values=[i % 4 for i in range(39)])
    # label smoothing with class weights {2.875, 1e30} in float: the gradient (eps / C) s a_c
    # (W softmax_c - w_c) cancels, and the kernels' rounding noise (1e24) differed by 30%
    yield "regress_smoothing_extreme_weights", seed(labels="int64", C=2, counts=[44, 1], weights=[46, 1],
                                                    reduction="sum", gamma2=12, s=57, kind="generic_smooth",
                                                    kind_bytes=(2,), samples=2, form=0,
                                                    logits=[122.478432] * 4, label_values=[0, 0], kernel="rows")

    # row-major tiles of the lanes kernel (SSE transposes): C = 2 (deinterleave), 5 (a 4 x 4 block
    # and an overlapping one), 3 in double (2 x 2 blocks), 40 rows so every build fills a tile
    for C, double in ((2, False), (5, False), (3, True), (7, True)):
        yield f"seed_lanes_row_major_c{C}_{'double' if double else 'float'}", seed(
            double=double, C=C, kind="lmf", samples=37, logits=[((i * 37) % 23) / 4.0 - 2.5 for i in range(37 * C)],
            label_values=[i % C if i % 9 else "ignore" for i in range(37)], kernel="lanes")

    # the rows kernel on every instruction set (the harness runs each input on each set the CPU
    # has): C = 37 and 101 fill whole vectors of every width and leave a tail, with ignored rows
    for C, double in ((37, False), (101, False), (37, True)):
        yield f"seed_rows_c{C}_{'double' if double else 'float'}", seed(
            double=double, C=C, kind="lmf", samples=5, logits=[((i * 37) % 23) / 4.0 - 2.5 for i in range(5 * C)],
            label_values=[0, C - 1, "ignore", C // 2, 3], kernel="rows")

    # the long-tail family (not findings: starting points for the fuzzer on the new kinds)
    for kind, kb in (("la", (1, 2)), ("bs", (3, 0)), ("vs", (2, 2)), ("focal_drw", ()), ("generic_smooth", (2,))):
        yield f"seed_family_{kind}", seed(C=5, kind=kind, kind_bytes=kb, weights=[16, 8, 32, 4, 2], samples=9,
                                          logits=[0.3 * i - 5 for i in range(45)],
                                          label_values=[i % 5 for i in range(8)] + ["ignore"])
        yield f"seed_family_{kind}_wide", seed(double=True, C=40, kind=kind, kind_bytes=kb, samples=3,
                                               logits=[0.1 * i for i in range(120)], label_values=[0, 39, 7])


def main():
    out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "tests/fuzz/corpus")
    out.mkdir(parents=True, exist_ok=True)
    for name, data in seeds():
        (out / name).write_bytes(data)
    print(f"make_seeds: {len(list(seeds()))} regression seeds -> {out}")


if __name__ == "__main__":
    main()
