// libFuzzer harness over lmf's raw entry points (pointer + Layout), built with clang,
// AddressSanitizer and UndefinedBehaviorSanitizer by tests/fuzz/run.sh.
//
// Each input describes one batch — scalar type, loss (CE, focal, LDAM, LMF, both presets, a
// generic a/b/m/w spec; logit adjustment, balanced softmax, VS with label smoothing, LDAM-DRW's
// focal, a generic spec with label smoothing, the weight inside and all_rows), options, sizes, strides (aliasing and overflowing ones
// included), label type, labels and logits (special values included) — and the harness calls
// try_value, try_value_and_gradient and try_per_row on it. tests/fuzz/make_seeds.py writes inputs
// in this encoding (the regression seeds of the corpus): keep the two in step. Invariants (a
// violation aborts):
//   1. no entry point throws (try_* return a Status, allocation failure included);
//   2. on error nothing is written: the gradient and per-row buffers keep their sentinel bytes;
//   3. on success: finite results where the inputs are moderate, equal (to rounding) to the
//      scalar reference kernel, the sum reduction equal to the sum of the per-row values, and
//      bitwise the same for 1 and 2 threads.
#include <lmf/lmf.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

namespace {

/// Reads the fuzz input front to back; past the end it yields zeros.
struct Reader {
  const std::uint8_t* data;
  std::size_t size, pos = 0;
  std::uint8_t byte() { return pos < size ? data[pos++] : 0; }
  std::uint32_t u32() {
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v = v << 8 | byte();
    return v;
  }
  bool left() const { return pos < size; }
};

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "lmf fuzz invariant violated (%s kernels): %s\n", lmf::simd_isa(), what);
  std::abort();
}

template <class T>
T value_from(Reader& r) {
  const std::uint8_t k = r.byte();
  switch (k % 16) {
    case 0: return std::numeric_limits<T>::quiet_NaN();
    case 1: return std::numeric_limits<T>::infinity();
    case 2: return -std::numeric_limits<T>::infinity();
    case 3: return std::numeric_limits<T>::max() / T(2);
    case 4: return T(1e4) * (r.byte() % 2 ? 1 : -1);
    case 5: return std::numeric_limits<T>::denorm_min();
    case 6: return T(1e30) * (r.byte() % 2 ? 1 : -1);
    case 7: return std::numeric_limits<T>::max() / T(32) * (r.byte() % 2 ? 1 : -1);  // within the logit limit
    default: {
      const std::int32_t v = std::int32_t(r.u32());
      return static_cast<T>(double(v) / double(1 << 24));  // about [-128, 128]
    }
  }
}

