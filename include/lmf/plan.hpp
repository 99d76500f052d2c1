// lmf/plan.hpp — backend-neutral: what a call computes before any kernel runs, for the CPU
// backend (cpu/) and the CUDA header (cuda/). It uses no CPU-only header; what runs on the
// device (plan_term, term_value, term_row) is LMF_HOST_DEVICE. From the loss's terms, the
// reduction, the batch's totals (this process's, or summed over every shard of a data-parallel batch) and the caller's
// grad_scale it derives each term's plain scales (TermParams), and from the kernels' per-term
// sums it forms the value. Kernels know nothing of reductions, totals or presets.
//
// Totals of a loss with n terms, b of them focused on the batch mean (the seed-code preset):
//   [D_0 .. D_{n-1}, S_0 .. S_{b-1}]
//   D_t = sum over counted rows of w_y (or 1: MeanOver::rows, or unweighted)   what mean divides by
//   S   = sum over counted rows of w_y * l_i                                     that term's CE sum
// All are sums over rows, so the totals of shards add up to the totals of the whole batch.
#pragma once

#include <lmf/math/row.hpp>
#include <lmf/spec.hpp>

#include <array>
#include <cmath>
#include <cstddef>
#include <limits>

namespace lmf {
namespace detail {

/// Accumulator type of the reductions: double for float and double inputs.
using Accum = double;

/// A term as the kernels see it: raw pointers (null = default) and the scales the plan derived
/// (plan.hpp: the reduction, totals from other shards, grad_scale, the batch-mean presets). The
/// kernels know nothing of those. Trivially copyable, so it can be passed to a CUDA kernel.
///
/// The scales are doubles and multiply the class weight first: with w'_y = w_y * weight_scale, a
/// row adds (w'_y * value_scale) * phi(l) to the term's sum and gets the gradient factor
/// T(w'_y * grad_scale) * phi'(l) * s. For a mean, w_y / denominator <= 1 for every counted class,
/// so neither product can overflow where the mean itself is finite (huge class weights, rows whose
/// sum would overflow T). weight_scale is 1, or 2^1000 when the denominator is below 2^-900
/// (subnormal weights: its reciprocal could overflow); multiplying by it is exact.
template <class T>
struct TermParams {
  T s;
  T gamma;
  const T* a;  ///< null: all 1
  const T* m;  ///< null: all 0
  const T* b;  ///< null: all 0
  const T* w;  ///< null: all 1
  Accum weight_scale;  ///< 1, or 2^1000 for tiny denominators
  Accum value_scale;   ///< 1 / (denominator * weight_scale) (1 for sum and none)
  Accum grad_scale;    ///< gradient factor * value_scale (term weight * grad_scale * phi'(M)...)
  bool weight_inside;  ///< FocusOn::weighted_row: L_i = phi(w_y l_i) (LDAM-DRW's focal)
  // label smoothing eps (0: none); with it, L_i = (1 - eps) w_y l + (eps / C) q,
  // q = sum_c w_c (logsumexp(z) - z_c), and dL_i/dx_c gets (eps / C) s a_c (W softmax_c - w_c)
  T one_minus_eps;  ///< 1 - eps
  T smooth;         ///< eps / C
  T w_sum;          ///< W = sum_c w_c (C when unweighted)
  T smooth_mass;    ///< T(eps / C * W * weight_scale * grad_scale) * s: the softmax part's factor
  T smooth_grad;    ///< T(eps / C * weight_scale * grad_scale) * s: times s a_c w_c, subtracted
};

/// Maximum number of terms in one loss (LMF has two; the family needs at most two).
constexpr int kMaxTerms = 4;

}  // namespace detail

/// This shard's part of what the reduction divides by: a small array of doubles to sum over
/// shards (MPI_Allreduce, ncclAllReduce, torch.distributed.all_reduce on data()/size()), then
/// pass to value / value_and_gradient. See the header comment for what the entries are.
class Totals {
 public:
  static constexpr std::size_t capacity = 2 * detail::kMaxTerms;

  Totals() = default;
  /// n zeros (n <= capacity: more is an lmf::Error).
  explicit Totals(std::size_t n) : size_(n) {
    LMF_CHECK_ARG(n <= capacity, "Totals of ", n, " entries (at most ", capacity, ")");
  }

