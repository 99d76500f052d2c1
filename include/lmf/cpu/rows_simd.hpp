// lmf/cpu/rows_simd.hpp — the kernel for class-contiguous rows (row-major N x C, class stride
// 1) with many classes: each row is swept with SIMD batches along the classes.
//
// Per row: one sweep finds X = max over the non-target logits (and checks every logit against
// the limit) — ahead of the kernel, as the validation pass (row_maxima), when outputs are written;
// per term, the reference class k (the target, X's class, or — for terms with
// per-class multipliers a or offsets b — the largest s a_c x_c + b_c, found by one more sweep),
// then one sweep computes e_c = exp(z_c - z_k) with the exponent written as a difference of raw
// logits (math::adjusted_difference), summing them (and, for label smoothing, sum_c w_c (z_c -
// z_k)) and keeping a_c e_c in a row-sized scratch when a gradient is wanted; a last sweep writes
// g_c = sum_t k_t a_c e_{t,c} (minus label smoothing's constant part), and the target entry is
// set from its exact formula. Only the vector that holds the target and the last C mod W
// classes (masked loads) are masked. The kernel reads the logits from memory once (the later
// sweeps hit cache) and writes the gradient once; the exponentials of all plain terms come from
// one sweep.
//
// Re-included once per instruction set by isa_kernels.hpp (inside its namespace and target
// region, after simd_layer.hpp, simd_math.hpp and epilogue_simd.hpp): no include guard, no includes.

/// A term's reference class k for one row (see the header comment): the largest non-target's
/// adjusted logit a_k x_k and offset b_k, and whether the target is the reference instead; the
/// exponents are z_c - z_k = s ((a_c x_c - ax_ref) + delta) + (b_c - b_ref).
template <class T>
struct RowRef {
  T ax_k, b_k;
  T ax_ref, b_ref, delta;
  bool y_ref;
};

