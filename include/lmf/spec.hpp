// lmf/spec.hpp — the one model every loss is an instance of.
//
// A term, for row i with logits x and label y:
//   z_c = s * (a_c * x_c - m_y * [c == y]) + b_c,   l = logsumexp(z) - z_y,   L_i = w_y * phi(l)
// A loss is sum_t weight_t * (term t reduced over the rows). See docs/math.md.
#pragma once

#include <lmf/class_stats.hpp>
#include <lmf/errors.hpp>

#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace lmf {

/// The largest inputs lmf accepts (docs/api.md, "Limits"). Beyond them an option is rejected at
/// construction and a batch with an lmf::Error / Status, never with a wrong or infinite result.
namespace limits {
/// Classes per row: 2^24, the largest count at which every class index is exact in float (the
/// SIMD kernels compare labels in the logits' type).
constexpr Index max_classes = Index(1) << 24;
/// Elements of one buffer (rows * classes, and every offset a layout can reach): 2^62, so that
/// no index arithmetic can overflow.
constexpr Index max_elements = Index(1) << 62;
/// Focusing parameter gamma: [0, 20]. The focal literature uses 0 to 5; beyond ~20 the modulation
/// (1 - p)^gamma amplifies the last-bit differences of 1 - p between kernels beyond 1e-5 in float.
constexpr double max_gamma = 20;
/// Logit scale s: (0, 1e4] (LDAM uses 30, 64).
constexpr double max_scale = 1e4;
/// Target margins m (and max_m): [0, 1e4].
constexpr double max_margin = 1e4;
/// Per-class multipliers |a|: <= 1e4.
constexpr double max_multiplier = 1e4;
/// Per-class offsets |b|: <= 1e8.
constexpr double max_offset = 1e8;
}  // namespace limits

/// How per-row values are reduced over the batch (PyTorch's `reduction`).
enum class Reduction : int {
  none = 0,  ///< per-row values: use per_row / per_row_and_gradient
  sum = 1,   ///< sum over the counted rows
  mean = 2,  ///< sum divided by each term's denominator (see MeanOver)
};

/// What a term's `mean` divides by.
enum class MeanOver : int {
  target_weights = 0,  ///< sum of w_y over the counted rows (PyTorch's weighted mean; N if unweighted)
  rows = 1,            ///< the number of counted rows (torch.mean of per-row values)
  all_rows = 2,        ///< every row, ignored ones included (torch.mean of a per-row tensor in which
                       ///< ignored rows are 0: the LDAM-DRW code's focal loss)
};

/// Where the focal modulation phi is applied.
enum class FocusOn : int {
  row = 0,         ///< per row: L_i = w_y * phi(l_i) (focal loss as published by Lin et al.)
  batch_mean = 1,  ///< on the batch's weighted-mean cross entropy: L = phi(sum w_y l_i / sum w_y),
                   ///< as in the seed article's code; needs reduction mean
  weighted_row = 2,  ///< per row, the class weight inside: L_i = phi(w_y l_i), as in the LDAM-DRW
                     ///< code's focal loss (p = exp(-w_y CE_i))
};

/// Which CPU kernel evaluates the rows. `automatic` picks the fastest that applies; a forced
/// kernel that cannot handle a batch (rows needs class-contiguous logits and gradient; rows and
/// lanes need C >= 2) falls back to `scalar`, the reference kernel. Results of all kernels agree to rounding (tests: ~1e-12 double, ~1e-5 float,
/// plus exp's conditioning eps * s * max|x|; docs/testing.md).
enum class Kernel : int {
  automatic = 0,
  scalar = 1,  ///< portable reference, one row at a time, any layout
  rows = 2,    ///< SIMD along the classes of each row (many classes)
  lanes = 3,   ///< SIMD across rows, one row per lane (few classes, class-strided layouts)
};

inline const char* to_string(Reduction r) {
  switch (r) {
    case Reduction::none: return "none";
    case Reduction::sum: return "sum";
    case Reduction::mean: return "mean";
  }
  return "unknown";
}

