// The long-tail family beyond the registry's properties: the named losses' definitions (a, b and
// the presets' options), label smoothing's rules and errors, the post-hoc adjustment, and the
// sigmoid focal loss (parity with torchvision, SIMD lines against the scalar formulas on every
// layout, finite differences, saturated logits, errors that write nothing).
#include "support.hpp"

#include <lmf/lmf.hpp>

#include <catch2/catch.hpp>

#include <cmath>

using namespace lmf_test;

TEST_CASE("family: logit adjustment, balanced softmax and VS build the published a and b", "[family]") {
  Eigen::VectorXi n(4);
  n << 1000, 300, 40, 7;
  const double total = 1347;
  lmf::LogitAdjustedLoss<double>::Options lo;
  lo.tau = 1.5;
  const lmf::LogitAdjustedLoss<double> la(n, lo);
  const lmf::BalancedSoftmaxLoss<double> bs(n);
  lmf::VSLoss<double>::Options vo;
  vo.gamma = 0.25;
  vo.tau = 0.5;
  const lmf::VSLoss<double> vs(n, vo);
  for (Index j = 0; j < 4; ++j) {
    CHECK(la.spec().terms[0].b(j) == Approx(1.5 * std::log(n(j) / total)).epsilon(1e-15));
    CHECK(bs.spec().terms[0].b(j) == Approx(std::log(double(n(j)))).epsilon(1e-15));
    CHECK(vs.spec().terms[0].a(j) == Approx(std::pow(n(j) / 1000.0, 0.25)).epsilon(1e-15));
    CHECK(vs.spec().terms[0].b(j) == Approx(0.5 * std::log(n(j) / total)).epsilon(1e-15));
  }
  // balanced softmax = logit adjustment with tau 1 (the offsets differ by log(sum n), a constant)
  const lmf::LogitAdjustedLoss<double> la1(n);
  const Mat<double> x = random_logits<double>(9, 4);
  const Labels y = random_labels(9, 4);
  CHECK(rel_error(bs.value(x, y), la1.value(x, y)) < 1e-14);
  // post-hoc adjustment subtracts tau log(prior) from each column
  const Mat<double> adj = lmf::posthoc_logit_adjustment(x, n, 2.0);
  for (Index j = 0; j < 4; ++j)
    CHECK((adj.col(j) - (x.col(j).array() - 2.0 * std::log(n(j) / total)).matrix()).cwiseAbs().maxCoeff() < 1e-14);
  const Eigen::VectorXd prior = lmf::class_priors<double>(n);
  CHECK(prior.sum() == Approx(1.0));
  CHECK_THROWS_AS(lmf::posthoc_logit_adjustment(Mat<double>(2, 3), n), lmf::Error);
}

TEST_CASE("family: options are checked with clear messages", "[family][errors]") {
  Eigen::VectorXi n(3);
  n << 10, 5, 1;
  lmf::CrossEntropyLoss<float>::Options co;
  co.label_smoothing = 1.5f;
  CHECK_THROWS_WITH(lmf::CrossEntropyLoss<float>(co), Catch::Contains("label_smoothing is 1.5"));
  lmf::LogitAdjustedLoss<float>::Options lo;
  lo.tau = INFINITY;
  CHECK_THROWS_WITH(lmf::LogitAdjustedLoss<float>(n, lo), Catch::Contains("tau is inf"));
  lmf::VSLoss<float>::Options vo;
  vo.gamma = -1;
  CHECK_THROWS_WITH(lmf::VSLoss<float>(n, vo), Catch::Contains("VSLoss: gamma is -1"));
  Eigen::VectorXi bad(3);
  bad << 10, 0, 1;
  CHECK_THROWS_WITH(lmf::BalancedSoftmaxLoss<float>(bad), Catch::Contains("BalancedSoftmaxLoss: class 1 has count 0"));
  CHECK_THROWS_WITH(lmf::LogitAdjustedLoss<float>(bad), Catch::Contains("LogitAdjustedLoss: class 1 has count 0"));
  CHECK_THROWS_WITH(lmf::VSLoss<float>(bad), Catch::Contains("VSLoss: class 1 has count 0"));
  CHECK_THROWS_WITH(lmf::posthoc_logit_adjustment(Mat<float>(2, 3), bad),
                    Catch::Contains("posthoc_logit_adjustment: class 1 has count 0"));
  // label smoothing on a focal term is undefined: the generic spec says so
  lmf::LossSpec<float> spec;
  lmf::Term<float> t;
  t.gamma = 2;
  t.label_smoothing = 0.1f;
  spec.terms.push_back(t);
  CHECK_THROWS_WITH(lmf::Loss<float>(spec), Catch::Contains("label_smoothing is defined for cross-entropy terms"));
  spec.terms[0].gamma = 0;
  spec.terms[0].focus_on = lmf::FocusOn::weighted_row;
  CHECK_THROWS_WITH(lmf::Loss<float>(spec), Catch::Contains("and FocusOn::weighted_row"));
}

