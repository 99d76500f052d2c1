// Bad input: an lmf::Error (a std::invalid_argument) whose message names the problem, thrown
// before anything is written — the caller's gradient and per-row buffers stay bitwise intact.
#include "support.hpp"

#include <algorithm>
#include <cstring>
#include <limits>

using namespace lmf_test;

namespace {

/// Runs `call(grad, values)` on sentinel-filled buffers; requires an lmf::Error containing
/// `expected` and both buffers bitwise unchanged.
template <class T, class F>
void require_error_untouched(Index n, Index c, const std::string& expected, F&& call) {
  Mat<T> grad = Mat<T>::Constant(n, c, T(-777.25));
  Vec<T> values = Vec<T>::Constant(n, T(31.5));
  const Mat<T> grad0 = grad;
  const Vec<T> values0 = values;
  bool thrown = false;
  try {
    call(grad, values);
  } catch (const lmf::Error& e) {
    thrown = true;
    const std::invalid_argument& base = e;  // lmf::Error is a std::invalid_argument
    INFO("message: " << base.what());
    REQUIRE(std::string(e.what()).find(expected) != std::string::npos);
  }
  REQUIRE(thrown);
  REQUIRE(std::memcmp(grad.data(), grad0.data(), sizeof(T) * std::size_t(grad.size())) == 0);
  REQUIRE(std::memcmp(values.data(), values0.data(), sizeof(T) * std::size_t(values.size())) == 0);
}

}  // namespace

TEMPLATE_TEST_CASE("invalid batches are rejected before anything is written, by every loss", "[errors]", float,
                   double) {
  using T = TestType;
  const Index n = 40, c = 5;
  const Mat<T> x = random_logits<T>(n, c);
  const Labels y = random_labels(n, c);
  for (const LossCase& lc : registry(c)) {
    const lmf::Loss<T> loss = make_loss<T>(lc);
    INFO(describe(lc));
    auto fused = [&](const Mat<T>& xx, const Labels& yy) {
      return [&, xx, yy](Mat<T>& g, Vec<T>&) { loss.value_and_gradient(xx, yy, g); };
    };
    auto both = [&](const Mat<T>& xx, const Labels& yy) {
      return [&, xx, yy](Mat<T>& g, Vec<T>& v) { loss.per_row_and_gradient(xx, yy, v, g); };
    };
    const bool has_per_row = lc.kind != "lmf_seed" && lc.kind != "lmf_seed2024";
    {
      INFO("a label >= C, at the last row (after rows that would have been written)");
      Labels yb = y;
      yb(n - 1) = 5;
      require_error_untouched<T>(n, c, "label 5 at row 39 is outside [0, 5)", fused(x, yb));
      if (has_per_row) require_error_untouched<T>(n, c, "label 5 at row 39 is outside [0, 5)", both(x, yb));
      REQUIRE_THROWS_AS(loss.value(x, yb), lmf::Error);
    }
    {
      INFO("a negative label other than ignore_index");
      Labels yb = y;
      yb(17) = -1;
      require_error_untouched<T>(n, c, "label -1 at row 17 is outside [0, 5)", fused(x, yb));
    }
    {
      INFO("several bad labels, two in one group of four rows of the label pass: the first is named");
      Labels yb = y;
      yb(30) = 7;
      yb(29) = -3;
      yb(38) = 5;
      require_error_untouched<T>(n, c, "label -3 at row 29 is outside [0, 5)", fused(x, yb));
    }
    {
      INFO("the wrong number of labels");
      Labels short_y = y.head(n - 1);
      require_error_untouched<T>(n, c, "labels have 39x1 entries but logits have 40 rows", fused(x, short_y));
    }
    if (loss.classes() != 0) {
      INFO("logits with another number of classes than the loss");
      Mat<T> x6 = random_logits<T>(n, 6);
      Mat<T> g6 = Mat<T>::Constant(n, 6, T(3));
      REQUIRE_THROWS_WITH(loss.value_and_gradient(x6, y, g6), Catch::Contains("logits have 6 classes but the loss has 5"));
      REQUIRE((g6.array() == T(3)).all());
    }
    {
      INFO("a gradient of the wrong shape");
      Mat<T> g = Mat<T>::Constant(n, c + 1, T(3));
      REQUIRE_THROWS_WITH(loss.value_and_gradient(x, y, g), Catch::Contains("gradient is 40x6"));
      REQUIRE((g.array() == T(3)).all());
    }
    for (T bad : {std::numeric_limits<T>::quiet_NaN(), std::numeric_limits<T>::infinity(),
                  -std::numeric_limits<T>::infinity()}) {
      INFO("a bad logit " << bad << " at the last counted row");
      Mat<T> xb = x;
      Labels yb = y;
      yb(n - 1) = 2;
      xb(n - 1, 3) = bad;
      require_error_untouched<T>(n, c, "logit at row 39, class 3 is", fused(xb, yb));
      if (has_per_row) require_error_untouched<T>(n, c, "logit at row 39, class 3 is", both(xb, yb));
      // value-only: detected by the kernel, then located: same message
      REQUIRE_THROWS_WITH(loss.value(xb, yb), Catch::Contains("logit at row 39, class 3 is"));
    }
    {
      INFO("logits so large that s * x overflows");
      Mat<T> xb = x;
      Labels yb = y;
      yb(2) = 0;
      xb(2, 1) = std::numeric_limits<T>::max() / T(4);
      require_error_untouched<T>(n, c, "at row 2, class 1 is too large", fused(xb, yb));
    }
    {
      INFO("a NaN logit in an ignored row is never used");
      Mat<T> xb = x;
      Labels yb = y;
      xb(5, 0) = std::numeric_limits<T>::quiet_NaN();
      yb(5) = -100;
      Mat<T> g(n, c);
      REQUIRE(std::isfinite(loss.value_and_gradient(xb, yb, g)));
      REQUIRE(g.row(5).isZero());
    }
    {
      INFO("raw entry point: null pointers");
      T out = 0;
      REQUIRE_FALSE(loss.try_value_and_gradient(x.data(), lmf::Layout::col_major(n, c), y.data(), static_cast<T*>(nullptr), out));
      REQUIRE_THROWS_WITH(loss.value(static_cast<const T*>(nullptr), lmf::Layout::col_major(n, c), y.data()),
                          Catch::Contains("null"));
    }
  }
}

