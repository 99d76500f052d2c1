// lmf/cpu/kernel.hpp — what every CPU kernel receives and returns: the terms as plain numbers
// (the plan's scales, no reductions or presets), where the rows are, and the outputs. The
// kernels (scalar.hpp, rows_simd.hpp, lanes_simd.hpp) add per-term sums over a range of rows.
#pragma once

#include <lmf/math/row.hpp>
#include <lmf/plan.hpp>
#include <lmf/view.hpp>

#include <cmath>
#include <cstdint>

namespace lmf {
namespace detail {

/// Where the rows of a batch are, and what the kernel must produce for them.
template <class T, class L>
struct KernelArgs {
  const T* x = nullptr;
  Layout lx;
  const L* labels = nullptr;
  Index label_stride = 1;
  std::int64_t ignore_index = -100;
  T* grad = nullptr;        ///< null: no gradient
  Layout lg;                ///< gradient layout (same shape as lx)
  T* row_values = nullptr;  ///< null: no per-row output; else sum_t weight_t * value_t,i
  Index row_values_stride = 1;
  const TermParams<T>* terms = nullptr;
  const T* term_weights = nullptr;  ///< weight_t, for row_values
  int n_terms = 0;
  T limit = T(0);  ///< largest |x| the kernel accepts (see validate.hpp: logit_limit)
};

/// What one term makes of one row once its cross entropy l is known: the row's value of the term
/// (w_y phi(l); with label smoothing (1 - eps) w_y l + (eps / C) q; with the weight inside
/// phi(w_y l)), its share of the term's sum (times value_scale, in double), and the gradient
/// factor coef of (softmax - onehot) (label smoothing's own parts come from TermParams).
template <class T>
struct TermRow {
  T value;
  Accum contribution;
  T coef;
};

/// The per-row epilogue shared by the scalar and rows kernels (the lanes kernel has the same
/// formulas on vectors). rest = sum_{c != k} exp(z_c - z_k); wd = sum_c w_c (z_c - z_k) (label
/// smoothing only); plain() gives phi and phi' at l when the weight is not inside (each kernel
/// forms 1 - p_t its own way). With the weight inside, phi(w_y l) is taken in double: w_y l may
/// overflow T.
template <class T, class PlainFocus>
TermRow<T> term_row(const TermParams<T>& p, T wy, T l, T rest, T wd, PlainFocus&& plain) {
  const Accum w = Accum(wy) * p.weight_scale;
  math::Focus<T> f;
  T value;
  Accum contribution;
  if (p.weight_inside) {
    const math::Focus<Accum> fi = math::focus(Accum(wy) * Accum(l), Accum(p.gamma));
    f = {static_cast<T>(fi.value), static_cast<T>(fi.derivative)};
    value = f.value;
    contribution = (p.weight_scale * p.value_scale) * fi.value;
  } else {
    f = plain();
    if (p.smooth != T(0)) {  // (gamma 0: phi(l) = l)
      const T q = p.w_sum * std::log1p(rest) - wd;  // sum_c w_c (logsumexp(z) - z_c) >= 0
      value = p.one_minus_eps * wy * l + p.smooth * q;
      contribution = (Accum(p.one_minus_eps) * Accum(wy) * Accum(l) + Accum(p.smooth) * Accum(q)) * p.weight_scale *
                     p.value_scale;
    } else {
      value = wy * f.value;
      contribution = (w * p.value_scale) * Accum(f.value);
    }
  }
  const T coef = static_cast<T>(w * p.grad_scale * Accum(p.one_minus_eps)) * f.derivative * p.s;
  return {value, contribution, coef};
}

}  // namespace detail
}  // namespace lmf
