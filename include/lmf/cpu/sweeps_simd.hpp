// lmf/cpu/sweeps_simd.hpp — the SIMD sweeps outside the softmax kernels: the logit range check
// of validation (validate.hpp), the sigmoid focal loss's line kernel and input check
// (sigmoid.hpp), and the exponential's throughput floor that bench/ measures.
//
// Re-included once per instruction set by isa_kernels.hpp (inside its namespace and target
// region, after simd_layer.hpp and simd_math.hpp): no include guard, no includes.

/// True if every element of the contiguous range [x, x + n) is within `limit` (SIMD sweep).
template <class T>
bool all_within_serial(const T* x, Index n, T limit) {
  using B = simd::batch<T>;
  constexpr Index W = simd::width<T>();
  const B lim(limit);
  auto ok = B(T(0)) <= lim;
  Index i = 0;
  for (; i + 4 * W <= n; i += 4 * W) {
    ok = ok && (simd::abs(B::load_unaligned(x + i)) <= lim) && (simd::abs(B::load_unaligned(x + i + W)) <= lim) &&
         (simd::abs(B::load_unaligned(x + i + 2 * W)) <= lim) && (simd::abs(B::load_unaligned(x + i + 3 * W)) <= lim);
  }
  bool result = simd::all(ok);
  for (; i < n; ++i) result &= std::abs(x[i]) <= limit;
  return result;
}

/// e_i = 2^x_i by the sweeps' fast_exp2, n a multiple of the SIMD width; returns the sum. Not
/// used by the losses: bench/ times it on data in cache as the throughput floor of one
/// exponential per logit, the unit in which docs/performance.md states the kernels' limits.
template <class T>
T exp_floor(const T* x, T* e, Index n) {
  using B = simd::batch<T>;
  constexpr Index W = simd::width<T>();
  B sum(T(0));
  for (Index i = 0; i + W <= n; i += W) {
    const B v = simd::fast_exp2(B::load_unaligned(x + i));
    v.store_unaligned(e + i);
    sum += v;
  }
  return simd::hadd(sum);
}

/// One line: n elements at x, t (and g, v), weights per element (w, LineMode::rows) or one weight
/// wc. Returns the sum of the values in double (lane sums added in lane order).
template <class T>
Accum sigmoid_line(const SigmoidParams<T>& p, const T* x, const T* t, T* g, T* v, Index n, const T* w, T wc,
                   bool simd_ok, Index sx, Index st, Index sg, Index sv) {
  Index j = 0;
  Accum total = 0;
  if (simd_ok) {
    using B = simd::batch<T>;
    constexpr Index W = simd::width<T>();
    const B one(T(1)), zero(T(0)), gamma(p.gamma), gs(p.grad_scale);
    const bool has_alpha = p.alpha >= T(0);
    const B alpha_slope(T(2) * p.alpha - T(1)), alpha_base(T(1) - p.alpha);
    B vsum(T(0));
    int pending = 0;
    for (; j + W <= n; j += W) {
      const B xv = B::load_unaligned(x + j), tv = B::load_unaligned(t + j);
      const B e = simd::fast_exp(-simd::abs(xv));
      const B inv = one / (one + e);
      const auto pos = xv >= zero;
      const B pr = simd::select(pos, inv, e * inv);
      const B pc = simd::select(pos, e * inv, inv);
      const B omt = one - tv;
      const B ce = simd::select(pos, xv * omt, -xv * tv) + simd::log1p_unit(e, inv);
      const B q = simd::fma(pr, omt, pc * tv);
      // q^gamma; for gamma >= 1 as q^(gamma - 1) q, so that the gradient's q^gamma / q needs no
      // division (below 1, q^(gamma - 1) is unbounded: divide by q where it is > 0)
      const bool split = p.gamma >= T(1);
      const B mod1 = !split || p.gamma == T(1) ? one : simd::modulation(q, p.gamma - T(1));
      const B mod = p.gamma == T(0) ? one : split ? mod1 * q : simd::modulation(q, p.gamma);
      B scale = w ? B::load_unaligned(w + j) : B(wc);
      if (has_alpha) scale *= simd::fma(alpha_slope, tv, alpha_base);  // alpha t + (1 - alpha)(1 - t)
      const B val = scale * (mod * ce);
      if (v) val.store_unaligned(v + j);
      // values are >= 0: W partial sums of at most 16 vectors each in T (relative error below
      // 16 eps), then added in double
      vsum += val;
      if (++pending == 16) {
        total += Accum(simd::hadd(vsum));
        vsum = B(T(0));
        pending = 0;
      }
      if (g) {
        B grad = mod * simd::fms(pr, omt, pc * tv);
        if (split) {
          grad = simd::fma(gamma * ce * mod1, pr * pc * (one - (tv + tv)), grad);
        } else if (p.gamma != T(0)) {
          const auto positive = q > zero;
          const B ratio = simd::select(positive, pr * pc * (one - (tv + tv)) / simd::select(positive, q, one), zero);
          grad = simd::fma(gamma * ce * mod, ratio, grad);
        }
        (gs * (scale * grad)).store_unaligned(g + j);
      }
    }
    total += Accum(simd::hadd(vsum));
  }
  for (; j < n; ++j) {
    const math::SigmoidFocal<T> r = math::sigmoid_focal(x[j * sx], t[j * st], p.alpha, p.gamma, w ? w[j] : wc);
    total += Accum(r.value);
    if (v) v[j * sv] = r.value;
    if (g) g[j * sg] = p.grad_scale * r.grad;
  }
  return total;
}

/// True if the n elements at x (step sx) are finite and those at t (step st) in [0, 1].
template <class T>
bool sigmoid_inputs_ok(const T* x, const T* t, Index n, Index sx, Index st) {
  Index j = 0;
  bool ok = true;
  if (sx == 1 && st == 1) {
    using B = simd::batch<T>;
    constexpr Index W = simd::width<T>();
    const B big(std::numeric_limits<T>::max()), zero(T(0)), one(T(1));
    auto good = zero <= one;  // all true
    for (; j + W <= n; j += W) {
      const B xv = B::load_unaligned(x + j), tv = B::load_unaligned(t + j);
      good = good && (simd::abs(xv) <= big) && (tv >= zero) && (tv <= one);  // NaN fails every compare
    }
    ok = simd::all(good);
  }
  for (; j < n; ++j) ok &= std::abs(x[j * sx]) <= std::numeric_limits<T>::max() && t[j * st] >= T(0) && t[j * st] <= T(1);
  return ok;
}

