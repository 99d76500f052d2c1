// lmf/losses.hpp — the named losses. Each is an lmf::Loss<T> (loss.hpp) built from a preset of
// the one model  z_c = s (a_c x_c - m_y [c==y]) + b_c,  l = logsumexp(z) - z_y,
// L_i = w_y (1 - e^-l)^gamma l   (docs/math.md derives the gradient).
//
//   CrossEntropyLoss     s 1, gamma 0                         torch.nn.CrossEntropyLoss
//   FocalLoss            s 1, gamma (2)                       Lin et al. 2017, per sample, p_t
//     FocalLoss::repo_code(alpha)        most focal-loss repositories: alpha_y weights, mean over N
//     FocalLoss::ldam_drw_code(w)        kaidic/LDAM-DRW: the weight inside, phi(w_y l), mean over N
//   LDAMLoss             s (30), m_y = ldam_margins(counts)   Cao et al. 2019
//   LMFLoss              ldam_weight * LDAM + focal_weight * Focal   arXiv 2212.12741
//     LMFLoss::seed_code(counts, w)      the seed article's code (focal on the batch-mean CE)
//     LMFLoss::seed_code_2024(counts, w) its 2024 revision (0.2 / 0.2, s 5, max_m 0.8)
//     LMFLoss::official_code(counts)     Adnan-Sadi/LMFLOSS (1.5 LDAM + 1 focal, gamma 1.5,
//                                        margins as class weights, focal mean over N)
//   LogitAdjustedLoss    b_c = tau log(pi_c)                  Menon et al. 2021
//   BalancedSoftmaxLoss  b_c = log(n_c)                       Ren et al. 2020
//   VSLoss               a_c = (n_c / n_max)^gamma, b_c = tau log(pi_c)   Kini et al. 2021
// CrossEntropy, LDAM, LogitAdjusted, BalancedSoftmax and VS take Options::label_smoothing
// (PyTorch's cross_entropy(..., label_smoothing) on the adjusted logits).
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

/// Options of the softmax losses with gamma 0 (cross entropy of adjusted logits).
template <class T>
struct SoftmaxOptions : CommonOptions<T> {
  /// eps in [0, 1]: PyTorch's label smoothing, (1 - eps) w_y (-log p_y) + (eps / C) sum_c w_c
  /// (-log p_c) per row, on the loss's adjusted logits; mean divides both parts by sum w_y.
  T label_smoothing = T(0);
};

template <class T>
struct CrossEntropyOptions : SoftmaxOptions<T> {};

template <class T>
struct FocalOptions : CommonOptions<T> {
  T gamma = T(2);  ///< focusing parameter, >= 0
  /// What mean divides by: the sum of the counted rows' w_y (PyTorch's weighted mean, default),
  /// or MeanOver::rows, the number of counted rows: the convention of most focal-loss
  /// repositories, where a per-class alpha multiplies each row (see FocalLoss::repo_code).
  MeanOver mean_over = MeanOver::target_weights;
};

template <class T>
struct LDAMOptions : SoftmaxOptions<T> {
  T max_m = T(0.5);  ///< margin of the rarest class
  T s = T(30);       ///< logit scale
};

template <class T>
struct LogitAdjustedOptions : SoftmaxOptions<T> {
  T tau = T(1);  ///< b_c = tau * log(pi_c)
};

template <class T>
struct BalancedSoftmaxOptions : SoftmaxOptions<T> {};

template <class T>
struct VSOptions : SoftmaxOptions<T> {
  T gamma = T(0.3);  ///< a_c = (n_c / n_max)^gamma (multiplicative logit adjustment)
  T tau = T(1);      ///< b_c = tau * log(pi_c) (additive logit adjustment)
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
void check_smoothing(T eps, const std::string& who) {
  LMF_CHECK_ARG(std::isfinite(eps) && eps >= T(0) && eps <= T(1), who, "label_smoothing is ", eps,
                " (must be in [0, 1])");
}

/// A single cross-entropy term with the common and softmax options.
template <class T>
LossSpec<T> softmax_spec(const SoftmaxOptions<T>& o, const std::string& who) {
  check_smoothing(o.label_smoothing, who);
  LossSpec<T> spec = common_spec(o);
  Term<T> t;
  t.w = o.class_weights;
  t.label_smoothing = o.label_smoothing;
  spec.terms.push_back(std::move(t));
  return spec;
}

template <class T>
void check_tau(T tau, const std::string& who) {
  LMF_CHECK_ARG(std::isfinite(tau) && std::abs(double(tau)) <= 1e3, who, "tau is ", tau, " (must be finite, |tau| <= 1000)");
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
  static LossSpec<T> make(const Options& o) { return detail::softmax_spec<T>(o, "CrossEntropyLoss: "); }
};

/// Focal loss (Lin et al. 2017), per sample: L_i = w_y (1 - p_t)^gamma (-log p_t), p_t the
/// softmax probability of the target. mean divides by the sum of the counted rows' w_y.
template <class T>
class FocalLoss : public Loss<T> {
 public:
  using Options = FocalOptions<T>;
  explicit FocalLoss(const Options& o = Options()) : Loss<T>(make(o)) {}