TEMPLATE_TEST_CASE("invalid options are rejected at construction", "[errors]", float, double) {
  using T = TestType;
  Eigen::VectorXi counts(3);
  counts << 100, 10, 1;
  SECTION("counts <= 0 or empty") {
    Eigen::VectorXi bad = counts;
    bad(2) = 0;
    REQUIRE_THROWS_WITH(lmf::LMFLoss<T>(bad), Catch::Contains("class 2 has count 0"));
    REQUIRE_THROWS_WITH(lmf::LDAMLoss<T>(bad), Catch::Contains("class 2 has count 0"));
    REQUIRE_THROWS_WITH(lmf::LMFLoss<T>(Eigen::VectorXi()), Catch::Contains("class counts are empty"));
    REQUIRE_THROWS_AS(lmf::LMFLoss<T>::official_code(bad), std::invalid_argument);
    REQUIRE_THROWS_AS(lmf::LMFLoss<T>::seed_code(bad), std::invalid_argument);
  }
  SECTION("max_m < 0") {
    typename lmf::LMFLoss<T>::Options o;
    o.max_m = T(-0.5);
    REQUIRE_THROWS_WITH(lmf::LMFLoss<T>(counts, o), Catch::Contains("max_m is -0.5"));
  }
  SECTION("gamma < 0 or not finite") {
    typename lmf::FocalLoss<T>::Options f;
    f.gamma = T(-1);
    REQUIRE_THROWS_WITH(lmf::FocalLoss<T>(f), Catch::Contains("gamma is -1"));
    typename lmf::LMFLoss<T>::Options o;
    o.gamma = std::numeric_limits<T>::quiet_NaN();
    REQUIRE_THROWS_WITH(lmf::LMFLoss<T>(counts, o), Catch::Contains("gamma is nan"));
  }
  SECTION("s <= 0") {
    typename lmf::LDAMLoss<T>::Options o;
    o.s = T(0);
    REQUIRE_THROWS_WITH(lmf::LDAMLoss<T>(counts, o), Catch::Contains("s is 0"));
    typename lmf::LMFLoss<T>::Options l;
    l.s = T(-30);
    REQUIRE_THROWS_WITH(lmf::LMFLoss<T>(counts, l), Catch::Contains("s is -30"));
  }
  SECTION("class weights negative, non-finite or of the wrong length") {
    typename lmf::LMFLoss<T>::Options o;
    o.class_weights = Vec<T>::Ones(3);
    o.class_weights(1) = T(-2);
    REQUIRE_THROWS_WITH(lmf::LMFLoss<T>(counts, o), Catch::Contains("class weight of class 1 is -2"));
    o.class_weights(1) = std::numeric_limits<T>::infinity();
    REQUIRE_THROWS_WITH(lmf::LMFLoss<T>(counts, o), Catch::Contains("class weight of class 1 is inf"));
    o.class_weights = Vec<T>::Ones(4);
    REQUIRE_THROWS_WITH(lmf::LMFLoss<T>(counts, o), Catch::Contains("class weight has 4 entries but the loss has 3 classes"));
    lmf::LMFLoss<T> loss(counts);
    REQUIRE_THROWS_WITH(loss.set_class_weights(Vec<T>::Ones(2)), Catch::Contains("has 2 entries"));
    REQUIRE(loss.spec().terms[0].w.size() == 0);  // unchanged after the failed set
    typename lmf::CrossEntropyLoss<T>::Options ce;
    ce.class_weights = Vec<T>::Constant(2, std::numeric_limits<T>::quiet_NaN());
    REQUIRE_THROWS_WITH(lmf::CrossEntropyLoss<T>(ce), Catch::Contains("class weight of class 0 is nan"));
  }
  SECTION("an unknown reduction") {
    REQUIRE_THROWS_WITH(lmf::parse_reduction("average"), Catch::Contains("unknown reduction 'average'"));
    typename lmf::FocalLoss<T>::Options o;
    o.reduction = static_cast<lmf::Reduction>(7);
    REQUIRE_THROWS_WITH(lmf::FocalLoss<T>(o), Catch::Contains("unknown reduction"));
  }
  SECTION("reduction none asks for the per-row form; the seed preset has no per-row form") {
    typename lmf::FocalLoss<T>::Options o;
    o.reduction = lmf::Reduction::none;
    const lmf::FocalLoss<T> none(o);
    Mat<T> x = random_logits<T>(4, 3);
    Labels y = random_labels(4, 3);
    REQUIRE_THROWS_WITH(none.value(x, y), Catch::Contains("call per_row"));
    const auto seed = lmf::LMFLoss<T>::seed_code(counts);
    Vec<T> v(4);
    REQUIRE_THROWS_WITH(seed.per_row(x, y, v), Catch::Contains("batch mean"));
  }
}

