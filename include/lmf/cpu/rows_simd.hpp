// lmf/cpu/rows_simd.hpp — the kernel for class-contiguous rows (row-major N x C, class stride
// 1) with many classes: each row is swept with SIMD batches along the classes.
//
// Per row: one sweep finds X = max over the non-target logits (and checks every logit against
// the limit); per term, the reference class k (the target, X's class, or — for terms with
// per-class multipliers a or offsets b — the largest s a_c x_c + b_c, found by one more sweep),
// then one sweep computes e_c = exp(z_c - z_k) with the exponent written as a difference of raw
// logits (math::adjusted_difference), summing them (and, for label smoothing, sum_c w_c (z_c -
// z_k)) and keeping a_c e_c in a row-sized scratch when a gradient is wanted; a last sweep writes
// g_c = sum_t k_t a_c e_{t,c} (minus label smoothing's constant part), and the target entry is
// set from its exact formula. Only the vector that holds the target is masked. The logits are
// read from memory once (the later sweeps hit cache) and the gradient written once.
//
// Re-included once per instruction set by isa_kernels.hpp (inside its namespace and target
// region, after simd_layer.hpp and simd_math.hpp): no include guard, no includes.

/// What one term contributes to one row: its value (w_y phi, for per-row outputs), its share of
/// the term's sum (times value_scale, in double), the gradient factor of the non-target classes
/// (times e_c) and the target's gradient entry (before the factor a_y).
template <class T>
struct RowTerm {
  T value;
  Accum contribution;
  T k, g_target;
};

