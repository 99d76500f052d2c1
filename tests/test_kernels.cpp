// Every fast path against the scalar reference kernel: rows and lanes kernels, for every loss
// and option, float and double, C and N through several SIMD widths +-1, every layout; and
// bitwise determinism across thread counts and runs.
#include "support.hpp"

#include <algorithm>

using namespace lmf_test;

namespace {

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
    REQUIRE(rel_error(double(loss.value(xm, y)), double(v(0))) <= tolerance<T>());
  }
  return {v, Mat<T>(g)};
}

/// Registry cases for the kernel tests: every loss with mean (weighted), sum and none.
std::vector<LossCase> kernel_cases(Index c) {
  std::vector<LossCase> out = registry(c, "mean", balanced_weights(c), 1.5, 64);
  for (const LossCase& lc : registry(c, "sum", {}, 0.5, 30)) out.push_back(lc);
  for (const LossCase& lc : registry(c, "none", balanced_weights(c), 5, 30)) out.push_back(lc);
  return out;
}

const lmf::Kernel kFastKernels[] = {lmf::Kernel::automatic, lmf::Kernel::rows, lmf::Kernel::lanes};

}  // namespace

TEMPLATE_TEST_CASE("SIMD kernels agree with the scalar kernel", "[kernels]", float, double) {
  using T = TestType;
  const Index W = simd_width<T>();
  INFO("SIMD width " << W << " (" << lmf::simd_isa() << ")");
  std::vector<Index> classes = {2, 3, W - 1, W, W + 1, 2 * W + 1, 3 * W - 1, 3 * W, 3 * W + 1, 5 * W + 3, 6 * W - 1, 6 * W, 100, 1000};
  // around the SIMD width, and around the lanes kernel's R rows per iteration (one iteration
  // plus a tail, two plus a tail)
  const Index R = lane_rows<T>();
  std::vector<Index> rows = {0, 1, W - 1, W, W + 1, 2 * W - 1, 2 * W + 1, 3 * W + 2, R - 1, R, R + 1, 2 * R + 3, 513, 1100};
  std::sort(rows.begin(), rows.end());
  rows.erase(std::unique(rows.begin(), rows.end()), rows.end());
  for (Index c : classes) {
    if (c < 2) continue;
    for (Index n : rows) {
      if (n * c > 120000) continue;
      const Mat<T> x = random_logits<T>(n, c, 3.0);
      const Labels y = random_labels(n, c, 0.1);
      for (const LossCase& lc : kernel_cases(c)) {
        const lmf::Loss<T> loss = make_loss<T>(lc);
        INFO(describe(lc) << ", N " << n << ", C " << c);
        const auto ref = run<T, Mat<T>>(loss, lmf::Kernel::scalar, x, y);
        const double tol = kernel_tolerance(loss, n ? double(x.cwiseAbs().maxCoeff()) : 0.0);
        for (lmf::Kernel kern : kFastKernels) {
          INFO("kernel " << int(kern));
          const auto col = run<T, Mat<T>>(loss, kern, x, y);   // class-strided: lanes (rows falls back)
          const auto row = run<T, MatR<T>>(loss, kern, x, y);  // class-contiguous: rows or lanes
          CHECK(close(col.first, ref.first, tol));
          CHECK(close(col.second, ref.second, tol, -1, element_floor(loss, c)));
          CHECK(close(row.first, ref.first, tol));
          CHECK(close(row.second, ref.second, tol, -1, element_floor(loss, c)));
        }
      }
    }
  }
}

TEMPLATE_TEST_CASE("SIMD kernels with 3 and 4 terms agree with the scalar kernel", "[kernels]", float, double) {
  using T = TestType;
  for (int terms : {3, 4}) {
    for (Index c : {5, 19, 100}) {
      lmf::LossSpec<T> spec;
      const Eigen::VectorXi counts = long_tail_counts(c);
      for (int t = 0; t < terms; ++t) {
        lmf::Term<T> term;
        term.weight = T(0.5 + 0.25 * t);
        term.s = T(1 + 7 * t);
        term.gamma = T(0.5 * t);
        if (t % 2) term.m = lmf::ldam_margins<T>(counts, T(0.5));
        term.w = lmf::class_balanced_weights<T>(counts, 0.99);
        spec.terms.push_back(term);
      }
      const lmf::Loss<T> loss(spec);
      const Mat<T> x = random_logits<T>(77, c, 2.0);
      const Labels y = random_labels(77, c, 0.1);
      INFO(terms << " terms, C " << c);
      const auto ref = run<T, Mat<T>>(loss, lmf::Kernel::scalar, x, y);
      const double tol = kernel_tolerance(loss, double(x.cwiseAbs().maxCoeff()));
      for (lmf::Kernel kern : kFastKernels) {
        INFO("kernel " << int(kern));
        const auto row = run<T, MatR<T>>(loss, kern, x, y);
        CHECK(close(row.first, ref.first, tol));
        CHECK(close(row.second, ref.second, tol));
      }
    }
  }
}