TEST_CASE("family: edge cases of the weight inside and of label smoothing", "[family][errors]") {
  // the weight inside works with every reduction (only the batch-mean focus needs mean)
  lmf::LossSpec<float> spec;
  lmf::Term<float> t;
  t.gamma = 1;
  t.focus_on = lmf::FocusOn::weighted_row;
  spec.terms.push_back(t);
  spec.reduction = lmf::Reduction::sum;
  CHECK_NOTHROW(lmf::Loss<float>(spec));
  spec.terms[0].focus_on = lmf::FocusOn::batch_mean;
  CHECK_THROWS_WITH(lmf::Loss<float>(spec), Catch::Contains("needs reduction mean"));
  spec.terms[0].focus_on = lmf::FocusOn::weighted_row;
  spec.terms[0].gamma = 0;
  spec.terms[0].label_smoothing = 0.1f;
  CHECK_THROWS_WITH(lmf::Loss<float>(spec), Catch::Contains("gamma 0 and FocusOn::weighted_row"));

  // w_y l beyond float's range inside the modulation: every kernel gives the same finite gradient
  Eigen::VectorXf w(2);
  w << 3e38f, 1.f;
  MatR<float> x(40, 2);
  for (Index i = 0; i < 40; ++i) x(i, 0) = -1.f, x(i, 1) = 1.f + 0.01f * float(i);
  Labels y = Labels::Zero(40);
  MatR<float> g_ref(40, 2);
  auto drw = lmf::FocalLoss<float>::ldam_drw_code(w);
  drw.set_kernel(lmf::Kernel::scalar);
  drw.value_and_gradient(x, y, g_ref);
  CHECK(g_ref.allFinite());
  for (const lmf::Kernel k : {lmf::Kernel::rows, lmf::Kernel::lanes}) {
    INFO("kernel " << int(k));
    MatR<float> g(40, 2);
    drw.set_kernel(k);
    drw.value_and_gradient(x, y, g);
    CHECK(close(g, g_ref, tolerance<float>()));
  }

  // label smoothing with weights spanning more than float's range: its gradient factors would be
  // inf (inf - inf in the gradient); an error instead, nothing written
  lmf::CrossEntropyLoss<float>::Options o;
  o.label_smoothing = 0.1f;
  o.class_weights = Eigen::VectorXf(2);
  o.class_weights << 1.4e-45f, 1.f;
  const lmf::CrossEntropyLoss<float> ce(o);
  MatR<float> x1(1, 2), g1 = MatR<float>::Constant(1, 2, 7.f);
  x1 << 0.f, 20.f;
  Labels y1 = Labels::Zero(1);
  CHECK_THROWS_WITH(ce.value_and_gradient(x1, y1, g1), Catch::Contains("label smoothing's gradient factors"));
  CHECK((g1.array() == 7.f).all());
}

