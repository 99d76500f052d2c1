// lmf/cpu/lanes_simd.hpp — the kernel for few classes and class-strided layouts: G x W rows at
// once, one row per SIMD lane, looping over the classes.
//
// With C = 2..16 a row fills less than one or two vectors, and sweeping along it wastes most
// lanes on horizontal reductions. Here G x W rows (4 x 8 floats with AVX2) are copied into a
// class-major tile — one contiguous vector load per class where the rows are adjacent in memory
// (column-major N x C, (N, C, d1, ...) pixels), 4 x 4 blocks transposed in SSE registers where
// the classes are contiguous and the rows evenly spaced (row-major N x C, padded rows), element
// by element otherwise — and every step of the row math (max, exponentials, log1p, focal
// modulation) runs on whole vectors. The gradient tile is written back the same way. Each logit
// is read once and each gradient entry written once; rows past the last full iteration go to the
// scalar kernel. The G groups of W rows per iteration (lane_groups, isa_kernels.hpp) give the
// out-of-order core independent chains of row math (measured: two groups 1.3-1.6x faster than
// one at C = 2 and 10; four than two: see lane_groups). Which lanes hold a row's target is
// computed once per tile (the maxima pass) and kept as a tile of masks for the later passes.
//
// Terms with per-class multipliers a or offsets b find their reference class per lane with one
// more pass over the tile (a_c and b_c are the same for every lane: broadcasts).
//
// Re-included once per instruction set by isa_kernels.hpp (inside its namespace and target
// region, after simd_layer.hpp, simd_math.hpp and epilogue_simd.hpp): no include guard, no includes.

/// dst = the transpose of src: dst[c * ds + j] = src[j * ss + c] for j < m, c < n. Generic
/// version: element by element.
template <class T>
void transpose(const T* src, Index ss, Index m, Index n, T* dst, Index ds) {
  for (Index j = 0; j < m; ++j)
    for (Index c = 0; c < n; ++c) dst[c * ds + j] = src[j * ss + c];
}

#if defined(__SSE2__)
// The same by 4 x 4 blocks of floats transposed in SSE registers (2 x 2 for double; every
// x86-64 CPU has SSE2, and with AVX the compiler encodes them as VEX): 3 instructions per 4
// values against 4 scalar moves and index arithmetic per value, which were 27% of the lanes
// kernel's time at C = 10 with AVX-512. Blocks start at 0, 4, 8, ... along each dimension and,
// where 4 does not divide it, at its size - 4: that last block overlaps the one before and
// writes some entries twice, with the same value.
inline void transpose(const float* src, Index ss, Index m, Index n, float* dst, Index ds) {
  if (m < 4 || n < 4) return transpose<float>(src, ss, m, n, dst, ds);
  for (Index j0 = 0; j0 < m; j0 += 4) {
    const Index j = j0 + 4 <= m ? j0 : m - 4;
    for (Index c0 = 0; c0 < n; c0 += 4) {
      const Index c = c0 + 4 <= n ? c0 : n - 4;
      const float* in = src + j * ss + c;
      float* out = dst + c * ds + j;
      __m128 r0 = _mm_loadu_ps(in), r1 = _mm_loadu_ps(in + ss), r2 = _mm_loadu_ps(in + 2 * ss),
             r3 = _mm_loadu_ps(in + 3 * ss);
      _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
      _mm_storeu_ps(out, r0);
      _mm_storeu_ps(out + ds, r1);
      _mm_storeu_ps(out + 2 * ds, r2);
      _mm_storeu_ps(out + 3 * ds, r3);
    }
  }
}
inline void transpose(const double* src, Index ss, Index m, Index n, double* dst, Index ds) {
  if (m < 2 || n < 2) return transpose<double>(src, ss, m, n, dst, ds);
  for (Index j0 = 0; j0 < m; j0 += 2) {
    const Index j = j0 + 2 <= m ? j0 : m - 2;
    for (Index c0 = 0; c0 < n; c0 += 2) {
      const Index c = c0 + 2 <= n ? c0 : n - 2;
      const __m128d r0 = _mm_loadu_pd(src + j * ss + c), r1 = _mm_loadu_pd(src + (j + 1) * ss + c);
      _mm_storeu_pd(dst + c * ds + j, _mm_unpacklo_pd(r0, r1));
      _mm_storeu_pd(dst + (c + 1) * ds + j, _mm_unpackhi_pd(r0, r1));
    }
  }
}
#endif

