// Shared helpers of lmf's tests: tolerances per type, error measures, random batches, a central
// finite-difference gradient, and the reader of the PyTorch golden file.
#pragma once

#include <lmf/lmf.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <limits>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace lmf_test {

using lmf::Index;
template <class T>
using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>;
template <class T>
using MatR = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using Vec = Eigen::Matrix<T, Eigen::Dynamic, 1>;
using Labels = Eigen::VectorXi;

// ---- tolerances, stated once ------------------------------------------------------------------

/// The relative tolerance of every exactness test (parity with PyTorch, kernels against the
/// scalar kernel, shards): 4096 eps in double (9.1e-13), 80 eps in float (9.5e-6) — the ~1e-12
/// and ~1e-5 the README promises.
template <class T>
constexpr double tolerance() {
  return (sizeof(T) == 8 ? 4096.0 : 80.0) * double(std::numeric_limits<T>::epsilon());
}
/// The tolerance of a comparison between two kernels in T: tolerance<T>() plus the conditioning
/// of exp(z) in T, eps * max|z| (z = s * x: two kernels that round an exponent of 176 differently
/// by one ulp differ by 176 eps in exp; max|z| = max_t s_t * max|x|).
template <class T>
double kernel_tolerance(const lmf::Loss<T>& loss, double max_abs_logit) {
  double s = 0;
  for (const lmf::Term<T>& t : loss.spec().terms) s = std::max(s, double(t.s) * (t.a.size() ? double(t.a.cwiseAbs().maxCoeff()) : 1.0));
  return tolerance<T>() + double(std::numeric_limits<T>::epsilon()) * s * max_abs_logit;
}

/// Kept under its old name for the parity tests.
template <class T>
constexpr double parity_tol() {
  return tolerance<T>();
}

/// Normwise relative error max|a - b| / max(max|b|, floor). Magnitudes under `floor` count as
/// `floor`: PyTorch's own log_softmax loses relative accuracy on tiny values (a confident row's
/// 1 - p_t), so tiny references are compared to an absolute error of tol * floor.
template <class A, class B, class = std::enable_if_t<!std::is_arithmetic<A>::value>>
double rel_error(const A& a, const B& b, double floor = 1e-3) {
  const Eigen::ArrayXd da = a.template cast<double>().reshaped().array();
  const Eigen::ArrayXd db = b.template cast<double>().reshaped().array();
  if (da.size() != db.size()) return INFINITY;
  if (da.size() == 0) return 0;
  if (!da.allFinite()) return INFINITY;
  const double num = (da - db).abs().maxCoeff();
  return num / std::max(db.abs().maxCoeff(), floor);
}
inline double rel_error(double a, double b, double floor = 1e-3) {  // scalars
  if (!std::isfinite(a)) return INFINITY;
  return std::abs(a - b) / std::max(std::abs(b), floor);
}

/// Elementwise relative error max_i |a_i - b_i| / max(|b_i|, floor): every entry, however small,
/// must be right to the tolerance down to `floor` (absolute below it). Tests pass
/// floor = kElementFloor * (the array's natural scale), next to the normwise bound.
template <class A, class B>
double elementwise_error(const A& a, const B& b, double floor) {
  const Eigen::ArrayXd da = a.template cast<double>().reshaped().array();
  const Eigen::ArrayXd db = b.template cast<double>().reshaped().array();
  if (da.size() != db.size() || !da.allFinite()) return INFINITY;
  if (da.size() == 0) return 0;
  return ((da - db).abs() / db.abs().max(floor)).maxCoeff();
}

/// The elementwise floor, relative to the largest entry (normwise floors use 1e-3): entries
/// down to a millionth of the largest are compared relatively.
constexpr double kElementFloor = 1e-6;

