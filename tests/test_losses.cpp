// Behaviour of the named losses: how they relate to each other, reductions, ignore_index,
// storage orders, Maps over foreign buffers, the raw entry point with (N, C, d1, ...) layouts,
// and sizes from empty batches to C = 1000+.
#include "support.hpp"

#include <cstdint>

using namespace lmf_test;

TEMPLATE_TEST_CASE("named losses are the presets of one model", "[losses]", float, double) {
  using T = TestType;
  const double tol = sizeof(T) == 8 ? 1e-12 : 2e-5;
  const Index n = 50, c = 7;
  const Eigen::VectorXi counts = long_tail_counts(c);
  const Mat<T> x = random_logits<T>(n, c);
  const Labels y = random_labels(n, c, 0.1);
  Mat<T> g1(n, c), g2(n, c), g3(n, c);

  SECTION("focal with gamma 0 is cross entropy") {
    typename lmf::FocalLoss<T>::Options f;
    f.gamma = 0;
    const T a = lmf::FocalLoss<T>(f).value_and_gradient(x, y, g1);
    const T b = lmf::CrossEntropyLoss<T>().value_and_gradient(x, y, g2);
    REQUIRE(rel_error(a, b) < tol);
    REQUIRE(rel_error(g1, g2) < tol);
  }
  SECTION("LDAM with max_m 0 and s 1 is cross entropy") {
    typename lmf::LDAMLoss<T>::Options o;
    o.max_m = 0;
    o.s = 1;
    REQUIRE(rel_error(lmf::LDAMLoss<T>(counts, o).value_and_gradient(x, y, g1),
                      lmf::CrossEntropyLoss<T>().value_and_gradient(x, y, g2)) < tol);
    REQUIRE(rel_error(g1, g2) < tol);
  }
  SECTION("LMF is ldam_weight * LDAM + focal_weight * Focal, value and gradient") {
    typename lmf::LMFLoss<T>::Options o;
    o.ldam_weight = T(0.3);
    o.focal_weight = T(1.7);
    o.gamma = T(1.5);
    o.class_weights = lmf::class_balanced_weights<T>(counts, 0.999);
    typename lmf::LDAMLoss<T>::Options lo;
    lo.class_weights = o.class_weights;
    typename lmf::FocalLoss<T>::Options fo;
    fo.gamma = o.gamma;
    fo.class_weights = o.class_weights;
    const T lmf_v = lmf::LMFLoss<T>(counts, o).value_and_gradient(x, y, g1);
    const T ldam_v = lmf::LDAMLoss<T>(counts, lo).value_and_gradient(x, y, g2);
    const T focal_v = lmf::FocalLoss<T>(fo).value_and_gradient(x, y, g3);
    REQUIRE(rel_error(lmf_v, T(0.3) * ldam_v + T(1.7) * focal_v) < tol);
    const Mat<T> combined = T(0.3) * g2 + T(1.7) * g3;
    REQUIRE(rel_error(g1, combined) < tol);
  }
  SECTION("LMF defaults are the paper's: 1 LDAM (s 30, max_m 0.5) + 1 focal (gamma 2), unweighted, mean") {
    const lmf::LMFLoss<T> loss(counts);
    const auto& terms = loss.spec().terms;
    REQUIRE(terms.size() == 2);
    REQUIRE(terms[0].weight == 1);
    REQUIRE(terms[0].s == 30);
    REQUIRE(terms[0].m.maxCoeff() == Approx(0.5));
    REQUIRE(terms[1].weight == 1);
    REQUIRE(terms[1].gamma == 2);
    REQUIRE(terms[1].s == 1);
    REQUIRE(terms[0].w.size() == 0);
    REQUIRE(terms[1].w.size() == 0);
    REQUIRE(loss.reduction() == lmf::Reduction::mean);
    REQUIRE(loss.margins().isApprox(lmf::ldam_margins<T>(counts, T(0.5))));
  }
  SECTION("the official preset: 1.5 LDAM + 1 focal (gamma 1.5), margins as class weights") {
    const auto loss = lmf::LMFLoss<T>::official_code(counts);
    const auto& terms = loss.spec().terms;
    REQUIRE(terms[0].weight == T(1.5));
    REQUIRE(terms[1].weight == T(1));
    REQUIRE(terms[1].gamma == T(1.5));
    REQUIRE(terms[0].w.isApprox(terms[0].m));
    REQUIRE(terms[1].w.isApprox(terms[0].m));
    REQUIRE(terms[1].mean_over == lmf::MeanOver::rows);
  }
  SECTION("the seed preset's focal term is a function of the batch-mean CE only") {
    // phi(mean CE): scaling all rows' CE contributions the same way gives the closed form
    const auto seed = lmf::LMFLoss<T>::seed_code(counts);
    typename lmf::LDAMLoss<T>::Options lo;
    const T ldam_v = lmf::LDAMLoss<T>(counts, lo).value(x, y);
    const T ce = lmf::CrossEntropyLoss<T>().value(x, y);
    const T focal = (T(1) - std::exp(-ce)) * (T(1) - std::exp(-ce)) * ce;
    REQUIRE(rel_error(seed.value(x, y), focal + ldam_v) < tol);
  }
}

