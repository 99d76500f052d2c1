// lmf/losses.hpp — the named losses. Each is an lmf::Loss<T> (loss.hpp) built from a preset of
// the one model  z_c = s (a_c x_c - m_y [c==y]) + b_c,  l = logsumexp(z) - z_y,
// L_i = w_y (1 - e^-l)^gamma l   (docs/math.md derives the gradient).
//
//   CrossEntropyLoss   s 1, gamma 0                         torch.nn.CrossEntropyLoss
//   FocalLoss          s 1, gamma (2)                       Lin et al. 2017, per sample, p_t
//   LDAMLoss           s (30), m_y = ldam_margins(counts)   Cao et al. 2019
//   LMFLoss            ldam_weight * LDAM + focal_weight * Focal   arXiv 2212.12741
//     LMFLoss::seed_code(counts, w)   the seed article's code (focal on the batch-mean CE)
//     LMFLoss::official_code(counts)  Adnan-Sadi/LMFLOSS (1.5 LDAM + 1 focal, gamma 1.5,
//                                     margins as class weights, focal mean over N)
#pragma once

#include <lmf/class_stats.hpp>
#include <lmf/loss.hpp>

namespace lmf {

/// Options every named loss has.
template <class T>
struct CommonOptions {
  Reduction reduction = Reduction::mean;  ///< none, sum or mean (PyTorch's weighted mean)
  Vector<T> class_weights;                ///< w_y; empty = unweighted
  std::int64_t ignore_index = -100;       ///< rows with this label are skipped (PyTorch default)
};

template <class T>
struct CrossEntropyOptions : CommonOptions<T> {};

template <class T>
struct FocalOptions : CommonOptions<T> {
  T gamma = T(2);  ///< focusing parameter, >= 0
};

template <class T>
struct LDAMOptions : CommonOptions<T> {
  T max_m = T(0.5);  ///< margin of the rarest class
  T s = T(30);       ///< logit scale
};

template <class T>
struct LMFOptions : CommonOptions<T> {
  T ldam_weight = T(1);   ///< coefficient of the LDAM term
  T focal_weight = T(1);  ///< coefficient of the focal term
  T gamma = T(2);         ///< focal term's focusing parameter
  T max_m = T(0.5);       ///< LDAM margin of the rarest class
  T s = T(30);            ///< LDAM logit scale (the focal term uses the raw logits)
};

namespace detail {

template <class T>
LossSpec<T> common_spec(const CommonOptions<T>& o) {
  LossSpec<T> spec;
  spec.reduction = o.reduction;
  spec.ignore_index = o.ignore_index;
  return spec;
}

template <class T>
Term<T> focal_term(T gamma, const Vector<T>& w) {
  Term<T> t;
  t.gamma = gamma;
  t.w = w;
  return t;
}

template <class T>
Term<T> ldam_term(Vector<T> margins, T s, const Vector<T>& w) {
  Term<T> t;
  t.s = s;
  t.m = std::move(margins);
  t.w = w;
  return t;
}

}  // namespace detail

/// Cross entropy, exactly torch.nn.functional.cross_entropy (weights, ignore_index, reductions).
template <class T>
class CrossEntropyLoss : public Loss<T> {
 public:
  using Options = CrossEntropyOptions<T>;
  explicit CrossEntropyLoss(const Options& o = Options()) : Loss<T>(make(o)) {}

 private:
  static LossSpec<T> make(const Options& o) {
    LossSpec<T> spec = detail::common_spec(o);
    spec.terms.push_back(detail::focal_term(T(0), o.class_weights));
    return spec;
  }
};

/// Focal loss (Lin et al. 2017), per sample: L_i = w_y (1 - p_t)^gamma (-log p_t), p_t the
/// softmax probability of the target. mean divides by the sum of the counted rows' w_y.
template <class T>
class FocalLoss : public Loss<T> {
 public:
  using Options = FocalOptions<T>;
  explicit FocalLoss(const Options& o = Options()) : Loss<T>(make(o)) {}

 private:
  static LossSpec<T> make(const Options& o) {
    detail::check_gamma(o.gamma, "FocalLoss: ");
    LossSpec<T> spec = detail::common_spec(o);
    spec.terms.push_back(detail::focal_term(o.gamma, o.class_weights));
    return spec;
  }
};

/// LDAM (Cao et al. 2019): cross entropy of s * (x - m_y e_y), m = ldam_margins(counts, max_m).
template <class T>
class LDAMLoss : public Loss<T> {
 public:
  using Options = LDAMOptions<T>;
  template <class D>
  explicit LDAMLoss(const Eigen::MatrixBase<D>& counts, const Options& o = Options()) : Loss<T>(make(counts, o)) {}

