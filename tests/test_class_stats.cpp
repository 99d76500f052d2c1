// Class statistics from counts: margins, class-balanced and inverse-frequency weights, DRW,
// label counting — and their errors.
#include "support.hpp"

#include <limits>

using namespace lmf_test;

TEMPLATE_TEST_CASE("ldam_margins", "[class_stats]", float, double) {
  using T = TestType;
  Eigen::VectorXi counts(4);
  counts << 5000, 500, 50, 5;
  const Vec<T> m = lmf::ldam_margins<T>(counts, T(0.5));
  SECTION("the rarest class gets max_m, the others (n_min/n_j)^(1/4) of it") {
    REQUIRE(m.maxCoeff() == Approx(0.5));
    REQUIRE(m(3) == Approx(0.5));
    for (Index j = 0; j < 4; ++j) REQUIRE(m(j) == Approx(0.5 * std::pow(5.0 / counts(j), 0.25)));
  }
  SECTION("margins decrease with the count") {
    for (Index j = 1; j < 4; ++j) REQUIRE(m(j) > m(j - 1));
  }
  SECTION("max_m 0 gives zero margins; any integer or real count type works") {
    REQUIRE(lmf::ldam_margins<T>(counts, T(0)).isZero());
    Eigen::Matrix<std::int64_t, Eigen::Dynamic, 1> c64 = counts.cast<std::int64_t>();
    REQUIRE(lmf::ldam_margins<T>(c64, T(0.5)).isApprox(m));
    Eigen::VectorXd cd = counts.cast<double>();
    REQUIRE(lmf::ldam_margins<T>(cd, T(0.5)).isApprox(m));
  }
}

TEMPLATE_TEST_CASE("class_balanced_weights and inverse_frequency_weights", "[class_stats]", float, double) {
  using T = TestType;
  Eigen::VectorXi counts(4);
  counts << 5000, 500, 50, 5;
  SECTION("class-balanced weights sum to C and grow as counts shrink") {
    const Vec<T> w = lmf::class_balanced_weights<T>(counts, 0.9999);
    REQUIRE(w.sum() == Approx(4.0));
    for (Index j = 1; j < 4; ++j) REQUIRE(w(j) > w(j - 1));
    // (1 - beta) / (1 - beta^n), normalized
    Vec<double> ref(4);
    for (Index j = 0; j < 4; ++j) ref(j) = (1 - 0.9999) / (1 - std::pow(0.9999, double(counts(j))));
    ref *= 4.0 / ref.sum();
    REQUIRE(rel_error(w, ref) < (sizeof(T) == 8 ? 1e-11 : 1e-5));
  }
  SECTION("beta is a double for every T: float weights are the double weights rounded once") {
    // with a float beta, 0.9999f = 0.99989998 moved the weights by 3.7e-5 relative
    const Vec<double> wd = lmf::class_balanced_weights<double>(counts, 0.9999);
    const Vec<T> wt = lmf::class_balanced_weights<T>(counts, 0.9999);
    REQUIRE(elementwise_error(wt, wd, 0.0) <= std::numeric_limits<T>::epsilon());
  }
  SECTION("beta 0 gives all ones") {
    REQUIRE(lmf::class_balanced_weights<T>(counts, T(0)).isApprox(Vec<T>::Ones(4)));
  }
  SECTION("inverse frequency: proportional to 1/n, sums to C, the beta -> 1 limit") {
    const Vec<T> w = lmf::inverse_frequency_weights<T>(counts);
    REQUIRE(w.sum() == Approx(4.0));
    REQUIRE(w(0) * 5000 == Approx(w(3) * 5));
    const Vec<T> near = lmf::class_balanced_weights<T>(counts, T(1) - T(1e-7));
    REQUIRE(rel_error(near, w) < 1e-3);
  }
  SECTION("equal counts give equal weights") {
    Eigen::VectorXi same = Eigen::VectorXi::Constant(5, 70);
    REQUIRE(lmf::class_balanced_weights<T>(same, 0.999).isApprox(Vec<T>::Ones(5)));
    REQUIRE(lmf::inverse_frequency_weights<T>(same).isApprox(Vec<T>::Ones(5)));
  }
}

TEST_CASE("DeferredReweighting switches to class-balanced weights at start_epoch", "[class_stats]") {
  Eigen::VectorXi counts(3);
  counts << 1000, 100, 10;
  const lmf::DeferredReweighting<float> drw(counts, 160, 0.9999);
  REQUIRE(drw.weights(0).isApprox(Eigen::VectorXf::Ones(3)));
  REQUIRE(drw.weights(159).isApprox(Eigen::VectorXf::Ones(3)));
  REQUIRE_FALSE(drw.reweighting(159));
  REQUIRE(drw.reweighting(160));
  REQUIRE(drw.weights(160).isApprox(lmf::class_balanced_weights<float>(counts, 0.9999)));
  REQUIRE(drw.weights(199).isApprox(drw.weights(160)));
  REQUIRE_THROWS_AS(lmf::DeferredReweighting<float>(counts, -1), lmf::Error);
}

TEST_CASE("class_counts counts labels, skips ignore_index and rejects the rest", "[class_stats]") {
  Eigen::VectorXi y(7);
  y << 0, 2, 2, -100, 1, 2, 0;
  const auto n = lmf::class_counts(y, 4);
  REQUIRE(n.size() == 4);
  REQUIRE(n(0) == 2);
  REQUIRE(n(1) == 1);
  REQUIRE(n(2) == 3);
  REQUIRE(n(3) == 0);
  y(4) = 4;
  REQUIRE_THROWS_WITH(lmf::class_counts(y, 4), Catch::Contains("label 4 at position 4 is outside [0, 4)"));
  REQUIRE_THROWS_AS(lmf::class_counts(y, 0), lmf::Error);
}

TEST_CASE("bad counts, max_m and beta are errors that name the problem", "[class_stats][errors]") {
  Eigen::VectorXi counts(3);
  counts << 10, 0, 5;
  REQUIRE_THROWS_AS(lmf::ldam_margins<float>(counts, 0.5f), std::invalid_argument);
  REQUIRE_THROWS_WITH(lmf::ldam_margins<float>(counts, 0.5f), Catch::Contains("class 1 has count 0"));
  counts(1) = -3;
  REQUIRE_THROWS_WITH(lmf::class_balanced_weights<float>(counts, 0.9f), Catch::Contains("class 1 has count -3"));
  REQUIRE_THROWS_WITH(lmf::inverse_frequency_weights<float>(counts), Catch::Contains("class 1 has count -3"));
  REQUIRE_THROWS_WITH(lmf::ldam_margins<float>(Eigen::VectorXi(), 0.5f), Catch::Contains("empty"));
  counts(1) = 7;
  REQUIRE_THROWS_WITH(lmf::ldam_margins<float>(counts, -0.1f), Catch::Contains("max_m is -0.1"));
  REQUIRE_THROWS_WITH(lmf::class_balanced_weights<float>(counts, 1.0f), Catch::Contains("beta is 1"));
  REQUIRE_THROWS_WITH(lmf::class_balanced_weights<float>(counts, -0.5f), Catch::Contains("beta is -0.5"));
  Eigen::VectorXd nan_counts(2);
  nan_counts << 3, std::nan("");
  REQUIRE_THROWS_WITH(lmf::ldam_margins<double>(nan_counts, 0.5), Catch::Contains("class 1 has count nan"));
}
