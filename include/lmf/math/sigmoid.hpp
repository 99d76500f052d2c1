// lmf/math/sigmoid.hpp — the per-element math of the sigmoid (multi-label) focal loss, shared by
// the scalar kernel and (on vectors, same formulas) the SIMD kernel; LMF_HOST_DEVICE for CUDA.
//
// For a logit x, a target t in [0, 1], alpha (< 0: none), gamma >= 0 and a class weight w:
//
//   p      = sigmoid(x),  1 - p = sigmoid(-x)         both from e = exp(-|x|): no cancellation
//   ce     = max(x, 0) - x t + log1p(e)               binary cross entropy with logits
//   q      = 1 - p_t = p (1 - t) + (1 - p) t          a sum of non-negative parts: no cancellation
//   a_t    = alpha t + (1 - alpha)(1 - t)             (1 without alpha)
//   L      = w a_t q^gamma ce                          torchvision's sigmoid_focal_loss, times w
//   dL/dx  = w a_t (q^gamma (p - t) + gamma ce q^gamma p (1 - p)(1 - 2t) / q)
//
// with p - t = p (1 - t) - (1 - p) t and dq/dx = p (1 - p)(1 - 2t). The last factor is bounded:
// p (1 - p) / q <= max(p, 1 - p) <= 1, so no (1 - p_t)^(gamma - 1) is ever formed and the
// gradient stays finite for gamma < 1 where torchvision's autograd gives 0 * inf = NaN; q from
// sigmoid(-x) keeps the loss of confident elements (torchvision's 1 - p_t rounds it to 0).
#pragma once

#include <lmf/config.hpp>

#include <cmath>

namespace lmf {
namespace math {

template <class T>
struct SigmoidFocal {
  T value;  ///< L (times w)
  T grad;   ///< dL/dx (times w)
};

/// q^gamma for q in [0, 1].
template <class T>
LMF_HOST_DEVICE inline T focal_power(T q, T gamma) {
  return gamma == T(0) ? T(1) : gamma == T(1) ? q : gamma == T(2) ? q * q : std::pow(q, gamma);
}

template <class T>
LMF_HOST_DEVICE inline SigmoidFocal<T> sigmoid_focal(T x, T t, T alpha, T gamma, T w) {
  const T e = std::exp(-std::abs(x));
  const T inv = T(1) / (T(1) + e);
  const T p = x >= T(0) ? inv : e * inv;   // sigmoid(x)
  const T pc = x >= T(0) ? e * inv : inv;  // 1 - sigmoid(x)
  const T ce = (x >= T(0) ? x * (T(1) - t) : -x * t) + std::log1p(e);
  const T q = p * (T(1) - t) + pc * t;
  const T at = alpha < T(0) ? T(1) : alpha * t + (T(1) - alpha) * (T(1) - t);
  const T mod = focal_power(q, gamma);
  const T scale = w * at;
  T grad = mod * (p * (T(1) - t) - pc * t);
  if (gamma != T(0) && q > T(0)) grad += gamma * ce * mod * (p * pc * (T(1) - T(2) * t) / q);
  return {scale * (mod * ce), scale * grad};
}

}  // namespace math
}  // namespace lmf