TEMPLATE_TEST_CASE("reductions, per-row values and ignore_index follow PyTorch", "[losses][reduction]", float, double) {
  using T = TestType;
  const double tol = sizeof(T) == 8 ? 1e-12 : 2e-5;
  const Index n = 33, c = 5;
  const Eigen::VectorXi counts = long_tail_counts(c);
  const Mat<T> x = random_logits<T>(n, c);
  Labels y = random_labels(n, c, 0.2);
  const Vec<T> w = lmf::class_balanced_weights<T>(counts, 0.999);
  typename lmf::LMFLoss<T>::Options o;
  o.class_weights = w;
  o.reduction = lmf::Reduction::none;
  const lmf::LMFLoss<T> none(counts, o);
  o.reduction = lmf::Reduction::sum;
  const lmf::LMFLoss<T> sum(counts, o);
  o.reduction = lmf::Reduction::mean;
  const lmf::LMFLoss<T> mean(counts, o);

  Vec<T> rows(n);
  Mat<T> g_none(n, c), g_sum(n, c), g_mean(n, c);
  none.per_row_and_gradient(x, y, rows, g_none);
  const T s = sum.value_and_gradient(x, y, g_sum);
  const T m = mean.value_and_gradient(x, y, g_mean);
  double wsum = 0;
  for (Index i = 0; i < n; ++i)
    if (y(i) != -100) wsum += double(w(y(i)));

  SECTION("sum is the sum of the per-row values, mean divides by the counted rows' weights") {
    REQUIRE(rel_error(double(s), double(rows.template cast<double>().sum())) < tol);
    REQUIRE(rel_error(double(m), double(s) / wsum) < tol);
    REQUIRE(rel_error(g_none, g_sum) < tol);
    const Mat<T> scaled = g_sum / T(wsum);
    REQUIRE(rel_error(g_mean, scaled) < tol);
  }
  SECTION("ignored rows have value 0 and gradient 0") {
    for (Index i = 0; i < n; ++i) {
      if (y(i) != -100) continue;
      REQUIRE(rows(i) == 0);
      REQUIRE(g_none.row(i).isZero());
    }
  }
  SECTION("per_row works whatever the loss's reduction is") {
    Vec<T> rows2(n);
    mean.per_row(x, y, rows2);
    REQUIRE(rows2 == rows);
  }
  SECTION("an ignore_index inside [0, C) ignores that class") {
    typename lmf::CrossEntropyLoss<T>::Options ce;
    ce.ignore_index = 2;
    ce.reduction = lmf::Reduction::none;
    Vec<T> r2(n);
    Mat<T> g2(n, c);
    lmf::CrossEntropyLoss<T>(ce).per_row_and_gradient(x, y.unaryExpr([](int v) { return v < 0 ? 0 : v; }), r2, g2);
    for (Index i = 0; i < n; ++i)
      if (y(i) == 2) REQUIRE((r2(i) == 0 && g2.row(i).isZero()));
    // and the mean divides by the other rows only (the label pass counts that class as ignored)
    ce.reduction = lmf::Reduction::mean;
    const Labels y2 = y.unaryExpr([](int v) { return v < 0 ? 0 : v; });
    Index others = 0;
    for (Index i = 0; i < n; ++i) others += y2(i) != 2;
    REQUIRE(n >= c);  // the histogram path of the label pass
    REQUIRE(others < n);
    REQUIRE(rel_error(double(lmf::CrossEntropyLoss<T>(ce).value(x, y2)), double(r2.sum()) / double(others)) <
            tolerance<T>());
  }
}

