// A program compiled with -O3 -ffast-math (as some training code is): every instruction set the
// CPU runs must still agree with the scalar kernel. (The exp's rounding by adding and subtracting
// 1.5 * 2^23 was folded away by -ffast-math once: values off by 1e-4, gradients by 2e-3.)
#include <lmf/lmf.hpp>

#include <cmath>
#include <cstdio>

template <class T>
int check(const char* type) {
  using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>;
  int failures = 0;
  for (int classes : {2, 10, 100}) {
    const int n = 517;
    Mat x(n, classes);
    Eigen::VectorXi y(n);
    for (int i = 0; i < n; ++i) {
      y(i) = (i * 7) % classes;
      for (int j = 0; j < classes; ++j) x(i, j) = T(std::sin(0.37 * i + 1.3 * j) * 4);
    }
    Eigen::Matrix<long, Eigen::Dynamic, 1> counts(classes);
    for (int j = 0; j < classes; ++j) counts(j) = 1000 / (j + 1);
    lmf::LMFLoss<T> loss(counts);
    lmf::LMFLoss<T> scalar = loss;
    scalar.set_kernel(lmf::Kernel::scalar);
    Mat g_ref(n, classes), g(n, classes);
    const T v_ref = scalar.value_and_gradient(x, y, g_ref);
    for (int isa = 0; isa <= 2; ++isa) {
      if (!lmf::detail::force_isa(lmf::detail::Isa(isa))) continue;
      const T v = loss.value_and_gradient(x, y, g);
      const double tol = sizeof(T) == 4 ? 1e-5 : 1e-12;
      const double ev = std::abs(double(v - v_ref)) / std::abs(double(v_ref));
      const double eg = double((g - g_ref).cwiseAbs().maxCoeff() / g_ref.cwiseAbs().maxCoeff());
      const bool ok = ev <= tol && eg <= tol;
      std::printf("%s %s C %d: value error %.3g, gradient error %.3g%s\n", type, lmf::simd_isa(), classes, ev, eg,
                  ok ? "" : "  FAILED");
      failures += ok ? 0 : 1;
    }
  }
  return failures;
}

int main() {
#if !defined(__FAST_MATH__)
  std::printf("not compiled with -ffast-math\n");
  return 1;
#else
  return check<float>("float") + check<double>("double") == 0 ? 0 : 1;
#endif
}
