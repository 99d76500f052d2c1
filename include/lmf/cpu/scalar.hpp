// lmf/cpu/scalar.hpp — the portable reference kernel: any layout, any strides, one row at a
// time, straight from the formulas of math/row.hpp. It is the ground truth every fast path is
// tested against; it is also the fallback where no fast path applies.
#pragma once

#include <lmf/math/row.hpp>
#include <lmf/view.hpp>

#include <cstdint>

namespace lmf {
namespace detail {

/// Accumulator type of the reductions: double for float and double inputs.
using Accum = double;

/// A term as the kernels see it: raw pointers (null = default) and the scales the dispatcher
/// derived from the reduction. Trivially copyable, so it can be passed to a CUDA kernel.
///
/// The scales are doubles and multiply the class weight first: with w'_y = w_y * weight_scale, a
/// row adds (w'_y * value_scale) * phi(l) to the term's sum and gets the gradient factor
/// T(w'_y * grad_scale) * phi'(l) * s. For a mean, w_y / denominator <= 1 for every counted class,
/// so neither product can overflow where the mean itself is finite (huge class weights, rows whose
/// sum would overflow T). weight_scale is 1, or 2^1000 when the denominator is so small (subnormal
/// weights) that its reciprocal would overflow; multiplying by it is exact.
template <class T>
struct TermParams {
  T s;
  T gamma;
  const T* a;  ///< null: all 1
  const T* m;  ///< null: all 0
  const T* b;  ///< null: all 0
  const T* w;  ///< null: all 1
  Accum weight_scale;  ///< 1, or 2^1000 for tiny denominators
  Accum value_scale;   ///< 1 / (denominator * weight_scale) (1 for sum and none)
  Accum grad_scale;    ///< term weight * value_scale
  bool batch_focus;        ///< phi applied to the batch mean: row value is w_y * l
  T batch_derivative;      ///< phi'(batch mean) for batch_focus terms
};

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
  T limit = T(0);  ///< largest |x| the kernel accepts (see dispatch.hpp: logit_limit)
};

/// Maximum number of terms in one loss (LMF has two; the family needs at most two).
constexpr int kMaxTerms = 4;

/// Evaluates rows [begin, end) (row i = n * inner + d) with the scalar kernel. Adds, per term,
/// sum_i w_y * value_scale * phi(l_i) (phi(l) = l for batch_focus terms) to sums[t], in row order.
/// Returns false if a counted row has a logit that is not finite or beyond k.limit (the
/// dispatcher then locates it; paths that write have checked every logit beforehand).
template <class T, class L>
bool scalar_rows(const KernelArgs<T, L>& k, Index begin, Index end, Accum* sums) {
  bool ok = true;
  const Layout& lx = k.lx;
  const Index C = lx.classes;
  for (Index i = begin; i < end; ++i) {
    const T* x = k.x + lx.row_offset(i);
    T* g = k.grad ? k.grad + k.lg.row_offset(i) : nullptr;
    const std::int64_t label = static_cast<std::int64_t>(k.labels[i * k.label_stride]);
    if (label == k.ignore_index) {
      if (g)
        for (Index c = 0; c < C; ++c) g[c * k.lg.class_stride] = T(0);
      if (k.row_values) k.row_values[i * k.row_values_stride] = T(0);
      continue;
    }
    const Index y = static_cast<Index>(label);
    for (Index c = 0; c < C; ++c) ok &= std::abs(x[c * lx.class_stride]) <= k.limit;
    T row_value = T(0);
    for (int t = 0; t < k.n_terms; ++t) {
      const TermParams<T>& p = k.terms[t];
      const T my = p.m ? p.m[y] : T(0);
      auto ax = [&](Index c) { return (p.a ? p.a[c] : T(1)) * x[c * lx.class_stride]; };
      auto margin = [&](Index c) { return c == y ? my : T(0); };
      auto offset = [&](Index c) { return p.b ? p.b[c] : T(0); };
      // the maximal class `top` (k in math/row.hpp) of z_c = s * (a_c x_c - margin_c) + b_c
      Index top = 0;
      T zmax = p.s * (ax(0) - margin(0)) + offset(0);
      for (Index c = 1; c < C; ++c) {
        const T zc = p.s * (ax(c) - margin(c)) + offset(c);
        if (zc > zmax) zmax = zc, top = c;
      }
      const T ax_k = ax(top), m_k = margin(top), b_k = offset(top);
      auto e = [&](Index c) {  // exp(z_c - z_top), exactly 1 for top
        return c == top ? T(1)
                      : std::exp(math::adjusted_difference(ax(c), ax_k, margin(c), m_k, offset(c), b_k, p.s));
      };
      T rest = T(0);
      for (Index c = 0; c < C; ++c)
        if (c != top) rest += e(c);
      const T dy = y == top ? T(0) : math::adjusted_difference(ax(y), ax_k, my, m_k, offset(y), b_k, p.s);
      const T l = math::cross_entropy_from(dy, rest);
      const T wy = p.w ? p.w[y] : T(1);
      T phi, derivative;
      if (p.batch_focus) {
        phi = l;
        derivative = p.batch_derivative;
      } else {
        const math::Focus<T> f = math::focus(l, p.gamma);
        phi = f.value;
        derivative = f.derivative;
      }
      sums[t] += (Accum(wy) * p.weight_scale * p.value_scale) * Accum(phi);
      if (k.row_values) row_value += k.term_weights[t] * (wy * phi);
      if (g) {
        const T coef = static_cast<T>(Accum(wy) * p.weight_scale * p.grad_scale) * derivative * p.s;
        const T inv = T(1) / (T(1) + rest);
        for (Index c = 0; c < C; ++c) {
          const T gc = coef * (p.a ? p.a[c] : T(1)) * math::softmax_minus_onehot(e(c), c == y, rest, inv);
          T& out = g[c * k.lg.class_stride];
          out = t == 0 ? gc : out + gc;
        }
      }
    }
    if (k.row_values) k.row_values[i * k.row_values_stride] = row_value;
  }
  return ok;
}

}  // namespace detail
}  // namespace lmf
