// The limits of docs/api.md ("Limits") and one regression test per finding of the fuzzer
// (issue: "Tests that test what they claim"): each input below once crashed, raced, threw from a
// try_* call, overflowed or returned inf; now it is an error with nothing written, or right.
#include "support.hpp"

#include <cstring>
#include <limits>

using namespace lmf_test;

TEMPLATE_TEST_CASE("try_* never throws: huge class counts and empty batches", "[limits][errors]", float, double) {
  using T = TestType;
  const lmf::CrossEntropyLoss<T> ce;
  T out = T(-1);
  // an empty batch of 2^33 classes once allocated a histogram of 2^33 entries (bad_alloc)
  lmf::Status s = ce.try_value(static_cast<const T*>(nullptr), lmf::Layout::row_major(0, Index(1) << 33),
                               static_cast<const int*>(nullptr), out);
  REQUIRE_FALSE(s.ok());
  REQUIRE(s.message().find("classes (at most 16777216)") != std::string::npos);
  // 2^62 classes once raised std::length_error
  s = ce.try_value(static_cast<const T*>(nullptr), lmf::Layout::row_major(1, Index(1) << 62),
                   static_cast<const int*>(nullptr), out);
  REQUIRE_FALSE(s.ok());
  REQUIRE(out == T(-1));
  // the largest C with few rows: no histogram of C entries, right value
  const Index big = lmf::limits::max_classes;
  std::vector<T> x(std::size_t(big), T(0));
  const int label = 7;
  REQUIRE(ce.try_value(x.data(), lmf::Layout::row_major(1, big), &label, out).ok());
  REQUIRE(rel_error(double(out), std::log(double(big))) < tolerance<T>());
}

TEMPLATE_TEST_CASE("layouts that overflow or alias are rejected, nothing written", "[limits][errors]", float, double) {
  using T = TestType;
  const lmf::CrossEntropyLoss<T> ce;
  std::vector<T> x(1087), g(1087, T(5));
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = T(std::sin(double(i)));
  std::vector<int> y(64 * 1024, 0);
  T out = 0;
  SECTION("a gradient whose entries alias each other (no zero stride) once raced between threads") {
    const lmf::Layout lx{64, 1024, 1, 1, 1, 0};  // reading overlapping rows is fine
    std::vector<T> big(64 + 1024);
    lmf::Status s = ce.try_value_and_gradient(big.data(), lx, y.data(), g.data(), out);
    REQUIRE_FALSE(s.ok());
    REQUIRE(s.message().find("maps two entries to one element") != std::string::npos);
    REQUIRE(std::all_of(g.begin(), g.end(), [](T v) { return v == T(5); }));
    REQUIRE(ce.try_value(big.data(), lx, y.data(), out).ok());  // aliasing logits are only read
  }
  SECTION("sizes and strides whose products overflow") {
    const lmf::Layout wraps{(Index(1) << 62) + 1, 2, 4, 8, 1, 2};  // rows() once wrapped
    REQUIRE_THROWS_WITH(ce.value(x.data(), wraps, y.data()), Catch::Contains("reaches beyond"));
    const lmf::Layout far{3, 2, 1, Index(1) << 62, 1, 0};  // offsets beyond 2^62
    REQUIRE_THROWS_WITH(ce.value_and_gradient(x.data(), far, y.data(), g.data()), Catch::Contains("reaches beyond"));
    REQUIRE(std::all_of(g.begin(), g.end(), [](T v) { return v == T(5); }));
  }
  SECTION("per-row values overlapping the logits or the gradient") {
    const lmf::Layout l = lmf::Layout::row_major(10, 4);
    std::vector<T> buf(40, T(0.5));
    REQUIRE_THROWS_WITH(ce.per_row(buf.data(), l, y.data(), buf.data() + 20), Catch::Contains("overlaps the logits"));
    REQUIRE_THROWS_WITH(ce.per_row(buf.data(), l, y.data(), g.data(), g.data() + 3),
                        Catch::Contains("overlaps the gradient"));
    REQUIRE(std::all_of(buf.begin(), buf.end(), [](T v) { return v == T(0.5); }));
    REQUIRE(std::all_of(g.begin(), g.end(), [](T v) { return v == T(5); }));
  }
}