TEST_CASE("family: the presets carry the published options", "[family]") {
  Eigen::VectorXi n(5);
  n << 500, 200, 50, 20, 5;
  const Eigen::VectorXf w = lmf::class_balanced_weights<float>(n, 0.999);
  const auto s24 = lmf::LMFLoss<float>::seed_code_2024(n, w);
  REQUIRE(s24.spec().terms.size() == 2);
  CHECK(s24.spec().terms[0].focus_on == lmf::FocusOn::batch_mean);
  CHECK(s24.spec().terms[0].weight == 0.2f);
  CHECK(s24.spec().terms[0].w.size() == 5);
  CHECK(s24.spec().terms[1].weight == 0.2f);
  CHECK(s24.spec().terms[1].s == 5.0f);
  CHECK(s24.spec().terms[1].m.maxCoeff() == Approx(0.8f));
  CHECK(s24.spec().terms[1].w.size() == 0);  // LDAM unweighted
  const auto drw = lmf::FocalLoss<float>::ldam_drw_code(w);
  CHECK(drw.spec().terms[0].focus_on == lmf::FocusOn::weighted_row);
  CHECK(drw.spec().terms[0].mean_over == lmf::MeanOver::all_rows);
  CHECK(drw.spec().terms[0].gamma == 1.0f);
  const auto repo = lmf::FocalLoss<float>::repo_code(w);
  CHECK(repo.spec().terms[0].mean_over == lmf::MeanOver::rows);
  // LDAM-DRW's mean counts ignored rows (their value is 0), as its code's .mean() does
  const Mat<double> x = random_logits<double>(6, 5);
  Labels y = random_labels(6, 5);
  const auto d = lmf::FocalLoss<double>::ldam_drw_code(w.cast<double>());
  Eigen::VectorXd rows(6);
  lmf::FocalLoss<double>::Options o;
  o.reduction = lmf::Reduction::none;
  y(2) = -100;
  const double v = d.value(x, y);
  double sum = 0;
  for (Index i = 0; i < 6; ++i) {
    if (y(i) < 0) continue;
    const Eigen::VectorXd row = x.row(i).transpose();
    const double lse = std::log(row.array().exp().sum());
    const double ce = double(w(y(i))) * (lse - row(y(i)));
    sum += (1 - std::exp(-ce)) * ce;
  }
  CHECK(rel_error(v, sum / 6) < 1e-13);
}

TEST_CASE("family: label smoothing is exactly PyTorch's rule, and costs the SIMD kernels nothing in accuracy",
          "[family]") {
  // (1 - eps) w_y (-log p_y) + (eps / C) sum_c w_c (-log p_c), both divided by sum w_y
  const Index N = 7, C = 5;
  const Mat<double> x = random_logits<double>(N, C);
  Labels y = random_labels(N, C);
  y(3) = -100;
  Vec<double> w(C);
  w << 0.5, 1, 2, 0.25, 3;
  lmf::CrossEntropyLoss<double>::Options o;
  o.label_smoothing = 0.3;
  o.class_weights = w;
  const lmf::CrossEntropyLoss<double> loss(o);
  double num = 0, den = 0;
  for (Index i = 0; i < N; ++i) {
    if (y(i) < 0) continue;
    const Eigen::VectorXd row = x.row(i).transpose();
    const double lse = std::log(row.array().exp().sum());
    double smooth = 0;
    for (Index c = 0; c < C; ++c) smooth += w(c) * (lse - row(c));
    num += 0.7 * w(y(i)) * (lse - row(y(i))) + 0.3 / C * smooth;
    den += w(y(i));
  }
  CHECK(rel_error(loss.value(x, y), num / den) < 1e-14);
}

// ---- the sigmoid focal loss -------------------------------------------------------------------

