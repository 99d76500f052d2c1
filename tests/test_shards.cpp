// The data-parallel contract (shared/DESIGN.md section 3): with totals summed over shards, the
// shards' values add up to the whole batch's value and each shard's gradient is its rows of the
// whole batch's gradient — for every loss of the registry, with empty and all-ignored shards;
// grad_scale; in-place gradients; totals that do not belong to the loss.
#include "support.hpp"

#include <cstring>
#include <limits>

using namespace lmf_test;

namespace {

/// Splits rows [0, n) at `cuts` into shards; shard s is rows [cuts[s], cuts[s+1]).
template <class T>
void check_shards(const lmf::Loss<T>& loss, const MatR<T>& x, const Labels& y, const std::vector<Index>& cuts,
                  double tol) {
  const Index n = x.rows(), c = x.cols();
  MatR<T> g_whole(n, c);
  const T v_whole = loss.value_and_gradient(x, y, g_whole);
  // each shard's totals, summed (an all-reduce)
  lmf::Totals total;
  for (std::size_t s = 0; s + 1 < cuts.size(); ++s) {
    const Index b = cuts[s], e = cuts[s + 1];
    const lmf::Totals t = loss.totals(x.middleRows(b, e - b), y.segment(b, e - b));
    if (s == 0) total = t;
    else total += t;
  }
  double v_sum = 0, v_only_sum = 0;
  MatR<T> g = MatR<T>::Constant(n, c, T(-7));
  for (std::size_t s = 0; s + 1 < cuts.size(); ++s) {
    const Index b = cuts[s], e = cuts[s + 1];
    auto gs = g.middleRows(b, e - b);
    v_sum += double(loss.value_and_gradient(x.middleRows(b, e - b), y.segment(b, e - b), gs, total));
    v_only_sum += double(loss.value(x.middleRows(b, e - b), y.segment(b, e - b), total));
  }
  CHECK(rel_error(v_sum, double(v_whole)) <= tol);
  CHECK(rel_error(v_only_sum, double(v_whole)) <= tol);
  CHECK(close(g, g_whole, tol, -1, element_floor(loss, c)));
}

}  // namespace

TEMPLATE_TEST_CASE("shards with summed totals reproduce the whole batch, for every loss", "[shards]", float, double) {
  using T = TestType;
  for (Index c : {2, 5, 40}) {
    const Index n = 97;
    MatR<T> x = random_logits<T>(n, c);
    Labels y = random_labels(n, c, 0.1);
    for (Index i = 60; i < 70; ++i) y(i) = -100;  // rows 60..69: an all-ignored shard below
    for (const LossCase& lc : registry(c, "mean", balanced_weights(c), 1.5, 30)) {
      for (const char* r : {"mean", "sum"}) {
        LossCase lr = lc;
        lr.reduction = r;
        if (!kind_allows(lr.kind, r)) continue;
        const lmf::Loss<T> loss = make_loss<T>(lr);
        INFO(describe(lr) << ", C " << c);
        const double tol = tolerance<T>();  // 1e-12 in double, 1e-5 in float
        check_shards(loss, x, y, {0, 97}, tol);                   // one shard
        check_shards(loss, x, y, {0, 33, 60, 70, 70, 97}, tol);   // uneven, all-ignored and empty shards
        check_shards(loss, x, y, {0, 1, 2, 50, 97}, tol);         // one-row shards
      }
    }
  }
}

TEMPLATE_TEST_CASE("grad_scale multiplies the gradient, not the value", "[shards]", float, double) {
  using T = TestType;
  const Index n = 50, c = 7;
  const MatR<T> x = random_logits<T>(n, c);
  const Labels y = random_labels(n, c, 0.1);
  for (const LossCase& lc : registry(c, "mean", balanced_weights(c))) {
    const lmf::Loss<T> loss = make_loss<T>(lc);
    INFO(describe(lc));
    MatR<T> g(n, c), g_scaled(n, c);
    const T v = loss.value_and_gradient(x, y, g);
    const lmf::Totals t = loss.totals(x, y);
    REQUIRE(rel_error(double(loss.value_and_gradient(x, y, g_scaled, t, T(0.25))), double(v)) <= tolerance<T>());
    REQUIRE(close(g_scaled, MatR<T>(g * T(0.25)), tolerance<T>()));
    REQUIRE(rel_error(double(loss.value_and_gradient(x, y, g_scaled, t, T(0))), double(v)) <= tolerance<T>());
    REQUIRE(g_scaled.isZero());
  }
}

