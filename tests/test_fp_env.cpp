// Subnormal numbers (cpu/fp_env.hpp): every entry point leaves the caller's MXCSR control bits as
// they were, on the calling thread and on OpenMP's pool threads; the kernels compute the same
// numbers whether or not the caller has set FTZ/DAZ; a subnormal parameter turns the flush off.
#include "support.hpp"

#include <lmf/cpu/fp_env.hpp>

#include <cstdint>
#include <cstring>
#include <type_traits>

#if LMF_HAS_MXCSR
#include <xmmintrin.h>

#if defined(_OPENMP)
#include <omp.h>
#endif

using namespace lmf_test;

namespace {

constexpr unsigned kControl = ~lmf::detail::kMxcsrStatusBits & 0xFFFFu;

/// Sets MXCSR's control bits to `control` (status flags cleared) on this thread.
void set_control(unsigned control) { _mm_setcsr(control & kControl); }
unsigned control() { return _mm_getcsr() & kControl; }

/// Logits of a trained network: a dominant target, the others a few units below it. With LDAM's
/// s = 30 the gradient entries of the others, (s / N) p_c with p_c ~ exp(30 (z_c - z_y + m_y)),
/// are then subnormal: gaps around 3.2 in float (exp(-96) ~ 2e-42), around 24.5 in double
/// (exp(-735) ~ 1e-319).
template <class T>
void trained_batch(Index n, Index c, MatR<T>& x, Labels& y) {
  const double gap = sizeof(T) == 4 ? 3.2 : 24.5;
  x.resize(n, c);
  y.resize(n);
  std::mt19937 gen(7);
  std::normal_distribution<double> d(0, 0.15);
  for (Index i = 0; i < n; ++i) {
    y(i) = int(i % c);
    for (Index j = 0; j < c; ++j) x(i, j) = T(8 - gap + d(gen));
    x(i, y(i)) = T(8);
  }
}

/// How many gradient entries of LDAM (s = 30, margins m) on this batch have an exact value in
/// T's subnormal range, (0, smallest normal): estimated in long double (its range reaches
/// 1e-4951) as (s / N) exp(s (z_c - z_y + m_y)) (the target dominates the denominator).
template <class T>
Index subnormal_gradient_entries(const MatR<T>& x, const Labels& y, const Vec<T>& m) {
  Index count = 0;
  const long double s = 30, n = static_cast<long double>(x.rows());
  for (Index i = 0; i < x.rows(); ++i)
    for (Index j = 0; j < x.cols(); ++j) {
      if (j == y(i)) continue;
      const long double g =
          s / n * std::exp(s * ((long double)x(i, j) - (long double)x(i, y(i)) + (long double)m(y(i))));
      count += g > 0 && g < (long double)std::numeric_limits<T>::min();
    }
  return count;
}

/// Every entry point of a Loss, forms with and without outputs, plus an error path.
template <class T>
void call_every_entry_point(const lmf::Loss<T>& loss, const MatR<T>& x, const Labels& y, bool per_row = true) {
  MatR<T> g(x.rows(), x.cols());
  Vec<T> rows(x.rows());
  T v = loss.value(x, y) + loss.value_and_gradient(x, y, g);
  const lmf::Totals t = loss.totals(x, y);
  v += loss.value(x, y, t) + loss.value_and_gradient(x, y, g, t);
  if (per_row) {  // (undefined for the seed-code preset's batch-mean focus)
    loss.per_row(x, y, rows);
    loss.per_row_and_gradient(x, y, rows, g);
  }
  MatR<T> bad = x;
  bad(bad.rows() / 2, 0) = std::numeric_limits<T>::quiet_NaN();
  T out = 0;
  REQUIRE_FALSE(loss.try_value(bad, y, out));  // found by the kernel pass (value only)
  REQUIRE_FALSE(loss.try_value_and_gradient(bad, y, g, out));
  REQUIRE(std::isfinite(v));
}

}  // namespace