  double* data() noexcept { return values_.data(); }
  const double* data() const noexcept { return values_.data(); }
  std::size_t size() const noexcept { return size_; }
  double& operator[](std::size_t i) {
    LMF_ASSERT(i < size_);
    return values_[i];
  }
  double operator[](std::size_t i) const {
    LMF_ASSERT(i < size_);
    return values_[i];
  }

  /// Adds another shard's totals (of the same loss: same size, else lmf::Error).
  Totals& operator+=(const Totals& other) {
    LMF_CHECK_ARG(other.size_ == size_, "cannot add totals of ", other.size_, " entries to totals of ", size_,
                  " (totals of different losses)");
    for (std::size_t i = 0; i < size_; ++i) values_[i] += other.values_[i];
    return *this;
  }

 private:
  std::array<double, capacity> values_{};
  std::size_t size_ = 0;
};

namespace detail {

template <class T>
bool focused_on_batch(const Term<T>& t) {
  return t.focus_on == FocusOn::batch_mean;
}

/// Entries of a loss's Totals: one denominator per term, one CE sum per batch-mean term.
template <class T>
std::size_t totals_size(const LossSpec<T>& spec) {
  std::size_t n = spec.terms.size();
  for (const Term<T>& t : spec.terms) n += focused_on_batch(t) ? 1 : 0;
  return n;
}

/// Mean cross entropy M = S / D of batch-mean term t (0 when nothing is counted).
template <class T>
Accum batch_mean(const LossSpec<T>& spec, const Totals& totals, std::size_t t) {
  std::size_t b = spec.terms.size();
  for (std::size_t u = 0; u < t; ++u) b += focused_on_batch(spec.terms[u]) ? 1 : 0;
  return totals[t] > 0 ? totals[b] / totals[t] : Accum(0);
}

/// Totals given by the caller: the right size for this loss, every entry finite and >= 0, each
/// denominator at least this batch's own (`local`: the totals must include this shard; 1e-6
/// relative slack for totals reduced in lower precision), and every batch-mean M = S / D finite
/// in T. (A denominator below this shard's would let w_y / D exceed 1 without bound: infinite
/// gradients.)
template <class T>
Status check_totals(const LossSpec<T>& spec, const Totals& totals, const Totals& local) {
  const std::size_t n = totals_size(spec);
  if (totals.size() != n)
    return Status::error(message("totals have ", totals.size(), " entries but this loss needs ", n,
                                 " (one denominator per term", n > spec.terms.size() ? ", one sum per batch-mean term" : "",
                                 "): totals of another loss?"));
  for (std::size_t i = 0; i < n; ++i)
    if (!std::isfinite(totals[i]) || totals[i] < 0)
      return Status::error(message("totals entry ", i, " is ", totals[i], " (must be finite and >= 0)"));
  for (std::size_t t = 0; t < spec.terms.size(); ++t)
    if (totals[t] < local[t] * (1 - 1e-6))
      return Status::error(message("totals entry ", t, " is ", totals[t], ", less than this batch's own ", local[t],
                                   ": totals must be summed over every shard, this one included"));
  for (std::size_t t = 0; t < spec.terms.size(); ++t)
    if (focused_on_batch(spec.terms[t]) &&
        !(batch_mean(spec, totals, t) <= Accum(std::numeric_limits<T>::max())))
      return Status::error(message("totals give term ", t, " a batch-mean cross entropy of ",
                                   batch_mean(spec, totals, t), ", beyond the range of the logits' type"));
  return {};
}

/// What the plan needs of a term, without Eigen (the CUDA header builds these on the host with
/// device pointers). Per-class pointers: null = the default (a 1, m 0, b 0, w 1).
template <class T>
struct TermScalars {
  T weight;
  T s;
  T gamma;
  T label_smoothing;
  const T* a;
  const T* m;
  const T* b;
  const T* w;
  Accum w_sum;  ///< sum_c w_c (C when unweighted)
  FocusOn focus_on;
};

template <class T>
TermScalars<T> term_scalars(const Term<T>& term, Index classes) {
  return TermScalars<T>{term.weight,
                        term.s,
                        term.gamma,
                        term.label_smoothing,
                        term.a.size() ? term.a.data() : nullptr,
                        term.m.size() ? term.m.data() : nullptr,
                        term.b.size() ? term.b.data() : nullptr,
                        term.w.size() ? term.w.data() : nullptr,
                        term.w.size() ? term.w.template cast<Accum>().sum() : Accum(classes),
                        term.focus_on};
}

/// One term as the kernels see it (the CPU's plan_terms and the CUDA plan kernel both call this):
/// for a mean, scales 1/D from the denominator `den` (scaled exactly by 2^1000 when D is below
/// 2^-900, see TermParams); the term weight and grad_scale in the gradient factor; a batch-mean
/// term becomes a cross-entropy term (gamma 0) whose gradient factor carries phi'(M), M = `mean`.
/// A zero denominator (no counted row, or all their weights 0) gives the term 0 with a zero
/// gradient, where PyTorch returns 0/0 = NaN (docs/api.md).
template <class T>
LMF_HOST_DEVICE TermParams<T> plan_term(const TermScalars<T>& term, Index classes, Accum den, T grad_scale,
                                        Accum mean) {
  const Accum weight_scale = den > 0 && den < 0x1p-900 ? 0x1p1000 : Accum(1);
  const Accum inv = den > 0 ? Accum(1) / (den * weight_scale) : Accum(0);
  Accum factor = Accum(term.weight) * Accum(grad_scale);
  T gamma = term.gamma;
  if (term.focus_on == FocusOn::batch_mean) {
    factor *= Accum(math::focus(static_cast<T>(mean), term.gamma).derivative);
    gamma = T(0);
  }
  const Accum eps = Accum(term.label_smoothing);
  const Accum smooth = classes > 0 ? eps / Accum(classes) : Accum(0);
  TermParams<T> p;
  p.s = term.s;
  p.gamma = gamma;
  p.a = term.a;
  p.m = term.m;
  p.b = term.b;
  p.w = term.w;
  p.weight_scale = weight_scale;
  p.value_scale = inv;
  p.grad_scale = factor * inv;
  p.weight_inside = term.focus_on == FocusOn::weighted_row;
  p.one_minus_eps = static_cast<T>(Accum(1) - eps);
  p.smooth = static_cast<T>(smooth);
  p.w_sum = static_cast<T>(term.w_sum);
  p.smooth_mass = static_cast<T>(smooth * term.w_sum * weight_scale * factor * inv) * term.s;
  p.smooth_grad = static_cast<T>(smooth * weight_scale * factor * inv) * term.s;
  return p;
}

/// The kernels' terms for a whole loss (plan_term per term); the denominators come from
/// `totals`; `means`, if given, are the batch-mean terms' M computed directly (one process: more
/// precise than S / D when D is tiny); otherwise M = S / D from the totals.
template <class T>
void plan_terms(const LossSpec<T>& spec, Index classes, Reduction reduction, const Totals& totals, T grad_scale,
                std::array<TermParams<T>, kMaxTerms>& params, std::array<T, kMaxTerms>& weights,
                const std::array<Accum, kMaxTerms>* means = nullptr) {
  for (std::size_t t = 0; t < spec.terms.size(); ++t) {
    const Term<T>& term = spec.terms[t];
    const Accum den = reduction == Reduction::mean ? totals[t] : Accum(1);
    const Accum m = !focused_on_batch(term) ? Accum(0) : means ? (*means)[t] : batch_mean(spec, totals, t);
    params[t] = plan_term(term_scalars(term, classes), classes, den, grad_scale, m);
    weights[t] = term.weight;
  }
}

/// The plan's scales as T numbers the kernels can use: label smoothing's factors (eps / C) s W / D
/// and (eps / C) s / D are not bounded by the weighted-mean argument (W / D can exceed 1 without
/// bound when the class weights span more than T's range), so an overflow is an error here,
/// before anything is written, rather than inf - inf in the gradient.
template <class T>
Status check_params(const LossSpec<T>& spec, const std::array<TermParams<T>, kMaxTerms>& params) {
  for (std::size_t t = 0; t < spec.terms.size(); ++t)
    if (!std::isfinite(params[t].smooth_mass) || !std::isfinite(params[t].smooth_grad))
      return Status::error(message("term ", t, ": label smoothing's gradient factors (eps / C) s sum_c w_c / D overflow "
                                   "the logits' type (class weights spanning more than its range; D = the sum of "
                                   "the counted rows' weights)"));
  return {};
}

/// One term's share of the value, weight_t * (its sum), from the kernels' sum for it (already
/// divided by its denominator). A batch-mean term's value is phi(M); with totals from other
/// shards (whole_batch false), this shard's part of it, phi(M) * (its share of S), so that the
/// shards' values add up.
template <class T>
LMF_HOST_DEVICE Accum term_value(const TermScalars<T>& term, Accum sum, Accum mean, bool whole_batch) {
  Accum v = sum;
  if (term.focus_on == FocusOn::batch_mean) {
    const Accum phi = Accum(math::focus(static_cast<T>(mean), term.gamma).value);
    v = whole_batch ? phi : (mean > 0 ? phi * (sum / mean) : Accum(0));
  }
  return Accum(term.weight) * v;
}

/// The value from the kernels' per-term sums: sum_t term_value.
template <class T>
Accum plan_value(const LossSpec<T>& spec, const Totals& totals, const std::array<Accum, kMaxTerms>& sums,
                 bool whole_batch, const std::array<Accum, kMaxTerms>* means = nullptr) {
  Accum total = 0;
  for (std::size_t t = 0; t < spec.terms.size(); ++t) {
    const Term<T>& term = spec.terms[t];
    const Accum m = !focused_on_batch(term) ? Accum(0) : means ? (*means)[t] : batch_mean(spec, totals, t);
    total += term_value(term_scalars(term, 0), sums[t], m, whole_batch);
  }
  return total;
}

/// What one term makes of one row once its cross entropy l is known: the row's value of the term
/// (w_y phi(l); with label smoothing (1 - eps) w_y l + (eps / C) q; with the weight inside
/// phi(w_y l)), its share of the term's sum (times value_scale, in double), and the gradient
/// factor coef of (softmax - onehot) (label smoothing's own parts come from TermParams).
template <class T>
struct TermRow {
  T value;
  Accum contribution;
  T coef;
};

/// The per-row epilogue of the scalar CPU kernel and the CUDA kernels (the CPU SIMD kernels have
/// the same formulas on vectors: cpu/epilogue_simd.hpp). rest = sum_{c != k} exp(z_c - z_k);
/// wd = sum_c w_c (z_c - z_k) (label smoothing only); plain() gives phi and phi' at l when the
/// weight is not inside (each kernel forms 1 - p_t its own way). With the weight inside,
/// phi(w_y l) is taken in double: w_y l may overflow T.
// (plain is a host lambda on the CPU, a device lambda in the CUDA kernels: no cross-space check)
#if defined(__CUDACC__)
#pragma nv_exec_check_disable
#endif
template <class T, class PlainFocus>
LMF_HOST_DEVICE TermRow<T> term_row(const TermParams<T>& p, T wy, T l, T rest, T wd, PlainFocus&& plain) {
  const Accum w = Accum(wy) * p.weight_scale;
  math::Focus<T> f;
  T value;
  Accum contribution;
  if (p.weight_inside) {
    const math::Focus<Accum> fi = math::focus(Accum(wy) * Accum(l), Accum(p.gamma));
    f = {static_cast<T>(fi.value), static_cast<T>(fi.derivative)};
    value = f.value;
    contribution = (p.weight_scale * p.value_scale) * fi.value;
  } else {
    f = plain();
    if (p.smooth != T(0)) {  // (gamma 0: phi(l) = l)
      const T q = p.w_sum * std::log1p(rest) - wd;  // sum_c w_c (logsumexp(z) - z_c) >= 0
      value = p.one_minus_eps * wy * l + p.smooth * q;
      contribution = (Accum(p.one_minus_eps) * Accum(wy) * Accum(l) + Accum(p.smooth) * Accum(q)) * p.weight_scale *
                     p.value_scale;
    } else {
      value = wy * f.value;
      contribution = (w * p.value_scale) * Accum(f.value);
    }
  }
  const T coef = static_cast<T>(w * p.grad_scale * Accum(p.one_minus_eps)) * f.derivative * p.s;
  return {value, contribution, coef};
}

}  // namespace detail
}  // namespace lmf
