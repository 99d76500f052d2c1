// Parity with PyTorch running the published formulas (tests/make_golden.py): values and
// gradients of every loss, option and preset, in float and double, row- and column-major.
#include "support.hpp"

#include <algorithm>

using namespace lmf_test;

namespace {

const Golden& golden() {
  static const Golden g = read_golden(golden_path());
  return g;
}

/// The gradient's natural scale: sum_t |weight_t| * s_t * max_j w_j / D_t, the largest size a
/// gradient entry can have up to phi'. Errors are measured relative to max(max|reference|,
/// 1e-3 * scale): PyTorch's softmax - 1 and log_softmax lose digits on confident rows, which
/// leaves absolute errors of ~1e-16 * scale in its own gradient however small the entries are.
template <class T>
double gradient_scale(const lmf::Loss<T>& loss, const Labels& y) {
  double scale = 0;
  for (const lmf::Term<T>& t : loss.spec().terms) {
    double d = 0, wmax = t.w.size() ? double(t.w.maxCoeff()) : 1.0;
    for (Index i = 0; i < y.size(); ++i) {
      if (y(i) == loss.ignore_index()) continue;
      d += (t.w.size() && t.mean_over == lmf::MeanOver::target_weights) ? double(t.w(y(i))) : 1.0;
    }
    if (t.mean_over == lmf::MeanOver::all_rows) d = double(y.size());
    if (loss.reduction() != lmf::Reduction::mean) d = 1;
    if (d > 0) scale += std::abs(double(t.weight)) * double(t.s) * wmax / d;
  }
  return scale;
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
  // PyTorch's l = -log_softmax(z)_y and its softmax - 1 carry absolute errors ~eps * max|z|
  // (z = s x + b): in double, where the reference limits, every floor below grows with max|z| / 4
  // above 4, so that a tiny l or gradient entry (a confident row) is compared to the reference's
  // own accuracy, not beyond it
  double zmax = 0;
  for (const lmf::Term<T>& t : loss.spec().terms) {
    const double amax = t.a.size() ? double(t.a.cwiseAbs().maxCoeff()) : 1.0;
    const double bmax = t.b.size() ? double(t.b.cwiseAbs().maxCoeff()) : 0.0;
    zmax = std::max(zmax, double(t.s) * amax * double(x.cwiseAbs().maxCoeff() + 1) + bmax);
  }
  const double zfactor = sizeof(T) == 8 ? std::max(1.0, zmax / 4) : 1.0;
  const double scale = gradient_scale(loss, y);
  // Normwise, tiny references count as 1e-3 of the scale, or as the elementwise floor where that
  // is larger (label smoothing: a batch whose every entry is a cancellation of parts of size
  // eps * scale, e.g. C = 1, where the reference is 0 and float keeps an ulp of the parts): a
  // normwise bound is never stricter than the elementwise one.
  const double floor = std::max(1e-3, element_floor(loss, c.c)) * scale * zfactor;
  const double ev = rel_error(v, v_ref, 1e-3 * scale * zfactor), eg = rel_error(g, g_ref, floor);
  // Elementwise: every entry relative to itself, down to a floor. In float the reference (float64)
  // is far more accurate than lmf, so the floor is kElementFloor of the scale; in double it is the
  // reference that limits: PyTorch's log_softmax and softmax - 1 carry absolute errors of
  // ~eps * scale on every entry (a confident row's l ~ 1e-9 has only ~7 right digits there), so
  // entries are compared relatively down to 1e-3 of the scale, absolutely below.
  const double elem_floor = std::max(sizeof(T) == 4 ? kElementFloor : 1e-3, element_floor(loss, c.c));
  const double eg_elem = elementwise_error(g, g_ref, elem_floor * scale * zfactor);
  const double v_floor = elem_floor * std::max(1.0, v_ref.cwiseAbs().maxCoeff()) * zfactor;
  const double ev_elem = elementwise_error(v, v_ref, v_floor);
  worst_value = std::max({worst_value, ev, ev_elem});
  worst_grad = std::max({worst_grad, eg, eg_elem});
  INFO(c.name << " (" << c.kind << ", " << c.reduction << ", N " << c.n << ", C " << c.c << ", gamma "
              << c.gamma << ", s " << c.s << ")");
  // PyTorch forms z = s * x before subtracting the row maximum, so its float64 results carry
  // relative errors up to ~eps * max|z| (1e-12 at s 64, |x| 70); lmf subtracts first (see
  // math::adjusted_difference). The bound allows the reference's own error on top of 1e-12.
  // With label smoothing the value sums C terms -log p_c; PyTorch's recursive sum of them carries
  // up to ~C eps of its own relative error (C = 1000: 2.2e-13).
  const bool smoothing = element_floor(loss, c.c) > kElementFloor;
  const double tol = parity_tol<T>() + (sizeof(T) == 8 ? 8 * 2.2e-16 * zmax + (smoothing ? 2.2e-16 * c.c : 0.0) : 0.0);
  CHECK(ev <= tol);
  CHECK(eg <= tol);
  CHECK(ev_elem <= tol);
  CHECK(eg_elem <= tol);
}

}  // namespace

TEMPLATE_TEST_CASE("losses match PyTorch running the reference formulas", "[parity]", float, double) {
  using T = TestType;
  const Golden& g = golden();
  INFO("golden file " << golden_path() << ": " << g.header);
  REQUIRE(g.cases.size() >= 200);
  for (const std::string& kind : registry_kinds()) {  // every loss of the registry has golden cases
    INFO("loss kind " << kind);
    REQUIRE(std::count_if(g.cases.begin(), g.cases.end(), [&](const GoldenCase& c) { return c.kind == kind; }) >= 10);
  }
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
    CHECK(rel_error(lmf::class_balanced_weights<T>(counts, s.beta), w_ref) <= 10 * parity_tol<T>());
  }
}
