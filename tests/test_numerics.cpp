// Numerics: focal's phi and phi' against their closed forms, and one test per numerics promise
// of the README (each was checked by breaking the code on purpose; see the comments):
//   - finite for gamma < 1 where p_t -> 1 (PyTorch: NaN)             "focus: ... every regime",
//                                                                    "finite values ... extremes"
//   - log1p accuracy for confident rows, float and double, every kernel
//                                                                    "the cross entropy of a dominant target"
//   - the exact target gradient in the confident limit, every kernel  (same test)
//   - logits up to +-1e4 with s = 64: finite and exact, every kernel   "logits of 1e4 with s = 64"
#include "support.hpp"

#include <algorithm>
#include <limits>

using namespace lmf_test;

namespace {
const lmf::Kernel kAllKernels[] = {lmf::Kernel::scalar, lmf::Kernel::rows, lmf::Kernel::lanes};
const char* kernel_name(lmf::Kernel k) {
  switch (k) {
    case lmf::Kernel::scalar: return "scalar";
    case lmf::Kernel::rows: return "rows";
    case lmf::Kernel::lanes: return "lanes";
    default: return "automatic";
  }
}
}  // namespace

TEMPLATE_TEST_CASE("focus: phi and phi' in every regime", "[numerics]", float, double) {
  using T = TestType;
  const auto gamma = GENERATE(as<T>{}, 0, 0.5, 1, 1.5, 2, 5);
  INFO("gamma " << gamma);
  SECTION("l = 0: phi = 0, phi' = 1 for gamma 0 and 0 otherwise") {
    const auto f = lmf::math::focus(T(0), gamma);
    REQUIRE(f.value == 0);
    REQUIRE(f.derivative == (gamma == 0 ? T(1) : T(0)));
  }
  SECTION("tiny l (p_t -> 1): finite and equal to the series (1+gamma) l^gamma") {
    // broken on purpose once (phi' as (1-p)^gamma + gamma p l (1-p)^(gamma-1)): NaN/inf for
    // gamma < 1 at l = 1e-30 in float, caught here
    for (T l : {T(1e-30), T(1e-12), T(1e-7), T(1e-4)}) {
      INFO("l " << l);
      const auto f = lmf::math::focus(l, gamma);
      REQUIRE(std::isfinite(f.value));
      REQUIRE(std::isfinite(f.derivative));
      const double expected = (1 + double(gamma)) * std::pow(double(l), double(gamma));
      // below T's smallest normal the result underflows (to a subnormal or 0): absolute there
      const double tiny = double(std::numeric_limits<T>::min());
      REQUIRE(rel_error(double(f.derivative), expected, tiny / 1e-3) < 1e-3 + 2 * double(l) * (1 + double(gamma)));
    }
  }
  SECTION("moderate l: the closed forms") {
    for (double l : {0.01, 0.3, 1.0, 4.0, 30.0}) {
      INFO("l " << l);
      const auto f = lmf::math::focus(T(l), gamma);
      const double p = std::exp(-l), q = -std::expm1(-l), g = double(gamma);
      const double phi = std::pow(q, g) * l;
      const double dphi = std::pow(q, g) + (g == 0 ? 0.0 : g * p * l * std::pow(q, g - 1));
      REQUIRE(rel_error(double(f.value), phi, 1e-300) < 64 * std::numeric_limits<T>::epsilon());
      REQUIRE(rel_error(double(f.derivative), dphi, 1e-300) < 64 * std::numeric_limits<T>::epsilon());
    }
  }
}

TEMPLATE_TEST_CASE("finite values and gradients at the extremes", "[numerics]", float, double) {
  using T = TestType;
  const Index c = 6;
  const Eigen::VectorXi counts = long_tail_counts(c, 1000);
  for (T gamma : {T(0), T(0.5), T(1), T(2), T(5)}) {
    for (T s : {T(1), T(30), T(64)}) {
      for (T scale : {T(1), T(1e2), T(1e4)}) {
        for (lmf::Kernel kern : kAllKernels) {
          typename lmf::LMFLoss<T>::Options o;
          o.gamma = gamma;
          o.s = s;
          lmf::LMFLoss<T> loss(counts, o);
          loss.set_kernel(kern);
          Mat<T> x = random_logits<T>(40, c) * (scale / T(5));
          const Labels y = random_labels(40, c);
          for (Index i = 0; i < 20; ++i) x(i, y(i)) = scale;  // confident rows: p_t -> 1
          x.row(20).setConstant(scale);                        // ties at the maximum
          x.row(21).setConstant(-scale);
          MatR<T> xr = x, g(40, c);
          const T v = loss.value_and_gradient(xr, y, g);
          INFO("gamma " << gamma << ", s " << s << ", |x| up to " << scale << ", kernel " << kernel_name(kern));
          REQUIRE(std::isfinite(v));
          REQUIRE(g.allFinite());
          Vec<T> rows(40);
          loss.per_row(xr, y, rows);
          REQUIRE(rows.allFinite());
        }
      }
    }
  }
}