  /// The focal loss of most focal-loss repositories (github AdeelH/pytorch-multi-class-focal-loss,
  /// which the official LMF code loads; kornia): L_i = alpha_y (1 - p_t)^gamma (-log p_t), mean
  /// over the counted rows (not over sum alpha_y). `alpha` empty: unweighted. gamma defaults to 2
  /// (Lin et al., kornia; AdeelH's class defaults to 0, the official LMF code passes 1.5).
  template <class D>
  static FocalLoss repo_code(const Eigen::MatrixBase<D>& alpha, T gamma = T(2), Reduction reduction = Reduction::mean,
                             std::int64_t ignore_index = -100) {
    Options o;
    o.class_weights = alpha.template cast<T>();
    o.gamma = gamma;
    o.reduction = reduction;
    o.ignore_index = ignore_index;
    o.mean_over = MeanOver::rows;
    return FocalLoss(o);
  }

  /// The LDAM-DRW repository's FocalLoss (github kaidic/LDAM-DRW, losses.py as of commit 3193f05,
  /// after its Nov 2019 "fix focal"): ce_i = F.cross_entropy(x, y, weight=w, reduction='none') = w_y l_i,
  /// p = exp(-ce_i), loss = mean_i (1 - p)^gamma ce_i — the class weight inside the modulation,
  /// and the mean over every row (rows with ignore_index count as 0, as in that code). Its CIFAR
  /// script uses gamma 1 with DRW weights. `class_weights` empty: unweighted (plain focal, mean
  /// over every row, ignored ones included).
  template <class D>
  static FocalLoss ldam_drw_code(const Eigen::MatrixBase<D>& class_weights, T gamma = T(1),
                                 std::int64_t ignore_index = -100) {
    Options o;
    o.class_weights = class_weights.template cast<T>();
    o.gamma = gamma;
    o.ignore_index = ignore_index;
    LossSpec<T> spec = make(o);
    spec.terms[0].focus_on = FocusOn::weighted_row;
    spec.terms[0].mean_over = MeanOver::all_rows;
    return FocalLoss(std::move(spec));
  }

 private:
  explicit FocalLoss(LossSpec<T> spec) : Loss<T>(std::move(spec)) {}