/// Parses "none", "sum" or "mean"; anything else is an lmf::Error.
inline Reduction parse_reduction(std::string_view name) {
  if (name == "none") return Reduction::none;
  if (name == "sum") return Reduction::sum;
  if (name == "mean") return Reduction::mean;
  detail::raise(detail::message("unknown reduction '", std::string(name),
                                "' (expected none, sum or mean)"));
}

/// One term of a loss. Per-class vectors that are empty take their defaults
/// (a = 1, m = 0, b = 0, w = 1); non-empty ones must all have the loss's number of classes.
template <class T>
struct Term {
  T weight = T(1);     ///< coefficient of this term in the loss
  T s = T(1);          ///< logit scale
  T gamma = T(0);      ///< focusing parameter; 0 = cross entropy
  Vector<T> a;         ///< per-class logit multipliers
  Vector<T> m;         ///< per-class target margins (subtracted from the target logit only)
  Vector<T> b;         ///< per-class logit offsets
  Vector<T> w;         ///< class weights w_y
  MeanOver mean_over = MeanOver::target_weights;
  FocusOn focus_on = FocusOn::row;
  /// Label smoothing eps in [0, 1] (terms with gamma 0 and FocusOn::row only): the row's value is
  /// (1 - eps) w_y l + (eps / C) sum_c w_c (logsumexp(z) - z_c), PyTorch's cross_entropy with
  /// label_smoothing on the adjusted logits z; both parts share the term's denominator.
  T label_smoothing = T(0);
};

/// A whole loss: terms over the same rows, a reduction and PyTorch's ignore_index.
template <class T>
struct LossSpec {
  std::vector<Term<T>> terms;
  Reduction reduction = Reduction::mean;
  std::int64_t ignore_index = -100;
  Index classes = 0;  ///< 0: any number of classes (no per-class vector in any term)
  Kernel kernel = Kernel::automatic;  ///< CPU kernel choice (see Kernel)
  int threads = 0;  ///< OpenMP threads for large batches; 0: OpenMP's default; 1: none
};