TEMPLATE_TEST_CASE("the cross entropy of a dominant target keeps full relative accuracy, on every kernel",
                   "[numerics]", float, double) {
  using T = TestType;
  // Row (20, 0, ..., 0) with label 0: l = log(1 + (C-1) e^-20) ~ (C-1) 2.06e-9, where log(1 + r)
  // rounds to 0 in float (PyTorch's log_softmax too); lmf uses log1p. The target's gradient
  // softmax_y - 1 = -(C-1) e^-20 / (1 + (C-1) e^-20) would cancel to 0 the same way.
  // Broken on purpose once each (log(1 + rest) in math::cross_entropy_from and the lanes kernel;
  // e_y * inv - 1 for the target): caught here.
  const double eps = std::numeric_limits<T>::epsilon();
  for (Index c : {2, 7, 100}) {
    for (lmf::Kernel kern : kAllKernels) {
      INFO("C " << c << ", kernel " << kernel_name(kern));
      const Index n = 37;  // more than the lanes kernel's 32 rows per iteration (any set): its vector path runs
      MatR<T> x = MatR<T>::Zero(n, c);
      x.col(0).setConstant(T(20));
      const Labels y = Labels::Zero(n);
      lmf::CrossEntropyLoss<T> ce;
      ce.set_kernel(kern);
      MatR<T> g(n, c);
      const double r = double(c - 1) * std::exp(-20.0);
      const double l = std::log1p(r);
      REQUIRE(rel_error(double(ce.value_and_gradient(x, y, g)), l, 1e-300) < 16 * eps);
      REQUIRE(rel_error(double(ce.value(x, y)), l, 1e-300) < 16 * eps);
      const double gy = -r / (1 + r) / double(n), gc = std::exp(-20.0) / (1 + r) / double(n);
      for (Index i = 0; i < n; ++i) {
        REQUIRE(rel_error(double(g(i, 0)), gy, 1e-300) < 16 * eps);
        for (Index j = 1; j < c; ++j) REQUIRE(rel_error(double(g(i, j)), gc, 1e-300) < 16 * eps);
      }
    }
  }
}

TEMPLATE_TEST_CASE("logits of 1e4 with s = 64: finite and exact on every kernel", "[numerics]", float, double) {
  using T = TestType;
  // LDAM, s 64, a row (1e4, -1e4, 0, ...) with label 1: l = 64 (2e4 + m_1) + log1p(...), about
  // 1.28e6; z itself reaches 6.4e5, so exp(z - max) must be formed from differences of raw
  // logits (math::adjusted_difference). Broken on purpose once (s x_c - s x_k): caught here.
  const double eps = std::numeric_limits<T>::epsilon();
  for (Index c : {3, 100}) {
    for (lmf::Kernel kern : kAllKernels) {
      INFO("C " << c << ", kernel " << kernel_name(kern));
      const Eigen::VectorXi counts = long_tail_counts(c);
      typename lmf::LDAMLoss<T>::Options o;
      o.s = T(64);
      o.reduction = lmf::Reduction::none;
      lmf::LDAMLoss<T> loss(counts, o);
      loss.set_kernel(kern);
      const Index n = 40;
      MatR<T> x = MatR<T>::Zero(n, c);
      Labels y(n);
      for (Index i = 0; i < n; ++i) {
        x(i, 0) = T(1e4);
        x(i, 1) = T(-1e4);
        x(i, 2) = T(i % 2 ? 1e4 : 9999.5);  // a tie with the maximum on odd rows
        y(i) = Index(i % 3);
      }
      Vec<T> rows(n);
      MatR<T> g(n, c);
      loss.per_row_and_gradient(x, y, rows, g);
      REQUIRE(rows.allFinite());
      REQUIRE(g.allFinite());
      const Vec<T> m = loss.margins();
      for (Index i = 0; i < n; ++i) {
        // reference in long double, exponents as z_j - z_0 = 64 ((x_j - x_0) - (m_j - m_0)) (exact
        // differences: forming z_j ~ 6.4e5 first would leave absolute errors of 1e-10)
        using LD = long double;
        auto zm = [&](Index j) { return j == y(i) ? LD(m(y(i))) : LD(0); };
        std::vector<LD> z(static_cast<std::size_t>(c));
        for (Index j = 0; j < c; ++j) z[std::size_t(j)] = LD(64) * ((LD(x(i, j)) - LD(x(i, 0))) - (zm(j) - zm(0)));
        const std::size_t top = std::size_t(std::max_element(z.begin(), z.end()) - z.begin());
        const LD zmax = z[top];
        LD rest = 0;  // sum over the other classes, so that log1p keeps l's digits
        for (std::size_t j = 0; j < z.size(); ++j)
          if (j != top) rest += std::exp(z[j] - zmax);
        const LD sum = 1 + rest;
        const double l = double(std::log1p(rest) + (zmax - z[std::size_t(y(i))]));
        INFO("row " << i);
        REQUIRE(rel_error(double(rows(i)), l, 1e-300) < 64 * eps);
        for (Index j = 0; j < c; ++j) {
          const double p = double(std::exp(z[std::size_t(j)] - zmax) / sum);
          REQUIRE(std::abs(double(g(i, j)) - 64.0 * (p - (j == y(i) ? 1.0 : 0.0))) < 64 * 64 * eps);
        }
      }
    }
  }
}