/// Rows to the class-major tile and back, for class-contiguous rows evenly spaced in memory
/// (row-major N x C, padded rows): R rows (a multiple of 4), row j at rows + j * rs, class c of
/// row j at tile[c * R + j].
template <class T>
void rows_to_tile(const T* rows, Index rs, Index R, Index C, T* tile) {
#if defined(__SSE2__)
  if constexpr (std::is_same<T, float>::value) {
    if (C == 2 && rs == 2) {  // dense binary: deinterleave 4 rows at a time
      for (Index j = 0; j < R; j += 4) {
        const __m128 a = _mm_loadu_ps(rows + 2 * j), b = _mm_loadu_ps(rows + 2 * j + 4);
        _mm_storeu_ps(tile + j, _mm_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0)));
        _mm_storeu_ps(tile + R + j, _mm_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
      }
      return;
    }
  }
#endif
  transpose(rows, rs, R, C, tile, R);
}
template <class T>
void tile_to_rows(const T* tile, Index R, Index C, T* rows, Index rs) {
#if defined(__SSE2__)
  if constexpr (std::is_same<T, float>::value) {
    if (C == 2 && rs == 2) {  // and interleave them back
      for (Index j = 0; j < R; j += 4) {
        const __m128 c0 = _mm_loadu_ps(tile + j), c1 = _mm_loadu_ps(tile + R + j);
        _mm_storeu_ps(rows + 2 * j, _mm_unpacklo_ps(c0, c1));
        _mm_storeu_ps(rows + 2 * j + 4, _mm_unpackhi_ps(c0, c1));
      }
      return;
    }
  }
#endif
  transpose(tile, R, C, R, rows, rs);
}

/// Whether R row offsets are evenly spaced (off[j] = off[0] + j * step), and the step.
inline bool evenly_spaced(const Index* off, Index R, Index& step) {
  step = off[1] - off[0];
  bool even = true;
  for (Index j = 2; j < R; ++j) even &= off[j] - off[j - 1] == step;
  return even;
}