/// Both bounds at once: normwise (floor 1e-3 of `scale`, or `element_floor` of it if larger) and
/// elementwise (floor `element_floor` of `scale`); `scale` defaults to max|b|. Absolute differences below 1e8 x the smallest normal
/// number of a's type (1e-30 in float, 2e-300 in double) count as none: the fast kernels' exp
/// gives the smallest normal where the true value underflows (a row whose target dominates by
/// exp(-144) has l = 1.2e-38 there and 0 in the scalar kernel).
template <class A, class B>
bool close(const A& a, const B& b, double tol, double scale = -1, double element_floor = kElementFloor) {
  const Eigen::ArrayXd db = b.template cast<double>().reshaped().array();
  Eigen::ArrayXd da = a.template cast<double>().reshaped().array();
  if (da.size() != db.size()) return false;
  const double s = scale >= 0 ? scale : (db.size() ? db.abs().maxCoeff() : 0.0);
  const double tiny = 1e8 * double(std::numeric_limits<typename A::Scalar>::min());
  for (Index i = 0; i < da.size(); ++i)  // differences below the noise of underflow count as none
    if (std::abs(da(i) - db(i)) <= tiny) da(i) = db(i);
  const double floor_min = std::numeric_limits<double>::min();
  const double ew = elementwise_error(da, db, std::max(element_floor * s, floor_min));
  // a normwise bound is never stricter than the elementwise one (label smoothing's floor)
  const double nw = rel_error(da, db, std::max(std::max(1e-3, element_floor) * s, floor_min));
  if (ew > tol || nw > tol) {
    Index worst = 0;
    ((da - db).abs() / db.abs().max(std::max(element_floor * s, floor_min))).maxCoeff(&worst);
    UNSCOPED_INFO("normwise error " << nw << ", elementwise error " << ew << " (tolerance " << tol
                                    << "); worst entry " << worst << ": " << da(worst) << " vs " << db(worst)
                                    << " (scale " << s << ")");
    return false;
  }
  return true;
}

/// The elementwise floor (relative to the gradient's scale) of a loss's gradient with C classes.
/// Label smoothing makes a gradient entry a difference of parts that can cancel: a non-target
/// entry is K softmax_c - (eps / C) s a_c w_c, the target entry (1 - eps) w_y (softmax_y - 1) +
/// (eps / C) s (W softmax_y - w_y), whose parts are up to eps of the scale (W / C <= max w). Where
/// they cancel, the entry's rounding error is eps_T times the parts, not times the entry (PyTorch's
/// float gradient cancels the same way), so entries below twice eps of the scale are compared
/// absolutely to it (still ~5x tighter than the normwise bound at eps 0.1); without smoothing the
/// floor is kElementFloor. (`classes` is kept for callers; the bound does not need it.)
template <class T>
double element_floor(const lmf::Loss<T>& loss, Index classes) {
  (void)classes;
  double floor = kElementFloor;
  for (const lmf::Term<T>& t : loss.spec().terms)
    if (t.label_smoothing > T(0)) floor = std::max(floor, 2 * double(t.label_smoothing));
  return floor;
}

/// The instruction set this test binary runs its kernels with (test_main.cpp).
inline lmf::detail::Isa& suite_isa() {
  static lmf::detail::Isa isa = lmf::detail::Isa::sse2;
  return isa;
}

/// Forces the instruction set `isa` for its lifetime, then restores the suite's.
struct ForcedIsa {
  bool ok;
  explicit ForcedIsa(lmf::detail::Isa isa) : ok(lmf::detail::force_isa(isa)) {}
  ~ForcedIsa() { lmf::detail::force_isa(suite_isa()); }
  ForcedIsa(const ForcedIsa&) = delete;
  ForcedIsa& operator=(const ForcedIsa&) = delete;
};

/// SIMD lanes of T in the active set.
template <class T>
Index simd_width() {
  return lmf::detail::isa_width<T>(lmf::detail::active_isa());
}

/// Rows per iteration of the lanes kernel with the active set (lane_groups(W) groups of W).
template <class T>
Index lane_rows() {
  const Index W = simd_width<T>();
  return W * lmf::detail::lane_groups(W);
}