TEMPLATE_TEST_CASE("in place: the gradient written over the logits equals a separate buffer", "[shards][inplace]",
                   float, double) {
  using T = TestType;
  for (Index c : {3, 40, 100}) {
    const Index n = 70;
    const MatR<T> x = random_logits<T>(n, c);
    const Labels y = random_labels(n, c, 0.1);
    for (const LossCase& lc : registry(c, "mean", balanced_weights(c))) {
      lmf::Loss<T> loss = make_loss<T>(lc);
      for (lmf::Kernel kern : {lmf::Kernel::scalar, lmf::Kernel::rows, lmf::Kernel::lanes, lmf::Kernel::automatic}) {
        loss.set_kernel(kern);
        INFO(describe(lc) << ", C " << c << ", kernel " << int(kern));
        MatR<T> g(n, c);
        const T v = loss.value_and_gradient(x, y, g);
        MatR<T> xi = x;
        REQUIRE(loss.value_and_gradient(xi, y, xi) == v);
        REQUIRE(xi == g);  // bitwise
        Mat<T> xc = x, gc(n, c);  // column-major: the lanes kernel's gathered tiles
        const T vc = loss.value_and_gradient(xc, y, gc);
        REQUIRE(loss.value_and_gradient(xc, y, xc) == vc);
        REQUIRE(xc == gc);
        std::vector<T> raw(x.data(), x.data() + x.size());  // raw pointer, same layout
        REQUIRE(loss.value_and_gradient(raw.data(), lmf::Layout::row_major(n, c), y.data(), raw.data()) == v);
        REQUIRE(std::memcmp(raw.data(), g.data(), raw.size() * sizeof(T)) == 0);
      }
    }
  }
}

TEMPLATE_TEST_CASE("partial overlaps and totals of another loss are errors, nothing written", "[shards][errors]",
                   float, double) {
  using T = TestType;
  const Index n = 12, c = 4;
  const Eigen::VectorXi counts = long_tail_counts(c);
  const lmf::LMFLoss<T> lmf_loss(counts);
  const auto seed = lmf::LMFLoss<T>::seed_code(counts);
  MatR<T> x = random_logits<T>(n, c);
  const Labels y = random_labels(n, c);
  MatR<T> g = MatR<T>::Constant(n, c, T(5));
  const MatR<T> x0 = x;
  SECTION("a gradient overlapping the logits without being them") {
    REQUIRE_THROWS_WITH(lmf_loss.value_and_gradient(x.data(), lmf::Layout::row_major(n - 1, c), y.data(), x.data() + c),
                        Catch::Contains("overlaps the logits without being them"));
    const lmf::Layout col = lmf::Layout::col_major(n, c);  // shifted by one element: a partial overlap
    REQUIRE_THROWS_WITH(lmf_loss.value_and_gradient(x.data(), col, y.data(), x.data() + 1),
                        Catch::Contains("overlaps"));
    REQUIRE(x == x0);
  }
  SECTION("totals of the wrong size, negative or NaN") {
    const lmf::Totals t2 = lmf_loss.totals(x, y);
    REQUIRE(t2.size() == 2);
    const lmf::Totals t3 = seed.totals(x, y);
    REQUIRE(t3.size() == 3);  // two denominators and the focal term's cross-entropy sum
    REQUIRE_THROWS_WITH(lmf_loss.value_and_gradient(x, y, g, t3), Catch::Contains("totals have 3 entries but this loss needs 2"));
    REQUIRE_THROWS_WITH(seed.value(x, y, t2), Catch::Contains("totals have 2 entries but this loss needs 3"));
    lmf::Totals bad = t2;
    bad[1] = -1;
    REQUIRE_THROWS_WITH(lmf_loss.value_and_gradient(x, y, g, bad), Catch::Contains("totals entry 1 is -1"));
    bad[1] = std::numeric_limits<double>::quiet_NaN();
    REQUIRE_THROWS_WITH(lmf_loss.value(x, y, bad), Catch::Contains("totals entry 1 is nan"));
    REQUIRE_THROWS_WITH(lmf_loss.value_and_gradient(x, y, g, t2, std::numeric_limits<T>::infinity()),
                        Catch::Contains("grad_scale is inf"));
    lmf::Totals sum = t2;
    REQUIRE_THROWS_AS(sum += t3, lmf::Error);
    lmf::Totals small = t2;  // totals that leave out this shard: w_y / D could exceed any bound
    small[0] = t2[0] * 1e-300;
    REQUIRE_THROWS_WITH(lmf_loss.value_and_gradient(x, y, g, small), Catch::Contains("less than this batch's own"));
    lmf::Totals huge_mean = t3;  // the seed preset's M = S / D beyond the logits' type
    huge_mean[2] = 1e300;
    if (sizeof(T) == 4)
      REQUIRE_THROWS_WITH(seed.value_and_gradient(x, y, g, huge_mean), Catch::Contains("beyond the range"));
    REQUIRE((g.array() == T(5)).all());
  }
}