TEST_CASE("extreme but valid inputs give finite, right results", "[limits][numerics]") {
  SECTION("float CE, class weights {1e30, 1}: w_y * l is formed in double (once inf; true 1e9)") {
    lmf::CrossEntropyLoss<float>::Options o;
    o.class_weights = Eigen::Vector2f(1e30f, 1.0f);
    const lmf::CrossEntropyLoss<float> ce(o);
    for (lmf::Kernel k : {lmf::Kernel::scalar, lmf::Kernel::lanes, lmf::Kernel::rows}) {
      lmf::Loss<float> loss = ce;
      loss.set_kernel(k);
      Eigen::MatrixXf x(1, 2), g(1, 2);
      x << 0.0f, 1e9f;
      Eigen::VectorXi y(1);
      y << 0;
      INFO("kernel " << int(k));
      REQUIRE(rel_error(double(loss.value_and_gradient(x, y, g)), 1e9) < tolerance<float>());
      REQUIRE(g.allFinite());
      REQUIRE(rel_error(double(g(0, 0)), -1.0) < tolerance<float>());
    }
  }
  SECTION("double CE over 9+ rows of (1e307, -1e307): the mean 2e307 without overflowing the sum") {
    const lmf::CrossEntropyLoss<double> ce;
    const Index n = 33;
    Eigen::MatrixXd x(n, 2), g(n, 2);
    x.col(0).setConstant(1e307);
    x.col(1).setConstant(-1e307);
    const Eigen::VectorXi y = Eigen::VectorXi::Ones(n);
    REQUIRE(rel_error(ce.value_and_gradient(x, y, g), 2e307) < tolerance<double>());
    REQUIRE(g.allFinite());
  }
  SECTION("subnormal class weights: the gradient stays finite (weight / denominator once overflowed)") {
    for (double w : {1e-310, 1e-300}) {
      lmf::CrossEntropyLoss<double>::Options o;
      o.class_weights = Eigen::Vector3d(w, w, w);
      const lmf::CrossEntropyLoss<double> ce(o), plain;
      const Mat<double> x = random_logits<double>(50, 3);
      const Labels y = random_labels(50, 3);
      Mat<double> g(50, 3), g_plain(50, 3);
      INFO("weight " << w);
      REQUIRE(rel_error(ce.value_and_gradient(x, y, g), plain.value_and_gradient(x, y, g_plain)) < tolerance<double>());
      REQUIRE(close(g, g_plain, tolerance<double>()));
    }
    lmf::CrossEntropyLoss<float>::Options o;
    o.class_weights = Eigen::Vector3f(9e-44f, 9e-44f, 9e-44f);
    const lmf::CrossEntropyLoss<float> ce(o), plain;
    const Mat<float> x = random_logits<float>(50, 3);
    const Labels y = random_labels(50, 3);
    Mat<float> g(50, 3), g_plain(50, 3);
    REQUIRE(rel_error(double(ce.value_and_gradient(x, y, g)), double(plain.value_and_gradient(x, y, g_plain))) <
            tolerance<float>());
    REQUIRE(g.allFinite());
    REQUIRE(close(g, g_plain, 1e-5));  // the weights are subnormal: w_y / sum w is exact to ~1e-7
  }
  SECTION("ignored rows holding 1e30 and NaN, in double and float, on every kernel (once UB in xsimd's conversion)") {
    for (lmf::Kernel k : {lmf::Kernel::scalar, lmf::Kernel::lanes, lmf::Kernel::rows}) {
      lmf::CrossEntropyLoss<double> ce;
      ce.set_kernel(k);
      Eigen::MatrixXd x = Eigen::MatrixXd::Random(40, 3), g(40, 3);
      Eigen::VectorXi y = Eigen::VectorXi::Zero(40);
      x.row(7) << 1e30, std::numeric_limits<double>::quiet_NaN(), 0;
      y(7) = -100;
      REQUIRE(std::isfinite(ce.value_and_gradient(x, y, g)));
      REQUIRE(g.allFinite());
      REQUIRE(std::isfinite(ce.value(x, y)));
    }
  }
}