template <class T>
lmf::Loss<T> make_loss(Reader& r, lmf::Index C, bool& built) {
  built = false;
  Eigen::VectorXi counts(C);
  for (lmf::Index j = 0; j < C; ++j) counts(j) = 1 + int(r.byte()) * 37;
  lmf::Vector<T> w;
  if (r.byte() % 2) {
    w.resize(C);
    for (lmf::Index j = 0; j < C; ++j) {
      const std::uint8_t k = r.byte();
      w(j) = k == 0 ? T(0) : k == 1 ? T(1e30) : k == 2 ? std::numeric_limits<T>::denorm_min() : T(k) / T(16);
    }
  }
  const lmf::Reduction red = static_cast<lmf::Reduction>(r.byte() % 3);
  const std::int64_t ignore = r.byte() % 4 ? -100 : std::int64_t(r.byte() % (C + 1));
  const T gamma = T(r.byte() % 42) / T(2);  // 0 .. 20.5: beyond the limit is an error
  const T s = r.byte() % 8 ? T(1 + r.byte() % 64) : T(2e4);
  const int kind = r.byte() % 12;
  auto common = [&](auto& o) {
    o.reduction = red;
    o.class_weights = w;
    o.ignore_index = ignore;
  };
#if !LMF_NO_EXCEPTIONS
  try {
#endif
    switch (kind) {
      case 0: {
        typename lmf::CrossEntropyLoss<T>::Options o;
        common(o);
        built = true;
        return lmf::CrossEntropyLoss<T>(o);
      }
      case 1: {
        typename lmf::FocalLoss<T>::Options o;
        common(o);
        o.gamma = gamma;
        lmf::FocalLoss<T> l(o);
        built = true;
        return l;
      }
      case 2: {
        typename lmf::LDAMLoss<T>::Options o;
        common(o);
        o.s = s;
        lmf::LDAMLoss<T> l(counts, o);
        built = true;
        return l;
      }
      case 3: {
        typename lmf::LMFLoss<T>::Options o;
        common(o);
        o.s = s;
        o.gamma = gamma;
        lmf::LMFLoss<T> l(counts, o);
        built = true;
        return l;
      }
      case 4: {
        auto l = lmf::LMFLoss<T>::seed_code(counts, w, ignore);
        built = true;
        return l;
      }
      case 5: {
        auto l = lmf::LMFLoss<T>::official_code(counts, ignore);
        built = true;
        return l;
      }
      case 7:
      case 8:
      case 9: {  // the family: logit adjustment, balanced softmax, VS, with label smoothing
        const T eps = T(r.byte() % 12) / T(10);  // 0 .. 1.1: beyond 1 is an error
        const T tau = T(r.byte() % 5) / T(2);
        if (kind == 7) {
          typename lmf::LogitAdjustedLoss<T>::Options o;
          common(o);
          o.label_smoothing = eps;
          o.tau = tau;
          lmf::LogitAdjustedLoss<T> l(counts, o);
          built = true;
          return l;
        }
        if (kind == 8) {
          typename lmf::BalancedSoftmaxLoss<T>::Options o;
          common(o);
          o.label_smoothing = eps;
          lmf::BalancedSoftmaxLoss<T> l(counts, o);
          built = true;
          return l;
        }
        typename lmf::VSLoss<T>::Options o;
        common(o);
        o.label_smoothing = eps;
        o.tau = tau;
        o.gamma = gamma / T(4);
        lmf::VSLoss<T> l(counts, o);
        built = true;
        return l;
      }
      case 10: {  // LDAM-DRW's focal: the weight inside, mean over every row
        auto l = lmf::FocalLoss<T>::ldam_drw_code(w, gamma, ignore);
        built = true;
        return l;
      }
      case 11: {  // the generic model with label smoothing, the weight inside and all_rows
        lmf::LossSpec<T> spec;
        spec.reduction = red;
        spec.ignore_index = ignore;
        lmf::Term<T> t;
        t.s = s;
        t.a = lmf::Vector<T>::LinSpaced(C, T(0.5), T(1.5));
        t.b = lmf::Vector<T>::LinSpaced(C, T(-1), T(1));
        t.m = lmf::Vector<T>::LinSpaced(C, T(0), T(0.5));
        t.w = w;
        t.label_smoothing = T(r.byte() % 12) / T(10);
        spec.terms.push_back(t);
        t.label_smoothing = T(0);
        t.gamma = gamma;
        t.weight = T(0.25);
        t.focus_on = lmf::FocusOn::weighted_row;
        t.mean_over = lmf::MeanOver::all_rows;
        spec.terms.push_back(t);
        lmf::Loss<T> l(spec);
        built = true;
        return l;
      }
      default: {
        lmf::LossSpec<T> spec;
        spec.reduction = red;
        spec.ignore_index = ignore;
        lmf::Term<T> t;
        t.s = s;
        t.gamma = gamma;
        t.a = lmf::Vector<T>::LinSpaced(C, T(0.5), T(1.5));
        t.b = lmf::Vector<T>::LinSpaced(C, T(-1), T(1));
        t.m = lmf::Vector<T>::LinSpaced(C, T(0), T(0.5));
        t.w = w;
        spec.terms.push_back(t);
        t.gamma = T(0);
        t.weight = T(0.25);
        spec.terms.push_back(t);
        lmf::Loss<T> l(spec);
        built = true;
        return l;
      }
    }
#if !LMF_NO_EXCEPTIONS
  } catch (const lmf::Error&) {
    built = false;  // invalid options: rejected at construction, as documented
  } catch (...) {
    fail("a constructor threw something other than lmf::Error");
  }
#endif
  return lmf::CrossEntropyLoss<T>();
}

template <class T>
void fill_sentinel(std::vector<T>& v) {
  if (!v.empty()) std::memset(v.data(), 0x5a, v.size() * sizeof(T));
}
template <class T>
bool same_bytes(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

bool close(double a, double b, double tol) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  if (std::isinf(a) || std::isinf(b)) return a == b;
  return std::abs(a - b) <= tol * std::max({1.0, std::abs(a), std::abs(b)});
}

