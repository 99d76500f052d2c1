// lmf/cpu/scalar.hpp — the portable reference kernel: any layout, any strides, one row at a
// time, straight from the formulas of math/row.hpp. It is the ground truth every fast path is
// tested against; it is also the fallback where no fast path applies.
#pragma once

#include <lmf/cpu/kernel.hpp>
#include <lmf/math/row.hpp>

#include <cstdint>

namespace lmf {
namespace detail {

/// Evaluates rows [begin, end) (row i = n * inner + d) with the scalar kernel. Adds, per term,
/// sum_i w_y * value_scale * phi(l_i) to sums[t], in row order.
/// Returns false if a counted row has a logit that is not finite or beyond k.limit (the
/// dispatcher then locates it; paths that write have checked every logit beforehand).
template <class T, class L>
bool scalar_rows(const KernelArgs<T, L>& k, Index begin, Index end, Accum* sums) {
  bool ok = true;
  const Layout& lx = k.lx;
  const Index C = lx.classes;
  // what the gradient loop needs of each term of a row, found before anything is written (the
  // gradient may be written over the logits, in place)
  struct RowTerm {
    Index top;
    T ax_k, m_k, b_k, rest, inv, coef;
  };
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
    RowTerm rt[kMaxTerms];
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
      T rest = T(0);  // sum over c != top of exp(z_c - z_top)
      T wd = T(0);    // label smoothing: sum_c w_c (z_c - z_top)
      for (Index c = 0; c < C; ++c) {
        if (c == top) continue;
        const T d = math::adjusted_difference(ax(c), ax_k, margin(c), m_k, offset(c), b_k, p.s);
        rest += std::exp(d);
        if (p.smooth != T(0)) wd += (p.w ? p.w[c] : T(1)) * d;
      }
      const T dy = y == top ? T(0) : math::adjusted_difference(ax(y), ax_k, my, m_k, offset(y), b_k, p.s);
      const T l = math::cross_entropy_from(dy, rest);
      const T wy = p.w ? p.w[y] : T(1);
      const TermRow<T> r = term_row(p, wy, l, rest, wd, [&] { return math::focus(l, p.gamma); });
      sums[t] += r.contribution;
      if (k.row_values) row_value += k.term_weights[t] * r.value;
      const T coef = r.coef;
      rt[t] = RowTerm{top, ax_k, m_k, b_k, rest, T(1) / (T(1) + rest), coef};
    }
    if (k.row_values) k.row_values[i * k.row_values_stride] = row_value;
    if (!g) continue;
    // the gradient: each logit read, then its gradient entry written (over it, in place)
    for (Index c = 0; c < C; ++c) {
      const T xc = x[c * lx.class_stride];
      T gc = T(0);
      for (int t = 0; t < k.n_terms; ++t) {
        const TermParams<T>& p = k.terms[t];
        const RowTerm& r = rt[t];
        const T ac = p.a ? p.a[c] : T(1);
        const T mc = c == y && p.m ? p.m[y] : T(0), bc = p.b ? p.b[c] : T(0);
        const T e = c == r.top ? T(1) : std::exp(math::adjusted_difference(ac * xc, r.ax_k, mc, r.m_k, bc, r.b_k, p.s));
        gc += r.coef * ac * math::softmax_minus_onehot(e, c == y, r.rest, r.inv);
        if (p.smooth != T(0))  // label smoothing: (eps / C) s a_c (W softmax_c - w_c)
          gc += ac * (p.smooth_mass * (e * r.inv) - p.smooth_grad * (p.w ? p.w[c] : T(1)));
      }
      g[c * k.lg.class_stride] = gc;
    }
  }
  return ok;
}

}  // namespace detail
}  // namespace lmf
