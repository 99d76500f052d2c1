// lmf/class_stats.hpp — per-class statistics computed from class counts: LDAM margins,
// class-balanced and inverse-frequency weights, the deferred re-weighting (DRW) schedule, and
// counting integer labels into class counts.
//
//   LDAM margins (Cao et al. 2019):  m_j = max_m * (n_min / n_j)^(1/4)   (rarest class: max_m)
//   class-balanced (Cui et al. 2019): w_j ∝ (1 - beta) / (1 - beta^n_j), normalized to sum to C
//   inverse frequency:               w_j ∝ 1 / n_j, normalized to sum to C (the beta -> 1 limit)
//   DRW: weights all 1 before start_epoch, class-balanced from start_epoch on
//   priors pi_j = n_j / sum n; logit adjustments tau * log(pi_j) (Menon et al. 2021)
#pragma once

#include <lmf/errors.hpp>

#include <Eigen/Core>

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

namespace lmf {

template <class T>
using Vector = Eigen::Matrix<T, Eigen::Dynamic, 1>;

namespace detail {

/// Validates class counts (non-empty, every count finite and > 0) and returns them as T.
template <class T, class Derived>
Vector<T> checked_counts(const Eigen::MatrixBase<Derived>& counts, const char* who) {
  static_assert(std::is_arithmetic<typename Derived::Scalar>::value,
                "lmf: class counts must be an Eigen vector of integers or reals");
  LMF_CHECK_ARG(counts.size() > 0, who, ": class counts are empty");
  LMF_CHECK_ARG(counts.rows() == 1 || counts.cols() == 1, who, ": class counts must be a vector, got ",
                counts.rows(), "x", counts.cols());
  Vector<T> n(counts.size());
  for (Index j = 0; j < counts.size(); ++j) {
    const auto v = counts(j);
    const double d = static_cast<double>(v);
    LMF_CHECK_ARG(std::isfinite(d) && d > 0, who, ": class ", j, " has count ", +v,
                  " (every count must be > 0)");
    n(j) = static_cast<T>(d);
  }
  return n;
}

}  // namespace detail

/// LDAM margins m_j = max_m * (n_min / n_j)^(1/4): the rarest class gets max_m.
/// Errors: empty counts, a count <= 0, max_m < 0 or not finite.
template <class T, class Derived>
Vector<T> ldam_margins(const Eigen::MatrixBase<Derived>& counts, T max_m = T(0.5)) {
  static_assert(std::is_floating_point<T>::value, "lmf::ldam_margins<T>: T must be float or double");
  LMF_CHECK_ARG(std::isfinite(max_m) && max_m >= T(0), "ldam_margins: max_m is ", max_m,
                " (must be finite and >= 0)");
  const Vector<T> n = detail::checked_counts<T>(counts, "ldam_margins");
  const T n_min = n.minCoeff();
  Vector<T> m(n.size());
  for (Index j = 0; j < n.size(); ++j) m(j) = max_m * std::sqrt(std::sqrt(n_min / n(j)));
  return m;
}

/// Class-balanced weights of Cui et al. (2019), "effective number of samples":
/// w_j = (1 - beta) / (1 - beta^n_j), normalized so that they sum to C. beta = 0 gives all ones.
/// beta is a double whatever T is: 0.9999 as a float is 0.99989998, which moves the weights by
/// 4e-5 relative (write 0.9999, not 0.9999f). Computed in double, rounded to T at the end.
/// Errors: empty counts, a count <= 0, beta outside [0, 1).
template <class T, class Derived>
Vector<T> class_balanced_weights(const Eigen::MatrixBase<Derived>& counts, double beta = 0.9999) {
  static_assert(std::is_floating_point<T>::value,
                "lmf::class_balanced_weights<T>: T must be float or double");
  LMF_CHECK_ARG(beta >= 0 && beta < 1, "class_balanced_weights: beta is ", beta, " (must be in [0, 1))");
  const Vector<double> n = detail::checked_counts<double>(counts, "class_balanced_weights");
  // 1 - beta^n as -expm1(n log beta): exact for beta near 1, where 1 - pow(beta, n) cancels.
  Vector<double> w(n.size());
  for (Index j = 0; j < n.size(); ++j) {
    const double effective = beta == 0 ? 1.0 : -std::expm1(n(j) * std::log(beta));
    w(j) = (1.0 - beta) / effective;
  }
  w *= double(n.size()) / w.sum();
  return w.template cast<T>();
}

/// Inverse-frequency weights w_j ∝ 1 / n_j, normalized so that they sum to C (the beta -> 1
/// limit of class_balanced_weights). Errors: empty counts, a count <= 0.
template <class T, class Derived>
Vector<T> inverse_frequency_weights(const Eigen::MatrixBase<Derived>& counts) {
  static_assert(std::is_floating_point<T>::value,
                "lmf::inverse_frequency_weights<T>: T must be float or double");
  const Vector<double> n = detail::checked_counts<double>(counts, "inverse_frequency_weights");
  Vector<double> w = n.cwiseInverse();
  w *= double(n.size()) / w.sum();
  return w.template cast<T>();
}

/// Class priors pi_j = n_j / sum_k n_k (computed in double). Errors: empty counts, a count <= 0.
template <class T, class Derived>
Vector<T> class_priors(const Eigen::MatrixBase<Derived>& counts) {
  static_assert(std::is_floating_point<T>::value, "lmf::class_priors<T>: T must be float or double");
  const Vector<double> n = detail::checked_counts<double>(counts, "class_priors");
  return (n / n.sum()).template cast<T>();
}

/// Logit adjustments tau * log(pi_j) (Menon et al. 2021), the offsets b of LogitAdjustedLoss and
/// VSLoss, in double then rounded to T. Errors: bad counts, tau not finite.
template <class T, class Derived>
Vector<T> logit_adjustments(const Eigen::MatrixBase<Derived>& counts, double tau = 1.0) {
  static_assert(std::is_floating_point<T>::value, "lmf::logit_adjustments<T>: T must be float or double");
  LMF_CHECK_ARG(std::isfinite(tau), "logit_adjustments: tau is ", tau, " (must be finite)");
  const Vector<double> n = detail::checked_counts<double>(counts, "logit_adjustments");
  const double total = n.sum();
  Vector<double> b(n.size());
  for (Index j = 0; j < n.size(); ++j) b(j) = tau * std::log(n(j) / total);
  return b.template cast<T>();
}

/// Post-hoc logit adjustment (Menon et al. 2021, eq. 9): the logits of a model trained with plain
/// cross entropy, minus tau * log(pi_c) per class, so that argmax gives the balanced-error
/// prediction. `logits` is N x C (any dense Eigen expression); returns a new N x C matrix.
template <class Derived, class DerivedCounts>
Eigen::Matrix<typename Derived::Scalar, Eigen::Dynamic, Eigen::Dynamic> posthoc_logit_adjustment(
    const Eigen::MatrixBase<Derived>& logits, const Eigen::MatrixBase<DerivedCounts>& counts, double tau = 1.0) {
  using T = typename Derived::Scalar;
  detail::checked_counts<double>(counts, "posthoc_logit_adjustment");  // (names this function in the message)
  const Vector<T> b = logit_adjustments<T>(counts, tau);
  LMF_CHECK_ARG(logits.cols() == b.size(), "posthoc_logit_adjustment: logits have ", logits.cols(),
                " columns but there are ", b.size(), " class counts");
  return logits.rowwise() - b.transpose();
}

/// Counts integer labels into `classes` bins. Labels equal to ignore_index are skipped; any
/// other label outside [0, classes) is an error naming its position.
template <class Derived>
Eigen::Matrix<std::int64_t, Eigen::Dynamic, 1> class_counts(const Eigen::MatrixBase<Derived>& labels,
                                                          Index classes,
                                                          std::int64_t ignore_index = -100) {
  static_assert(std::is_integral<typename Derived::Scalar>::value,
                "lmf::class_counts: labels must be an Eigen vector of integers");
  LMF_CHECK_ARG(classes > 0, "class_counts: classes is ", classes, " (must be > 0)");
  Eigen::Matrix<std::int64_t, Eigen::Dynamic, 1> counts =
      Eigen::Matrix<std::int64_t, Eigen::Dynamic, 1>::Zero(classes);
  for (Index i = 0; i < labels.size(); ++i) {
    const std::int64_t y = static_cast<std::int64_t>(labels(i));
    if (y == ignore_index) continue;
    LMF_CHECK_ARG(y >= 0 && y < classes, "class_counts: label ", y, " at position ", i,
                  " is outside [0, ", classes, ")");
    ++counts(y);
  }
  return counts;
}

/// Deferred re-weighting (Cao et al. 2019, LDAM-DRW): class weights are all 1 before
/// start_epoch and class-balanced (class_balanced_weights(counts, beta)) from start_epoch on.
///
///     lmf::DeferredReweighting<float> drw(counts, 160, 0.9999);   // beta: a double
///     loss.set_class_weights(drw.weights(epoch));
template <class T>
class DeferredReweighting {
 public:
  template <class Derived>
  DeferredReweighting(const Eigen::MatrixBase<Derived>& counts, Index start_epoch, double beta = 0.9999)
      : late_(class_balanced_weights<T>(counts, beta)), start_epoch_(start_epoch) {
    LMF_CHECK_ARG(start_epoch >= 0, "DeferredReweighting: start_epoch is ", start_epoch,
                  " (must be >= 0)");
  }

  /// The class weights to use in `epoch` (0-based).
  Vector<T> weights(Index epoch) const {
    return epoch < start_epoch_ ? Vector<T>::Ones(late_.size()) : late_;
  }
  /// True from start_epoch on.
  bool reweighting(Index epoch) const { return epoch >= start_epoch_; }
  Index start_epoch() const { return start_epoch_; }

 private:
  Vector<T> late_;
  Index start_epoch_;
};

}  // namespace lmf