/// From rest, others (see below), dy, e_y and the term's parameters: the term's l, value and
/// gradient factors for one row (the per-row epilogue of the rows kernel; the lanes kernel has the
/// same formulas on vectors). wd = sum_c w_c (z_c - z_k), needed for label smoothing only.
template <class T>
RowTerm<T> finish_row(const TermParams<T>& p, T wy, T rest, T others, T dy, T e_y, T wd) {
  // math::cross_entropy_from with lmf's own float log1p (simd::log1p_pos: glibc's log1pf cost
  // 17% of LMF at C = 100); double keeps std::log1p
  const T l0 = simd::log1p_pos(rest) - dy;
  const T l = l0 > T(0) ? l0 : T(0);
  const T inv = T(1) / (T(1) + rest);
  // p_t = e_y / (1 + rest), 1 - p_t = others / (1 + rest): neither from the other
  const TermRow<T> r = term_row(p, wy, l, rest, wd, [&] { return math::focus(l, others * inv, e_y * inv, p.gamma); });
  const T coef = r.coef;
  return {r.value, r.contribution, (coef + p.smooth_mass) * inv,
          coef * math::softmax_minus_onehot(e_y, true, rest, inv) + p.smooth_mass * (e_y * inv) - p.smooth_grad * wy};
}

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
      in_range = in_range && (simd::abs(v) <= limit);
      vmax = simd::max(vmax, c == y_chunk ? simd::select(iota == B(T(y - c)), B(neg_inf), v) : v);
    }
    T X = simd::hmax(vmax);
    for (Index c = C_vec; c < C; ++c) {
      ok &= std::abs(x[c]) <= k.limit;
      if (c != y && x[c] > X) X = x[c];
    }
    ok &= simd::all(in_range);
    const T xy = x[y];

    T row_value = T(0);
    RowTerm<T> parts[kMaxTerms];
    bool any_smooth = false;
    for (int t = 0; t < k.n_terms; ++t) {
      const TermParams<T>& p = k.terms[t];
      any_smooth |= p.smooth != T(0);
      const T my = p.m ? p.m[y] : T(0);
      const T ay = p.a ? p.a[y] : T(1), by = p.b ? p.b[y] : T(0);
      const T ax_y = ay * xy;
      // the reference class k of the exponents z_c - z_k: the target if its adjusted logit is the
      // row maximum, else the largest non-target (X for terms without a and b, else found below)
      T ax_k = X, b_k = T(0);
      if (p.a || p.b) {
        // max over c != y of s a_c x_c + b_c, and its class (the lowest of equal maxima)
        const B s(p.s);
        B kmax(neg_inf), kidx(T(0));
        for (Index c = 0; c < C_vec; c += W) {
          const B v = B::load_unaligned(x + c);
          const B av = p.a ? B::load_unaligned(p.a + c) * v : v;
          B key = p.b ? simd::fma(s, av, B::load_unaligned(p.b + c)) : s * av;
          if (c == y_chunk) key = simd::select(iota == B(T(y - c)), B(neg_inf), key);
          const auto gt = key > kmax;
          kmax = simd::select(gt, key, kmax);
          kidx = simd::select(gt, iota + B(T(c)), kidx);
        }
        alignas(64) T keys[W], idx[W];
        kmax.store_aligned(keys);
        kidx.store_aligned(idx);
        T best = neg_inf;
        Index top = -1;
        for (Index j = 0; j < W; ++j)
          if (keys[j] > best || (keys[j] == best && keys[j] > neg_inf && Index(idx[j]) < top))
            best = keys[j], top = Index(idx[j]);
        for (Index c = C_vec; c < C; ++c) {
          if (c == y) continue;
          const T key = p.s * ((p.a ? p.a[c] : T(1)) * x[c]) + (p.b ? p.b[c] : T(0));
          if (key > best || top < 0) best = key, top = c;
        }
        if (top < 0) top = y == 0 ? 1 : 0;  // (C >= 2: some non-target class exists)
        ax_k = (p.a ? p.a[top] : T(1)) * x[top];
        b_k = p.b ? p.b[top] : T(0);
      }
      const bool y_ref = p.s * (ax_y - my) + by >= p.s * ax_k + b_k;
      const T ax_ref = y_ref ? ax_y : ax_k, b_ref = y_ref ? by : b_k, delta = y_ref ? my : T(0);
      // sweep 2: e_c = exp(z_c - z_k) = exp(s ((a_c x_c - ax_ref) + delta) + (b_c - b_ref)) for
      // c != y; `others` = their sum. When a non-target is the reference, its own e = 1 (exactly)
      // is in `others`. The gradient sweep gets a_c e_c.
      B sum(T(0)), wd(T(0));
      const B s(p.s), ref(ax_ref), dv(delta), bref(b_ref);
      T* e_out = scratch + t * C;
      auto exponent = [&](const B& v, Index c) {
        if (!p.a && !p.b) return s * ((v - ref) + dv);
        const B av = p.a ? B::load_unaligned(p.a + c) * v : v;
        const B d = s * ((av - ref) + dv);
        return p.b ? d + (B::load_unaligned(p.b + c) - bref) : d;
      };
      for (Index c = 0; c < C_vec; c += W) {
        const B d = exponent(B::load_unaligned(x + c), c);
        const B e = simd::fast_exp(d);
        if (c == y_chunk) {
          const auto not_y = iota != B(T(y - c));
          sum += simd::select(not_y, e, B(T(0)));
          if (p.smooth != T(0)) wd += simd::select(not_y, p.w ? B::load_unaligned(p.w + c) * d : d, B(T(0)));
        } else {
          sum += e;
          if (p.smooth != T(0)) wd += p.w ? B::load_unaligned(p.w + c) * d : d;
        }
        if (g) (p.a ? B::load_unaligned(p.a + c) * e : e).store_unaligned(e_out + c);
      }
      if (C_vec < C) {  // the last C % W classes: one padded vector (scalar exps cost far more)
        const Index rem = C - C_vec;
        auto tail = [&](const T* v, T pad) { return simd::lanes_from<T>([&](Index j) { return j < rem ? v[C_vec + j] : pad; }); };
        const B v = tail(x, ax_ref);
        const B av = p.a ? tail(p.a, T(1)) * v : v;
        const B d = p.b ? s * ((av - ref) + dv) + (tail(p.b, T(0)) - bref) : s * ((av - ref) + dv);
        const B e = simd::fast_exp(d);
        const auto keep = (iota < B(T(rem))) && (iota + B(T(C_vec)) != yv);
        sum += simd::select(keep, e, B(T(0)));
        if (p.smooth != T(0)) wd += simd::select(keep, p.w ? tail(p.w, T(0)) * d : d, B(T(0)));
        if (g) {
          alignas(64) T lanes[W];
          (p.a ? tail(p.a, T(1)) * e : e).store_aligned(lanes);
          for (Index j = 0; j < rem; ++j) e_out[C_vec + j] = lanes[j];
        }
      }
      const T others = simd::hadd(sum);
      T dy = T(0), e_y = T(1), rest = others;
      if (!y_ref) {
        dy = math::adjusted_difference(ax_y, ax_k, my, T(0), by, b_k, p.s);
        e_y = std::exp(dy);
        rest = (others - T(1)) + e_y;  // others >= 1 here; see docs/math.md on its accuracy
      }
      const T wy = p.w ? p.w[y] : T(1);
      const T wd_row = p.smooth != T(0) ? simd::hadd(wd) + wy * dy : T(0);
      parts[t] = finish_row(p, wy, rest, others, dy, e_y, wd_row);
      parts[t].g_target *= ay;
      sums[t] += parts[t].contribution;
      if (k.row_values) row_value += k.term_weights[t] * parts[t].value;
    }
    if (k.row_values) k.row_values[i * k.row_values_stride] = row_value;
    if (!g) continue;

    // sweep 3: the gradient sum_t k_t a_c e_{t,c} (scratch holds a_c e_{t,c}), minus label
    // smoothing's (eps / C) s a_c w_c
    if (k.n_terms == 1) {
      const B k0(parts[0].k);
      for (Index c = 0; c < C_vec; c += W) (k0 * B::load_unaligned(scratch + c)).store_unaligned(g + c);
      for (Index c = C_vec; c < C; ++c) g[c] = parts[0].k * scratch[c];
    } else if (k.n_terms == 2) {
      const B k0(parts[0].k), k1(parts[1].k);
      const T* e1 = scratch + C;
      for (Index c = 0; c < C_vec; c += W)
        simd::fma(k1, B::load_unaligned(e1 + c), k0 * B::load_unaligned(scratch + c)).store_unaligned(g + c);
      for (Index c = C_vec; c < C; ++c) g[c] = parts[0].k * scratch[c] + parts[1].k * e1[c];
    } else {
      for (Index c = 0; c < C_vec; c += W) {
        B acc = B(parts[0].k) * B::load_unaligned(scratch + c);
        for (int t = 1; t < k.n_terms; ++t) acc = simd::fma(B(parts[t].k), B::load_unaligned(scratch + t * C + c), acc);
        acc.store_unaligned(g + c);
      }
      for (Index c = C_vec; c < C; ++c) {
        T acc = parts[0].k * scratch[c];
        for (int t = 1; t < k.n_terms; ++t) acc += parts[t].k * scratch[t * C + c];
        g[c] = acc;
      }
    }
    if (any_smooth) {
      for (int t = 0; t < k.n_terms; ++t) {
        const TermParams<T>& p = k.terms[t];
        if (p.smooth == T(0)) continue;
        const B sg(p.smooth_grad);
        for (Index c = 0; c < C_vec; c += W) {
          B aw = p.w ? B::load_unaligned(p.w + c) : B(T(1));
          if (p.a) aw *= B::load_unaligned(p.a + c);
          (B::load_unaligned(g + c) - sg * aw).store_unaligned(g + c);
        }
        for (Index c = C_vec; c < C; ++c) g[c] -= p.smooth_grad * (p.w ? p.w[c] : T(1)) * (p.a ? p.a[c] : T(1));
      }
    }
    T gy = T(0);
    for (int t = 0; t < k.n_terms; ++t) gy += parts[t].g_target;
    g[y] = gy;
  }
  return ok;
}