namespace {

/// Compares a sigmoid focal gradient entry by entry against a reference, each entry relative to
/// the size of its parts: with soft targets (0 < t < 1) an entry is a sum of parts of both signs,
/// w a_t (q^gamma (p (1 - t) - (1 - p) t) + gamma ce q^gamma p (1 - p)(1 - 2t) / q), which cancel
/// where p ~ t; its rounding error is then eps times the parts, not times the entry (torchvision's
/// own sigmoid(x) - t alike). `scale` is the factor of the reduction (1 / (N C) for mean).
/// Entries are also compared relatively down to `floor` of the largest, absolutely below; the
/// normwise error is bounded too (close()).
template <class G, class R, class X>
bool sigmoid_close(const G& g, const R& ref, const X& x, const X& t, double alpha, double gamma,
                   const std::vector<double>& weights, double scale, double tol, double floor) {
  if (!close(g, ref, tol, -1, 1.0)) return false;  // normwise (the elementwise part is done below)
  const double big = ref.template cast<double>().cwiseAbs().maxCoeff();
  for (Index i = 0; i < x.rows(); ++i)
    for (Index c = 0; c < x.cols(); ++c) {
      const double xv = double(x(i, c)), tv = double(t(i, c));
      const double e = std::exp(-std::abs(xv)), p = xv >= 0 ? 1 / (1 + e) : e / (1 + e), pc = 1 - p;
      const double ce = std::max(xv, 0.0) - xv * tv + std::log1p(e), q = p * (1 - tv) + pc * tv;
      const double mod = std::pow(q, gamma), at = alpha < 0 ? 1 : alpha * tv + (1 - alpha) * (1 - tv);
      const double w = weights.empty() ? 1.0 : weights[std::size_t(c)];
      const double parts = std::abs(w * at) * scale *
                           (mod * (p * (1 - tv) + pc * tv) + (q > 0 ? gamma * ce * mod * p * pc * std::abs(1 - 2 * tv) / q : 0));
      const double d = std::abs(double(g(i, c)) - double(ref(i, c)));
      const double against = std::max({std::abs(double(ref(i, c))), parts, floor * big, 1e8 * double(std::numeric_limits<typename G::Scalar>::min())});
      if (d > tol * against) {
        UNSCOPED_INFO("entry (" << i << ", " << c << "): " << g(i, c) << " vs " << ref(i, c) << ", parts " << parts
                                << ", x " << xv << ", t " << tv << ": error " << d / against << " > " << tol);
        return false;
      }
    }
  return true;
}

template <class T>
lmf::SigmoidFocalLoss<T> make_sigmoid(const GoldenSigmoid& c) {
  typename lmf::SigmoidFocalLoss<T>::Options o;
  o.alpha = T(c.alpha);
  o.gamma = T(c.gamma);
  o.reduction = lmf::parse_reduction(c.reduction);
  o.class_weights.resize(Index(c.weights.size()));
  for (Index j = 0; j < Index(c.weights.size()); ++j) o.class_weights(j) = T(c.weights[std::size_t(j)]);
  return lmf::SigmoidFocalLoss<T>(o);
}

const Golden& sigmoid_golden() {
  static const Golden g = read_golden(golden_path());
  return g;
}

/// Values and gradient of a case with loss L (row-major inputs of T).
template <class T>
void sigmoid_eval(const lmf::SigmoidFocalLoss<T>& L, const MatR<T>& x, const MatR<T>& t, Vec<double>& values,
                  MatR<T>& g) {
  g.resize(x.rows(), x.cols());
  if (L.reduction() == lmf::Reduction::none) {
    MatR<T> v(x.rows(), x.cols());
    L.per_element_and_gradient(x, t, v, g);
    values = Eigen::Map<const Vec<T>>(v.data(), v.size()).template cast<double>();
  } else {
    values = Vec<double>::Constant(1, double(L.value_and_gradient(x, t, g)));
  }
}

}  // namespace

