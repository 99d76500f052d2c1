// Every fast path against the scalar reference kernel: rows and lanes kernels, for every loss
// and option, float and double, C and N through several SIMD widths +-1, every layout; and
// bitwise determinism across thread counts and runs.
#include "support.hpp"

#include <xsimd/xsimd.hpp>

using namespace lmf_test;

namespace {

template <class T>
std::vector<std::pair<std::string, lmf::Loss<T>>> kernel_losses(Index c) {
  const Eigen::VectorXi counts = long_tail_counts(c);
  const Vec<T> w = lmf::class_balanced_weights<T>(counts, T(0.999));
  std::vector<std::pair<std::string, lmf::Loss<T>>> out;
  typename lmf::CrossEntropyLoss<T>::Options ce;
  out.emplace_back("cross entropy", lmf::CrossEntropyLoss<T>(ce));
  for (T gamma : {T(0.5), T(2), T(5)}) {
    typename lmf::FocalLoss<T>::Options f;
    f.gamma = gamma;
    f.class_weights = w;
    out.emplace_back("focal", lmf::FocalLoss<T>(f));
  }
  typename lmf::LDAMLoss<T>::Options l;
  l.s = T(64);
  l.reduction = lmf::Reduction::sum;
  out.emplace_back("LDAM s 64 sum", lmf::LDAMLoss<T>(counts, l));
  typename lmf::LMFLoss<T>::Options m;
  m.class_weights = w;
  m.gamma = T(1.5);
  m.reduction = lmf::Reduction::none;
  out.emplace_back("LMF weighted none", lmf::LMFLoss<T>(counts, m));
  out.emplace_back("LMF default", lmf::LMFLoss<T>(counts));
  out.emplace_back("LMF official", lmf::LMFLoss<T>::official_code(counts));
  out.emplace_back("LMF seed", lmf::LMFLoss<T>::seed_code(counts, w));
  return out;
}

/// Value (or per-row values) and gradient of `loss` with `kernel`, on matrix type M.
template <class T, class M>
std::pair<Vec<T>, Mat<T>> run(lmf::Loss<T> loss, lmf::Kernel kernel, const Mat<T>& x, const Labels& y) {
  loss.set_kernel(kernel);
  const M xm = x;
  M g(x.rows(), x.cols());
  Vec<T> v;
  if (loss.reduction() == lmf::Reduction::none) {
    v.resize(x.rows());
    loss.per_row_and_gradient(xm, y, v, g);
  } else {
    v = Vec<T>::Constant(1, loss.value_and_gradient(xm, y, g));
    REQUIRE(loss.value(xm, y) == Approx(v(0)).epsilon(sizeof(T) == 8 ? 1e-13 : 1e-6));
  }
  return {v, Mat<T>(g)};
}

}  // namespace

TEMPLATE_TEST_CASE("SIMD kernels agree with the scalar kernel", "[kernels]", float, double) {
  using T = TestType;
  const Index W = Index(xsimd::batch<T>::size);
  const double tol = sizeof(T) == 8 ? 1e-12 : 1e-5;
  INFO("SIMD width " << W << " (" << xsimd::default_arch::name() << ")");
  std::vector<Index> classes = {2, 3, W - 1, W, W + 1, 2 * W + 1, 3 * W - 1, 3 * W, 3 * W + 1, 5 * W + 3, 100, 1000};
  std::vector<Index> rows = {0, 1, W - 1, W, W + 1, 3 * W + 2, 513, 1100};
  for (Index c : classes) {
    if (c < 2) continue;
    for (Index n : rows) {
      if (n * c > 120000) continue;
      const Mat<T> x = random_logits<T>(n, c, 3.0);
      const Labels y = random_labels(n, c, 0.1);
      for (auto& [name, loss] : kernel_losses<T>(c)) {
        INFO(name << ", N " << n << ", C " << c);
        const auto ref = run<T, Mat<T>>(loss, lmf::Kernel::scalar, x, y);
        for (lmf::Kernel kern : {lmf::Kernel::automatic, lmf::Kernel::rows, lmf::Kernel::lanes}) {
          INFO("kernel " << int(kern));
          const auto col = run<T, Mat<T>>(loss, kern, x, y);   // class-strided: lanes (rows falls back)
          const auto row = run<T, MatR<T>>(loss, kern, x, y);  // class-contiguous: rows or lanes
          CHECK(rel_error(col.first, ref.first) <= tol);
          CHECK(rel_error(col.second, ref.second) <= tol);
          CHECK(rel_error(row.first, ref.first) <= tol);
          CHECK(rel_error(row.second, ref.second) <= tol);
        }
      }
    }
  }
}