TEMPLATE_TEST_CASE("options beyond the limits are rejected at construction", "[limits][errors]", float, double) {
  using T = TestType;
  Eigen::VectorXi counts(3);
  counts << 100, 10, 1;
  typename lmf::LDAMLoss<T>::Options ldam;
  ldam.max_m = T(1e37);  // once accepted: every batch then failed with a negative logit limit
  REQUIRE_THROWS_WITH(lmf::LDAMLoss<T>(counts, ldam), Catch::Contains("max_m is ") && Catch::Contains("(must be in [0, 10000])"));
  ldam.max_m = T(0.5);
  ldam.s = T(1e30);
  REQUIRE_THROWS_WITH(lmf::LDAMLoss<T>(counts, ldam), Catch::Contains("(must be in (0, 10000])"));
  typename lmf::FocalLoss<T>::Options focal;
  focal.gamma = T(1e30);  // once accepted: the kernels disagreed (5.19 vs 4.83)
  REQUIRE_THROWS_WITH(lmf::FocalLoss<T>(focal), Catch::Contains("(must be in [0, 20])"));
  lmf::LossSpec<T> spec;
  spec.terms.resize(1);
  spec.terms[0].b = Vec<T>::Constant(3, T(1e9));
  REQUIRE_THROWS_WITH(lmf::Loss<T>(spec), Catch::Contains("offset b of class 0 is 1e+09 (|offset b| must be <= 100000000)"));
  // at the limits, the kernels still agree
  focal.gamma = T(lmf::limits::max_gamma);
  lmf::FocalLoss<T> at_limit(focal);
  const Mat<T> x = random_logits<T>(100, 5, 2.0);
  const Labels y = random_labels(100, 5);
  MatR<T> xr = x, g(100, 5), g_ref(100, 5);
  at_limit.set_kernel(lmf::Kernel::scalar);
  const T v_ref = at_limit.value_and_gradient(xr, y, g_ref);
  at_limit.set_kernel(lmf::Kernel::lanes);
  REQUIRE(rel_error(double(at_limit.value_and_gradient(xr, y, g)), double(v_ref)) < tolerance<T>());
  REQUIRE(rel_error(g, g_ref) < tolerance<T>());
}

TEST_CASE("unsigned labels are compared as integers with ignore_index", "[limits][errors]") {
  const lmf::CrossEntropyLoss<float> ce;
  std::vector<float> x(6, 0.5f);
  const std::uint64_t big[2] = {0, std::numeric_limits<std::uint64_t>::max() - 99};  // 2^64 - 100
  REQUIRE_THROWS_WITH(ce.value(x.data(), lmf::Layout::row_major(2, 3), big),
                      Catch::Contains("label 18446744073709551516 at row 1 is outside [0, 3)"));
  const std::uint32_t big32[2] = {0, std::numeric_limits<std::uint32_t>::max() - 99};
  REQUIRE_THROWS_WITH(ce.value(x.data(), lmf::Layout::row_major(2, 3), big32), Catch::Contains("at row 1"));
  lmf::CrossEntropyLoss<float>::Options o;
  o.ignore_index = 1;  // a non-negative ignore_index does match unsigned labels
  o.reduction = lmf::Reduction::none;
  const std::uint64_t ok[2] = {0, 1};
  const float xs[6] = {0.5f, 1.5f, -1.0f, 2.0f, 0.0f, 1.0f};
  float rows[2] = {-1, -1};
  lmf::CrossEntropyLoss<float>(o).per_row(xs, lmf::Layout::row_major(2, 3), ok, rows);
  REQUIRE(rows[0] > 0);
  REQUIRE(rows[1] == 0);  // label 1 == ignore_index 1: ignored
}