TEMPLATE_TEST_CASE("sigmoid focal: parity with torchvision (golden values)", "[family][sigmoid][parity]", float,
                   double) {
  using T = TestType;
  const Golden& g = sigmoid_golden();
  REQUIRE(g.sigmoid.size() >= 20);
  for (const GoldenSigmoid& c : g.sigmoid) {
    INFO(c.name << " (N " << c.n << ", C " << c.c << ", alpha " << c.alpha << ", gamma " << c.gamma << ", "
                << c.reduction << (c.weights.empty() ? "" : ", weighted") << ")");
    MatR<T> x(c.n, c.c), t(c.n, c.c);
    for (Index i = 0; i < x.size(); ++i) x.data()[i] = T(c.logits[std::size_t(i)]), t.data()[i] = T(c.targets[std::size_t(i)]);
    const Eigen::Map<const Vec<double>> want_v(c.values.data(), Index(c.values.size()));
    const auto L = make_sigmoid<T>(c);
    for (const lmf::Kernel k : {lmf::Kernel::automatic, lmf::Kernel::scalar}) {
      auto LK = L;
      LK.set_kernel(k);
      Vec<double> v;
      MatR<T> gr;
      sigmoid_eval(LK, x, t, v, gr);
      // (per-element values in double: torchvision's BCE with logits, (1 - t) x + max(-x, 0) +
      // log(exp(-max) + exp(-x - max)), carries absolute errors ~eps |x| where lmf's log1p form
      // does not; entries below 1e-3 of the largest are compared absolutely, as for the gradient)
      CHECK(close(v, want_v, tolerance<T>(), -1, sizeof(T) == 8 ? 1e-3 : kElementFloor));
      // in double the reference limits: torchvision's sigmoid(x) - t carries absolute errors of
      // ~eps on every entry (an entry 1 - p ~ 1e-5 has 11 right digits), so double compares
      // relatively down to 1e-3 of the largest entry, as the softmax parity test does
      const MatR<double> got = gr.template cast<double>();
      const Eigen::Map<const MatR<double>> want(c.grad.data(), c.n, c.c);
      const double scale = c.reduction == "mean" ? 1.0 / double(c.n * c.c) : 1.0;
      CHECK(sigmoid_close(got, want, x, t, c.alpha, c.gamma, c.weights, scale, tolerance<T>(),
                          sizeof(T) == 8 ? 1e-3 : kElementFloor));
    }
  }
}

TEMPLATE_TEST_CASE("sigmoid focal: SIMD lines equal the scalar formulas on every layout", "[family][sigmoid]", float,
                   double) {
  using T = TestType;
  const Index W = simd_width<T>();
  const Index C = GENERATE_COPY(Index(1), Index(2), W - 1, W, W + 1, 3 * W + 1);
  const Index N = GENERATE_COPY(Index(1), W + 1, Index(37));
  const double gamma = GENERATE(0.0, 0.5, 2.0, 3.7);
  INFO("N " << N << ", C " << C << ", gamma " << gamma);
  typename lmf::SigmoidFocalLoss<T>::Options o;
  o.gamma = T(gamma);
  o.alpha = gamma == 0.5 ? T(-1) : T(0.25);
  o.class_weights = Vec<T>::LinSpaced(C, T(0.5), T(2));
  lmf::SigmoidFocalLoss<T> simd(o), ref(o);
  ref.set_kernel(lmf::Kernel::scalar);
  Mat<T> x = random_logits<T>(N, C, 4.0);
  x(0, 0) = T(40), x(N - 1, C - 1) = T(-1e4);  // saturated
  Mat<T> t(N, C);
  std::uniform_real_distribution<double> u(0, 1);
  for (Index i = 0; i < t.size(); ++i) t.data()[i] = i % 3 == 0 ? T(u(rng())) : T(i % 2);
  Mat<T> g_ref(N, C);
  const T v_ref = ref.value_and_gradient(x, t, g_ref);
  const Mat<T>& g_ref_d = g_ref;
  std::vector<double> wl(static_cast<std::size_t>(C));
  for (Index j = 0; j < C; ++j) wl[std::size_t(j)] = double(o.class_weights(j));
  auto agree = [&](const auto& g) {
    return sigmoid_close(g, g_ref_d, x, t, double(o.alpha), gamma, wl, 1.0 / double(N * C), tolerance<T>(),
                         kElementFloor);
  };
  // column-major (samples contiguous), row-major (classes contiguous), strided (scalar path)
  Mat<T> g1(N, C);
  CHECK(rel_error(double(simd.value_and_gradient(x, t, g1)), double(v_ref)) < tolerance<T>());
  CHECK(agree(g1));
  const MatR<T> xr = x, tr = t;
  MatR<T> g2(N, C);
  CHECK(rel_error(double(simd.value_and_gradient(xr, tr, g2)), double(v_ref)) < tolerance<T>());
  CHECK(agree(Mat<T>(g2)));
  using Strided = Eigen::Map<Mat<T>, 0, Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>>;
  const Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic> stride(4 * N, 2);  // every other row and column
  Mat<T> big = Mat<T>::Zero(2 * N, 2 * C), tbig = Mat<T>::Zero(2 * N, 2 * C), gbig = Mat<T>::Zero(2 * N, 2 * C);
  Strided xs(big.data(), N, C, stride), ts(tbig.data(), N, C, stride), gs(gbig.data(), N, C, stride);
  xs = x;
  ts = t;
  CHECK(rel_error(double(simd.value_and_gradient(xs, ts, gs)), double(v_ref)) < tolerance<T>());
  CHECK(agree(Mat<T>(gs)));
  // (N, C, d) with d = 3: the raw entry point, pixel lines
  const Index d = 3;
  std::vector<T> xn(std::size_t(N * C * d)), tn(xn.size()), gn(xn.size());
  for (Index n = 0; n < N; ++n)
    for (Index c = 0; c < C; ++c)
      for (Index p = 0; p < d; ++p) {
        xn[std::size_t((n * C + c) * d + p)] = x(n, c);
        tn[std::size_t((n * C + c) * d + p)] = t(n, c);
      }
  const lmf::Layout l = lmf::Layout::nchw(N, C, d);
  const T vn = simd.value_and_gradient(xn.data(), l, tn.data(), l, gn.data(), l);
  CHECK(rel_error(double(vn), double(v_ref)) < tolerance<T>());  // the mean is over N C d: same value
  Mat<T> g_pixel(N, C);  // pixel 1 of each (n, c) plane, times d (the mean is over d times more elements)
  for (Index n = 0; n < N; ++n)
    for (Index c = 0; c < C; ++c) g_pixel(n, c) = gn[std::size_t((n * C + c) * d + 1)] * T(d);
  CHECK(agree(g_pixel));
  // in place
  Mat<T> xi = x;
  CHECK(rel_error(double(simd.value_and_gradient(xi, t, xi)), double(v_ref)) < tolerance<T>());
  CHECK(agree(xi));
}