TEMPLATE_TEST_CASE("SIMD kernels on (N, C, d) buffers and strided blocks agree with the scalar kernel",
                   "[kernels][layout]", float, double) {
  using T = TestType;
  const double tol = sizeof(T) == 8 ? 1e-12 : 1e-5;
  for (Index c : {2, 5, 19, 40}) {
    for (Index d : {1, 3, 17}) {
      const Index samples = 7;
      const lmf::Layout nchw = lmf::Layout::nchw(samples, c, d);
      std::vector<T> buf(std::size_t(samples * c * d));
      for (T& v : buf) v = static_cast<T>(std::normal_distribution<double>(0, 2)(rng()));
      const Labels y = random_labels(samples * d, c, 0.1);
      for (auto& [name, loss] : kernel_losses<T>(c)) {
        if (loss.reduction() == lmf::Reduction::none) continue;
        INFO(name << ", C " << c << ", d " << d);
        std::vector<T> g_ref(buf.size()), g(buf.size());
        loss.set_kernel(lmf::Kernel::scalar);
        const T v_ref = loss.value_and_gradient(buf.data(), nchw, y.data(), g_ref.data());
        for (lmf::Kernel kern : {lmf::Kernel::automatic, lmf::Kernel::lanes}) {
          loss.set_kernel(kern);
          const T v = loss.value_and_gradient(buf.data(), nchw, y.data(), g.data());
          CHECK(rel_error(double(v), double(v_ref)) <= tol);
          CHECK(rel_error(Eigen::Map<Vec<T>>(g.data(), Index(g.size())), Eigen::Map<Vec<T>>(g_ref.data(), Index(g.size()))) <= tol);
        }
      }
    }
  }
  SECTION("a block with outer stride != C, row-major") {
    const Index n = 37, c = 30;
    MatR<T> big = MatR<T>::Random(n + 3, c + 5);
    MatR<T> gbig = MatR<T>::Zero(n + 3, c + 5), gref(n, c);
    const Labels y = random_labels(n, c, 0.1);
    lmf::LMFLoss<T> loss(long_tail_counts(c));
    loss.set_kernel(lmf::Kernel::scalar);
    const T v_ref = loss.value_and_gradient(big.block(1, 2, n, c), y, gref);
    loss.set_kernel(lmf::Kernel::automatic);
    const T v = loss.value_and_gradient(big.block(1, 2, n, c), y, gbig.block(1, 2, n, c));
    REQUIRE(rel_error(double(v), double(v_ref)) <= tol);
    REQUIRE(rel_error(MatR<T>(gbig.block(1, 2, n, c)), gref) <= tol);
    REQUIRE(gbig.col(0).isZero());
    REQUIRE(gbig.col(c + 4).isZero());
  }
}

TEMPLATE_TEST_CASE("SIMD kernels keep the edge cases: ignored NaN rows, bad logits, extremes", "[kernels][numerics]",
                   float, double) {
  using T = TestType;
  for (Index c : {3, 40}) {
    const Index n = 64;
    lmf::LMFLoss<T> loss(long_tail_counts(c));
    for (lmf::Kernel kern : {lmf::Kernel::rows, lmf::Kernel::lanes}) {
      loss.set_kernel(kern);
      Mat<T> x = random_logits<T>(n, c);
      Labels y = random_labels(n, c);
      MatR<T> xr = x, g(n, c);
      INFO("C " << c << ", kernel " << int(kern));
      SECTION("a NaN in an ignored row is never read") {
        xr(5, 1) = std::numeric_limits<T>::quiet_NaN();
        y(5) = -100;
        REQUIRE(std::isfinite(loss.value_and_gradient(xr, y, g)));
        REQUIRE(g.allFinite());
        REQUIRE(g.row(5).isZero());
        REQUIRE(std::isfinite(loss.value(xr, y)));
      }
      SECTION("a NaN or inf in a counted row is reported, also by value()") {
        xr(n - 2, c - 1) = std::numeric_limits<T>::infinity();
        REQUIRE_THROWS_WITH(loss.value(xr, y), Catch::Contains("logit at row 62, class " + std::to_string(c - 1)));
        xr(n - 2, c - 1) = std::numeric_limits<T>::quiet_NaN();
        REQUIRE_THROWS_WITH(loss.value(xr, y), Catch::Contains("is nan"));
      }
      SECTION("logits of 1e4 with ties and dominant targets stay finite") {
        xr *= T(5000);
        for (Index i = 0; i < 10; ++i) xr.row(i).setConstant(T(1e4));
        for (Index i = 10; i < 20; ++i) xr(i, y(i)) = T(1e4);
        REQUIRE(std::isfinite(loss.value_and_gradient(xr, y, g)));
        REQUIRE(g.allFinite());
        loss.set_kernel(lmf::Kernel::scalar);
        MatR<T> g_ref(n, c);
        const T v_ref = loss.value_and_gradient(xr, y, g_ref);
        loss.set_kernel(kern);
        REQUIRE(rel_error(double(loss.value(xr, y)), double(v_ref)) <= (sizeof(T) == 8 ? 1e-12 : 1e-5));
        REQUIRE(rel_error(g, g_ref) <= (sizeof(T) == 8 ? 1e-12 : 1e-5));
      }
    }
  }
}

TEMPLATE_TEST_CASE("results are bitwise identical for any thread count and from run to run", "[kernels][threads]",
                   float, double) {
  using T = TestType;
  for (Index c : {4, 10, 100}) {
    const Index n = 300000 / c;  // > 2^15 logits: the threaded path
    const Mat<T> x = random_logits<T>(n, c);
    const Labels y = random_labels(n, c, 0.05);
    for (bool row_major : {false, true}) {
      lmf::LMFLoss<T> loss(long_tail_counts(c));
      auto eval = [&](int threads) {
        loss.set_threads(threads);
        Mat<T> g(n, c);
        T v;
        if (row_major) {
          MatR<T> xr = x, gr(n, c);
          v = loss.value_and_gradient(xr, y, gr);
          g = gr;
        } else {
          v = loss.value_and_gradient(x, y, g);
        }
        return std::make_pair(v, g);
      };
      const auto one = eval(1);
      INFO("C " << c << (row_major ? ", row-major" : ", column-major"));
      for (int threads : {2, 3, 4, 0, 1}) {
        const auto other = eval(threads);
        REQUIRE(other.first == one.first);  // bitwise: same blocks, same order
        REQUIRE(other.second == one.second);
      }
    }
  }
}
