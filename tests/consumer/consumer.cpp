// A program outside the lmf tree, built against an installed lmf via find_package(lmf CONFIG).
#include <lmf/lmf.hpp>

#include <cmath>
#include <cstdio>

int main() {
  Eigen::VectorXi counts(3);
  counts << 100, 10, 1;
  const lmf::LMFLoss<double> loss(counts);
  Eigen::MatrixXd x(2, 3), g(2, 3);
  x << 1, 2, 3, 3, 2, 1;
  Eigen::VectorXi y(2);
  y << 2, 0;
  const double v = loss.value_and_gradient(x, y, g);
  std::printf("lmf %s: LMF loss %.6f\n", LMF_VERSION_STRING, v);
  return std::isfinite(v) && v > 0 && g.allFinite() ? 0 : 1;
}