TEMPLATE_TEST_CASE("every entry point leaves the caller's MXCSR control bits unchanged", "[fp_env]", float, double) {
  using T = TestType;
  MatR<T> x;
  Labels y;
  trained_batch<T>(300, 10, x, y);
  MatR<T> wide;
  Labels wy;
  trained_batch<T>(40, 200, wide, wy);  // the rows kernel
  const unsigned saved = _mm_getcsr();
  // the default state, FTZ only, DAZ only, both, and round-toward-zero with every exception masked
  for (unsigned state : {0x1F80u, 0x9F80u, 0x1FC0u, 0x9FC0u, 0x7F80u}) {
    for (lmf::Kernel k : {lmf::Kernel::automatic, lmf::Kernel::scalar, lmf::Kernel::lanes, lmf::Kernel::rows}) {
      for (int threads : {1, 2}) {
        DYNAMIC_SECTION("MXCSR " << std::hex << state << std::dec << ", kernel " << int(k) << ", threads " << threads) {
          lmf::Loss<T> loss = lmf::LMFLoss<T>(long_tail_counts(10));
          loss.set_kernel(k);
          loss.set_threads(threads);
          lmf::Loss<T> official = lmf::LMFLoss<T>::official_code(long_tail_counts(200));
          official.set_kernel(k);
          official.set_threads(threads);
          lmf::Loss<T> seed = lmf::LMFLoss<T>::seed_code(long_tail_counts(200), Vec<T>::Ones(200));
          seed.set_kernel(k);
          seed.set_threads(threads);
          set_control(state);
          call_every_entry_point(loss, x, y);
          call_every_entry_point(official, wide, wy);
          call_every_entry_point(seed, wide, wy, false);
          const unsigned after = control();
          _mm_setcsr(saved);
          REQUIRE(after == (state & kControl));
        }
      }
    }
  }
  SECTION("the sigmoid focal loss") {
    for (unsigned state : {0x1F80u, 0x9FC0u, 0x7F80u}) {
      lmf::SigmoidFocalLoss<T> loss;
      MatR<T> t = MatR<T>::Zero(x.rows(), x.cols()), g(x.rows(), x.cols()), v(x.rows(), x.cols());
      for (Index i = 0; i < x.rows(); ++i) t(i, y(i)) = T(1);
      set_control(state);
      T s = loss.value(x, t) + loss.value_and_gradient(x, t, g);
      loss.per_element(x, t, v);
      loss.per_element_and_gradient(x, t, v, g);
      const unsigned after = control();
      _mm_setcsr(saved);
      REQUIRE(std::isfinite(s));
      REQUIRE(after == (state & kControl));
    }
  }
#if defined(_OPENMP)
  SECTION("OpenMP's pool threads keep their own MXCSR") {
    // a batch large enough for a team of two; the pool threads' MXCSR must be what it was before
    MatR<T> big;
    Labels by;
    trained_batch<T>(Index(1) << 13, 100, big, by);
    lmf::Loss<T> loss = lmf::LMFLoss<T>(long_tail_counts(100));
    loss.set_threads(2);
    std::vector<unsigned> before(2, 0), after(2, 0);
#pragma omp parallel num_threads(2)
    before[std::size_t(omp_get_thread_num())] = control();
    MatR<T> g(big.rows(), big.cols());
    REQUIRE(std::isfinite(loss.value_and_gradient(big, by, g)));
#pragma omp parallel num_threads(2)
    after[std::size_t(omp_get_thread_num())] = control();
    REQUIRE(before == after);
  }
#endif
}

TEMPLATE_TEST_CASE("the same numbers whether or not the caller set FTZ/DAZ, on every kernel and thread count",
                   "[fp_env]", float, double) {
  using T = TestType;
  const unsigned saved = _mm_getcsr();
  // 200 x 12 on one thread; 24000 x 12 (above LMF_PARALLEL_MIN_LOGITS) on two threads, where
  // OpenMP's pool threads must flush too: their result must equal the one-thread result bitwise
  for (Index n : {Index(200), Index(24000)}) {
    MatR<T> x;
    Labels y;
    trained_batch<T>(n, 12, x, y);
    const Vec<T> m = lmf::ldam_margins<T>(long_tail_counts(12), T(0.5));
    // the batch reaches T's subnormal range, else this test would prove nothing
    REQUIRE(subnormal_gradient_entries<T>(x, y, m) > x.size() / 4);
    for (lmf::Kernel k : {lmf::Kernel::scalar, lmf::Kernel::lanes, lmf::Kernel::rows}) {
      INFO("kernel " << int(k) << ", N " << n);
      lmf::Loss<T> loss = lmf::LDAMLoss<T>(long_tail_counts(12));
      loss.set_kernel(k);
      loss.set_threads(1);
      MatR<T> g_plain(x.rows(), x.cols()), g_ftz(x.rows(), x.cols()), g_two(x.rows(), x.cols());
      set_control(0x1F80u);
      const T v_plain = loss.value_and_gradient(x, y, g_plain);
      set_control(0x9FC0u);
      const T v_ftz = loss.value_and_gradient(x, y, g_ftz);
      set_control(0x1F80u);
      loss.set_threads(2);
      const T v_two = loss.value_and_gradient(x, y, g_two);
      _mm_setcsr(saved);
      REQUIRE(v_plain == v_ftz);
      REQUIRE(g_plain == g_ftz);  // bitwise: the kernels flush in both calls
      if (n * 12 >= lmf::detail::kParallelMinLogits) {
        REQUIRE(v_two == v_plain);
        REQUIRE(g_two == g_plain);
      }
    }
  }
}

