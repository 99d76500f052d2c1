// Numerics: focal's phi and phi' against their closed forms, finite values and gradients for
// gamma in {0, 0.5, 1, 2, 5} where p_t -> 1 (PyTorch: NaN for gamma < 1), logits up to +-1e4
// with s up to 64, and l >= 0 exactly.
#include "support.hpp"

#include <limits>

using namespace lmf_test;

TEMPLATE_TEST_CASE("focus: phi and phi' in every regime", "[numerics]", float, double) {
  using T = TestType;
  for (T gamma : {T(0), T(0.5), T(1), T(1.5), T(2), T(5)}) {
    INFO("gamma " << gamma);
    SECTION("l = 0: phi = 0, phi' = 1 for gamma 0 and 0 otherwise") {
      const auto f = lmf::math::focus(T(0), gamma);
      REQUIRE(f.value == 0);
      REQUIRE(f.derivative == (gamma == 0 ? T(1) : T(0)));
    }
    SECTION("tiny l (p_t -> 1): finite and equal to the series (1+gamma) l^gamma") {
      for (T l : {T(1e-30), T(1e-12), T(1e-7), T(1e-4)}) {
        const auto f = lmf::math::focus(l, gamma);
        REQUIRE(std::isfinite(f.value));
        REQUIRE(std::isfinite(f.derivative));
        const double expected = (1 + double(gamma)) * std::pow(double(l), double(gamma));
        REQUIRE(rel_error(double(f.derivative), expected, 1e-300) < 1e-3 + 2 * double(l) * (1 + double(gamma)));
      }
    }
    SECTION("moderate l: the closed forms") {
      for (double l : {0.01, 0.3, 1.0, 4.0, 30.0}) {
        const auto f = lmf::math::focus(T(l), gamma);
        const double p = std::exp(-l), q = 1 - p, g = double(gamma);
        const double phi = std::pow(q, g) * l;
        const double dphi = std::pow(q, g) + (g == 0 ? 0.0 : g * p * l * std::pow(q, g - 1));
        REQUIRE(rel_error(double(f.value), phi, 1e-300) < (sizeof(T) == 8 ? 1e-14 : 1e-6));
        REQUIRE(rel_error(double(f.derivative), dphi, 1e-300) < (sizeof(T) == 8 ? 1e-13 : 1e-6));
      }
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
        typename lmf::LMFLoss<T>::Options o;
        o.gamma = gamma;
        o.s = s;
        const lmf::LMFLoss<T> loss(counts, o);
        Mat<T> x = random_logits<T>(40, c) * scale;
        const Labels y = random_labels(40, c);
        for (Index i = 0; i < 20; ++i) x(i, y(i)) = scale * T(3);  // confident rows: p_t -> 1
        x.row(20).setConstant(scale);                              // ties at the maximum
        x.row(21).setConstant(-scale);
        Mat<T> g(40, c);
        const T v = loss.value_and_gradient(x, y, g);
        INFO("gamma " << gamma << ", s " << s << ", |x| up to " << 5 * scale);
        REQUIRE(std::isfinite(v));
        REQUIRE(g.allFinite());
        Vec<T> rows(40);
        loss.per_row(x, y, rows);
        REQUIRE(rows.allFinite());
        REQUIRE((rows.array() >= 0).all());
      }
    }
  }
}

TEST_CASE("the cross entropy of a dominant target keeps full relative accuracy", "[numerics]") {
  // l = log(1 + e^-20) ~ 2.06e-9: computed via log1p of the sum without the maximum
  Mat<double> x(1, 2);
  x << 20.0, 0.0;
  Labels y(1);
  y << 0;
  const double l = lmf::CrossEntropyLoss<double>().value(x, y);
  REQUIRE(rel_error(l, std::log1p(std::exp(-20.0)), 1e-300) < 1e-15);
  Mat<double> g(1, 2);
  lmf::CrossEntropyLoss<double>().value_and_gradient(x, y, g);
  const double p1 = std::exp(-20.0) / (1 + std::exp(-20.0));
  REQUIRE(rel_error(g(0, 0), -p1, 1e-300) < 1e-15);  // softmax_y - 1 without cancellation
  REQUIRE(rel_error(g(0, 1), p1, 1e-300) < 1e-15);
}