TEMPLATE_TEST_CASE("a row whose target is far below the maximum has phi' = 1 exactly, on every kernel",
                   "[numerics]", float, double) {
  using T = TestType;
  // l = 5000: p_t = e^-5000 = 0 and phi'(l) = (1 - p)^gamma (1 + gamma p l / (1 - p)) = 1. A kernel
  // that formed p as 1 - (1 - p_t) would get p ~ eps and phi' = 1 + gamma eps l (1.0006 in float):
  // found by the kernel-agreement test once it covered C = 40 with logits of 1e4.
  const double eps = std::numeric_limits<T>::epsilon();
  for (Index c : {2, 7, 100}) {
    for (lmf::Kernel kern : kAllKernels) {
      INFO("C " << c << ", kernel " << kernel_name(kern));
      const Index n = 37;
      MatR<T> x = MatR<T>::Zero(n, c);
      x.col(1).setConstant(T(5000));
      const Labels y = Labels::Zero(n);
      typename lmf::FocalLoss<T>::Options o;
      o.gamma = T(2);
      o.reduction = lmf::Reduction::sum;
      lmf::FocalLoss<T> focal(o);
      focal.set_kernel(kern);
      MatR<T> g(n, c);
      REQUIRE(rel_error(double(focal.value_and_gradient(x, y, g)), 5000.0 * double(n), 1e-300) < 16 * eps);
      for (Index i = 0; i < n; ++i) {
        REQUIRE(rel_error(double(g(i, 0)), -1.0, 1e-300) < 16 * eps);  // softmax_y - 1 = -1, times phi' = 1
        REQUIRE(rel_error(double(g(i, 1)), 1.0, 1e-300) < 16 * eps);
      }
    }
  }
}

TEST_CASE("simd::log1p_pos (the lanes and rows kernels' float log1p) is within 2 ulp of log1p everywhere it is used",
          "[numerics]") {
  // r is a row's sum of exponentials relative to its reference class: [0, C]. Checked on 0, the
  // subnormal and tiny range, around every power of two (where u = 1 + r changes exponent and
  // the rounding of 1 + r is largest), around sqrt(2) - 1 (where the mantissa is halved), and up
  // to 2^30, against std::log1p in double.
  using B = lmf::detail::sse2::simd::batch<float>;
  std::vector<float> rs = {0.0f, 1e-45f, 1e-38f, 1e-30f, 1e-10f, 1e-7f, 0.41421354f, 0.41421357f, 0.4142136f};
  for (int e = -24; e <= 30; ++e)
    for (float f : {0.99999994f, 1.0f, 1.0000001f, 0.5f, 0.75f, 0.70710677f, 0.7071068f})
      rs.push_back(std::ldexp(f, e) - (e >= 0 ? 1.0f : 0.0f));
  std::mt19937 gen(11);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  for (int i = 0; i < 20000; ++i) rs.push_back(std::ldexp(u(gen), int(gen() % 40) - 20));
  while (rs.size() % B::size) rs.push_back(1.0f);
  double worst = 0;
  for (std::size_t i = 0; i < rs.size(); i += B::size) {
    alignas(64) float out[B::size];
    const B r = B::load_unaligned(rs.data() + i);
    lmf::detail::sse2::simd::log1p_pos(r, B(1.0f) / (B(1.0f) + r)).store_aligned(out);
    for (std::size_t j = 0; j < B::size; ++j) {
      const float ri = std::max(rs[i + j], 0.0f);
      const double exact = std::log1p(double(ri));
      const double ulp = exact == 0 ? 0 : std::ldexp(1.0, std::ilogb(float(exact)) - 23);
      const double err = exact == 0 ? std::abs(double(out[j])) : std::abs(double(out[j]) - exact) / ulp;
      INFO("r = " << ri << ": " << out[j] << " against " << exact);
      REQUIRE(err <= 2.0);
      worst = std::max(worst, err);
      // the scalar version (the rows kernel's epilogue): the same scheme, one float
      const float scalar = lmf::detail::sse2::simd::log1p_pos(ri);
      const double serr = exact == 0 ? std::abs(double(scalar)) : std::abs(double(scalar) - exact) / ulp;
      INFO("scalar: " << scalar);
      REQUIRE(serr <= 2.0);
    }
  }
  REQUIRE(worst > 0.0);  // (not an exact copy of something)
}