/// Catch2's seed for this run (printed by Catch with --rng-seed / in failures).
inline std::mt19937_64& rng() {
  static std::mt19937_64 gen(Catch::rngSeed());
  return gen;
}

template <class T>
Mat<T> random_logits(Index n, Index c, double scale = 2.0) {
  std::normal_distribution<double> d(0.0, scale);
  Mat<T> x(n, c);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<T>(d(rng()));
  return x;
}

inline Labels random_labels(Index n, Index c, double ignored_share = 0.0, int ignore_index = -100) {
  std::uniform_int_distribution<int> d(0, int(c) - 1);
  std::uniform_real_distribution<double> u(0, 1);
  Labels y(n);
  for (Index i = 0; i < n; ++i) y(i) = u(rng()) < ignored_share ? ignore_index : d(rng());
  return y;
}

/// Imbalanced counts n_j = 5000 * ratio^(-j/(C-1)).
inline Eigen::VectorXi long_tail_counts(Index c, double ratio = 100.0) {
  Eigen::VectorXi n(c);
  for (Index j = 0; j < c; ++j)
    n(j) = std::max(1, int(std::lround(5000.0 * std::pow(ratio, -double(j) / double(std::max<Index>(c - 1, 1))))));
  return n;
}

/// Central differences of loss.value (or of the sum of per-row values for reduction none) with
/// respect to every logit, in double. Step h scaled to each logit's magnitude.
inline Mat<double> numeric_gradient(const lmf::Loss<double>& loss, const Mat<double>& x, const Labels& y) {
  const bool none = loss.reduction() == lmf::Reduction::none;
  auto f = [&](const Mat<double>& z) {
    if (!none) return loss.value(z, y);
    Vec<double> v(z.rows());
    loss.per_row(z, y, v);
    return v.sum();
  };
  Mat<double> g(x.rows(), x.cols());
  Mat<double> z = x;
  for (Index i = 0; i < x.size(); ++i) {
    const double h = 1e-5 * std::max(1.0, std::abs(x.data()[i]));
    const double x0 = z.data()[i];
    z.data()[i] = x0 + h;
    const double fp = f(z);
    z.data()[i] = x0 - h;
    const double fm = f(z);
    z.data()[i] = x0 + 2 * h;
    const double fpp = f(z);
    z.data()[i] = x0 - 2 * h;
    const double fmm = f(z);
    z.data()[i] = x0;
    g.data()[i] = (8 * (fp - fm) - (fpp - fmm)) / (12 * h);  // fourth-order central difference
  }
  return g;
}

/// Analytic gradient through value_and_gradient (or per_row_and_gradient for reduction none).
template <class T>
Mat<T> analytic_gradient(const lmf::Loss<T>& loss, const Mat<T>& x, const Labels& y) {
  Mat<T> g(x.rows(), x.cols());
  if (loss.reduction() == lmf::Reduction::none) {
    Vec<T> v(x.rows());
    loss.per_row_and_gradient(x, y, v, g);
  } else {
    loss.value_and_gradient(x, y, g);
  }
  return g;
}

// ---- the registry of losses ---------------------------------------------------------------

/// One loss of the registry with its options: what a golden case describes, and what the
/// property tests iterate. `kind` names the loss (registry_kinds()).
struct LossCase {
  std::string kind, reduction = "mean";
  double gamma = 2, s = 30, max_m = 0.5, ldam_weight = 1, focal_weight = 1;
  double tau = 1, label_smoothing = 0;  // logit adjustment (la, vs); label smoothing (softmax kinds)
  long ignore_index = -100;
  std::vector<long> counts;
  std::vector<double> weights;  // empty: unweighted
};

/// Every loss the library names, both presets, and the generic model with every per-class vector
/// (a, b, m, w). A new loss is one line here and one in tests/make_golden.py (KINDS); every
/// property test (parity, finite differences, kernels agree, errors, empty and all-ignored
/// batches, limits) then covers it.
inline const std::vector<std::string>& registry_kinds() {
  static const std::vector<std::string> kinds = {"ce",        "focal",     "ldam",       "lmf",       "lmf_seed",
                                                  "lmf_official", "generic", "ce_smooth", "la",        "bs",
                                                  "vs",        "vs_smooth", "focal_repo", "focal_drw", "lmf_seed2024"};
  return kinds;
}

