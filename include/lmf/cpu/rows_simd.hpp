// lmf/cpu/rows_simd.hpp — the kernel for class-contiguous rows (row-major N x C, class stride
// 1) with many classes: each row is swept with xsimd batches along the classes.
//
// Per row: one sweep finds X = max over the non-target logits (and checks every logit against
// the limit); per term, one sweep computes e_c = exp(s ((x_c - X_ref) + delta)) — the exponent
// of z_c - z_k written as a difference of raw logits (math::adjusted_difference) — summing them
// and keeping them in a row-sized scratch when a gradient is wanted; a last sweep writes
// g_c = sum_t k_t e_{t,c}, and the target entry is set from its exact formula. Only the vector
// that holds the target is masked. The
// logits are read from memory once (the later sweeps hit cache) and the gradient written once.
//
// Handles terms with a = 1 and b = 0 (every named loss); the dispatcher sends others to the
// scalar kernel.
#pragma once

#include <lmf/cpu/scalar.hpp>
#include <lmf/cpu/simd_math.hpp>

#include <cmath>
#include <limits>

namespace lmf {
namespace detail {

/// What one term contributes to one row: its value w_y * phi (for per-row outputs), its share of
/// the term's sum (w_y * value_scale * phi, in double), the gradient factor for the non-target
/// classes (times e_c) and the target's gradient entry.
template <class T>
struct RowTerm {
  T value;
  Accum contribution;
  T k, g_target;
};

/// From rest, others (see below), dy, e_y and the term's parameters: the term's l, value and
/// gradient factors for one row (the rows kernel's per-row epilogue).
template <class T>
RowTerm<T> finish_row(const TermParams<T>& p, T wy, T rest, T others, T dy, T e_y) {
  const T l = math::cross_entropy_from(dy, rest);
  const T inv = T(1) / (T(1) + rest);
  // p_t = e_y / (1 + rest), 1 - p_t = others / (1 + rest): neither from the other
  const math::Focus<T> f = math::focus(l, others * inv, e_y * inv, p.gamma);
  const T phi = f.value, derivative = f.derivative;
  const Accum w = Accum(wy) * p.weight_scale;
  const T coef = static_cast<T>(w * p.grad_scale) * derivative * p.s;
  return {wy * phi, (w * p.value_scale) * Accum(phi), coef * inv,
          coef * math::softmax_minus_onehot(e_y, true, rest, inv)};
}

/// Scratch the rows kernel needs per thread: one row of exponentials per term.
inline Index rows_scratch_size(Index classes, int n_terms) { return Index(n_terms) * classes; }

/// Rows kernel over rows [begin, end); class_stride must be 1 (and 1 for the gradient).
/// scratch: rows_scratch_size(C, n_terms) entries.
template <class T, class L>
bool rows_simd(const KernelArgs<T, L>& k, Index begin, Index end, Accum* sums, T* scratch) {
  using B = simd::batch<T>;
  constexpr Index W = simd::width<T>();
  const Layout& lx = k.lx;
  const Index C = lx.classes;
  const Index C_vec = C - C % W;
  alignas(64) T iota_arr[W];
  for (Index j = 0; j < W; ++j) iota_arr[j] = T(j);
  const B iota = B::load_aligned(iota_arr);
  const B limit(k.limit);
  const T neg_inf = -std::numeric_limits<T>::infinity();
  bool ok = true;

  for (Index i = begin; i < end; ++i) {
    const T* x = k.x + lx.row_offset(i);
    T* g = k.grad ? k.grad + k.lg.row_offset(i) : nullptr;
    const std::int64_t label = static_cast<std::int64_t>(k.labels[i * k.label_stride]);
    if (label == k.ignore_index) {
      if (g) {
        for (Index c = 0; c < C_vec; c += W) B(T(0)).store_unaligned(g + c);
        for (Index c = C_vec; c < C; ++c) g[c] = T(0);
      }
      if (k.row_values) k.row_values[i * k.row_values_stride] = T(0);
      continue;
    }
    const Index y = static_cast<Index>(label);
    const B yv(static_cast<T>(y));

    // sweep 1: X = max_{c != y} x_c, and |x_c| <= limit for all c. Only the chunk that holds
    // the target needs a mask.
    const Index y_chunk = y < C_vec ? y - y % W : C;
    B vmax(neg_inf);
    auto in_range = B(T(0)) <= limit;  // all true
    for (Index c = 0; c < C_vec; c += W) {
      const B v = B::load_unaligned(x + c);
      in_range = in_range && (xsimd::abs(v) <= limit);
      vmax = xsimd::max(vmax, c == y_chunk ? xsimd::select(iota == B(T(y - c)), B(neg_inf), v) : v);
    }
    T X = simd::hmax(vmax);
    for (Index c = C_vec; c < C; ++c) {
      ok &= std::abs(x[c]) <= k.limit;
      if (c != y && x[c] > X) X = x[c];
    }
    ok &= xsimd::all(in_range);
    const T xy = x[y];

    T row_value = T(0);
    RowTerm<T> parts[kMaxTerms];
    for (int t = 0; t < k.n_terms; ++t) {
      const TermParams<T>& p = k.terms[t];
      const T my = p.m ? p.m[y] : T(0);
      const bool y_ref = xy - my >= X;  // the target's adjusted logit is the row maximum
      const T x_ref = y_ref ? xy : X, delta = y_ref ? my : T(0);
      // sweep 2: e_c = exp(s ((x_c - x_ref) + delta)) = exp(z_c - z_k) for c != y; `others` =
      // their sum. When X is the reference, its own e = 1 (exactly) is in `others`.
      B sum(T(0));
      const B s(p.s), sub(x_ref - delta);
      T* e_out = scratch + t * C;
      for (Index c = 0; c < C_vec; c += W) {
        const B v = B::load_unaligned(x + c);
        const B e = simd::fast_exp(s * (y_ref ? (v - B(x_ref)) + B(delta) : v - sub));
        sum += c == y_chunk ? xsimd::select(iota == B(T(y - c)), B(T(0)), e) : e;
        if (g) e.store_unaligned(e_out + c);
      }
      if (C_vec < C) {  // the last C % W classes: one padded vector (scalar exps cost far more)
        const Index rem = C - C_vec;
        const B v = simd::lanes_from<T>([&](Index j) { return j < rem ? x[C_vec + j] : x_ref; });
        const B e = simd::fast_exp(s * ((v - B(x_ref)) + B(delta)));
        const auto keep = (iota < B(T(rem))) && (iota + B(T(C_vec)) != yv);
        sum += xsimd::select(keep, e, B(T(0)));
        if (g) {
          alignas(64) T tail[W];
          e.store_aligned(tail);
          for (Index j = 0; j < rem; ++j) e_out[C_vec + j] = tail[j];
        }
      }
      const T others = xsimd::hadd(sum);
      T dy = T(0), e_y = T(1), rest = others;
      if (!y_ref) {
        dy = math::adjusted_difference(xy, X, my, T(0), T(0), T(0), p.s);
        e_y = std::exp(dy);
        rest = (others - T(1)) + e_y;  // others >= 1 here; see docs/math.md on its accuracy
      }
      const T wy = p.w ? p.w[y] : T(1);
      parts[t] = finish_row(p, wy, rest, others, dy, e_y);
      sums[t] += parts[t].contribution;
      if (k.row_values) row_value += k.term_weights[t] * parts[t].value;
    }
    if (k.row_values) k.row_values[i * k.row_values_stride] = row_value;
    if (!g) continue;

    // sweep 3: the gradient
    if (k.n_terms == 1) {
      const B k0(parts[0].k);
      for (Index c = 0; c < C_vec; c += W) (k0 * B::load_unaligned(scratch + c)).store_unaligned(g + c);
      for (Index c = C_vec; c < C; ++c) g[c] = parts[0].k * scratch[c];
    } else if (k.n_terms == 2) {
      const B k0(parts[0].k), k1(parts[1].k);
      const T* e1 = scratch + C;
      for (Index c = 0; c < C_vec; c += W)
        xsimd::fma(k1, B::load_unaligned(e1 + c), k0 * B::load_unaligned(scratch + c)).store_unaligned(g + c);
      for (Index c = C_vec; c < C; ++c) g[c] = parts[0].k * scratch[c] + parts[1].k * e1[c];
    } else {
      for (Index c = 0; c < C_vec; c += W) {
        B acc = B(parts[0].k) * B::load_unaligned(scratch + c);
        for (int t = 1; t < k.n_terms; ++t) acc = xsimd::fma(B(parts[t].k), B::load_unaligned(scratch + t * C + c), acc);
        acc.store_unaligned(g + c);
      }
      for (Index c = C_vec; c < C; ++c) {
        T acc = parts[0].k * scratch[c];
        for (int t = 1; t < k.n_terms; ++t) acc += parts[t].k * scratch[t * C + c];
        g[c] = acc;
      }
    }
    T gy = T(0);
    for (int t = 0; t < k.n_terms; ++t) gy += parts[t].g_target;
    g[y] = gy;
  }
  return ok;
}

}  // namespace detail
}  // namespace lmf
