"""The coefficients of lmf's float fast_exp2 (include/lmf/cpu/simd_math.hpp): 2^f on [-1/2, 1/2]
as 1 + f q(f), q of degree 5, minimax in relative error (Lawson's algorithm: iteratively
reweighted least squares), then rounded to float and checked by evaluating the polynomial as the
kernels do — Horner's scheme in float with fused multiply-adds, emulated: each step's product
is exact in double (two floats' product fits), the sum is rounded to double and then to float,
which differs from a hardware fma's single rounding only in rare near-ties — on 2M points. The
C++ test (tests/test_numerics.cpp) measures the compiled function itself.

Run: /usr/bin/python3 scripts/fit_exp2.py   (needs numpy; prints the coefficients, c6 first)
"""
import numpy as np


def fit(degree, points=40001, iterations=300):
    f = np.linspace(-0.5, 0.5, points)
    target = np.exp2(f)
    powers = np.vstack([f ** (k + 1) for k in range(degree)]).T  # f, f^2, ..., f^degree
    weights = np.ones_like(f)
    for _ in range(iterations):
        w = weights / target  # relative error
        coef, *_ = np.linalg.lstsq(powers * w[:, None], (target - 1) * w, rcond=None)
        err = np.abs((1 + powers @ coef) / target - 1)
        weights = weights * err
        weights /= weights.sum()
    return coef, err.max()


def evaluate_float(coef, f):
    c = np.float32(coef)
    y = np.float32(c[-1])
    for k in range(len(c) - 2, -1, -1):
        y = np.float32(np.float64(y) * np.float64(f) + np.float64(c[k]))
    return np.float32(np.float64(y) * np.float64(f) + 1.0)


def main():
    coef, err = fit(6)
    f = np.float32(np.linspace(-0.5, 0.5, 2000001))
    exact = np.exp2(np.float64(f))
    p = evaluate_float(coef, f)
    ulps = np.max(np.abs(np.float64(p) - exact) / np.spacing(np.float32(exact)))
    print(f"minimax relative error {err:.3g} (real coefficients); {ulps:.3f} ulp in float")
    for k in range(len(coef) - 1, -1, -1):
        print(f"c{k + 1} = {float(np.float32(coef[k])):.17g}f")


if __name__ == "__main__":
    main()
