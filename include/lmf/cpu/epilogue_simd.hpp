// lmf/cpu/epilogue_simd.hpp — the per-row epilogue on vectors, one row per lane: from a term's
// sweep sums, its value, its share of the sums and its gradient factors. One implementation for
// both SIMD kernels: the lanes kernel's rows are its lanes; the rows kernel sweeps up to W rows
// one by one and then finishes them together (the scalar epilogue — log1p, two divisions, an
// exponential, the focal modulation, double sums, per term — was a quarter of its time at C = 100).
// The formulas are plan.hpp's term_row and the scalar kernel's, on vectors.
//
// Re-included once per instruction set by isa_kernels.hpp (inside its namespace and target
// region, after simd_layer.hpp and simd_math.hpp): no include guard, no includes.

/// A term's per-class parameters at each lane's label: m_y, w_y, a_y, b_y and the gradient weight
/// T(w_y weight_scale grad_scale (1 - eps)). Lanes without a counted row (label < 0) get m 0, w 1,
/// a 1, b 0.
template <class T>
struct LabelParams {
  simd::batch<T> my, wy, gw, ay, by;
};

template <class T>
LMF_ALWAYS_INLINE LabelParams<T> label_params(const TermParams<T>& p, const Index* y) {
  using B = simd::batch<T>;
  auto at = [&](const T* v, T neutral) {
    return simd::lanes_from<T>([&](Index j) { return y[j] >= 0 ? v[y[j]] : neutral; });
  };
  LabelParams<T> q;
  q.my = p.m ? at(p.m, T(0)) : B(T(0));
  q.wy = p.w ? at(p.w, T(1)) : B(T(1));
  q.ay = p.a ? at(p.a, T(1)) : B(T(1));
  q.by = p.b ? at(p.b, T(0)) : B(T(0));
  // (in double, then rounded once, as term_row does)
  q.gw = p.w ? simd::lanes_from<T>([&](Index j) {
    return static_cast<T>(((y[j] >= 0 ? Accum(p.w[y[j]]) : Accum(1)) * p.weight_scale) * p.grad_scale *
                          Accum(p.one_minus_eps));
  })
             : B(static_cast<T>(p.weight_scale * p.grad_scale * Accum(p.one_minus_eps)));
  return q;
}

/// What a term's sweep found for each lane's row: the largest non-target's a_k x_k and b_k,
/// whether the target is the reference class instead, others = sum over c != y of
/// exp(z_c - z_ref), and wd = sum over c != y of w_c (z_c - z_ref) (label smoothing only; the
/// epilogue adds the target's w_y dy).
template <class T>
struct TermSums {
  simd::batch<T> ax_k, b_k, others, wd;
  simd::mask<T> y_ref;
};

/// Per-lane running sums of the terms' contributions (w_y phi times the value scale, in double),
/// added in lane order at the end (a fixed order). Unweighted terms add in double vectors;
/// weighted ones (or ones with the weight inside phi, or label smoothing) per lane.
template <class T>
struct LaneSums {
  static constexpr Index W = simd::width<T>();
  static constexpr Index DW = simd::width<Accum>();
  alignas(64) Accum lane[kMaxTerms][W] = {};
  simd::batch<Accum> acc[kMaxTerms][W / DW];
  LaneSums() {
    for (auto& term : acc)
      for (auto& v : term) v = simd::batch<Accum>(Accum(0));
  }
  void add_to(Accum* sums, int n_terms) const {
    for (int t = 0; t < n_terms; ++t) {
      alignas(64) Accum a[W];
      for (Index v = 0; v < W / DW; ++v) acc[t][v].store_aligned(a + v * DW);
      for (Index j = 0; j < W; ++j) sums[t] += lane[t][j] + a[j];  // one of the two is 0
    }
  }
};