TEST_CASE("a bad logit in value() is located from its block, not after a full scalar scan", "[limits][errors]") {
  // The error path evaluates blocks up to the first bad one and scans only that block's rows;
  // the message names the first bad logit in row order whatever the thread count.
  const Index n = 200000, c = 10;
  Mat<float> x = random_logits<float>(n, c);
  const Labels y = random_labels(n, c);
  x(150000, 3) = std::numeric_limits<float>::quiet_NaN();
  x(190000, 4) = std::numeric_limits<float>::infinity();
  for (int threads : {1, 2}) {
    lmf::CrossEntropyLoss<float> ce;
    ce.set_threads(threads);
    INFO("threads " << threads);
    REQUIRE_THROWS_WITH(ce.value(x, y), Catch::Contains("logit at row 150000, class 3 is nan"));
  }
}

TEST_CASE("factories and wide class-strided rows stay safe", "[limits]") {
  // Layout::nchw of sizes whose product overflows: a stride every entry point rejects (it was a
  // signed overflow inside the factory, found by the fuzzer)
  const lmf::Layout l = lmf::Layout::nchw(3, lmf::Index(1) << 40, lmf::Index(1) << 30);
  const lmf::CrossEntropyLoss<float> ce;
  float out = 0;
  REQUIRE_FALSE(ce.try_value(static_cast<const float*>(nullptr), l, static_cast<const int*>(nullptr), out).ok());
  // a gradient written over the labels is an error
  std::vector<float> x(12, 0.5f);
  std::vector<int> buf(12, 0);
  REQUIRE_THROWS_WITH(ce.value_and_gradient(x.data(), lmf::Layout::row_major(3, 4), buf.data(),
                                            reinterpret_cast<float*>(buf.data())),
                      Catch::Contains("overlaps the labels"));
  // column-major with 60000 classes: the lanes kernel's tiles would need 30 MB per thread; the
  // scalar kernel takes over, with the same result
  const Index n = 3, c = 60000;
  Mat<float> xw = random_logits<float>(n, c), g(n, c), g_ref(n, c);
  const Labels y = random_labels(n, c);
  lmf::LMFLoss<float> loss(long_tail_counts(c));
  const float v = loss.value_and_gradient(xw, y, g);
  loss.set_kernel(lmf::Kernel::scalar);
  REQUIRE(loss.value_and_gradient(xw, y, g_ref) == v);
  REQUIRE(g == g_ref);
}

TEST_CASE("seed preset with subnormal class weights: the one-process value is exact, totals refuse", "[limits]") {
  // With weights 5e-324 the cross-entropy sum S = M * D is subnormal and keeps no digits of M
  // (the fuzzer found the value changing by 0.4% through totals): one process uses M directly,
  // and totals() reports the limit instead of returning totals that would change the value.
  Eigen::VectorXi counts(3);
  counts << 100, 10, 1;
  const Mat<double> x = random_logits<double>(5, 3);
  const Labels y = random_labels(5, 3);
  const auto tiny = lmf::LMFLoss<double>::seed_code(counts, Vec<double>::Constant(3, 5e-324));
  const auto ones = lmf::LMFLoss<double>::seed_code(counts, Vec<double>::Ones(3));
  Mat<double> g(5, 3), g_ones(5, 3);
  REQUIRE(rel_error(tiny.value_and_gradient(x, y, g), ones.value_and_gradient(x, y, g_ones)) < tolerance<double>());
  REQUIRE(close(g, g_ones, tolerance<double>()));
  REQUIRE_THROWS_WITH(tiny.totals(x, y), Catch::Contains("below 2^-900"));
}
