// Analytic gradients against fourth-order central differences, in double, for every loss,
// option and preset: REQUIRE relative error < 1e-7.
#include "support.hpp"

using namespace lmf_test;

namespace {

void require_fd(const lmf::Loss<double>& loss, const Mat<double>& x, const Labels& y, const std::string& what) {
  const Mat<double> ga = analytic_gradient(loss, x, y);
  const Mat<double> gn = numeric_gradient(loss, x, y);
  const double err = rel_error(ga, gn, 1e-6);
  // elementwise too: entries down to 1e-4 of the largest within 1e-6 relative. The differences'
  // own rounding, ~1.5 eps |f| / h = 3e-11 |f| for h = 1e-5, sets a second floor: entries down to
  // 1e-4 |f| (the logit-adjusted losses have values of several units with small gradients)
  double f = 0;
  if (loss.reduction() == lmf::Reduction::none) {
    Vec<double> v(x.rows());
    loss.per_row(x, y, v);
    f = v.cwiseAbs().sum();
  } else {
    f = std::abs(loss.value(x, y));
  }
  const double scale = gn.cwiseAbs().maxCoeff();
  const double elem = elementwise_error(ga, gn, std::max({1e-4 * scale, 1e-4 * f, 1e-9}));
  INFO(what << ": N " << x.rows() << ", C " << x.cols() << ", relative error " << err << ", elementwise " << elem);
  REQUIRE(err < 1e-7);
  REQUIRE(elem < 1e-6);
}

}  // namespace

TEST_CASE("analytic gradients match finite differences", "[gradient]") {
  for (Index c : {1, 2, 3, 7, 17}) {
    for (const char* r : {"mean", "sum", "none"}) {
      for (double gamma : {0.0, 0.5, 1.0, 2.0, 5.0}) {
        for (bool weighted : {false, true}) {
          const Index n = c == 17 ? 3 : 6;
          // scale 0.3 for the large-s terms so the adjusted logits stay in a smooth range
          const Mat<double> x = random_logits<double>(n, c, 0.3);
          const Labels y = random_labels(n, c, 0.2);
          for (const LossCase& lc : registry(c, r, weighted ? balanced_weights(c) : std::vector<double>(), gamma, 5.0))
            require_fd(make_loss<double>(lc), x, y, describe(lc));
        }
      }
    }
  }
}

TEST_CASE("gradients of the generic model (multipliers, offsets, row-count mean) match finite differences",
          "[gradient]") {
  const Index c = 5;
  lmf::LossSpec<double> spec;
  lmf::Term<double> t;
  t.s = 2;
  t.gamma = 1.5;
  t.a = Vec<double>::LinSpaced(c, 0.5, 1.5);
  t.b = Vec<double>::LinSpaced(c, -1.0, 0.7);
  t.m = Vec<double>::LinSpaced(c, 0.1, 0.4);
  t.w = Vec<double>::LinSpaced(c, 0.3, 2.0);
  t.mean_over = lmf::MeanOver::rows;
  spec.terms.push_back(t);
  t.gamma = 0;
  t.weight = 0.25;
  t.mean_over = lmf::MeanOver::target_weights;
  spec.terms.push_back(t);
  const lmf::Loss<double> loss(spec);
  const Mat<double> x = random_logits<double>(9, c, 1.0);
  const Labels y = random_labels(9, c, 0.2);
  require_fd(loss, x, y, "generic two-term loss");
}

TEST_CASE("gradients stay exact where the target dominates (p_t -> 1)", "[gradient][numerics]") {
  // gamma < 1: PyTorch's autograd gives NaN here; lmf's phi' tends to 0 continuously.
  const Index c = 4;
  const Eigen::VectorXi counts = long_tail_counts(c);
  Mat<double> x = random_logits<double>(5, c, 0.5);
  Labels y = random_labels(5, c);
  for (Index i = 0; i < 5; ++i) x(i, y(i)) += 12.0;  // p_t ~ 1 - 3e-5
  for (double gamma : {0.5, 1.0, 2.0}) {
    lmf::FocalLoss<double>::Options f;
    f.gamma = gamma;
    require_fd(lmf::FocalLoss<double>(f), x, y, "focal, confident rows");
  }
}