  static LossSpec<T> make(const Options& o) {
    detail::check_gamma(o.gamma, "FocalLoss: ");
    const int mo = static_cast<int>(o.mean_over);
    LMF_CHECK_ARG(mo >= 0 && mo <= 2, "FocalLoss: unknown mean_over (enum value ", mo, ")");
    LossSpec<T> spec = detail::common_spec(o);
    spec.terms.push_back(detail::focal_term(o.gamma, o.class_weights));
    spec.terms[0].mean_over = o.mean_over;
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
    LossSpec<T> spec = detail::softmax_spec<T>(o, "LDAMLoss: ");
    spec.terms[0].s = o.s;
    spec.terms[0].m = ldam_margins<T>(counts, o.max_m);
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

  /// The seed article's code as of its 2024 revision (github SanaNazari/LMFLoss, losses.py at
  /// commit e64c07a, June 2024), whose defaults changed without a note: 0.2 * Focal + 0.2 * LDAM, gamma 2, s 5, max_m 0.8, the
  /// focal term on the batch's weighted-mean cross entropy with `class_weights`, and LDAM
  /// unweighted (add_LDAM_weigth=False). Reduction mean. (That code requires the weights; an
  /// empty `class_weights` here means unweighted.)
  template <class D, class DW>
  static LMFLoss seed_code_2024(const Eigen::MatrixBase<D>& counts, const Eigen::MatrixBase<DW>& class_weights,
                                std::int64_t ignore_index = -100) {
    Options o;
    o.class_weights = class_weights.template cast<T>();
    o.ignore_index = ignore_index;
    o.ldam_weight = T(0.2);
    o.focal_weight = T(0.2);
    o.s = T(5);
    o.max_m = T(0.8);
    LossSpec<T> spec = make(counts, o);
    std::swap(spec.terms[0], spec.terms[1]);  // the seed code adds focal first
    spec.terms[0].focus_on = FocusOn::batch_mean;
    spec.terms[1].w = Vector<T>();  // LDAM unweighted
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

/// Logit-adjusted loss (Menon et al., ICLR 2021, "Long-tail learning via logit adjustment"):
/// cross entropy of x_c + tau * log(pi_c), pi = counts / sum(counts). For the post-hoc variant
/// (adjust a plain-CE model's logits at test time) see posthoc_logit_adjustment.
template <class T>
class LogitAdjustedLoss : public Loss<T> {
 public:
  using Options = LogitAdjustedOptions<T>;
  template <class D>
  explicit LogitAdjustedLoss(const Eigen::MatrixBase<D>& counts, const Options& o = Options())
      : Loss<T>(make(counts, o)) {}

 private:
  template <class D>
  static LossSpec<T> make(const Eigen::MatrixBase<D>& counts, const Options& o) {
    detail::check_tau(o.tau, "LogitAdjustedLoss: ");
    detail::checked_counts<double>(counts, "LogitAdjustedLoss");  // (names this loss in the message)
    LossSpec<T> spec = detail::softmax_spec<T>(o, "LogitAdjustedLoss: ");
    spec.terms[0].b = logit_adjustments<T>(counts, double(o.tau));
    return spec;
  }
};

/// Balanced softmax (Ren et al., NeurIPS 2020): cross entropy of x_c + log(n_c). (The same as
/// LogitAdjustedLoss with tau 1 up to a constant per row, log(sum n), which softmax ignores.)
template <class T>
class BalancedSoftmaxLoss : public Loss<T> {
 public:
  using Options = BalancedSoftmaxOptions<T>;
  template <class D>
  explicit BalancedSoftmaxLoss(const Eigen::MatrixBase<D>& counts, const Options& o = Options())
      : Loss<T>(make(counts, o)) {}

 private:
  template <class D>
  static LossSpec<T> make(const Eigen::MatrixBase<D>& counts, const Options& o) {
    LossSpec<T> spec = detail::softmax_spec<T>(o, "BalancedSoftmaxLoss: ");
    spec.terms[0].b = detail::checked_counts<double>(counts, "BalancedSoftmaxLoss").array().log().template cast<T>();
    return spec;
  }
};

/// Vector-scaling loss (Kini et al., NeurIPS 2021): cross entropy of a_c x_c + b_c with
/// a_c = (n_c / n_max)^gamma (multiplicative, gamma 0.3) and b_c = tau * log(pi_c) (additive,
/// tau 1), as in the authors' code (x / Delta + iota, Delta_c = (n_max / n_c)^gamma). With tau 0
/// it is CDT (class-dependent temperatures, Ye et al. 2020).
template <class T>
class VSLoss : public Loss<T> {
 public:
  using Options = VSOptions<T>;
  template <class D>
  explicit VSLoss(const Eigen::MatrixBase<D>& counts, const Options& o = Options()) : Loss<T>(make(counts, o)) {}

 private:
  template <class D>
  static LossSpec<T> make(const Eigen::MatrixBase<D>& counts, const Options& o) {
    LMF_CHECK_ARG(std::isfinite(o.gamma) && o.gamma >= T(0) && o.gamma <= T(10), "VSLoss: gamma is ", o.gamma,
                  " (must be in [0, 10])");
    detail::check_tau(o.tau, "VSLoss: ");
    LossSpec<T> spec = detail::softmax_spec<T>(o, "VSLoss: ");
    const Vector<double> n = detail::checked_counts<double>(counts, "VSLoss");
    spec.terms[0].a = (n / n.maxCoeff()).array().pow(double(o.gamma)).template cast<T>();
    spec.terms[0].b = logit_adjustments<T>(counts, double(o.tau));
    return spec;
  }
};

}  // namespace lmf