/// Lanes kernel over rows [begin, end). scratch: lanes_scratch_size<T>(isa, C, n_terms) entries,
/// aligned to 64 bytes.
template <class T, class L>
bool lanes_simd(const KernelArgs<T, L>& k, Index begin, Index end, Accum* sums, T* scratch) {
  using B = simd::batch<T>;
  using M = simd::mask<T>;
  constexpr Index W = simd::width<T>();
  constexpr Index G = lane_groups(W);
  constexpr Index R = G * W;  // rows per iteration
  const Layout& lx = k.lx;
  const Index C = lx.classes;
  const Index cs = lx.class_stride, gcs = k.lg.class_stride;
  T* tile = scratch;               // C x R logits: class c of row r at tile[c * R + r]
  T* gtile = scratch + C * R;      // C x R gradient
  T* ytile = scratch + 2 * C * R;  // C x R masks: where class c is the row's target (bits of M)
  T* etile = scratch + 3 * C * R;  // n_terms x C x R exponentials
  const B zero(T(0)), one(T(1)), neg_inf(-std::numeric_limits<T>::infinity()), limit(k.limit);
  // the target masks, computed once per tile (the maxima pass) and loaded by the later passes
  auto is_target = [&](Index c, Index g) {
    M m;
    std::memcpy(&m.v, ytile + c * R + g * W, sizeof m.v);
    return m;
  };
  bool ok = true;
  bool any_smooth = false;
  for (int t = 0; t < k.n_terms; ++t) any_smooth |= k.terms[t].smooth != T(0);

  // per-lane partial sums, one set per group (epilogue_simd.hpp), added in lane order at the end
  LaneSums<T> lane_sums[G];
  Index i0 = begin;
  for (; i0 + R <= end; i0 += R) {
    // where the R rows are, their labels (-1 for ignored rows: no class matches)
    // (separate loops, so that the compiler vectorizes them; N x C layouts have no pixel index)
    Index xoff[R], goff[R], ylane[R];
    if (lx.inner == 1) {
      for (Index j = 0; j < R; ++j) xoff[j] = (i0 + j) * lx.sample_stride;
    } else {
      for (Index j = 0; j < R; ++j) xoff[j] = lx.row_offset(i0 + j);
    }
    if (!k.grad) {
      for (Index j = 0; j < R; ++j) goff[j] = 0;
    } else if (k.lg.inner == 1) {
      for (Index j = 0; j < R; ++j) goff[j] = (i0 + j) * k.lg.sample_stride;
    } else {
      for (Index j = 0; j < R; ++j) goff[j] = k.lg.row_offset(i0 + j);
    }
    for (Index j = 0; j < R; ++j) {
      const std::int64_t label = static_cast<std::int64_t>(k.labels[(i0 + j) * k.label_stride]);
      ylane[j] = label != k.ignore_index ? Index(label) : Index(-1);
    }
    // Lanes of ignored rows hold 0 in the tile: their logits may be read (one vector load covers
    // W rows) but never enter the arithmetic, whatever they hold (NaN, 1e30).
    B yv[G], xy[G], X[G];
    M counted[G];
    M bad = zero != zero;  // all false
    for (Index g = 0; g < G; ++g) {
      const Index* yl = ylane + g * W;
      yv[g] = simd::lanes_from<T>([&](Index j) { return T(yl[j]); });
      xy[g] = zero;  // (taken from the tile below: a load from the rows would be their first touch)
      counted[g] = yv[g] >= zero;
      X[g] = neg_inf;
    }
    Index xstep = 0;
    const bool x_even = evenly_spaced(xoff, R, xstep);
    if (x_even && xstep == 1) {  // rows adjacent, classes strided: column-major, (N, C, d...)
      for (Index c = 0; c < C; ++c)
        for (Index g = 0; g < G; ++g)
          simd::select(counted[g], B::load_unaligned(k.x + xoff[0] + g * W + c * cs), zero)
              .store_aligned(tile + c * R + g * W);
    } else if (x_even && cs == 1 && xstep >= C) {  // classes contiguous, rows evenly spaced: row-major
      // every row is read, ignored ones too (their memory is part of the batch), and their lanes
      // are zeroed before any arithmetic
      rows_to_tile(k.x + xoff[0], xstep, R, C, tile);
      for (Index c = 0; c < C; ++c)
        for (Index g = 0; g < G; ++g)
          simd::select(counted[g], B::load_aligned(tile + c * R + g * W), zero).store_aligned(tile + c * R + g * W);
    } else {
      for (Index c = 0; c < C; ++c)
        for (Index g = 0; g < G; ++g)
          simd::lanes_from<T>([&](Index j) { return ylane[g * W + j] >= 0 ? k.x[xoff[g * W + j] + c * cs] : T(0); })
              .store_aligned(tile + c * R + g * W);
    }
    // X = max over the non-target logits and x_y, per lane; every counted logit within the limit
    // (unless validation has checked them)
    auto maxima = [&](auto check) {
      for (Index c = 0; c < C; ++c) {
        for (Index g = 0; g < G; ++g) {
          const B v = B::load_aligned(tile + c * R + g * W);
          if (check) bad = bad || (counted[g] && !(simd::abs(v) <= limit));
          const M is_y = yv[g] == B(T(c));
          std::memcpy(ytile + c * R + g * W, &is_y.v, sizeof is_y.v);
          X[g] = simd::max(X[g], simd::select(is_y, neg_inf, v));
          xy[g] = simd::select(is_y, v, xy[g]);
        }
      }
    };
    if (k.logits_checked) {
      maxima(std::false_type());
    } else {
      maxima(std::true_type());
      ok &= !simd::any(bad);
    }

    B row_value[G], gy_total[G], kk[kMaxTerms][G];
    for (Index g = 0; g < G; ++g) row_value[g] = gy_total[g] = zero;
    for (int t = 0; t < k.n_terms; ++t) {
      const TermParams<T>& p = k.terms[t];
      const B s(p.s), s2(simd::exponent_scale(p.s));
      const bool adjusted = p.a || p.b;
      LabelParams<T> q[G];
      TermSums<T> in[G];
      B ax_ref[G], b_ref[G], delta[G];
      for (Index g = 0; g < G; ++g) {
        q[g] = label_params(p, ylane + g * W);
        in[g].ax_k = X[g];
        in[g].b_k = in[g].others = in[g].wd = zero;
        if (!adjusted) {
          in[g].y_ref = xy[g] - q[g].my >= X[g];
          ax_ref[g] = simd::select(in[g].y_ref, xy[g], X[g]);
          b_ref[g] = zero;
          delta[g] = simd::select(in[g].y_ref, q[g].my, zero);
          continue;
        }
        // the largest non-target s a_c x_c + b_c per lane, with its a_c x_c and b_c
        B kmax = neg_inf;
        for (Index c = 0; c < C; ++c) {
          const B ax = (p.a ? B(p.a[c]) : one) * B::load_aligned(tile + c * R + g * W);
          const B bc = p.b ? B(p.b[c]) : zero;
          const B key = simd::select(is_target(c, g), neg_inf, simd::fma(s, ax, bc));
          const M gt = key > kmax;
          kmax = simd::select(gt, key, kmax);
          in[g].ax_k = simd::select(gt, ax, in[g].ax_k);
          in[g].b_k = simd::select(gt, bc, in[g].b_k);
        }
        const B axy = q[g].ay * xy[g];
        in[g].y_ref = s * (axy - q[g].my) + q[g].by >= s * in[g].ax_k + in[g].b_k;
        ax_ref[g] = simd::select(in[g].y_ref, axy, in[g].ax_k);
        b_ref[g] = simd::select(in[g].y_ref, q[g].by, in[g].b_k);
        delta[g] = simd::select(in[g].y_ref, q[g].my, zero);
      }
      // exponents z_c - z_k as differences of raw logits; the sums skip the target (its e_y comes
      // from dy in the epilogue). The tile keeps a_c e_c.
      T* e_out = etile + t * C * R;
      // the class loop, compiled once per combination of the options it branches on (a plain term
      // must not pay for a, b or label smoothing: at C = 2 this loop is most of the row's work)
      auto sweep = [&](auto has_a, auto has_b, auto smooth, auto grad) {
        for (Index c = 0; c < C; ++c) {
          const B ac = has_a ? B(p.a[c]) : one;
          const B bc = has_b ? B(p.b[c]) : zero;
          const B wc = smooth && p.w ? B(p.w[c]) : one;
          for (Index g = 0; g < G; ++g) {
            const M is_y = is_target(c, g);
            const B v = B::load_aligned(tile + c * R + g * W);
            // (the target's lane is computed and then ignored: without its margin; the epilogue
            // takes e_y from dy, and the gradient tile's target entry is set from its formula)
            B dexp = s2 * (((has_a ? ac * v : v) - ax_ref[g]) + delta[g]);  // (base-2 units)
            if (has_b) dexp = simd::fma(bc - b_ref[g], B(simd::kLog2e<T>), dexp);
            const B e = simd::fast_exp2(dexp);
            in[g].others += simd::select(!is_y, e, zero);  // the reference's own e = 1 included
            if (smooth) in[g].wd = simd::fma(wc, simd::select(is_y, zero, dexp), in[g].wd);  // (the target's in the epilogue)
            if (grad) (has_a ? ac * e : e).store_aligned(e_out + c * R + g * W);
          }
        }
      };
      using yes = std::true_type;
      using no = std::false_type;
      const bool grad = k.grad != nullptr;
      if (!p.a && !p.b && p.smooth == T(0)) {
        if (grad) sweep(no(), no(), no(), yes());
        else sweep(no(), no(), no(), no());
      } else {  // the family's terms: one instantiation with run-time flags
        sweep(p.a != nullptr, p.b != nullptr, p.smooth != T(0), grad);
        if (p.smooth != T(0))
          for (Index g = 0; g < G; ++g) in[g].wd *= B(simd::kLn2<T>);  // (back to natural units)
      }
      const T tw = k.term_weights ? k.term_weights[t] : T(1);
      term_epilogue<G>(p, t, tw, ylane, counted, xy, q, in, row_value, gy_total, lane_sums, kk[t]);
    }
    if (k.row_values) {
      for (Index g = 0; g < G; ++g) {
        alignas(64) T rv[W];
        row_value[g].store_aligned(rv);
        for (Index j = 0; j < W; ++j) k.row_values[(i0 + g * W + j) * k.row_values_stride] = rv[j];
      }
    }
    if (!k.grad) continue;

    // the gradient tile: sum_t kk_t a_c e_t (minus label smoothing's (eps / C) s a_c w_c), the
    // exact target entry, zero on ignored rows
    for (Index c = 0; c < C; ++c) {
      T smooth_c = T(0);
      for (int t = 0; any_smooth && t < k.n_terms; ++t) {
        const TermParams<T>& p = k.terms[t];
        if (p.smooth != T(0)) smooth_c += p.smooth_grad * (p.w ? p.w[c] : T(1)) * (p.a ? p.a[c] : T(1));
      }
      for (Index g = 0; g < G; ++g) {
        B gc = kk[0][g] * B::load_aligned(etile + c * R + g * W);
        for (int t = 1; t < k.n_terms; ++t) gc = simd::fma(kk[t][g], B::load_aligned(etile + (t * C + c) * R + g * W), gc);
        if (smooth_c != T(0)) gc -= B(smooth_c);
        gc = simd::select(is_target(c, g), gy_total[g], gc);
        gc = simd::select(counted[g], gc, zero);
        gc.store_aligned(gtile + c * R + g * W);
      }
    }
    Index gstep = 0;
    const bool g_even = evenly_spaced(goff, R, gstep);
    if (g_even && gstep == 1) {
      for (Index c = 0; c < C; ++c)
        for (Index g = 0; g < G; ++g)
          B::load_aligned(gtile + c * R + g * W).store_unaligned(k.grad + goff[0] + g * W + c * gcs);
    } else if (g_even && gcs == 1 && gstep >= C) {
      tile_to_rows(gtile, R, C, k.grad + goff[0], gstep);
    } else {
      for (Index c = 0; c < C; ++c)
        for (Index j = 0; j < R; ++j) k.grad[goff[j] + c * gcs] = gtile[c * R + j];
    }
  }
  for (const LaneSums<T>& ls : lane_sums) ls.add_to(sums, k.n_terms);
  if (i0 < end) ok &= scalar_rows(k, i0, end, sums);
  return ok;
}
