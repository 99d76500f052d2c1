// Analytic gradients against fourth-order central differences, in double, for every loss,
// option and preset: REQUIRE relative error < 1e-7.
#include "support.hpp"

using namespace lmf_test;

namespace {

void require_fd(const lmf::Loss<double>& loss, const Mat<double>& x, const Labels& y, const std::string& what) {
  const Mat<double> ga = analytic_gradient(loss, x, y);
  const Mat<double> gn = numeric_gradient(loss, x, y);
  const double err = rel_error(ga, gn, 1e-6);
  INFO(what << ": N " << x.rows() << ", C " << x.cols() << ", relative error " << err);
  REQUIRE(err < 1e-7);
}

std::vector<std::pair<std::string, lmf::Loss<double>>> all_losses(const Eigen::VectorXi& counts, lmf::Reduction r,
                                                                 const Vec<double>& w, double gamma) {
  const Index c = counts.size();
  std::vector<std::pair<std::string, lmf::Loss<double>>> out;
  lmf::CrossEntropyLoss<double>::Options ce;
  ce.reduction = r;
  ce.class_weights = w;
  out.emplace_back("cross entropy", lmf::CrossEntropyLoss<double>(ce));
  lmf::FocalLoss<double>::Options f;
  f.reduction = r;
  f.class_weights = w;
  f.gamma = gamma;
  out.emplace_back("focal", lmf::FocalLoss<double>(f));
  lmf::LDAMLoss<double>::Options l;
  l.reduction = r;
  l.class_weights = w;
  l.s = 10;  // moderate s keeps the function smooth enough for differences at h = 1e-5
  out.emplace_back("LDAM", lmf::LDAMLoss<double>(counts, l));
  lmf::LMFLoss<double>::Options m;
  m.reduction = r;
  m.class_weights = w;
  m.gamma = gamma;
  m.s = 5;
  m.ldam_weight = 0.7;
  m.focal_weight = 1.3;
  out.emplace_back("LMF", lmf::LMFLoss<double>(counts, m));
  if (r == lmf::Reduction::mean) {
    out.emplace_back("LMF official preset", lmf::LMFLoss<double>::official_code(counts));
    out.emplace_back("LMF seed preset", lmf::LMFLoss<double>::seed_code(counts, w));
  }
  (void)c;
  return out;
}

}  // namespace

TEST_CASE("analytic gradients match finite differences", "[gradient]") {
  for (Index c : {1, 2, 3, 7, 17}) {
    const Eigen::VectorXi counts = long_tail_counts(c);
    for (lmf::Reduction r : {lmf::Reduction::mean, lmf::Reduction::sum, lmf::Reduction::none}) {
      for (double gamma : {0.0, 0.5, 1.0, 2.0, 5.0}) {
        for (bool weighted : {false, true}) {
          const Vec<double> w = weighted ? Vec<double>(lmf::class_balanced_weights<double>(counts, 0.999)) : Vec<double>();
          const Index n = c == 17 ? 3 : 6;
          // scale 0.3 for the large-s terms so the adjusted logits stay in a smooth range
          const Mat<double> x = random_logits<double>(n, c, 0.3);
          const Labels y = random_labels(n, c, 0.2);
          for (const auto& [name, loss] : all_losses(counts, r, w, gamma)) {
            INFO("reduction " << lmf::to_string(r) << ", gamma " << gamma << (weighted ? ", weighted" : ""));
            require_fd(loss, x, y, name);
          }
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
