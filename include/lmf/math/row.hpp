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

/// Focal modulation phi(l) = (1 - e^-l)^gamma * l and its derivative, for l >= 0, gamma >= 0.
///
/// Numerics: 1 - p is computed as -expm1(-l), which keeps full relative accuracy when p -> 1
/// (PyTorch's `1 - p` rounds to 0 there). phi'(l) is written as
///     (1-p)^gamma * (1 + gamma * p * r),  r = l / (1-p)  (r -> 1 as l -> 0),
/// so no infinity is ever multiplied by zero: for gamma < 1, (1-p)^(gamma-1) alone would be
/// infinite at l = 0, where PyTorch's autograd returns NaN. At l == 0 exactly, r is set to its
/// limit 1, so phi'(0) = 0 for gamma > 0 and 1 for gamma == 0, the true derivatives.
template <class T>
LMF_HOST_DEVICE inline Focus<T> focus(T l, T gamma) {
  if (gamma == T(0)) return {l, T(1)};
  const T one_minus_p = -std::expm1(-l);
  const T p = T(1) - one_minus_p;
  const T r = one_minus_p > T(0) ? l / one_minus_p : T(1);
  const T mod = gamma == T(1) ? one_minus_p
              : gamma == T(2) ? one_minus_p * one_minus_p
                              : std::pow(one_minus_p, gamma);
  return {mod * l, mod * (T(1) + gamma * p * r)};
}

/// The cross entropy l = logsumexp(z) - z_y from the row maximum zmax, the target's adjusted
/// logit zy and rest = sum_c exp(z_c - zmax) - 1 >= 0, the sum without one maximal entry
/// (accumulate exp(z_c - zmax) over z_c < zmax, plus the number of ties at zmax minus 1).
/// Both parts are >= 0, so l >= 0 exactly: no rounding can make it -0 or -1e-8; and log1p keeps
/// full relative accuracy when the target dominates (l ~ rest << 1), where log(1 + rest) and
/// PyTorch's log_softmax lose digits.
template <class T>
LMF_HOST_DEVICE inline T cross_entropy_from(T zmax, T zy, T rest) {
  return (zmax - zy) + std::log1p(rest);
}

/// softmax_c - [c == y] from e_c = exp(z_c - zmax) and inv = 1 / (1 + rest). For the target,
/// ((e_y - 1) - rest) * inv is exact in the confident limit: with z_y = zmax it is -rest * inv,
/// where softmax_y - 1 would cancel.
template <class T>
LMF_HOST_DEVICE inline T softmax_minus_onehot(T e, bool target, T rest, T inv) {
  return target ? ((e - T(1)) - rest) * inv : e * inv;
}

/// The adjusted logit of one class: s * (a_c * x_c - margin) + b_c, where margin is m_y for the
/// target class and 0 for the others.
template <class T>
LMF_HOST_DEVICE inline T adjusted_logit(T x, T s, T a, T margin, T b) {
  return s * (a * x - margin) + b;
}

}  // namespace math
}  // namespace lmf