/// The seed-code and LDAM-DRW presets define only reduction mean.
inline bool kind_allows(const std::string& kind, const std::string& reduction) {
  return reduction == "mean" ||
         (kind != "lmf_seed" && kind != "lmf_official" && kind != "focal_drw" && kind != "lmf_seed2024");
}

/// a, b, m and the default w of the generic case: exact binary fractions of the class index
/// (tests/make_golden.py, generic_vectors).
template <class T>
void generic_vectors(Index c, Vec<T>& a, Vec<T>& b, Vec<T>& m, Vec<T>& w) {
  a.resize(c), b.resize(c), m.resize(c), w.resize(c);
  for (Index j = 0; j < c; ++j) {
    a(j) = T(0.5 + 0.125 * double(j % 9));
    b(j) = T(-1.0 + 0.25 * double(j % 7));
    m(j) = T(0.0625 * double(1 + j % 5));
    w(j) = T(0.25 * double(1 + j % 8));
  }
}

/// The lmf loss a case describes.
template <class T>
lmf::Loss<T> make_loss(const LossCase& c) {
  const Index classes = Index(c.counts.size());
  Eigen::Matrix<long, Eigen::Dynamic, 1> counts(classes);
  for (Index j = 0; j < classes; ++j) counts(j) = c.counts[std::size_t(j)];
  Vec<T> w(Index(c.weights.size()));
  for (Index j = 0; j < w.size(); ++j) w(j) = static_cast<T>(c.weights[std::size_t(j)]);
  const lmf::Reduction r = lmf::parse_reduction(c.reduction);
  auto common = [&](auto& o) {
    o.reduction = r;
    o.class_weights = w;
    o.ignore_index = c.ignore_index;
  };
  if (c.kind == "ce" || c.kind == "ce_smooth") {
    typename lmf::CrossEntropyLoss<T>::Options o;
    common(o);
    o.label_smoothing = T(c.label_smoothing);
    return lmf::CrossEntropyLoss<T>(o);
  }
  if (c.kind == "la") {
    typename lmf::LogitAdjustedLoss<T>::Options o;
    common(o);
    o.label_smoothing = T(c.label_smoothing);
    o.tau = T(c.tau);
    return lmf::LogitAdjustedLoss<T>(counts, o);
  }
  if (c.kind == "bs") {
    typename lmf::BalancedSoftmaxLoss<T>::Options o;
    common(o);
    o.label_smoothing = T(c.label_smoothing);
    return lmf::BalancedSoftmaxLoss<T>(counts, o);
  }
  if (c.kind == "vs" || c.kind == "vs_smooth") {
    typename lmf::VSLoss<T>::Options o;
    common(o);
    o.label_smoothing = T(c.label_smoothing);
    o.tau = T(c.tau);
    o.gamma = T(c.gamma);
    return lmf::VSLoss<T>(counts, o);
  }
  if (c.kind == "focal_repo") return lmf::FocalLoss<T>::repo_code(w, T(c.gamma), r, c.ignore_index);
  if (c.kind == "focal_drw") return lmf::FocalLoss<T>::ldam_drw_code(w, T(c.gamma), c.ignore_index);
  if (c.kind == "lmf_seed2024") return lmf::LMFLoss<T>::seed_code_2024(counts, w, c.ignore_index);
  if (c.kind == "focal") {
    typename lmf::FocalLoss<T>::Options o;
    common(o);
    o.gamma = T(c.gamma);
    return lmf::FocalLoss<T>(o);
  }
  if (c.kind == "ldam") {
    typename lmf::LDAMLoss<T>::Options o;
    common(o);
    o.label_smoothing = T(c.label_smoothing);
    o.s = T(c.s);
    o.max_m = T(c.max_m);
    return lmf::LDAMLoss<T>(counts, o);
  }
  if (c.kind == "lmf") {
    typename lmf::LMFLoss<T>::Options o;
    common(o);
    o.s = T(c.s);
    o.max_m = T(c.max_m);
    o.gamma = T(c.gamma);
    o.ldam_weight = T(c.ldam_weight);
    o.focal_weight = T(c.focal_weight);
    return lmf::LMFLoss<T>(counts, o);
  }
  if (c.kind == "lmf_seed") return lmf::LMFLoss<T>::seed_code(counts, w, c.ignore_index);
  if (c.kind == "lmf_official") return lmf::LMFLoss<T>::official_code(counts, c.ignore_index);
  if (c.kind == "generic") {
    Vec<T> a, b, m, w_default;
    generic_vectors<T>(classes, a, b, m, w_default);
    lmf::LossSpec<T> spec;
    spec.reduction = r;
    spec.ignore_index = c.ignore_index;
    lmf::Term<T> t;
    t.s = T(c.s);
    t.gamma = T(c.gamma);
    t.a = a, t.b = b, t.m = m;
    t.w = w.size() ? w : w_default;
    t.mean_over = lmf::MeanOver::rows;
    spec.terms.push_back(t);
    t.gamma = T(0);
    t.weight = T(0.25);
    t.mean_over = lmf::MeanOver::target_weights;
    spec.terms.push_back(t);
    return lmf::Loss<T>(spec);
  }
  throw std::runtime_error("unknown loss kind " + c.kind);
}