  const Vector<T>& margins() const { return this->spec().terms[0].m; }

 private:
  template <class D>
  static LossSpec<T> make(const Eigen::MatrixBase<D>& counts, const Options& o) {
    detail::check_scale(o.s, "LDAMLoss: ");
    detail::check_max_margin(o.max_m, "LDAMLoss: ");
    LossSpec<T> spec = detail::common_spec(o);
    spec.terms.push_back(detail::ldam_term(ldam_margins<T>(counts, o.max_m), o.s, o.class_weights));
    return spec;
  }
};

/// LMF (arXiv 2212.12741): ldam_weight * LDAM + focal_weight * Focal over the same rows.
/// Defaults (the paper's): 1 * LDAM (s 30, max_m 0.5) + 1 * per-sample focal (gamma 2),
/// unweighted, mean. Class weights, when given, weight both terms.
template <class T>
class LMFLoss : public Loss<T> {
 public:
  using Options = LMFOptions<T>;

  template <class D>
  explicit LMFLoss(const Eigen::MatrixBase<D>& counts, const Options& o = Options()) : Loss<T>(make(counts, o)) {}

  /// The official code (github Adnan-Sadi/LMFLOSS): 1.5 * LDAM + 1.0 * Focal, gamma 1.5, s 30,
  /// max_m 0.5, the LDAM margins used as the class weights of both terms; LDAM's mean is the
  /// weighted mean (divides by the sum of the margins of the counted rows), focal's mean divides
  /// by the number of counted rows.
  template <class D>
  static LMFLoss official_code(const Eigen::MatrixBase<D>& counts, std::int64_t ignore_index = -100) {
    Options o;
    o.ldam_weight = T(1.5);
    o.focal_weight = T(1);
    o.gamma = T(1.5);
    o.ignore_index = ignore_index;
    o.class_weights = ldam_margins<T>(counts, o.max_m);
    LossSpec<T> spec = make(counts, o);
    spec.terms[1].mean_over = MeanOver::rows;
    return LMFLoss(std::move(spec));
  }

  /// The seed article's code (github SanaNazari/LMFLoss, first version): 1 * Focal + 1 * LDAM,
  /// gamma 2, s 30, max_m 0.5, `class_weights` (empty = unweighted) in both terms, and the focal
  /// modulation applied to the batch's weighted-mean cross entropy l (phi(l) = (1-e^-l)^2 l),
  /// not per sample. Reduction is mean (the only one that code defines).
  template <class D>
  static LMFLoss seed_code(const Eigen::MatrixBase<D>& counts, std::int64_t ignore_index = -100) {
    return seed_code(counts, Vector<T>(), ignore_index);
  }
  template <class D, class DW>
  static LMFLoss seed_code(const Eigen::MatrixBase<D>& counts, const Eigen::MatrixBase<DW>& class_weights,
                           std::int64_t ignore_index = -100) {
    Options o;
    o.class_weights = class_weights.template cast<T>();
    o.ignore_index = ignore_index;
    LossSpec<T> spec = make(counts, o);
    std::swap(spec.terms[0], spec.terms[1]);  // the seed code adds focal first
    spec.terms[0].focus_on = FocusOn::batch_mean;
    return LMFLoss(std::move(spec));
  }

  const Vector<T>& margins() const {
    for (const Term<T>& t : this->spec().terms)
      if (t.m.size()) return t.m;
    return this->spec().terms[0].m;
  }

 private:
  explicit LMFLoss(LossSpec<T> spec) : Loss<T>(std::move(spec)) {}

  template <class D>
  static LossSpec<T> make(const Eigen::MatrixBase<D>& counts, const Options& o) {
    detail::check_scale(o.s, "LMFLoss: ");
    detail::check_gamma(o.gamma, "LMFLoss: ");
    detail::check_max_margin(o.max_m, "LMFLoss: ");
    LossSpec<T> spec = detail::common_spec(o);
    Term<T> ldam = detail::ldam_term(ldam_margins<T>(counts, o.max_m), o.s, o.class_weights);
    ldam.weight = o.ldam_weight;
    Term<T> focal = detail::focal_term(o.gamma, o.class_weights);
    focal.weight = o.focal_weight;
    spec.terms.push_back(std::move(ldam));
    spec.terms.push_back(std::move(focal));
    return spec;
  }
};

}  // namespace lmf