namespace {

/// Worst error in ulp of T of f (on batches of the 16-byte set) against `exact` (long double),
/// over xs.
template <class T, class F, class E>
double worst_ulp(const std::vector<T>& xs_in, F f, E exact) {
  using B = lmf::detail::sse2::simd::batch<T>;
  std::vector<T> xs = xs_in;
  while (xs.size() % B::size) xs.push_back(xs.back());
  double worst = 0;
  for (std::size_t i = 0; i < xs.size(); i += B::size) {
    alignas(64) T out[B::size];
    f(B::load_unaligned(xs.data() + i)).store_aligned(out);
    for (std::size_t j = 0; j < B::size; ++j) {
      const long double e = exact(static_cast<long double>(xs[i + j]));
      const double ulp = e == 0 ? double(std::numeric_limits<T>::denorm_min())
                                : std::ldexp(1.0, std::ilogb(T(e)) - std::numeric_limits<T>::digits + 1);
      const double err = double(std::fabs(static_cast<long double>(out[j]) - e)) / ulp;
      INFO("x = " << double(xs[i + j]) << ": " << double(out[j]) << " against " << double(e));
      REQUIRE(std::isfinite(double(out[j])));
      worst = std::max(worst, err);
    }
  }
  return worst;
}

template <class T>
std::vector<T> log_spread(int lo, int hi, int n, unsigned seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> u(0.5, 1.0);
  std::vector<T> xs;
  for (int i = 0; i < n; ++i) xs.push_back(static_cast<T>(std::ldexp(u(gen), lo + int(gen() % unsigned(hi - lo)))));
  return xs;
}

}  // namespace

TEMPLATE_TEST_CASE("the SIMD layer's log, log1p and expm1 are within 2-3 ulp", "[numerics][simd]", float, double) {
  using T = TestType;
  namespace simd = lmf::detail::sse2::simd;
  using B = simd::batch<T>;
  // log: the focal modulation (1 - p)^gamma for general gamma; arguments in (0, 1], subnormals included
  std::vector<T> xs = log_spread<T>(std::numeric_limits<T>::min_exponent - std::numeric_limits<T>::digits + 1, 4, 20000, 3);
  for (T v : {std::numeric_limits<T>::denorm_min(), std::numeric_limits<T>::min(), T(1), T(0.70710677), T(1.4142135),
              std::nextafter(T(1), T(0)), std::nextafter(T(1), T(2))})
    xs.push_back(v);
  const double e_log = worst_ulp<T>(xs, [](const B& x) { return simd::log(x); }, [](long double x) { return std::log(x); });
  WARN("log: worst " << e_log << " ulp");
  CHECK(e_log <= 2.0);
  // expm1 on [-60, 0] (one_minus_exp_neg: LDAM-DRW's focal term, 1 - e^-u)
  std::vector<T> ms;
  for (T v : log_spread<T>(-40, 6, 20000, 5)) ms.push_back(-std::min(v, T(60)));
  for (T v : {T(0), T(-0.5), std::nextafter(T(-0.5), T(0)), std::nextafter(T(-0.5), T(-1)), T(-60), T(-1e-30)}) ms.push_back(v);
  const double e_expm1 = worst_ulp<T>(ms, [](const B& x) { return simd::expm1_nonpos(x); }, [](long double x) { return std::expm1(x); });
  WARN("expm1: worst " << e_expm1 << " ulp");
  CHECK(e_expm1 <= 3.0);
  if constexpr (sizeof(T) == 8) {  // log1p in double (float has log1p_pos, tested above)
    std::vector<T> rs = log_spread<T>(-60, 20, 20000, 7);
    for (T v : {T(0), T(1), T(0.41421356237309503), T(0.41421356237309515), T(3e4)}) rs.push_back(v);
    const double e_log1p =
        worst_ulp<T>(rs, [](const B& x) { return simd::log1p_nonneg(x); }, [](long double x) { return std::log1p(x); });
    WARN("log1p: worst " << e_log1p << " ulp");
    CHECK(e_log1p <= 2.0);
  }
}