/// The registry as cases for C classes with long-tailed counts: every kind that defines
/// `reduction`, with the given class weights, gamma and s (s for LDAM, LMF and the generic model).
inline std::vector<LossCase> registry(Index c, const std::string& reduction = "mean",
                                      const std::vector<double>& weights = {}, double gamma = 2.0,
                                      double s = 30.0) {
  const Eigen::VectorXi n = long_tail_counts(c);
  std::vector<LossCase> out;
  for (const std::string& kind : registry_kinds()) {
    if (!kind_allows(kind, reduction)) continue;
    LossCase lc;
    lc.kind = kind;
    lc.reduction = reduction;
    lc.gamma = kind == "vs" || kind == "vs_smooth" ? 0.3 : gamma;
    lc.s = kind == "generic" ? std::min(s, 4.0) : s;
    lc.tau = kind == "vs_smooth" ? 1.5 : 1.0;
    lc.label_smoothing = kind == "ce_smooth" ? 0.2 : kind == "vs_smooth" ? 0.1 : 0.0;
    lc.ldam_weight = 0.7;
    lc.focal_weight = 1.3;
    lc.counts.assign(n.data(), n.data() + c);
    if (kind != "lmf_official") lc.weights = weights;
    out.push_back(lc);
  }
  return out;
}

/// Class-balanced weights (beta 0.999) as a list, for registry().
inline std::vector<double> balanced_weights(Index c) {
  const Vec<double> w = lmf::class_balanced_weights<double>(long_tail_counts(c), 0.999);
  return std::vector<double>(w.data(), w.data() + w.size());
}

inline std::string describe(const LossCase& c) {
  std::ostringstream os;
  os << c.kind << " (" << c.reduction << ", gamma " << c.gamma << ", s " << c.s << ", tau " << c.tau
     << ", label_smoothing " << c.label_smoothing
     << (c.weights.empty() ? ", unweighted" : ", weighted") << ", ignore_index " << c.ignore_index << ")";
  return os.str();
}

// ---- the golden file written by tests/make_golden.py ----------------------------------------

struct GoldenCase : LossCase {
  std::string name;
  Index n = 0, c = 0;
  std::vector<int> labels;
  std::vector<float> logits;    // row-major, float32 values
  std::vector<double> values;   // 1 (reduced) or n (none)
  std::vector<double> grad;     // row-major
};

struct GoldenSigmoid {
  std::string name, reduction;
  Index n = 0, c = 0;
  double alpha = 0.25, gamma = 2;
  std::vector<double> weights;         // empty: none
  std::vector<float> logits, targets;  // row-major, float32 values
  std::vector<double> values, grad;
};

