// Parity with PyTorch running the published formulas (tests/make_golden.py): values and
// gradients of every loss, option and preset, in float and double, row- and column-major.
#include "support.hpp"

using namespace lmf_test;

namespace {

const Golden& golden() {
  static const Golden g = read_golden(golden_path());
  return g;
}

template <class T, class M>
void check_case(const GoldenCase& c, double& worst_value, double& worst_grad) {
  M x(c.n, c.c);
  for (Index i = 0; i < c.n; ++i)
    for (Index j = 0; j < c.c; ++j) x(i, j) = static_cast<T>(c.logits[std::size_t(i * c.c + j)]);
  Labels y(c.n);
  for (Index i = 0; i < c.n; ++i) y(i) = c.labels[std::size_t(i)];
  MatR<double> g_ref(c.n, c.c);
  for (Index i = 0; i < c.n * c.c; ++i) g_ref.data()[i] = c.grad[std::size_t(i)];
  Vec<double> v_ref = Eigen::Map<const Vec<double>>(c.values.data(), Index(c.values.size()));

  const lmf::Loss<T> loss = make_loss<T>(c);
  M g(c.n, c.c);
  Vec<double> v;
  if (loss.reduction() == lmf::Reduction::none) {
    Vec<T> rows(c.n);
    loss.per_row_and_gradient(x, y, rows, g);
    v = rows.template cast<double>();
  } else {
    v = Vec<double>::Constant(1, double(loss.value_and_gradient(x, y, g)));
    // the value-only path gives the same value
    REQUIRE(loss.value(x, y) == Approx(v(0)).epsilon(parity_tol<T>()));
  }
  const double ev = rel_error(v, v_ref), eg = rel_error(g, g_ref);
  worst_value = std::max(worst_value, ev);
  worst_grad = std::max(worst_grad, eg);
  INFO(c.name << " (" << c.kind << ", " << c.reduction << ", N " << c.n << ", C " << c.c << ", gamma "
              << c.gamma << ", s " << c.s << ")");
  CHECK(ev <= parity_tol<T>());
  CHECK(eg <= parity_tol<T>());
}

}  // namespace

TEMPLATE_TEST_CASE("losses match PyTorch running the reference formulas", "[parity]", float, double) {
  using T = TestType;
  const Golden& g = golden();
  INFO("golden file " << golden_path() << ": " << g.header);
  REQUIRE(g.cases.size() >= 200);
  double wv = 0, wg = 0;
  for (const GoldenCase& c : g.cases) {
    check_case<T, Mat<T>>(c, wv, wg);
    check_case<T, MatR<T>>(c, wv, wg);
  }
  WARN("worst relative error vs PyTorch over " << g.cases.size() << " cases (" << (sizeof(T) == 8 ? "double" : "float")
                                               << "): value " << wv << ", gradient " << wg);
}

TEMPLATE_TEST_CASE("class statistics match the reference formulas", "[parity][class_stats]", float, double) {
  using T = TestType;
  const Golden& g = golden();
  REQUIRE(g.stats.size() >= 10);
  for (const GoldenStats& s : g.stats) {
    Eigen::Matrix<long, Eigen::Dynamic, 1> counts(Index(s.counts.size()));
    for (Index j = 0; j < counts.size(); ++j) counts(j) = s.counts[std::size_t(j)];
    const Vec<double> m_ref = Eigen::Map<const Vec<double>>(s.margins.data(), counts.size());
    const Vec<double> w_ref = Eigen::Map<const Vec<double>>(s.class_balanced.data(), counts.size());
    INFO("counts " << counts.transpose() << ", max_m " << s.max_m << ", beta " << s.beta);
    CHECK(rel_error(lmf::ldam_margins<T>(counts, T(s.max_m)), m_ref) <= parity_tol<T>());
    // the reference computes 1 - beta^n by subtraction, which loses up to ~1e-12 relative for
    // beta = 0.9999 and small n; lmf uses -expm1(n log beta), the exact form
    CHECK(rel_error(lmf::class_balanced_weights<T>(counts, T(s.beta)), w_ref) <= 10 * parity_tol<T>());
  }
}