TEMPLATE_TEST_CASE("the kernels' exponentials fast_exp and fast_exp2 are within 2 ulp (float), 3 (double), and clamp", "[numerics][simd]",
                   float, double) {
  using T = TestType;
  namespace simd = lmf::detail::sse2::simd;
  using B = simd::batch<T>;
  constexpr bool is_float = sizeof(T) == 4;
  // fast_exp: the epilogue's e^dy and the focal modulation, arguments in [log(min normal), 87 / 708]
  const T lo_e = is_float ? T(-87.33) : T(-708.39), hi_e = is_float ? T(87.0) : T(708.0);
  // fast_exp2: the sweeps' exponents in base-2 units, in [-126, 126] ([-1022, 1022])
  const T lo_2 = is_float ? T(-126) : T(-1022), hi_2 = -lo_2;
  std::mt19937 gen(11);
  auto spread = [&](T lo, T hi) {
    std::uniform_real_distribution<double> u{double(lo), double(hi)};
    std::vector<T> xs;
    for (int i = 0; i < 100000; ++i) xs.push_back(static_cast<T>(u(gen)));
    for (T v : log_spread<T>(-40, 3, 20000, 13)) xs.push_back(-v);  // near 0, where r = x
    for (T v : {T(0), T(-0.5), T(0.5), std::nextafter(T(-0.5), T(0)), std::nextafter(T(0.5), T(1)), T(-1), T(1),
                T(-100.5), lo, hi})
      if (v >= lo && v <= hi) xs.push_back(v);
    return xs;
  };
  const double e_exp = worst_ulp<T>(spread(lo_e, hi_e), [](const B& x) { return simd::fast_exp(x); },
                                    [](long double x) { return std::exp(x); });
  // (double: the Taylor series' remainder at |r| = ln2 / 2 is 1.5 ulp of it)
  WARN("fast_exp: worst " << e_exp << " ulp");
  CHECK(e_exp <= (is_float ? 2.0 : 3.0));
  std::vector<T> us = spread(lo_2, hi_2);
  for (int n = -20; n <= 20; ++n)  // both sides of integers and of half-integers (where n's rounding flips)
    for (T d : {T(0), T(0.5)})
      for (T v : {T(n) + d, std::nextafter(T(n) + d, T(-1e9)), std::nextafter(T(n) + d, T(1e9))}) us.push_back(v);
  const double e_exp2 = worst_ulp<T>(us, [](const B& x) { return simd::fast_exp2(x); },
                                     [](long double x) { return std::exp2(x); });
  WARN("fast_exp2: worst " << e_exp2 << " ulp");
  CHECK(e_exp2 <= (is_float ? 2.0 : 3.0));
  // the clamps: never 0, subnormal, infinite or NaN; NaN goes to the low end
  alignas(64) T out[B::size];
  for (T v : {T(-1e4), -std::numeric_limits<T>::infinity(), std::numeric_limits<T>::quiet_NaN()}) {
    simd::fast_exp2(B(v)).store_aligned(out);
    CHECK(out[0] == std::numeric_limits<T>::min());
    simd::fast_exp(B(v)).store_aligned(out);
    CHECK(out[0] >= std::numeric_limits<T>::min());
    CHECK(out[0] <= T(1.01) * std::numeric_limits<T>::min());  // (e^-87.33 = 1.0065 x the smallest normal)
  }
  for (T v : {T(1e4), std::numeric_limits<T>::infinity()}) {
    simd::fast_exp2(B(v)).store_aligned(out);
    CHECK(out[0] == std::ldexp(T(1), -lo_2));
    simd::fast_exp(B(v)).store_aligned(out);
    CHECK(std::isfinite(out[0]));
  }
}
