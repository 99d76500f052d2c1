// lmf/math/row.hpp — the per-row scalar math shared by every kernel, CPU and GPU.
//
// One term of a loss, for one row with logits x (C classes) and label y:
//
//   z_c   = s * (a_c * x_c - m_y * [c == y]) + b_c          adjusted logits
//   l     = logsumexp(z) - z_y  >= 0                        cross entropy of z
//   L     = w_y * phi(l),  phi(l) = (1 - e^-l)^gamma * l      focal modulation (gamma 0: CE)
//   dL/dx_c = w_y * phi'(l) * s * a_c * (softmax(z)_c - [c == y])
//   phi'(l) = (1-p)^gamma + gamma * p * l * (1-p)^(gamma-1),  p = e^-l
//
// This header knows nothing of layouts; it is included by CUDA device code, so every function is
// LMF_HOST_DEVICE and uses only <cmath> functions available on both sides.
#pragma once

#include <lmf/config.hpp>

#include <cmath>

namespace lmf {
namespace math {

/// phi(l) and phi'(l) of the focal modulation, computed together.
template <class T>
struct Focus {
  T value;       ///< phi(l)
  T derivative;  ///< phi'(l)
};

/// Focal modulation phi(l) = (1 - e^-l)^gamma * l and its derivative, for l >= 0, gamma >= 0,
/// given p = e^-l and one_minus_p = 1 - e^-l, each computed without cancellation (the kernels
/// get them from the softmax sums as e_y / (1 + rest) and others / (1 + rest); the overload below
/// uses exp(-l) and -expm1(-l)). p must not be formed as 1 - one_minus_p: its absolute error eps
/// times gamma * l (l in the thousands for a badly wrong row) would move phi' by 1e-3 in float.
///
/// Numerics: 1 - p is computed as -expm1(-l), which keeps full relative accuracy when p -> 1
/// (PyTorch's `1 - p` rounds to 0 there). phi'(l) is written as
///     (1-p)^gamma * (1 + gamma * p * r),  r = l / (1-p)  (r -> 1 as l -> 0),
/// so no infinity is ever multiplied by zero: for gamma < 1, (1-p)^(gamma-1) alone would be
/// infinite at l = 0, where PyTorch's autograd returns NaN. At l == 0 exactly, r is set to its
/// limit 1, so phi'(0) = 0 for gamma > 0 and 1 for gamma == 0, the true derivatives.
template <class T>
LMF_HOST_DEVICE inline Focus<T> focus(T l, T one_minus_p, T p, T gamma) {
  if (gamma == T(0)) return {l, T(1)};
  const T r = one_minus_p > T(0) ? l / one_minus_p : T(1);
  const T mod = gamma == T(1) ? one_minus_p
              : gamma == T(2) ? one_minus_p * one_minus_p
                              : std::pow(one_minus_p, gamma);
  return {mod * l, mod * (T(1) + gamma * p * r)};
}

/// focus(l, gamma) with p = exp(-l) and 1 - p = -expm1(-l).
template <class T>
LMF_HOST_DEVICE inline Focus<T> focus(T l, T gamma) {
  if (gamma == T(0)) return {l, T(1)};
  return focus(l, -std::expm1(-l), std::exp(-l), gamma);
}

/// z_c - z_k for the row's maximal class k, computed as a difference of the raw logits first:
///     s * ((a_c x_c - a_k x_k) - (margin_c - margin_k)) + (b_c - b_k)
/// Its rounding error is relative to |z_c - z_k|, not to |z_c| (which is s * |x|: up to 6e5 for
/// s 64, |x| 1e4), so exp(z_c - z_k) keeps full relative accuracy in float at any logit size.
template <class T>
LMF_HOST_DEVICE inline T adjusted_difference(T ax_c, T ax_k, T margin_c, T margin_k, T b_c, T b_k, T s) {
  return s * ((ax_c - ax_k) - (margin_c - margin_k)) + (b_c - b_k);
}

/// The cross entropy l = logsumexp(z) - z_y from dy = z_y - z_k and rest = sum_{c != k}
/// exp(z_c - z_k), k the maximal class: l = log1p(rest) - dy. log1p keeps full relative
/// accuracy when the target dominates (l ~ rest << 1), where log(1 + rest) and PyTorch's
/// log_softmax lose digits. The max with 0 removes the rounding that could make l -0 or -1e-8.
template <class T>
LMF_HOST_DEVICE inline T cross_entropy_from(T dy, T rest) {
  const T l = std::log1p(rest) - dy;
  return l > T(0) ? l : T(0);
}

/// softmax_c - [c == y] from e_c = exp(z_c - z_k) (exactly 1 for c = k) and inv = 1 / (1 + rest).
/// For the target, ((e_y - 1) - rest) * inv is exact in the confident limit: with y = k it is
/// -rest * inv, where softmax_y - 1 would cancel.
template <class T>
LMF_HOST_DEVICE inline T softmax_minus_onehot(T e, bool target, T rest, T inv) {
  return target ? ((e - T(1)) - rest) * inv : e * inv;
}

}  // namespace math
}  // namespace lmf