TEMPLATE_TEST_CASE("storage orders, Maps, blocks, strided and (N, C, d) buffers give the same result",
                   "[losses][layout]", float, double) {
  using T = TestType;
  const Index n = 21, c = 6;
  const Eigen::VectorXi counts = long_tail_counts(c);
  const lmf::LMFLoss<T> loss(counts);
  const Mat<T> x = random_logits<T>(n, c);
  const Labels y = random_labels(n, c, 0.1);
  Mat<T> g_ref(n, c);
  const T v_ref = loss.value_and_gradient(x, y, g_ref);
  // Same rows, same arithmetic: every layout must agree bitwise with the column-major result.

  SECTION("row-major logits and gradient") {
    MatR<T> xr = x, gr(n, c);
    REQUIRE(loss.value_and_gradient(xr, y, gr) == v_ref);
    REQUIRE(Mat<T>(gr) == g_ref);
  }
  SECTION("Eigen::Map over foreign row-major buffers (no copy)") {
    std::vector<T> buf(std::size_t(n * c)), gbuf(std::size_t(n * c), T(-1));
    Eigen::Map<MatR<T>>(buf.data(), n, c) = x;
    std::vector<std::int64_t> labels(y.data(), y.data() + n);  // torch's int64 labels
    Eigen::Map<const MatR<T>> xm(buf.data(), n, c);
    Eigen::Map<MatR<T>> gm(gbuf.data(), n, c);
    Eigen::Map<const Eigen::Matrix<std::int64_t, Eigen::Dynamic, 1>> ym(labels.data(), n);
    REQUIRE(loss.value_and_gradient(xm, ym, gm) == v_ref);
    REQUIRE(Mat<T>(gm) == g_ref);
  }
  SECTION("a block of a larger matrix (outer stride != C) and an expression without direct access") {
    Mat<T> big = Mat<T>::Random(n + 5, c + 3), gbig = Mat<T>::Zero(n + 5, c + 3);
    big.block(2, 1, n, c) = x;
    REQUIRE(loss.value_and_gradient(big.block(2, 1, n, c), y, gbig.block(2, 1, n, c)) == v_ref);
    REQUIRE(Mat<T>(gbig.block(2, 1, n, c)) == g_ref);
    REQUIRE(gbig.col(0).isZero());  // nothing written outside the block
    REQUIRE(rel_error(loss.value(x * T(1), y), v_ref) <= 1e-6);
  }
  SECTION("the raw entry point with a class-strided (N, C, d) layout") {
    const Index d = 4;  // 4 pixels per sample: rows are (n, pixel)
    const Index samples = 5;
    std::vector<T> buf(std::size_t(samples * c * d)), gbuf(buf.size());
    const Mat<T> xp = random_logits<T>(samples * d, c);
    const Labels yp = random_labels(samples * d, c, 0.1);
    const lmf::Layout nchw = lmf::Layout::nchw(samples, c, d);
    for (Index s = 0; s < samples; ++s)
      for (Index k = 0; k < c; ++k)
        for (Index p = 0; p < d; ++p) buf[std::size_t(nchw.offset(s, p, k))] = xp(s * d + p, k);
    const T v = loss.value_and_gradient(buf.data(), nchw, yp.data(), gbuf.data());
    Mat<T> gp(samples * d, c);
    REQUIRE(v == loss.value_and_gradient(xp, yp, gp));
    for (Index s = 0; s < samples; ++s)
      for (Index k = 0; k < c; ++k)
        for (Index p = 0; p < d; ++p) REQUIRE(gbuf[std::size_t(nchw.offset(s, p, k))] == gp(s * d + p, k));
    std::vector<T> rows(std::size_t(samples * d));
    loss.per_row(buf.data(), nchw, yp.data(), rows.data());
    Vec<T> rows_ref(samples * d);
    loss.per_row(xp, yp, rows_ref);
    REQUIRE(Eigen::Map<Vec<T>>(rows.data(), samples * d) == rows_ref);
  }
  SECTION("try_ variants report through Status") {
    Mat<T> g(n, c);
    T out = -1;
    REQUIRE(loss.try_value_and_gradient(x, y, g, out).ok());
    REQUIRE(out == v_ref);
    Labels bad = y;
    bad(0) = 99;
    const lmf::Status s = loss.try_value(x, bad, out);
    REQUIRE_FALSE(s.ok());
    REQUIRE(s.message().find("label 99 at row 0") != std::string::npos);
    REQUIRE(out == v_ref);  // untouched on error
  }
}

TEMPLATE_TEST_CASE("sizes: C from 1 to 1000+, N from 0 to thousands", "[losses][sizes]", float, double) {
  using T = TestType;
  for (Index c : {1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 1000, 1031}) {
    for (Index n : {0, 1, 2, 7, 513, 2100}) {
      if (n * c > 600000) continue;
      const Eigen::VectorXi counts = long_tail_counts(c);
      const lmf::LMFLoss<T> loss(counts);
      const Mat<T> x = random_logits<T>(n, c);
      const Labels y = random_labels(n, c, 0.05);
      Mat<T> g(n, c);
      const T v = loss.value_and_gradient(x, y, g);
      INFO("N " << n << ", C " << c);
      REQUIRE(std::isfinite(v));
      REQUIRE(g.allFinite());
      // the mean is the per-row values' sum over the counted rows
      Vec<T> rows(n);
      loss.per_row(x, y, rows);
      const Index counted = (y.array() != -100).count();
      REQUIRE(rel_error(double(v), counted ? rows.template cast<double>().sum() / double(counted) : 0.0) <= tolerance<T>());
      // each counted row's gradient sums to 0 over classes (softmax minus one-hot, a_c = 1)
      if (n > 0) REQUIRE(g.rowwise().sum().cwiseAbs().maxCoeff() <= (sizeof(T) == 8 ? 1e-12 : 1e-5) * std::max<T>(T(1), g.cwiseAbs().maxCoeff()));
      if (c == 1 && n > 0) REQUIRE(v == 0);  // one class: p_t = 1, l = 0
    }
  }
}