TEST_CASE("a gradient factor that is subnormal in T turns the flush off (it would be 0)", "[fp_env]") {
  // grad_scale 1e-38 over a mean of 64 rows: each row's factor T(grad_scale / 64) is subnormal in
  // float; with FTZ/DAZ it would be 0 and so would the whole gradient
  const lmf::CrossEntropyLoss<float> ce;
  const Mat<float> x = random_logits<float>(64, 3);
  const Labels y = random_labels(64, 3);
  Mat<float> g_one(64, 3), g_tiny(64, 3);
  const lmf::Totals t = ce.totals(x, y);
  ce.value_and_gradient(x, y, g_one, t, 1.0f);
  ce.value_and_gradient(x, y, g_tiny, t, 1e-38f);
  REQUIRE(g_tiny.cwiseAbs().maxCoeff() > 0.0f);
  // subnormal results keep ~10 significant bits here
  REQUIRE(rel_error(g_tiny.cast<double>() / 1e-38, g_one.cast<double>(), 1e-3) < 1e-2);
}

TEST_CASE("a subnormal class weight turns the flush off (it would be read as 0)", "[fp_env]") {
  // with DAZ the weights 1e-40 would be 0 inside the kernel while the denominator (formed in
  // double, outside) is not: the value would be 0
  lmf::CrossEntropyLoss<float>::Options o;
  o.class_weights = Eigen::Vector3f(1e-40f, 1e-40f, 1e-40f);
  const lmf::CrossEntropyLoss<float> weighted(o), plain;
  const Mat<float> x = random_logits<float>(64, 3);
  const Labels y = random_labels(64, 3);
  for (lmf::Kernel k : {lmf::Kernel::scalar, lmf::Kernel::lanes, lmf::Kernel::rows}) {
    lmf::Loss<float> w = weighted, p = plain;
    w.set_kernel(k);
    p.set_kernel(k);
    INFO("kernel " << int(k));
    REQUIRE(rel_error(double(w.value(x, y)), double(p.value(x, y))) < 1e-5);
  }
}

TEMPLATE_TEST_CASE("any_subnormal finds exactly the subnormal numbers", "[fp_env]", float, double) {
  // (it works on the bits, so that it vectorizes: the boundaries of the subnormal range)
  using T = TestType;
  using L = std::numeric_limits<T>;
  const T quiet = L::quiet_NaN(), inf = L::infinity();
  // a NaN whose payload is the lowest mantissa bit (the bit test subtracts 1 from the magnitude)
  using U = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
  const U low_payload_bits = U((~U(0) >> 1) - ((U(1) << (L::digits - 1)) - 1) + 1);  // exponent all ones, mantissa 1
  T low_payload;
  std::memcpy(&low_payload, &low_payload_bits, sizeof low_payload);
  REQUIRE(std::isnan(low_payload));
  const T not_subnormal[] = {T(0),  -T(0), L::min(),        -L::min(),   L::max(),     -L::max(), inf,
                             -inf,  quiet, -quiet,          T(1),        low_payload,  -low_payload,
                             L::signaling_NaN()};
  const T subnormal[] = {L::denorm_min(), -L::denorm_min(), L::min() - L::denorm_min(), -(L::min() - L::denorm_min()),
                         L::min() / T(2)};
  std::vector<T> v(std::begin(not_subnormal), std::end(not_subnormal));
  REQUIRE_FALSE(lmf::detail::any_subnormal(v.data(), Index(v.size())));
  REQUIRE_FALSE(lmf::detail::any_subnormal<T>(nullptr, 3));
  for (T s : subnormal) {
    INFO("subnormal " << s);
    REQUIRE(lmf::detail::is_subnormal(s));
    for (std::size_t at : {std::size_t(0), v.size() / 2, v.size()}) {
      std::vector<T> w = v;
      w.insert(w.begin() + std::ptrdiff_t(at), s);
      REQUIRE(lmf::detail::any_subnormal(w.data(), Index(w.size())));
    }
  }
  for (T x : not_subnormal) REQUIRE_FALSE(lmf::detail::is_subnormal(x));
}

#endif  // LMF_HAS_MXCSR (elsewhere nothing is flushed and nothing is registered here)