TEMPLATE_TEST_CASE("empty and all-ignored batches: mean 0 with a zero gradient, for every loss", "[errors][reduction]",
                   float, double) {
  using T = TestType;
  for (const char* r : {"mean", "sum", "none"}) {
    for (const LossCase& lc : registry(3, r, balanced_weights(3), 2.0, 30.0)) {
      const lmf::Loss<T> loss = make_loss<T>(lc);
      const bool none = loss.reduction() == lmf::Reduction::none;
      INFO(describe(lc));
      {
        INFO("empty batch");
        Mat<T> x(0, 3), g(0, 3);
        Labels y(0);
        Vec<T> v(0);
        if (none) {
          loss.per_row_and_gradient(x, y, v, g);
        } else {
          REQUIRE(loss.value(x, y) == T(0));
          REQUIRE(loss.value_and_gradient(x, y, g) == T(0));
        }
      }
      {
        INFO("every row ignored");
        Mat<T> x = random_logits<T>(40, 3);
        Labels y = Labels::Constant(40, -100);
        Mat<T> g = Mat<T>::Constant(40, 3, T(9));
        Vec<T> v = Vec<T>::Constant(40, T(9));
        if (none) {
          loss.per_row_and_gradient(x, y, v, g);
          REQUIRE(v.isZero());
        } else {
          REQUIRE(loss.value_and_gradient(x, y, g) == T(0));
          REQUIRE(loss.value(x, y) == T(0));
        }
        REQUIRE(g.isZero());
      }
    }
  }
}

TEMPLATE_TEST_CASE("buffers and specs that cannot work are rejected", "[errors]", float, double) {
  using T = TestType;
  const Index n = 12, c = 4;
  Mat<T> x = random_logits<T>(n, c);
  const Labels y = random_labels(n, c);
  const lmf::CrossEntropyLoss<T> ce;
  SECTION("a gradient that overlaps the logits without being them is an error, and nothing is written") {
    const Mat<T> x0 = x;
    REQUIRE_THROWS_WITH(ce.value_and_gradient(x.data(), lmf::Layout::col_major(n, c), y.data(), x.data() + 5),
                        Catch::Contains("gradient buffer overlaps the logits without being them"));
    REQUIRE(x == x0);
    Mat<T> g(n, c);  // in place (the same object) is allowed: test_shards.cpp
    const T v = ce.value_and_gradient(x, y, g);
    REQUIRE(ce.value_and_gradient(x, y, x) == v);
    REQUIRE(x == g);
  }
  SECTION("a gradient layout with a zero stride is an error") {
    std::vector<T> g(std::size_t(n * c), T(0));
    lmf::Layout bad = lmf::Layout::row_major(n, c);
    bad.class_stride = 0;  // every class of a row would be written to one place
    REQUIRE_THROWS_WITH(ce.value_and_gradient(x.data(), bad, y.data(), g.data()), Catch::Contains("zero stride"));
    REQUIRE(std::all_of(g.begin(), g.end(), [](T v) { return v == T(0); }));
  }
  SECTION("more than 4 terms fails at construction") {
    lmf::LossSpec<T> spec;
    spec.terms.resize(5);
    REQUIRE_THROWS_WITH(lmf::Loss<T>(spec), Catch::Contains("at most 4 terms, got 5"));
  }
  SECTION("set_class_weights with an empty vector makes the loss unweighted for any C again") {
    lmf::CrossEntropyLoss<T> loss;
    loss.set_class_weights(Vec<T>::Ones(3));
    REQUIRE(loss.classes() == 3);
    REQUIRE_THROWS_AS(loss.value(x, y), lmf::Error);  // 4 classes now rejected
    loss.set_class_weights(Vec<T>());
    REQUIRE(loss.classes() == 0);
    REQUIRE(std::isfinite(loss.value(x, y)));
    lmf::LMFLoss<T> lmf_loss(long_tail_counts(c));
    lmf_loss.set_class_weights(Vec<T>());
    REQUIRE(lmf_loss.classes() == c);  // the margins still fix C
  }
}
