// Built with -fno-exceptions: the try_* entry points report bad input through lmf::Status, and
// good input gives the same results as with exceptions. (The throwing API would print the
// message and abort.)
#include <lmf/lmf.hpp>

#include <cmath>
#include <cstdio>

static_assert(LMF_NO_EXCEPTIONS == 1, "this test must be compiled with -fno-exceptions");

int main() {
  Eigen::VectorXi counts(3);
  counts << 100, 10, 1;
  const lmf::LMFLoss<float> loss(counts);
  Eigen::MatrixXf x(4, 3), g = Eigen::MatrixXf::Constant(4, 3, 7.0f);
  x << 1, 2, 3, 3, 2, 1, 0, 0, 5, -1, 4, 0;
  Eigen::VectorXi y(4);
  y << 2, 0, 1, 7;  // 7 is out of range
  float v = -1;
  const lmf::Status bad = loss.try_value_and_gradient(x, y, g, v);
  const bool reported = !bad.ok() && bad.message().find("label 7 at row 3") != std::string::npos;
  const bool untouched = (g.array() == 7.0f).all() && v == -1;
  y(3) = 1;
  const lmf::Status good = loss.try_value_and_gradient(x, y, g, v);
  const bool computed = good.ok() && std::isfinite(v) && v > 0 && g.allFinite();
  std::printf("no-exceptions build: error reported %d, buffers untouched %d, value %g\n", reported, untouched, v);
  return reported && untouched && computed ? 0 : 1;
}
