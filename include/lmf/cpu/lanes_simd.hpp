// lmf/cpu/lanes_simd.hpp — the kernel for few classes and class-strided layouts: W rows at
// once, one row per SIMD lane, looping over the classes.
//
// With C = 2..16 a row fills less than one or two vectors, and sweeping along it wastes most
// lanes on horizontal reductions. Here W rows (8 floats with AVX2) are copied into a C x W tile
// — one contiguous vector load per class where the rows are adjacent in memory (column-major
// N x C, (N, C, d1, ...) pixels), a gather otherwise (row-major N x C) — and every step of the
// row math (max, exponentials, log1p, focal modulation) runs on whole vectors. The gradient
// tile is written back the same way. Each logit is read once and each gradient entry written
// once; rows past the last full group go to the scalar kernel.
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

/// Lanes kernel over rows [begin, end). scratch: at least (n_terms + 2) * C * W entries,
/// aligned to 64 bytes.
template <class T, class L>
bool lanes_simd(const KernelArgs<T, L>& k, Index begin, Index end, Accum* sums, T* scratch) {
  using B = simd::batch<T>;
  using M = simd::mask<T>;
  constexpr Index W = simd::width<T>();
  const Layout& lx = k.lx;
  const Index C = lx.classes;
  const Index cs = lx.class_stride, gcs = k.lg.class_stride;
  T* tile = scratch;              // C x W logits
  T* gtile = scratch + C * W;     // C x W gradient
  T* etile = scratch + 2 * C * W;  // n_terms x C x W exponentials
  const B zero(T(0)), one(T(1)), neg_inf(-std::numeric_limits<T>::infinity()), limit(k.limit);
  bool ok = true;

  // Per-lane partial sums in registers (adding into sums[] row by row would chain every add
  // through memory); lanes are added in lane order at the end: a fixed order.
  alignas(64) Accum lane_sums[kMaxTerms][W] = {};
  Index i0 = begin;
  for (; i0 + W <= end; i0 += W) {
    // where the W rows are, their labels (-1 for ignored rows: no class matches)
    Index xoff[W], goff[W], ylane[W];
    for (Index j = 0; j < W; ++j) {
      const Index i = i0 + j;
      const Index n = lx.inner == 1 ? i : i / lx.inner, d = lx.inner == 1 ? 0 : i % lx.inner;
      xoff[j] = lx.offset(n, d, 0);
      goff[j] = k.grad ? k.lg.offset(n, d, 0) : 0;
      const std::int64_t label = static_cast<std::int64_t>(k.labels[i * k.label_stride]);
      ylane[j] = label != k.ignore_index ? Index(label) : Index(-1);
    }
    bool adjacent = true;
    for (Index j = 1; j < W; ++j) adjacent &= xoff[j] == xoff[0] + j;
    if (adjacent) {
      for (Index c = 0; c < C; ++c) B::load_unaligned(k.x + xoff[0] + c * cs).store_aligned(tile + c * W);
    } else {
      for (Index c = 0; c < C; ++c)
        simd::lanes_from<T>([&](Index j) { return k.x[xoff[j] + c * cs]; }).store_aligned(tile + c * W);
    }
    const B yv = simd::lanes_from<T>([&](Index j) { return T(ylane[j]); });
    const B xy = simd::lanes_from<T>([&](Index j) { return ylane[j] >= 0 ? k.x[xoff[j] + ylane[j] * cs] : T(0); });
    const M counted = yv >= zero;

    // X = max over the non-target logits, per lane; every counted logit within the limit
    B X = neg_inf;
    M bad = zero != zero;  // all false
    for (Index c = 0; c < C; ++c) {
      const B v = B::load_aligned(tile + c * W);
      bad = bad || (counted && !(xsimd::abs(v) <= limit));
      X = xsimd::max(X, xsimd::select(yv == B(T(c)), neg_inf, v));
    }
    ok &= !xsimd::any(bad);

    B row_value = zero, gy_total = zero, kk[kMaxTerms];
    alignas(64) T values[kMaxTerms][W];
    for (int t = 0; t < k.n_terms; ++t) {
      const TermParams<T>& p = k.terms[t];
      const B s(p.s);
      const B my = p.m ? simd::lanes_from<T>([&](Index j) { return ylane[j] >= 0 ? p.m[ylane[j]] : T(0); }) : zero;
      const B wy = p.w ? simd::lanes_from<T>([&](Index j) { return ylane[j] >= 0 ? p.w[ylane[j]] : T(1); }) : one;
      const M y_ref = xy - my >= X;
      const B x_ref = xsimd::select(y_ref, xy, X), delta = xsimd::select(y_ref, my, zero);
      // exponents z_c - z_k as differences of raw logits; the target's includes its margin, so
      // that its e is exp(dy) (exactly 1 when the target is the reference)
      B sum = zero, zeros = zero, e_y = one;
      T* e_out = etile + t * C * W;
      for (Index c = 0; c < C; ++c) {
        const M is_y = yv == B(T(c));
        const B dexp = s * ((B::load_aligned(tile + c * W) - x_ref) + (delta - xsimd::select(is_y, my, zero)));
        const B e = simd::fast_exp(dexp);
        const M is_zero = dexp == zero;
        sum += xsimd::select(!is_y && !is_zero, e, zero);
        zeros += xsimd::select(!is_y && is_zero, one, zero);
        e_y = xsimd::select(is_y, e, e_y);
        if (k.grad) e.store_aligned(e_out + c * W);
      }
      e_y = xsimd::select(y_ref, one, e_y);
      const B dy = xsimd::select(y_ref, zero, s * ((xy - X) - my));
      // others = sum over c != y of exp(z_c - z_k) (>= 1 unless the target is the reference)
      const B others = sum + zeros;
      const B rest = xsimd::select(y_ref, others, (others - one) + e_y);
      const B inv = one / (one + rest);
      const B l = xsimd::max(xsimd::log1p(rest) - dy, zero);
      B value, derivative;
      if (p.batch_focus) {
        value = wy * l;
        derivative = B(p.batch_derivative);
      } else {
        // 1 - p_t = others / (1 + rest): no cancellation, no expm1
        simd::focus(l, others * inv, p.gamma, value, derivative);
        value = wy * value;
      }
      value = xsimd::select(counted, value, zero);
      value.store_aligned(values[t]);
      row_value += B(k.term_weights ? k.term_weights[t] : T(1)) * value;
      const B coef = B(p.scale) * wy * derivative * s;
      kk[t] = coef * inv;
      gy_total += coef * (((e_y - one) - rest) * inv);
    }
    for (int t = 0; t < k.n_terms; ++t)
      for (Index j = 0; j < W; ++j) lane_sums[t][j] += static_cast<Accum>(values[t][j]);
    if (k.row_values) {
      alignas(64) T rv[W];
      row_value.store_aligned(rv);
      for (Index j = 0; j < W; ++j) k.row_values[(i0 + j) * k.row_values_stride] = rv[j];
    }
    if (!k.grad) continue;

    // the gradient tile: sum_t kk_t e_t, the exact target entry, zero on ignored rows
    for (Index c = 0; c < C; ++c) {
      B gc = kk[0] * B::load_aligned(etile + c * W);
      for (int t = 1; t < k.n_terms; ++t) gc = xsimd::fma(kk[t], B::load_aligned(etile + (t * C + c) * W), gc);
      gc = xsimd::select(yv == B(T(c)), gy_total, gc);
      gc = xsimd::select(counted, gc, zero);
      gc.store_aligned(gtile + c * W);
    }
    bool g_adjacent = true;
    for (Index j = 1; j < W; ++j) g_adjacent &= goff[j] == goff[0] + j;
    if (g_adjacent) {
      for (Index c = 0; c < C; ++c) B::load_aligned(gtile + c * W).store_unaligned(k.grad + goff[0] + c * gcs);
    } else {
      for (Index c = 0; c < C; ++c)
        for (Index j = 0; j < W; ++j) k.grad[goff[j] + c * gcs] = gtile[c * W + j];
    }
  }
  for (int t = 0; t < k.n_terms; ++t)
    for (Index j = 0; j < W; ++j) sums[t] += lane_sums[t][j];
  if (i0 < end) ok &= scalar_rows(k, i0, end, sums);
  return ok;
}

}  // namespace detail
}  // namespace lmf