/// The epilogue of term t for G groups of W rows, one row per lane: group g's labels at y[g * W ..]
/// (-1 where no counted row; counted[g] = y >= 0), xy[g] their target logits, in[g] what the
/// sweep found. Adds the term's weighted value to row_value[g], its target gradient entry to
/// gy_total[g] and its contribution to sums[g]; kk[g] = the factor of a_c e_c in the non-target
/// gradient entries. Each step runs for every group before the next, so that G independent
/// chains are in flight: the chain (an exponential, a division, log1p, the modulation) is long,
/// and one group at a time, as a call, kept the core waiting on it (inlined and interleaved, the
/// lanes kernel's LMF took 16-20% less time at C = 10 and 26-29% at C = 2; AMD EPYC, AVX2).
template <Index G, class T>
LMF_ALWAYS_INLINE void term_epilogue(const TermParams<T>& p, int t, T term_weight, const Index* y,
                                     const simd::mask<T>* counted, const simd::batch<T>* xy,
                                     const LabelParams<T>* q, const TermSums<T>* in, simd::batch<T>* row_value,
                                     simd::batch<T>* gy_total, LaneSums<T>* sums, simd::batch<T>* kk) {
  using B = simd::batch<T>;
  using DB = simd::batch<Accum>;
  constexpr Index W = simd::width<T>();
  const B zero(T(0)), one(T(1)), s(p.s);
  B dy[G], ey[G], rest[G], inv[G], l[G];
  B phi[G] = {}, derivative[G] = {};  // (zeroed: GCC cannot see that one of the two paths below sets each group)
  for (Index g = 0; g < G; ++g) {
    // dy = z_y - z_k with the target's margin (0 when the target is the reference: e_y = 1)
    B d = s * (((p.a ? q[g].ay * xy[g] : xy[g]) - in[g].ax_k) - q[g].my);
    if (p.b) d += q[g].by - in[g].b_k;
    dy[g] = simd::select(in[g].y_ref, zero, d);
  }
  for (Index g = 0; g < G; ++g) ey[g] = simd::select(in[g].y_ref, one, simd::fast_exp(dy[g]));
  for (Index g = 0; g < G; ++g) {
    // rest = sum over c != k of exp(z_c - z_k): others already holds the reference's own 1 when a
    // non-target is the reference (others >= 1 there; see docs/math.md on the accuracy)
    rest[g] = simd::select(in[g].y_ref, in[g].others, (in[g].others - one) + ey[g]);
    inv[g] = one / (one + rest[g]);
  }
  for (Index g = 0; g < G; ++g) l[g] = simd::max(simd::log1p_pos(rest[g], inv[g]) - dy[g], zero);
  if (p.weight_inside) {  // LDAM-DRW's focal: phi(w_y l), p = exp(-w_y l)
    bool inside_in_double[G];  // w_y l overflowed T in some lane of group g: phi(w_y l) in double
    B u[G];
    for (Index g = 0; g < G; ++g) {
      u[g] = q[g].wy * l[g];
      inside_in_double[g] = !simd::all(u[g] <= B(std::numeric_limits<T>::max()));
    }
    for (Index g = 0; g < G; ++g)  // (each group on its own: a row's bits never depend on its neighbours)
      if (!inside_in_double[g])
        simd::focus(u[g], simd::one_minus_exp_neg(u[g]), simd::fast_exp(-u[g]), p.gamma, phi[g], derivative[g]);
    for (Index g = 0; g < G; ++g) {
      // the term's value per lane, times (weight_scale value_scale), into the lane sums: in
      // double, from phi's double value where it was computed in double
      const Index* yg = y + g * W;
      alignas(64) T ph[W];
      if (!inside_in_double[g]) {
        phi[g].store_aligned(ph);
        for (Index j = 0; j < W; ++j)
          if (yg[j] >= 0) sums[g].lane[t][j] += (p.weight_scale * p.value_scale) * Accum(ph[j]);
        continue;
      }
      alignas(64) T ws[W], ls[W], de[W];
      q[g].wy.store_aligned(ws);
      l[g].store_aligned(ls);
      for (Index j = 0; j < W; ++j) {
        const math::Focus<Accum> fi = math::focus(Accum(ws[j]) * Accum(ls[j]), Accum(p.gamma));
        if (yg[j] >= 0) sums[g].lane[t][j] += (p.weight_scale * p.value_scale) * fi.value;
        ph[j] = static_cast<T>(fi.value);
        de[j] = static_cast<T>(fi.derivative);
      }
      phi[g] = B::load_aligned(ph);
      derivative[g] = B::load_aligned(de);
    }
  } else {
    // p_t = e_y / (1 + rest), 1 - p_t = others / (1 + rest): no cancellation, no expm1
    for (Index g = 0; g < G; ++g)
      simd::focus(l[g], in[g].others * inv[g], ey[g] * inv[g], p.gamma, phi[g], derivative[g]);
  }
  for (Index g = 0; g < G; ++g) {
    const Index* yg = y + g * W;
    // w_y * value_scale per lane, in double (0 on lanes without a row)
    auto w_value = [&](Index j) {
      return yg[j] < 0 ? Accum(0) : ((p.w ? Accum(p.w[yg[j]]) : Accum(1)) * p.weight_scale) * p.value_scale;
    };
    B value;  // the term's value per lane (its weight not applied)
    alignas(64) T phis[W];
    if (p.weight_inside) {
      value = phi[g];  // (its lane sums are added above)
    } else if (p.smooth != T(0)) {
      // sum_c w_c (logsumexp(z) - z_c), z_c - z_ref summed over every c
      const B qs = B(p.w_sum) * simd::log1p_pos(rest[g], inv[g]) - simd::fma(q[g].wy, dy[g], in[g].wd);
      value = B(p.one_minus_eps) * q[g].wy * l[g] + B(p.smooth) * qs;
      alignas(64) T ls[W], qv[W];
      l[g].store_aligned(ls);
      qs.store_aligned(qv);
      for (Index j = 0; j < W; ++j)
        sums[g].lane[t][j] +=
            w_value(j) * Accum(p.one_minus_eps) * Accum(ls[j]) +
            (yg[j] >= 0 ? (p.weight_scale * p.value_scale) * Accum(p.smooth) * Accum(qv[j]) : Accum(0));
    } else if (p.w) {
      value = q[g].wy * phi[g];
      phi[g].store_aligned(phis);
      for (Index j = 0; j < W; ++j) sums[g].lane[t][j] += w_value(j) * static_cast<Accum>(phis[j]);
    } else {  // the same products (weight_scale value_scale) phi, in double vectors (no row: 0)
      value = phi[g];
      const B counted_phi = simd::select(counted[g], phi[g], zero);
      const DB w_const(p.weight_scale * p.value_scale);
      if constexpr (std::is_same<T, float>::value) {
        DB lo, hi;
        simd::widen(counted_phi, lo, hi);
        sums[g].acc[t][0] += lo * w_const;
        sums[g].acc[t][1] += hi * w_const;
      } else {
        sums[g].acc[t][0] += counted_phi * w_const;
      }
    }
    row_value[g] += B(term_weight) * simd::select(counted[g], value, zero);
  }
  for (Index g = 0; g < G; ++g) {
    const B coef = q[g].gw * derivative[g] * s;
    const B target = ((ey[g] - one) - rest[g]) * inv[g];  // softmax_y - 1, exact in the confident limit
    if (p.smooth == T(0) && !p.a) {
      gy_total[g] = simd::fma(coef, target, gy_total[g]);
      kk[g] = coef * inv[g];
      continue;
    }
    // label smoothing: (eps / C) s a_c (W softmax_c - w_c); multipliers a_y
    const B mass(p.smooth_mass);
    const B gy = coef * target + (mass * (ey[g] * inv[g]) - B(p.smooth_grad) * q[g].wy);
    gy_total[g] = simd::fma(p.a ? q[g].ay : one, gy, gy_total[g]);
    kk[g] = (coef + mass) * inv[g];
  }
}