namespace detail {

/// Checks a per-class vector: finite entries (>= 0 if `nonnegative`), and C entries when the
/// number of classes is known (else it sets it). `who` prefixes the message.
/// `bound` limits |v_j| (0: no bound).
template <class T>
void check_class_vector(const Vector<T>& v, Index& classes, const char* what, const std::string& who,
                        bool nonnegative, double bound = 0) {
  if (v.size() == 0) return;
  LMF_CHECK_ARG(classes == 0 || v.size() == classes, who, what, " has ", v.size(),
                " entries but the loss has ", classes, " classes");
  LMF_CHECK_ARG(v.size() <= limits::max_classes, who, what, " has ", v.size(), " entries (at most ",
                limits::max_classes, " classes)");
  classes = v.size();
  for (Index j = 0; j < v.size(); ++j) {
    LMF_CHECK_ARG(std::isfinite(v(j)), who, what, " of class ", j, " is ", v(j), " (must be finite)");
    LMF_CHECK_ARG(!nonnegative || v(j) >= T(0), who, what, " of class ", j, " is ", v(j), " (must be >= 0)");
    LMF_CHECK_ARG(bound == 0 || std::abs(double(v(j))) <= bound, who, what, " of class ", j, " is ", v(j),
                  " (|", what, "| must be <= ", bound, ")");
  }
}

/// The message of an out-of-range gamma, s or max_m, shared by the spec and the named losses.
template <class T>
void check_gamma(T gamma, const std::string& who) {
  LMF_CHECK_ARG(std::isfinite(gamma) && gamma >= T(0) && double(gamma) <= limits::max_gamma, who, "gamma is ",
                gamma, " (must be in [0, ", limits::max_gamma, "])");
}
template <class T>
void check_scale(T s, const std::string& who) {
  LMF_CHECK_ARG(std::isfinite(s) && s > T(0) && double(s) <= limits::max_scale, who, "s is ", s,
                " (must be in (0, ", limits::max_scale, "])");
}
template <class T>
void check_max_margin(T max_m, const std::string& who) {
  LMF_CHECK_ARG(std::isfinite(max_m) && max_m >= T(0) && double(max_m) <= limits::max_margin, who, "max_m is ",
                max_m, " (must be in [0, ", limits::max_margin, "])");
}

/// Validates a spec (every option of every term) and fills in `classes` from the per-class
/// vectors. Throws lmf::Error naming the term and the option.
template <class T>
void validate(LossSpec<T>& spec) {
  LMF_CHECK_ARG(!spec.terms.empty(), "a loss needs at least one term");
  LMF_CHECK_ARG(spec.terms.size() <= 4, "a loss has at most 4 terms, got ", spec.terms.size());
  const int r = static_cast<int>(spec.reduction);
  LMF_CHECK_ARG(r >= 0 && r <= 2, "unknown reduction (enum value ", r, "; expected none, sum or mean)");
  Index classes = spec.classes;
  LMF_CHECK_ARG(classes >= 0 && classes <= limits::max_classes, "classes is ", classes, " (must be in [0, ",
                limits::max_classes, "])");
  const int kern = static_cast<int>(spec.kernel);
  LMF_CHECK_ARG(kern >= 0 && kern <= 3, "unknown kernel (enum value ", kern, ")");
  LMF_CHECK_ARG(spec.threads >= 0, "threads is ", spec.threads, " (must be >= 0)");
  for (std::size_t t = 0; t < spec.terms.size(); ++t) {
    const Term<T>& term = spec.terms[t];
    LMF_CHECK_ARG(std::isfinite(term.weight), "term ", t, ": weight is ", term.weight, " (must be finite)");
    const std::string term_name = "term " + std::to_string(t) + ": ";
    check_scale(term.s, term_name);
    check_gamma(term.gamma, term_name);
    const int mo = static_cast<int>(term.mean_over), fo = static_cast<int>(term.focus_on);
    LMF_CHECK_ARG(mo >= 0 && mo <= 2, "term ", t, ": unknown mean_over (enum value ", mo, ")");
    LMF_CHECK_ARG(fo >= 0 && fo <= 2, "term ", t, ": unknown focus_on (enum value ", fo, ")");
    LMF_CHECK_ARG(std::isfinite(term.label_smoothing) && term.label_smoothing >= T(0) && term.label_smoothing <= T(1),
                  "term ", t, ": label_smoothing is ", term.label_smoothing, " (must be in [0, 1])");
    LMF_CHECK_ARG(term.label_smoothing == T(0) || (term.gamma == T(0) && term.focus_on == FocusOn::row), "term ", t,
                  ": label_smoothing is defined for cross-entropy terms (gamma 0, FocusOn::row) only; this term has "
                  "gamma ",
                  term.gamma,
                  term.focus_on == FocusOn::batch_mean     ? " and FocusOn::batch_mean"
                  : term.focus_on == FocusOn::weighted_row ? " and FocusOn::weighted_row"
                                                           : "");
    LMF_CHECK_ARG(term.focus_on != FocusOn::batch_mean || spec.reduction == Reduction::mean, "term ", t,
                  ": focus on the batch mean (seed-code convention) needs reduction mean, got ",
                  to_string(spec.reduction));
    // named losses have one set of class weights for all terms: no "term t" in their messages
    const std::string who = spec.terms.size() == 1 || term.w.size() == 0 ? std::string()
                                                                         : "term " + std::to_string(t) + ": ";
    check_class_vector(term.a, classes, "multiplier a", who, false, limits::max_multiplier);
    check_class_vector(term.m, classes, "margin m", who, true, limits::max_margin);
    check_class_vector(term.b, classes, "offset b", who, false, limits::max_offset);
    check_class_vector(term.w, classes, "class weight", std::string(), true);
  }
  spec.classes = classes;
}

}  // namespace detail
}  // namespace lmf