template <class T, class L>
void run(Reader& r) {
  const lmf::Index C = 1 + r.byte() % 40;
  bool built = false;
  lmf::Loss<T> loss = make_loss<T>(r, C, built);
  if (!built) return;
  lmf::Layout lx;
  lx.samples = r.byte() % 40;
  lx.classes = r.byte() % 16 ? C : lmf::Index(std::uint64_t(r.u32()) << (r.byte() % 31));  // mostly the loss's C
  lx.inner = 1 + (r.byte() % 8 ? 0 : r.byte() % 4);
  const int form = r.byte() % 6;
  if (form == 0) lx = lmf::Layout::row_major(lx.samples, lx.classes);
  else if (form == 1) lx = lmf::Layout::col_major(lx.samples, lx.classes);
  else if (form == 2) lx = lmf::Layout::nchw(lx.samples, lx.classes, lx.inner);
  else if (form == 3) {  // arbitrary strides, aliasing ones included
    lx.sample_stride = r.byte() % 64;
    lx.class_stride = r.byte() % 8;
    lx.inner_stride = r.byte() % 8;
  } else if (form == 4) {  // huge ones
    lx.sample_stride = lmf::Index(std::uint64_t(r.u32()) << (r.byte() % 31));
    lx.class_stride = 1;
  } else {
    lx = lmf::Layout::row_major(lx.samples, lx.classes);
    lx.sample_stride += r.byte() % 5;  // padded rows
  }
  lmf::Index span = 0;
  const bool sane = lmf::detail::layout_span(lx, lmf::Index(1) << 20, span) && lx.classes <= 4096;
  // A layout too large to allocate here is only passed on when lmf must reject it (overflowing
  // sizes or strides): then nothing may be read.
  if (!sane && lmf::detail::check_layout(lx, "logits", lmf::limits::max_classes, lmf::limits::max_elements).ok()) return;
  const std::size_t n = sane ? std::size_t(span) : std::size_t(64);
  std::vector<T> x(n), grad(n), grad0(n);
  bool moderate = true;
  for (T& v : x) {
    v = value_from<T>(r);
    moderate &= std::isfinite(v) && std::abs(v) <= T(200);
  }
  const lmf::Index rows = sane ? lx.rows() : 8;
  std::vector<L> labels(std::size_t(std::max<lmf::Index>(rows, 1)));
  for (L& y : labels) {
    const std::uint8_t k = r.byte();
    y = k < 200 ? L(k % std::max<lmf::Index>(C, 1)) : k < 230 ? L(-100) : k < 240 ? L(-1) : L(~std::uint64_t(99));
  }
  fill_sentinel(grad);
  grad0 = grad;
  std::vector<T> values(std::size_t(std::max<lmf::Index>(rows, 1)) + 1), values0;
  fill_sentinel(values);
  values0 = values;
  const int threads = 1 + r.byte() % 2;
  loss.set_threads(threads);
  loss.set_kernel(static_cast<lmf::Kernel>(r.byte() % 4));

  T v = T(0), v_only = T(0);
  lmf::Status s_grad, s_value, s_rows;
#if !LMF_NO_EXCEPTIONS
  try {
#endif
    s_value = loss.try_value(x.data(), lx, labels.data(), v_only);
    s_grad = loss.try_value_and_gradient(x.data(), lx, labels.data(), grad.data(), v);
    if (!s_grad.ok() && !same_bytes(grad, grad0))
      fail("try_value_and_gradient failed but wrote the gradient");
    s_rows = loss.try_per_row(x.data(), lx, labels.data(), values.data(), static_cast<T*>(nullptr));
    if (!s_rows.ok() && !same_bytes(values, values0))
      fail("try_per_row failed but wrote the per-row values");
#if !LMF_NO_EXCEPTIONS
  } catch (...) {
    fail("a try_* entry point threw");
  }
#endif
  if (std::getenv("LMF_FUZZ_VERBOSE"))  // to check what an input decodes to
    std::fprintf(stderr, "%s labels %zu-byte, loss '%s' (%d terms, reduction %d), C %ld, layout %ld x %ld x %ld strides %ld %ld %ld, "
                 "%d thread(s): value %s %g | grad %s | per-row %s\n", sizeof(T) == 8 ? "double" : "float", sizeof(L),
                 loss.spec().terms.size() == 1 ? (loss.spec().terms[0].s != T(1) ? "ldam" : "ce/focal") : "multi-term",
                 int(loss.spec().terms.size()), int(loss.reduction()), long(C), long(lx.samples), long(lx.classes),
                 long(lx.inner), long(lx.sample_stride), long(lx.class_stride), long(lx.inner_stride), threads,
                 s_value.ok() ? "ok" : s_value.message().c_str(), double(v_only), s_grad.ok() ? "ok" : s_grad.message().c_str(),
                 s_rows.ok() ? "ok" : s_rows.message().c_str());
  if (!s_grad.ok()) return;
  if (!s_value.ok() && loss.reduction() != lmf::Reduction::none) fail("value failed where value_and_gradient succeeded");
  const double tol = sizeof(T) == 8 ? 1e-9 : 1e-3;
  if (moderate && !std::isfinite(v)) fail("non-finite value on moderate input");
  if (!close(double(v), double(v_only), tol)) fail("value and value_and_gradient disagree");

  // the scalar reference kernel
  lmf::Loss<T> ref = loss;
  ref.set_kernel(lmf::Kernel::scalar);
  std::vector<T> grad_ref(n);
  fill_sentinel(grad_ref);
  T v_ref = T(0);
  if (!ref.try_value_and_gradient(x.data(), lx, labels.data(), grad_ref.data(), v_ref).ok())
    fail("the scalar kernel rejects what the chosen kernel accepted");
  if (moderate && !close(double(v), double(v_ref), tol)) fail("value differs from the scalar kernel");
  if (moderate) {
    double gmax = 0;
    for (std::size_t i = 0; i < n; ++i)
      if (std::isfinite(double(grad_ref[i]))) gmax = std::max(gmax, std::abs(double(grad_ref[i])));
    // Label smoothing's gradient (eps / C) s a_c (W softmax_c - w_c) cancels when one class
    // weight dominates W (docs/math.md, section 2b): every
    // kernel's rounding error, PyTorch's too, is then relative to (eps / C) s W max|a| times the
    // term's scale, not to the result, and the kernels round in different orders. The tolerance
    // is taken relative to that scale (the reduction's denominator bounded below by the smaller
    // of the counted rows and their weights).
    double smooth_scale = 0;
    for (const auto& t : loss.spec().terms) {
      if (t.label_smoothing == T(0)) continue;
      const double W = t.w.size() ? double(t.w.template cast<double>().cwiseAbs().sum()) : double(C);
      const double amax = t.a.size() ? double(t.a.template cast<double>().cwiseAbs().maxCoeff()) : 1.0;
      double scale = std::abs(double(t.weight)) * double(t.label_smoothing) / double(C) * double(t.s) * W * amax;
      if (loss.reduction() == lmf::Reduction::mean) {  // the term's own denominator (plan.hpp)
        double counted = 0, weights = 0;
        for (lmf::Index i = 0; i < rows; ++i) {
          const std::int64_t y = static_cast<std::int64_t>(labels[std::size_t(i)]);
          if (y == loss.spec().ignore_index || y < 0 || y >= C) continue;
          counted += 1;
          weights += t.w.size() ? double(t.w(y)) : 1.0;
        }
        const double d = t.mean_over == lmf::MeanOver::target_weights ? weights
                         : t.mean_over == lmf::MeanOver::rows         ? counted
                                                                      : double(rows);
        scale = d > 0 ? scale / d : 0;
      }
      smooth_scale += scale;
    }
    gmax = std::max(gmax, smooth_scale);
    for (std::size_t i = 0; i < n; ++i) {
      if (std::memcmp(&grad[i], &grad_ref[i], sizeof(T)) == 0) continue;  // both untouched padding
      if (!std::isfinite(double(grad[i]))) fail("non-finite gradient on moderate input");
      if (std::abs(double(grad[i]) - double(grad_ref[i])) > tol * std::max(1.0, gmax)) {
        std::fprintf(stderr, "kernel %d, entry %zu of %zu: gradient %.9g, scalar kernel %.9g (largest %.9g); value %.9g, scalar %.9g\n",
                     int(loss.spec().kernel), i, n, double(grad[i]), double(grad_ref[i]), gmax, double(v), double(v_ref));
        for (std::size_t k = 0; k < n; ++k)
          std::fprintf(stderr, "  x[%zu] = %.9g  grad %.9g  scalar %.9g\n", k, double(x[k]), double(grad[k]), double(grad_ref[k]));
        for (std::size_t k = 0; k < labels.size(); ++k) std::fprintf(stderr, "  label[%zu] = %lld\n", k, (long long)labels[k]);
        fail("gradient differs from the scalar kernel");
      }
    }
  }
  // 1 and 2 threads: bitwise the same
  lmf::Loss<T> other = loss;
  other.set_threads(3 - threads);
  std::vector<T> grad_other(n);
  fill_sentinel(grad_other);
  T v_other = T(0);
  if (!other.try_value_and_gradient(x.data(), lx, labels.data(), grad_other.data(), v_other).ok())
    fail("another thread count rejects the batch");
  if (std::memcmp(&v, &v_other, sizeof(T)) != 0 && !(std::isnan(v) && std::isnan(v_other)))
    fail("value differs between 1 and 2 threads");
  if (!same_bytes(grad, grad_other)) fail("gradient differs between 1 and 2 threads");
  // the whole batch's own totals and grad_scale 2: the same value, twice the gradient
  lmf::Totals totals;
  const lmf::Status s_totals = loss.try_totals(x.data(), lx, labels.data(), totals);
  if (!s_totals.ok() && s_totals.message().find("below 2^-900") != std::string::npos) return;  // documented
  if (!s_totals.ok()) fail("totals rejects a batch the loss accepted");
  std::vector<T> grad2(n);
  fill_sentinel(grad2);
  T v2 = T(0);
  if (!loss.try_value_and_gradient(x.data(), lx, labels.data(), grad2.data(), totals, T(2), v2).ok())
    fail("value_and_gradient with the batch's own totals failed");
  if (moderate && !close(double(v2), double(v), tol)) {
    std::fprintf(stderr, "value %.17g, with the batch's own totals %.17g (totals:", double(v), double(v2));
    for (std::size_t i = 0; i < totals.size(); ++i) std::fprintf(stderr, " %.17g", totals[i]);
    std::fprintf(stderr, ")\n");
    fail("the batch's own totals change the value");
  }
  if (moderate)
    for (std::size_t i = 0; i < n; ++i)
      if (std::memcmp(&grad[i], &grad0[i], sizeof(T)) != 0 &&  // a written entry
          std::abs(double(grad2[i]) - 2 * double(grad[i])) > tol * std::max(1.0, 2 * std::abs(double(grad[i]))))
        fail("grad_scale 2 does not double the gradient");
  // in place: the gradient over a copy of the logits equals the separate buffer, bitwise
  std::vector<T> inplace = x;
  T v3 = T(0);
  if (!loss.try_value_and_gradient(inplace.data(), lx, labels.data(), inplace.data(), v3).ok())
    fail("the in-place call failed where the separate buffer succeeded");
  for (std::size_t i = 0; i < n; ++i)
    if (std::memcmp(&grad[i], &grad0[i], sizeof(T)) != 0 && std::memcmp(&grad[i], &inplace[i], sizeof(T)) != 0)
      fail("the in-place gradient differs from the separate buffer");
  // sum = the sum of the per-row values
  if (s_rows.ok() && loss.reduction() == lmf::Reduction::sum && moderate) {
    double total = 0;
    for (lmf::Index i = 0; i < rows; ++i) total += double(values[std::size_t(i)]);
    if (!close(total, double(v), sizeof(T) == 8 ? 1e-9 : 1e-3)) fail("sum differs from the sum of the per-row values");
  }
}

}  // namespace

// Every input runs once per instruction set this CPU runs (sse2, avx2, avx512: each set's kernels
// against the scalar kernel and the invariants above).
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  for (int isa = 0; isa <= 2; ++isa) {
    if (!lmf::detail::force_isa(lmf::detail::Isa(isa))) continue;
    Reader r{data, size};
    const std::uint8_t head = r.byte();
    const bool dbl = head & 1;
    switch ((head >> 1) % 4) {
      case 0: dbl ? run<double, int>(r) : run<float, int>(r); break;
      case 1: dbl ? run<double, std::int64_t>(r) : run<float, std::int64_t>(r); break;
      case 2: dbl ? run<double, std::uint64_t>(r) : run<float, std::uint64_t>(r); break;
      default: dbl ? run<double, std::uint32_t>(r) : run<float, std::uint32_t>(r); break;
    }
  }
  return 0;
}