TEST_CASE("sigmoid focal: finite differences, and finite where torchvision is NaN", "[family][sigmoid][gradients]") {
  for (const double gamma : {0.0, 0.5, 1.0, 2.0, 3.5}) {
    for (const double alpha : {0.25, -1.0}) {
      INFO("gamma " << gamma << ", alpha " << alpha);
      lmf::SigmoidFocalLoss<double>::Options o;
      o.gamma = gamma;
      o.alpha = alpha;
      o.reduction = lmf::Reduction::sum;
      o.class_weights = Vec<double>::LinSpaced(4, 0.5, 2);
      const lmf::SigmoidFocalLoss<double> L(o);
      Mat<double> x = random_logits<double>(5, 4, 3.0);
      Mat<double> t(5, 4);
      std::uniform_real_distribution<double> u(0.05, 0.95);
      for (Index i = 0; i < t.size(); ++i) t.data()[i] = i % 2 ? u(rng()) : double(i % 4 == 0);
      Mat<double> g(5, 4), fd(5, 4);
      L.value_and_gradient(x, t, g);
      for (Index i = 0; i < x.size(); ++i) {
        const double h = 1e-5 * std::max(1.0, std::abs(x.data()[i]));
        Mat<double> z = x;
        auto f = [&](double dx) {
          z.data()[i] = x.data()[i] + dx;
          return L.value(z, t);
        };
        fd.data()[i] = (8 * (f(h) - f(-h)) - (f(2 * h) - f(-2 * h))) / (12 * h);
      }
      CHECK(rel_error(g, fd) < 1e-8);
    }
  }
  // saturated logits with gamma < 1: torchvision's (1 - p_t)^(gamma - 1) is inf there, times 0
  for (const double gamma : {0.25, 0.5}) {
    lmf::SigmoidFocalLoss<float>::Options o;
    o.gamma = float(gamma);
    const lmf::SigmoidFocalLoss<float> L(o);
    MatR<float> x(1, 4), t(1, 4), g(1, 4);
    x << 60.f, -60.f, 1e4f, -1e4f;
    t << 1.f, 0.f, 1.f, 0.f;
    const float v = L.value_and_gradient(x, t, g);
    CHECK(std::isfinite(v));
    CHECK(g.allFinite());
    CHECK(v >= 0.f);
    // a confident correct element still has its (tiny) loss: e^-20 ~ 2e-9, q^gamma ~ (2e-9)^gamma
    x << 20.f, -20.f, 20.f, -20.f;
    MatR<double> xd = x.cast<double>(), td = t.cast<double>(), gd(1, 4);
    typename lmf::SigmoidFocalLoss<double>::Options od;
    od.gamma = gamma;
    const double vd = lmf::SigmoidFocalLoss<double>(od).value_and_gradient(xd, td, gd);
    const double e = std::exp(-20.0), ce = std::log1p(e), q = e / (1 + e);
    const double want = 0.25 * (2 * std::pow(q, gamma) * ce) / 4 + 0.75 * (2 * std::pow(q, gamma) * ce) / 4;
    CHECK(rel_error(vd, want, 1e-300) < 1e-13);
    CHECK(rel_error(double(L.value(x, t)), want, 1e-300) < 1e-5);
  }
}