TEMPLATE_TEST_CASE("strided label vectors give the contiguous result", "[kernels][layout]", float, double) {
  using T = TestType;
  for (Index c : {3, 40}) {
    const Index n = 70;
    const Mat<T> x = random_logits<T>(n, c);
    const Labels y = random_labels(n, c, 0.1);
    Eigen::Matrix<long, Eigen::Dynamic, Eigen::Dynamic> wide(3, n);  // labels in row 1: stride 3
    wide.setConstant(-7);
    wide.row(1) = y.cast<long>().transpose();
    for (const LossCase& lc : registry(c)) {
      lmf::Loss<T> loss = make_loss<T>(lc);
      for (lmf::Kernel kern : {lmf::Kernel::scalar, lmf::Kernel::automatic, lmf::Kernel::lanes}) {
        loss.set_kernel(kern);
        INFO(describe(lc) << ", C " << c << ", kernel " << int(kern));
        Mat<T> g(n, c), g_ref(n, c);
        const T v_ref = loss.value_and_gradient(x, y, g_ref);
        REQUIRE(loss.value_and_gradient(x, wide.row(1).transpose(), g) == v_ref);
        REQUIRE(g == g_ref);
      }
    }
  }
}

TEMPLATE_TEST_CASE("SIMD kernels on (N, C, d) buffers and strided blocks agree with the scalar kernel",
                   "[kernels][layout]", float, double) {
  using T = TestType;
  for (Index c : {2, 5, 19, 40}) {
    for (Index d : {1, 3, 17}) {
      const Index samples = 7;
      const lmf::Layout nchw = lmf::Layout::nchw(samples, c, d);
      std::vector<T> buf(std::size_t(samples * c * d));
      for (T& v : buf) v = static_cast<T>(std::normal_distribution<double>(0, 2)(rng()));
      const Labels y = random_labels(samples * d, c, 0.1);
      for (const LossCase& lc : kernel_cases(c)) {
        lmf::Loss<T> loss = make_loss<T>(lc);
        if (loss.reduction() == lmf::Reduction::none) continue;
        INFO(describe(lc) << ", C " << c << ", d " << d);
        std::vector<T> g_ref(buf.size()), g(buf.size());
        loss.set_kernel(lmf::Kernel::scalar);
        const T v_ref = loss.value_and_gradient(buf.data(), nchw, y.data(), g_ref.data());
        for (lmf::Kernel kern : {lmf::Kernel::automatic, lmf::Kernel::lanes}) {
          loss.set_kernel(kern);
          const T v = loss.value_and_gradient(buf.data(), nchw, y.data(), g.data());
          CHECK(rel_error(double(v), double(v_ref)) <= tolerance<T>());
          CHECK(close(Eigen::Map<Vec<T>>(g.data(), Index(g.size())), Eigen::Map<Vec<T>>(g_ref.data(), Index(g.size())),
                      tolerance<T>(), -1, element_floor(loss, c)));
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
    REQUIRE(rel_error(double(v), double(v_ref)) <= tolerance<T>());
    REQUIRE(close(MatR<T>(gbig.block(1, 2, n, c)), gref, tolerance<T>()));
    REQUIRE(gbig.col(0).isZero());
    REQUIRE(gbig.col(c + 4).isZero());
  }
}

TEMPLATE_TEST_CASE("SIMD kernels keep the edge cases: ignored NaN rows, bad logits, extremes", "[kernels][numerics]",
                   float, double) {
  using T = TestType;
  const Index c = GENERATE(3, 40);
  const auto kern = GENERATE(lmf::Kernel::rows, lmf::Kernel::lanes, lmf::Kernel::scalar);
  const Index n = 64;
  lmf::LMFLoss<T> loss(long_tail_counts(c));
  loss.set_kernel(kern);
  Mat<T> x = random_logits<T>(n, c);
  Labels y = random_labels(n, c);
  MatR<T> xr = x, g(n, c);
  INFO("C " << c << ", kernel " << int(kern));
  SECTION("a NaN or 1e30 in an ignored row is never used") {
    xr(5, 1) = std::numeric_limits<T>::quiet_NaN();
    xr(5, 0) = T(1e30);
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
  SECTION("logits of 1e4 with ties and dominant targets stay finite and agree with the scalar kernel") {
    xr *= T(5000);
    for (Index i = 0; i < 10; ++i) xr.row(i).setConstant(T(1e4));
    for (Index i = 10; i < 20; ++i) xr(i, y(i)) = T(1e4);
    REQUIRE(std::isfinite(loss.value_and_gradient(xr, y, g)));
    REQUIRE(g.allFinite());
    loss.set_kernel(lmf::Kernel::scalar);
    MatR<T> g_ref(n, c);
    const T v_ref = loss.value_and_gradient(xr, y, g_ref);
    loss.set_kernel(kern);
    REQUIRE(rel_error(double(loss.value(xr, y)), double(v_ref)) <= tolerance<T>());
    REQUIRE(close(g, g_ref, tolerance<T>()));
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

TEMPLATE_TEST_CASE("every instruction set the CPU runs, forced one by one in this binary, agrees with the scalar kernel",
                   "[kernels][isa]", float, double) {
  using T = TestType;
  using lmf::detail::Isa;
  int tested = 0;
  for (Isa isa : {Isa::sse2, Isa::avx2, Isa::avx512}) {
    const ForcedIsa forced(isa);
    if (!forced.ok) continue;  // not compiled in, or not run by this CPU
    ++tested;
    REQUIRE(std::string(lmf::simd_isa()) == lmf::detail::isa_name(isa));
    const Index W = simd_width<T>();
    for (Index c : {Index(2), Index(3), W - 1, W + 1, 2 * W + 3, 6 * W + 1, Index(100)}) {
      if (c < 2) continue;
      for (Index n : {Index(1), lane_rows<T>() + 1, Index(67)}) {  // (one lanes-kernel iteration plus a row)
        const Mat<T> x = random_logits<T>(n, c, 3.0);
        const Labels y = random_labels(n, c, 0.1);
        for (const LossCase& lc : kernel_cases(c)) {
          const lmf::Loss<T> loss = make_loss<T>(lc);
          INFO(lmf::simd_isa() << ": " << describe(lc) << ", N " << n << ", C " << c);
          const auto ref = run<T, Mat<T>>(loss, lmf::Kernel::scalar, x, y);
          const double tol = kernel_tolerance(loss, double(x.cwiseAbs().maxCoeff()));
          for (lmf::Kernel kern : kFastKernels) {
            INFO("kernel " << int(kern));
            const auto col = run<T, Mat<T>>(loss, kern, x, y);
            const auto row = run<T, MatR<T>>(loss, kern, x, y);
            CHECK(close(col.first, ref.first, tol));
            CHECK(close(col.second, ref.second, tol, -1, element_floor(loss, c)));
            CHECK(close(row.first, ref.first, tol));
            CHECK(close(row.second, ref.second, tol, -1, element_floor(loss, c)));
          }
        }
      }
    }
  }
  CHECK(tested >= 1);
  CHECK(std::string(lmf::simd_isa()) == lmf::detail::isa_name(suite_isa()));  // restored
}

TEST_CASE("simd_isa names the active instruction set, cpu_simd_isa the CPU's; a plain build dispatches", "[kernels][isa]") {
  const std::string active = lmf::simd_isa(), cpu = lmf::cpu_simd_isa();
  INFO("test build " << LMF_TEST_ISA << ": kernels " << active << ", CPU " << cpu);
  const std::string build = LMF_TEST_ISA;
  if (build == "baseline") CHECK(active == "sse2");
  if (build == "avx2") CHECK(active == "avx2");
  if (build == "avx512") CHECK(active == "avx512");
  if (build == "native") CHECK(active == cpu);
  // what a program chooses by itself (this binary's main forced its set): the widest the CPU
  // runs, in every build, the default flags included, unless LMF_SIMD_ISA caps it
  if (!std::getenv("LMF_SIMD_ISA")) CHECK(lmf::detail::isa_name(lmf::detail::initial_isa()) == cpu);
  // the CPU's set, read independently from /proc/cpuinfo's flags where there is one
  std::ifstream info("/proc/cpuinfo");
  std::string line, flags;
  while (std::getline(info, line))
    if (line.rfind("flags", 0) == 0) {
      flags = " " + line.substr(line.find(':') + 1) + " ";
      break;
    }
  if (flags.empty()) return;  // not Linux on x86
  auto has = [&](const char* f) { return flags.find(std::string(" ") + f + " ") != std::string::npos; };
  const std::string expected =
      has("avx512f") && has("avx512cd") && has("avx512dq") && has("avx512bw") && has("avx512vl") && has("fma") ? "avx512"
      : has("avx2") && has("fma")                                                                           ? "avx2"
                                                                                                            : "sse2";
  CHECK(cpu == expected);
  // every set up to the CPU's can be forced, none beyond it
  using lmf::detail::Isa;
  auto rank = [](const std::string& s) { return s == "avx512" ? 2 : s == "avx2" ? 1 : 0; };
  for (Isa isa : {Isa::sse2, Isa::avx2, Isa::avx512}) {
    const ForcedIsa forced(isa);
    INFO("forcing " << lmf::detail::isa_name(isa));
    CHECK(forced.ok == (rank(lmf::detail::isa_name(isa)) <= rank(cpu)));
    if (forced.ok) CHECK(std::string(lmf::simd_isa()) == lmf::detail::isa_name(isa));
  }
  CHECK(lmf::simd_isa() == active);
}