/// Sweep 2 of one row for NT terms at once (the logits are loaded once): e_c = exp(z_c - z_k) for
/// c != y, others[t] = their sum, wd[t] = sum over c != y of w_c (z_c - z_k) (label smoothing;
/// not Plain only; the epilogue adds the target's w_y dy) and, when Grad, a_c e_c in e_out[t].
/// Plain: no a, no b, no smoothing (LMF's terms, CE, focal, LDAM), which leaves three operations
/// and the exponential per class and term. The template flags keep the loops free of branches;
/// only the vector holding the target is masked.
template <int NT, bool Plain, bool Grad, class T>
void exp_sweep(const TermParams<T>* p, const RowRef<T>* ref, const T* x, Index C, Index y, T* const* e_out, T* others,
               T* wd_out) {
  using B = simd::batch<T>;
  constexpr Index W = simd::width<T>();
  const Index C_vec = C - C % W;
  alignas(64) T iota_arr[W];
  for (Index j = 0; j < W; ++j) iota_arr[j] = T(j);
  const B iota = B::load_aligned(iota_arr), zero(T(0));
  // the parameters in locals: stores to e_out could alias them, which made the compiler reload
  // them in every iteration
  B s[NT], r[NT], dv[NT], bref[NT], sum[NT], wd[NT];
  const T *a[NT], *b[NT], *w[NT];
  bool smooth[NT];
  for (int t = 0; t < NT; ++t) {
    s[t] = B(simd::exponent_scale(p[t].s)), r[t] = B(ref[t].ax_ref), dv[t] = B(ref[t].delta), bref[t] = B(ref[t].b_ref);
    sum[t] = zero, wd[t] = zero;
    a[t] = p[t].a, b[t] = p[t].b, w[t] = p[t].w, smooth[t] = p[t].smooth != T(0);
  }
  // one vector of classes c.. : v the logits, load(ptr, pad) a per-class parameter's vector,
  // keep the lanes that count (Masked only), store(t, e) the gradient sweep's a_c e_c
  auto chunk = [&](const B& v, auto load, auto masked, const auto& keep, auto store) {
    for (int t = 0; t < NT; ++t) {
      B d;
      if constexpr (Plain) {
        d = s[t] * ((v - r[t]) + dv[t]);
      } else {
        const B av = a[t] ? load(a[t], T(1)) * v : v;
        d = s[t] * ((av - r[t]) + dv[t]);
        if (b[t]) d = simd::fma(load(b[t], T(0)) - bref[t], B(simd::kLog2e<T>), d);
      }
      const B e = simd::fast_exp2(d);
      if constexpr (decltype(masked)::value) {
        sum[t] += simd::select(keep, e, zero);
      } else {
        sum[t] += e;
      }
      if constexpr (!Plain) {
        if (smooth[t]) {
          const B wdd = w[t] ? load(w[t], T(0)) * d : d;
          if constexpr (decltype(masked)::value) {
            wd[t] += simd::select(keep, wdd, zero);
          } else {
            wd[t] += wdd;
          }
        }
      }
      if constexpr (Grad) store(t, Plain || !a[t] ? e : load(a[t], T(1)) * e);
    }
  };
  const std::false_type unmasked{};
  const std::true_type masked{};
  const auto none = iota == iota;
  auto load_at = [](Index c) { return [c](const T* q, T) { return B::load_unaligned(q + c); }; };
  auto store_at = [&](Index c) { return [&, c](int t, const B& e) { e.store_unaligned(e_out[t] + c); }; };
  auto run = [&](Index c0, Index c1) {
    for (Index c = c0; c < c1; c += W) chunk(B::load_unaligned(x + c), load_at(c), unmasked, none, store_at(c));
  };
  const Index y_chunk = y < C_vec ? y - y % W : C_vec;
  run(0, y_chunk);
  if (y_chunk < C_vec) {
    chunk(B::load_unaligned(x + y_chunk), load_at(y_chunk), masked, iota != B(T(y - y_chunk)), store_at(y_chunk));
    run(y_chunk + W, C_vec);
  }
  if (C_vec < C) {  // the last C % W classes: one padded vector (scalar exps cost far more)
    const Index rem = C - C_vec;
    auto tail = [&](const T* q, T pad) { return simd::load_partial(q + C_vec, rem, pad); };
    const auto keep = (iota < B(T(rem))) && (iota + B(T(C_vec)) != B(T(y)));
    chunk(tail(x, T(0)), tail, masked, keep, [&](int t, const B& e) { simd::store_partial(e, e_out[t] + C_vec, rem); });
  }
  for (int t = 0; t < NT; ++t) {
    others[t] = simd::hadd(sum[t]);
    wd_out[t] = Plain ? T(0) : simd::hadd(wd[t]) * simd::kLn2<T>;  // (back to natural units)
  }
}

/// Sweep 1 of a row: X = max_{c != y} x_c (-inf if C = 1), and whether |x_c| <= limit for all
/// c. Only the chunk that holds the target and the last C % W classes need masks.
template <class T>
bool row_scan(const T* x, Index C, Index y, T lim, T& X) {
  using B = simd::batch<T>;
  constexpr Index W = simd::width<T>();
  const Index C_vec = C - C % W;
  alignas(64) T iota_arr[W];
  for (Index j = 0; j < W; ++j) iota_arr[j] = T(j);
  const B iota = B::load_aligned(iota_arr), limit(lim), neg_inf(-std::numeric_limits<T>::infinity());
  const Index y_chunk = y < C_vec ? y - y % W : C_vec;
  B vmax(neg_inf);
  auto in_range = iota == iota;  // all true
  auto sweep = [&](Index c0, Index c1) {
    for (Index c = c0; c < c1; c += W) {
      const B v = B::load_unaligned(x + c);
      in_range = in_range && (simd::abs(v) <= limit);
      vmax = simd::max(vmax, v);
    }
  };
  sweep(0, y_chunk);
  if (y_chunk < C_vec) {
    const B v = B::load_unaligned(x + y_chunk);
    in_range = in_range && (simd::abs(v) <= limit);
    vmax = simd::max(vmax, simd::select(iota == B(T(y - y_chunk)), neg_inf, v));
    sweep(y_chunk + W, C_vec);
  }
  if (C_vec < C) {  // the last C % W classes: one masked load, padded with 0
    const Index rem = C - C_vec;
    const B v = simd::load_partial(x + C_vec, rem, T(0));
    in_range = in_range && (simd::abs(v) <= limit);
    vmax = simd::max(vmax, simd::select((iota < B(T(rem))) && (iota != B(T(y - C_vec))), v, neg_inf));
  }
  X = simd::hmax(vmax);
  return simd::all(in_range);
}