TEST_CASE("sigmoid focal: bad input is an lmf::Error naming it, and nothing is written", "[family][sigmoid][errors]") {
  const lmf::SigmoidFocalLoss<float> L;
  MatR<float> x = MatR<float>::Zero(3, 4), t = MatR<float>::Zero(3, 4);
  MatR<float> g = MatR<float>::Constant(3, 4, 7.f);
  t(1, 2) = 1.5f;
  CHECK_THROWS_WITH(L.value_and_gradient(x, t, g), Catch::Contains("target at row 1, class 2 is 1.5"));
  t(1, 2) = 0.5f;
  x(2, 3) = NAN;
  CHECK_THROWS_WITH(L.value_and_gradient(x, t, g), Catch::Contains("logit at row 2, class 3 is nan"));
  CHECK((g.array() == 7.f).all());
  x(2, 3) = 0;
  MatR<float> t_small(3, 3);
  t_small.setZero();
  CHECK_THROWS_WITH(L.value(x, t_small), Catch::Contains("targets are 3x3"));
  MatR<float> v(3, 4);
  CHECK_NOTHROW(L.value(x, t));
  lmf::SigmoidFocalLoss<float>::Options o;
  o.reduction = lmf::Reduction::none;
  CHECK_THROWS_WITH(lmf::SigmoidFocalLoss<float>(o).value(x, t), Catch::Contains("call per_element"));
  o.alpha = 2;
  CHECK_THROWS_WITH(lmf::SigmoidFocalLoss<float>(o), Catch::Contains("alpha is 2"));
  o.alpha = 0.25f;
  o.reduction = lmf::Reduction::mean;
  o.class_weights = Eigen::VectorXf::Ones(5);
  CHECK_THROWS_WITH(lmf::SigmoidFocalLoss<float>(o).value(x, t), Catch::Contains("the loss has 5"));
  // a bad target in the second chunk of a flat sweep (row-major, N C > 16384): found, nothing written
  MatR<float> xb = MatR<float>::Zero(200, 100), tb = MatR<float>::Zero(200, 100);
  MatR<float> gb = MatR<float>::Constant(200, 100, 7.f);
  tb(199, 98) = -0.5f;
  CHECK_THROWS_WITH(L.value_and_gradient(xb, tb, gb), Catch::Contains("target at row 199, class 98 is -0.5"));
  CHECK((gb.array() == 7.f).all());
  tb(199, 98) = 0;
  xb(170, 3) = -INFINITY;
  CHECK_THROWS_WITH(L.value(xb, tb), Catch::Contains("logit at row 170, class 3 is -inf"));
  // the gradient may not overlap the targets
  MatR<float> tt = t;
  CHECK_THROWS_WITH(L.value_and_gradient(x, tt, tt), Catch::Contains("overlap the targets"));
}