struct GoldenStats {
  double max_m = 0, beta = 0;
  std::vector<long> counts;
  std::vector<double> margins, class_balanced;
};

struct Golden {
  std::string header;
  std::vector<GoldenCase> cases;
  std::vector<GoldenStats> stats;
  std::vector<GoldenSigmoid> sigmoid;
};

/// "values n v_1 .. v_n" (n given in the file), each read exactly with strtod.
inline void read_values(std::istream& in, const std::string& name, std::vector<double>& out) {
  std::string k;
  std::size_t n = 0;
  in >> k >> n;
  if (k != "values") throw std::runtime_error("golden: expected values in " + name);
  out.resize(n);
  for (auto& v : out) {
    std::string tok;
    in >> tok;
    v = std::strtod(tok.c_str(), nullptr);
  }
}

template <class V>
void read_list(std::istream& in, const char* key, std::size_t n, V& out) {
  std::string k;
  in >> k;
  if (k != key) throw std::runtime_error("golden: expected '" + std::string(key) + "', got '" + k + "'");
  out.resize(n);
  for (auto& v : out) {
    if constexpr (std::is_same<typename V::value_type, float>::value) {
      std::string tok;
      in >> tok;
      v = std::strtof(tok.c_str(), nullptr);  // correctly rounded: the exact float32 written
    } else if constexpr (std::is_same<typename V::value_type, double>::value) {
      std::string tok;
      in >> tok;
      v = std::strtod(tok.c_str(), nullptr);
    } else {
      in >> v;
    }
  }
}

inline Golden read_golden(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("golden: cannot open " + path);
  Golden g;
  std::getline(in, g.header);
  std::string key;
  while (in >> key) {
    if (key == "end") break;
    if (key == "case") {
      GoldenCase c;
      in >> c.name >> c.kind >> c.reduction >> c.n >> c.c >> c.gamma >> c.s >> c.max_m >> c.ldam_weight >>
          c.focal_weight >> c.ignore_index;
      int has_weights = 0;
      in >> has_weights >> c.tau >> c.label_smoothing;
      read_list(in, "counts", std::size_t(c.c), c.counts);
      if (has_weights) read_list(in, "weights", std::size_t(c.c), c.weights);
      read_list(in, "labels", std::size_t(c.n), c.labels);
      read_list(in, "logits", std::size_t(c.n * c.c), c.logits);
      read_values(in, c.name, c.values);
      read_list(in, "grad", std::size_t(c.n * c.c), c.grad);
      g.cases.push_back(std::move(c));
    } else if (key == "stats") {
      GoldenStats s;
      std::size_t c = 0;
      in >> c >> s.max_m >> s.beta;
      read_list(in, "counts", c, s.counts);
      read_list(in, "margins", c, s.margins);
      read_list(in, "class_balanced", c, s.class_balanced);
      g.stats.push_back(std::move(s));
    } else if (key == "sigmoid") {
      GoldenSigmoid c;
      int has_weights = 0;
      in >> c.name >> c.n >> c.c >> c.alpha >> c.gamma >> c.reduction >> has_weights;
      if (has_weights) read_list(in, "weights", std::size_t(c.c), c.weights);
      read_list(in, "logits", std::size_t(c.n * c.c), c.logits);
      read_list(in, "targets", std::size_t(c.n * c.c), c.targets);
      read_values(in, c.name, c.values);
      read_list(in, "grad", std::size_t(c.n * c.c), c.grad);
      g.sigmoid.push_back(std::move(c));
    } else {
      throw std::runtime_error("golden: unknown record '" + key + "'");
    }
  }
  return g;
}

/// Path of the golden file: $LMF_GOLDEN if set, else the committed one.
inline std::string golden_path() {
  if (const char* p = std::getenv("LMF_GOLDEN")) return p;
  return LMF_TEST_DATA_DIR "/golden.txt";
}

}  // namespace lmf_test