/// The validation pass of the rows kernel (dispatch.hpp, step 4): row_scan on the counted rows of
/// [begin, end), X_i into X[2 i] and the target logit x_{i y_i} into X[2 i + 1]; false if a
/// counted row has a logit beyond k.limit (or NaN). The kernel then reads both instead of
/// sweeping the row again (one pass over the logits fewer) and of a load that would be its first,
/// cache-missing touch of the row (C = 100: 1.64 -> 1.58 ns/logit).
template <class T, class L>
bool row_maxima(const KernelArgs<T, L>& k, Index begin, Index end, T* X) {
  bool ok = true;
  for (Index i = begin; i < end; ++i) {
    const std::int64_t label = static_cast<std::int64_t>(k.labels[i * k.label_stride]);
    if (label == k.ignore_index) continue;
    const T* x = k.x + k.lx.row_offset(i);
    ok &= row_scan(x, k.lx.classes, static_cast<Index>(label), k.limit, X[2 * i]);
    X[2 * i + 1] = x[label];
  }
  return ok;
}

/// Rows kernel over rows [begin, end); class_stride must be 1 (and 1 for the gradient).
/// scratch: rows_scratch_size<T>(C, n_terms) entries.
///
/// rows_in_flight(C, n_terms, W) rows are in flight (for float LMF W up to C = 256 with AVX-512,
/// fewer as C grows, at least 2): each phase below runs for all of them before the next, so the
/// out-of-order core overlaps one row's latency-bound steps (the horizontal max and sums) with
/// the others', and the per-row epilogue (log1p, divisions, exponential, focal modulation, per
/// term) runs once for all of them, one row per lane (epilogue_simd.hpp, shared with the lanes
/// kernel). At C ~ 100 those steps were most of a row's time.
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
  const T neg_inf = -std::numeric_limits<T>::infinity();
  bool ok = true;
  bool any_smooth = false, plain = true;
  for (int t = 0; t < k.n_terms; ++t) {
    any_smooth |= k.terms[t].smooth != T(0);
    plain &= !k.terms[t].a && !k.terms[t].b && k.terms[t].smooth == T(0);
  }

  struct Row {
    const T* x;
    T* g;
    T* e;  // this row's scratch: a_c e_{t,c} at e + t C
    Index i, y;
    T X, xy;
    RowRef<T> refs[kMaxTerms];
    T others[kMaxTerms], wd_sum[kMaxTerms];
  };

  // phase 1: the row's label (an ignored row is written here and leaves: y = -1), X, the largest
  // non-target logit, and x_y (sweep 1, unless the validation pass found both)
  auto scan = [&](Row& r, Index i, T* e) {
    r.i = i, r.e = e;
    r.x = k.x + lx.row_offset(i);
    r.g = k.grad ? k.grad + k.lg.row_offset(i) : nullptr;
    const std::int64_t label = static_cast<std::int64_t>(k.labels[i * k.label_stride]);
    if (label == k.ignore_index) {
      if (r.g) {
        for (Index c = 0; c < C_vec; c += W) B(T(0)).store_unaligned(r.g + c);
        if (C_vec < C) simd::store_partial(B(T(0)), r.g + C_vec, C - C_vec);
      }
      if (k.row_values) k.row_values[i * k.row_values_stride] = T(0);
      r.y = -1;
      return;
    }
    const Index y = r.y = static_cast<Index>(label);
    if (k.row_max) {
      r.X = k.row_max[2 * i];  // found by the validation pass (row_maxima)
      r.xy = k.row_max[2 * i + 1];
    } else {
      ok &= row_scan(r.x, C, y, k.limit, r.X);
      r.xy = r.x[y];
    }
  };

  // phase 2: per term, the reference class k of its exponents: the target if its adjusted logit
  // is the row maximum, else the largest non-target (X for terms without a and b, else found by
  // one more sweep)
  auto reference = [&](Row& r) {
    const T* x = r.x;
    const Index y = r.y;
    const Index y_chunk = y < C_vec ? y - y % W : C_vec;
    for (int t = 0; t < k.n_terms; ++t) {
      const TermParams<T>& p = k.terms[t];
      const T my = p.m ? p.m[y] : T(0);
      const T ay = p.a ? p.a[y] : T(1), by = p.b ? p.b[y] : T(0);
      const T ax_y = ay * r.xy;
      T ax_k = r.X, b_k = T(0);
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
      r.refs[t] = {ax_k, b_k, y_ref ? ax_y : ax_k, y_ref ? by : b_k, y_ref ? my : T(0), y_ref};
    }
  };

  // phase 3, sweep 2: e_c = exp(z_c - z_k) for c != y, summed into `others` (when a non-target
  // is the reference, its own e = 1, exactly, is in it); a_c e_c kept for the gradient sweep.
  // LMF's two terms in one sweep.
  const bool grad = k.grad != nullptr;
  // The last term's a_c e_c go straight into the row's gradient, which the gradient sweep then
  // updates in place: the gradient's cache lines are fetched during this compute-bound sweep
  // rather than during the memory-bound last one. (In place, g = x: the last sweep reads each
  // logit before it writes there, and nothing reads the row's logits after it.)
  auto exps = [&](Row& r) {
    T* out[kMaxTerms];
    for (int t = 0; t < k.n_terms; ++t) out[t] = t + 1 == k.n_terms ? r.g : r.e + t * C;
    if (plain && k.n_terms == 2) {
      (grad ? exp_sweep<2, true, true, T> : exp_sweep<2, true, false, T>)(k.terms, r.refs, r.x, C, r.y, out, r.others, r.wd_sum);
      return;
    }
    const auto sweep = plain ? (grad ? exp_sweep<1, true, true, T> : exp_sweep<1, true, false, T>)
                             : (grad ? exp_sweep<1, false, true, T> : exp_sweep<1, false, false, T>);
    for (int t = 0; t < k.n_terms; ++t)
      sweep(k.terms + t, r.refs + t, r.x, C, r.y, out + t, r.others + t, r.wd_sum + t);
  };

  // phase 4: the per-row epilogue of the rows in flight, one per lane: each term's value, sum and
  // gradient factors (kk[t][j] for row j's non-targets, gy[j] its target entry). Lanes without a
  // counted row get neutral numbers (finite: they are computed, then discarded).
  LaneSums<T> lane_sums;
  alignas(64) T kk[kMaxTerms][W], gy[W];
  auto epilogue = [&](const Row* rows, Index n) {
    alignas(64) Index y[W];
    for (Index j = 0; j < W; ++j) y[j] = j < n ? rows[j].y : Index(-1);
    // a lane's value, or `neutral` without a counted row (built in registers: lanes_from)
    auto lanes = [&](auto of, T neutral) {
      return simd::lanes_from<T>([&](Index j) { return y[j] >= 0 ? of(rows[j]) : neutral; });
    };
    const auto counted = simd::lanes_from<T>([&](Index j) { return T(y[j]); }) >= B(T(0));
    const B xyv = lanes([](const Row& r) { return r.xy; }, T(0));
    B row_value(T(0)), gy_total(T(0));
    for (int t = 0; t < k.n_terms; ++t) {
      const TermParams<T>& p = k.terms[t];
      TermSums<T> sums_t;
      sums_t.ax_k = lanes([t](const Row& r) { return r.refs[t].ax_k; }, T(0));
      sums_t.b_k = lanes([t](const Row& r) { return r.refs[t].b_k; }, T(0));
      sums_t.others = lanes([t](const Row& r) { return r.others[t]; }, T(1));
      sums_t.wd = lanes([t](const Row& r) { return r.wd_sum[t]; }, T(0));
      sums_t.y_ref = lanes([t](const Row& r) { return r.refs[t].y_ref ? T(1) : T(0); }, T(1)) != B(T(0));
      const T tw = k.term_weights ? k.term_weights[t] : T(1);
      const LabelParams<T> q = label_params(p, y);
      B kt;
      term_epilogue<1>(p, t, tw, y, &counted, &xyv, &q, &sums_t, &row_value, &gy_total, &lane_sums, &kt);
      kt.store_aligned(kk[t]);
    }
    gy_total.store_aligned(gy);
    if (k.row_values) {
      alignas(64) T rv[W];
      row_value.store_aligned(rv);
      for (Index j = 0; j < n; ++j)
        if (y[j] >= 0) k.row_values[rows[j].i * k.row_values_stride] = rv[j];
    }
  };

  // phase 5, sweep 3: the gradient sum_t k_t a_c e_{t,c} (scratch holds a_c e_{t,c}), minus label
  // smoothing's (eps / C) s a_c w_c; the target entry from its exact formula
  auto write = [&](const Row& r, Index j) {
    T* g = r.g;  // holds the last term's a_c e_c (exps)
    const T* e0 = r.e;
    const int last = k.n_terms - 1;
    if (k.n_terms == 1) {
      const B k0(kk[0][j]);
      for (Index c = 0; c < C_vec; c += W) (k0 * B::load_unaligned(g + c)).store_unaligned(g + c);
      if (C_vec < C) simd::store_partial(k0 * simd::load_partial(g + C_vec, C - C_vec, T(0)), g + C_vec, C - C_vec);
    } else if (k.n_terms == 2) {
      const B k0(kk[0][j]), k1(kk[1][j]);
      for (Index c = 0; c < C_vec; c += W)
        simd::fma(k1, B::load_unaligned(g + c), k0 * B::load_unaligned(e0 + c)).store_unaligned(g + c);
      if (C_vec < C) {
        const Index rem = C - C_vec;
        simd::store_partial(simd::fma(k1, simd::load_partial(g + C_vec, rem, T(0)), k0 * simd::load_partial(e0 + C_vec, rem, T(0))),
                            g + C_vec, rem);
      }
    } else {
      for (Index c = 0; c < C_vec; c += W) {
        B acc = B(kk[0][j]) * B::load_unaligned(e0 + c);
        for (int t = 1; t < last; ++t) acc = simd::fma(B(kk[t][j]), B::load_unaligned(e0 + t * C + c), acc);
        simd::fma(B(kk[last][j]), B::load_unaligned(g + c), acc).store_unaligned(g + c);
      }
      for (Index c = C_vec; c < C; ++c) {
        T acc = kk[0][j] * e0[c];
        for (int t = 1; t < last; ++t) acc += kk[t][j] * e0[t * C + c];
        g[c] = acc + kk[last][j] * g[c];
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
    g[r.y] = gy[j];
  };

  const Index in_flight = rows_in_flight<T>(C, k.n_terms, W);
  Row rows[W];
  for (Index i0 = begin; i0 < end; i0 += in_flight) {
    const Index n = end - i0 < in_flight ? end - i0 : in_flight;
    for (Index j = 0; j < n; ++j) scan(rows[j], i0 + j, scratch + j * k.n_terms * C);
    for (Index j = 0; j < n; ++j)
      if (rows[j].y >= 0) reference(rows[j]);
    for (Index j = 0; j < n; ++j)
      if (rows[j].y >= 0) exps(rows[j]);
    epilogue(rows, n);
    if (grad)
      for (Index j = 0; j < n; ++j)
        if (rows[j].y >= 0) write(rows[j], j);
  }
  lane_sums.add_to(sums, k.n_terms);
  return ok;
}
