// lmf/cpu/dispatch.hpp — validates a batch against a loss, derives the reduction's scales,
// runs the kernel over fixed blocks of rows and reduces their sums in a fixed order.
//
// Order of work, so that nothing is written unless everything is valid:
//   1. shapes and strides;  2. every label (in range or ignore_index), and each term's mean
//   denominator;  3. when any output buffer is given: every logit of a counted row is finite and
//   small enough that s * (a x - m) + b cannot overflow;  4. batch-mean focal terms (seed-code
//   preset): a value-only pass for their mean cross entropy;  5. the fused pass.
// A value-only call skips step 3: the kernel flags rows with bad logits as it reads them (one
// compare per logit), and the dispatcher then locates the culprit for the message.
#pragma once

#include <lmf/cpu/lanes_simd.hpp>
#include <lmf/cpu/rows_simd.hpp>
#include <lmf/cpu/scalar.hpp>
#include <lmf/spec.hpp>

#include <new>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <vector>

namespace lmf {
namespace detail {

/// Rows per block of the fixed-order reduction: about 16K logits (so that wide rows still give
/// many blocks to share among threads), a multiple of 32 (whole iterations of the lanes kernel,
/// up to 16-lane vectors), from 32 to 512. It depends on C only: block sums are added in block
/// order, so the result does not depend on how blocks are scheduled or on the thread count.
inline Index block_rows(Index classes) {
  const Index target = (Index(1) << 14) / std::max<Index>(classes, 1);
  return std::min<Index>(512, std::max<Index>(32, (target + 31) / 32 * 32));
}

/// Batches with fewer logits than this run on one thread.
constexpr Index kParallelMinLogits = Index(1) << 15;

/// What a call asks for.
template <class T>
struct Outputs {
  T* grad = nullptr;
  Layout lg;
  T* row_values = nullptr;
  Index row_values_stride = 1;
};

/// Validates every label and computes each term's mean denominator from a histogram of the
/// counted labels (an integer pass over the labels; the weights are applied per class).
template <class T, class L>
Status check_labels(const LossSpec<T>& spec, const Layout& lx, const L* labels, Index label_stride,
                    std::array<Accum, kMaxTerms>& denominators, Index& counted) {
  const Index C = lx.classes;
  denominators.fill(0);
  counted = 0;
  const Index rows = lx.rows();
  std::vector<std::int64_t> histogram(std::size_t(std::max<Index>(C, 1)), 0);
  const std::int64_t ignore = spec.ignore_index;
  for (Index i = 0; i < rows; ++i) {
    const std::int64_t y = static_cast<std::int64_t>(labels[i * label_stride]);
    if (static_cast<std::uint64_t>(y) < static_cast<std::uint64_t>(C) && y != ignore) {
      ++histogram[std::size_t(y)];
    } else if (y != ignore) {
      return Status::error(message("label ", y, " at row ", i, " is outside [0, ", C,
                                   ") (and is not ignore_index ", ignore, ")"));
    }
  }
  for (Index c = 0; c < C; ++c) counted += histogram[std::size_t(c)];
  for (std::size_t t = 0; t < spec.terms.size(); ++t) {
    const Term<T>& term = spec.terms[t];
    const bool by_rows = term.mean_over == MeanOver::rows || term.w.size() == 0;
    Accum d = 0;
    for (Index c = 0; c < C; ++c)
      d += Accum(histogram[std::size_t(c)]) * (by_rows ? Accum(1) : static_cast<Accum>(term.w(c)));
    denominators[t] = d;
  }
  return {};
}

/// Largest |x| for which every term's adjusted logit s * (a x - m) + b stays far from overflow.
template <class T>
T logit_limit(const LossSpec<T>& spec) {
  const T headroom = std::numeric_limits<T>::max() / T(16);
  T limit = std::numeric_limits<T>::max();
  for (const Term<T>& t : spec.terms) {
    const T amax = t.a.size() ? t.a.cwiseAbs().maxCoeff() : T(1);
    const T mmax = t.m.size() ? t.m.maxCoeff() : T(0);
    const T bmax = t.b.size() ? t.b.cwiseAbs().maxCoeff() : T(0);
    if (amax == T(0)) continue;
    limit = std::min(limit, ((headroom - bmax) / t.s - mmax) / amax);
  }
  return limit;
}

/// True if every element of the contiguous range [x, x + n) is within `limit` (SIMD sweep).
template <class T>
bool all_within_serial(const T* x, Index n, T limit) {
  using B = simd::batch<T>;
  constexpr Index W = simd::width<T>();
  const B lim(limit);
  auto ok = B(T(0)) <= lim;
  Index i = 0;
  for (; i + 4 * W <= n; i += 4 * W) {
    ok = ok && (xsimd::abs(B::load_unaligned(x + i)) <= lim) && (xsimd::abs(B::load_unaligned(x + i + W)) <= lim) &&
         (xsimd::abs(B::load_unaligned(x + i + 2 * W)) <= lim) && (xsimd::abs(B::load_unaligned(x + i + 3 * W)) <= lim);
  }
  bool result = xsimd::all(ok);
  for (; i < n; ++i) result &= std::abs(x[i]) <= limit;
  return result;
}

/// all_within_serial over chunks of 64K elements, on OpenMP threads for large buffers.
template <class T>
bool all_within(const T* x, Index n, T limit, int threads) {
  constexpr Index chunk = Index(1) << 16;
  const Index chunks = (n + chunk - 1) / chunk;
  bool ok = true;
#if defined(_OPENMP)
  const int team = n >= kParallelMinLogits ? int(std::min<Index>(threads > 0 ? threads : omp_get_max_threads(), chunks)) : 1;
#pragma omp parallel for schedule(static) reduction(&& : ok) num_threads(team) if (team > 1)
#else
  (void)threads;
#endif
  for (Index b = 0; b < chunks; ++b) ok = ok && all_within_serial(x + b * chunk, std::min(chunk, n - b * chunk), limit);
  return ok;
}

/// Finds the first logit of a counted row that is not finite or beyond `limit`. A buffer that
/// is one contiguous block is swept with SIMD first; only if that finds something (possibly in
/// an ignored row, which is allowed) are the rows examined one by one.
template <class T, class L>
Status check_logits(const LossSpec<T>& spec, const T* x, const Layout& lx, const L* labels,
                    Index label_stride, T limit) {
  const Index rows = lx.rows(), C = lx.classes;
  const bool contiguous_rows = lx.inner == 1 && lx.class_stride == 1 && lx.sample_stride == C;
  const bool contiguous_cols = lx.inner == 1 && lx.sample_stride == 1 && lx.class_stride == lx.samples;
  const bool contiguous_nchw = lx.inner_stride == 1 && lx.class_stride == lx.inner && lx.sample_stride == C * lx.inner;
  if ((contiguous_rows || contiguous_cols || contiguous_nchw) && all_within(x, rows * C, limit, spec.threads))
    return {};
  for (Index i = 0; i < rows; ++i) {
    if (static_cast<std::int64_t>(labels[i * label_stride]) == spec.ignore_index) continue;
    const T* row = x + lx.row_offset(i);
    bool ok = true;
    for (Index c = 0; c < C; ++c) ok &= std::abs(row[c * lx.class_stride]) <= limit;
    if (ok) continue;
    for (Index c = 0; c < C; ++c) {
      const T v = row[c * lx.class_stride];
      if (std::abs(v) <= limit) continue;
      if (!std::isfinite(v))
        return Status::error(message("logit at row ", i, ", class ", c, " is ", v, " (must be finite)"));
      return Status::error(message("logit ", v, " at row ", i, ", class ", c,
                                   " is too large: the adjusted logit s*(a*x - m) + b would overflow (|x| must be <= ",
                                   limit, ")"));
    }
  }
  return {};
}

/// A 64-byte aligned buffer for the kernels' scratch. No exceptions: works with -fno-exceptions
/// (an allocation failure is reported like any lmf error: thrown, or printed + abort).
template <class T>
class ScratchBuffer {
 public:
  explicit ScratchBuffer(Index n) {
    if (n <= 0) return;
    data_ = static_cast<T*>(::operator new(sizeof(T) * std::size_t(n), std::align_val_t(64), std::nothrow));
    if (!data_) raise(message("cannot allocate ", sizeof(T) * std::size_t(n), " bytes of kernel scratch"));
  }
  ~ScratchBuffer() {
    if (data_) ::operator delete(data_, std::align_val_t(64));
  }
  ScratchBuffer(const ScratchBuffer&) = delete;
  ScratchBuffer& operator=(const ScratchBuffer&) = delete;
  T* data() const { return data_; }

 private:
  T* data_ = nullptr;
};

/// Classes from which class-contiguous rows go to the rows kernel rather than the lanes kernel
/// (measured crossover with AVX2 floats: lanes is faster up to ~40 classes, rows from ~48).
template <class T>
constexpr Index rows_min_classes() {
  return 6 * simd::width<T>();
}

/// The kernel that evaluates this batch (see lmf::Kernel).
template <class T>
Kernel choose_kernel(const LossSpec<T>& spec, const Layout& lx, const Outputs<T>& out) {
  bool simd_ok = lx.classes >= 2 && lx.classes < (Index(1) << 24);  // labels compared as T
  for (const Term<T>& t : spec.terms) simd_ok &= t.a.size() == 0 && t.b.size() == 0;
  const bool contiguous = lx.class_stride == 1 && (out.grad == nullptr || out.lg.class_stride == 1);
  switch (spec.kernel) {
    case Kernel::scalar: return Kernel::scalar;
    case Kernel::rows: return simd_ok && contiguous ? Kernel::rows : Kernel::scalar;
    case Kernel::lanes: return simd_ok ? Kernel::lanes : Kernel::scalar;
    case Kernel::automatic: break;
  }
  if (!simd_ok) return Kernel::scalar;
  return contiguous && lx.classes >= rows_min_classes<T>() ? Kernel::rows : Kernel::lanes;
}

/// Runs `kernel` over the rows in fixed blocks of block_rows(C) rows, on up to `threads` threads, and
/// adds the block sums in block order: the totals are bitwise the same for any thread count.
/// Returns false if some counted row holds a logit beyond k.limit.
template <class T, class L>
bool run_blocks(const KernelArgs<T, L>& k, Kernel kernel, int threads, std::array<Accum, kMaxTerms>& sums) {
  sums.fill(0);
  const Index rows = k.lx.rows(), C = k.lx.classes;
  const Index block = block_rows(C);
  const Index blocks = (rows + block - 1) / block;
  if (blocks == 0) return true;
  std::vector<Accum> block_sums(std::size_t(blocks * kMaxTerms), Accum(0));
  std::vector<char> block_ok(std::size_t(blocks), 1);
  const Index scratch_size = kernel == Kernel::rows    ? k.n_terms * C
                             : kernel == Kernel::lanes ? (k.n_terms + 2) * C * simd::width<T>() * kLaneGroups
                                                       : 0;
  auto run = [&](Index b, T* scratch) {
    const Index begin = b * block, end = std::min(rows, begin + block);
    Accum* out = block_sums.data() + b * kMaxTerms;
    bool ok;
    switch (kernel) {
      case Kernel::rows: ok = rows_simd(k, begin, end, out, scratch); break;
      case Kernel::lanes: ok = lanes_simd(k, begin, end, out, scratch); break;
      default: ok = scalar_rows(k, begin, end, out); break;
    }
    block_ok[std::size_t(b)] = ok;
  };
  using Scratch = ScratchBuffer<T>;
#if defined(_OPENMP)
  const int max_threads = threads > 0 ? threads : omp_get_max_threads();
  const int team = rows * C >= kParallelMinLogits ? int(std::min<Index>(max_threads, blocks)) : 1;
  if (team > 1) {
#pragma omp parallel num_threads(team)
    {
      Scratch scratch(scratch_size);
#pragma omp for schedule(static)
      for (Index b = 0; b < blocks; ++b) run(b, scratch.data());
    }
  } else
#else
  (void)threads;
#endif
  {
    Scratch scratch(scratch_size);
    for (Index b = 0; b < blocks; ++b) run(b, scratch.data());
  }
  bool ok = true;
  for (Index b = 0; b < blocks; ++b) {
    ok &= block_ok[std::size_t(b)] != 0;
    for (int t = 0; t < k.n_terms; ++t) sums[t] += block_sums[std::size_t(b * kMaxTerms + t)];
  }
  return ok;
}

/// Evaluates `spec` on a batch with `reduction` (which overrides spec.reduction, so that per-row
/// calls need no copy of the spec). `value` receives the reduced loss (for reduction none: the
/// sum of the per-row values). Writes nothing and returns an error status if anything is invalid.
template <class T, class L>
Status evaluate(const LossSpec<T>& spec, Reduction reduction, const T* x, const Layout& lx, const L* labels,
                Index label_stride, const Outputs<T>& out, T& value) {
  // 1. shapes
  if (Status s = check_layout(lx, "logits"); !s) return s;
  if (spec.classes != 0 && lx.classes != spec.classes)
    return Status::error(message("logits have ", lx.classes, " classes but the loss has ", spec.classes));
  if (lx.classes < 1 && lx.rows() > 0) return Status::error(message("logits have 0 classes"));
  if (out.grad) {
    if (Status s = check_layout(out.lg, "gradient"); !s) return s;
    if (out.lg.samples != lx.samples || out.lg.classes != lx.classes || out.lg.inner != lx.inner)
      return Status::error(message("gradient is ", out.lg.samples, "x", out.lg.classes, " (inner ",
                                   out.lg.inner, ") but logits are ", lx.samples, "x", lx.classes,
                                   " (inner ", lx.inner, ")"));
  }
  if (out.grad && lx.rows() > 0 && lx.classes > 0) {
    const Layout& lg = out.lg;
    if ((lg.classes > 1 && lg.class_stride == 0) || (lg.samples > 1 && lg.sample_stride == 0) ||
        (lg.inner > 1 && lg.inner_stride == 0))
      return Status::error(message("gradient layout has a zero stride: its entries would overlap"));
    auto extent = [](const Layout& l) {
      return (l.samples - 1) * l.sample_stride + (l.classes - 1) * l.class_stride + (l.inner - 1) * l.inner_stride + 1;
    };
    const T* g_begin = out.grad;
    const T* g_end = out.grad + extent(lg);
    if (x != nullptr && x < g_end && g_begin < x + extent(lx))
      return Status::error(message("the gradient buffer overlaps the logits (write the gradient to a separate buffer)"));
  }
  if (lx.rows() > 0 && (x == nullptr || labels == nullptr))
    return Status::error(message("null logits or labels pointer for a non-empty batch"));

  // 2. labels and denominators
  std::array<Accum, kMaxTerms> denominators{};
  Index counted = 0;
  if (Status s = check_labels(spec, lx, labels, label_stride, denominators, counted); !s) return s;

  // 3. logits, when something will be written
  const T limit = logit_limit(spec);
  const bool writes = out.grad != nullptr || out.row_values != nullptr;
  if (writes) {
    if (Status s = check_logits(spec, x, lx, labels, label_stride, limit); !s) return s;
  }

  const int n_terms = static_cast<int>(spec.terms.size());
  std::array<TermParams<T>, kMaxTerms> params{};
  std::array<T, kMaxTerms> weights{};
  // Denominator of term t: 1 for sum and none; for mean the counted rows' target weights (or
  // count). A zero denominator (no counted row, or all their weights 0) makes the term 0 with a
  // zero gradient, where PyTorch returns 0/0 = NaN: see docs/api.md.
  auto denominator = [&](int t) -> Accum {
    return reduction == Reduction::mean ? denominators[t] : Accum(1);
  };
  for (int t = 0; t < n_terms; ++t) {
    const Term<T>& term = spec.terms[t];
    const Accum den = denominator(t);
    params[t] = TermParams<T>{term.s,
                              term.gamma,
                              term.a.size() ? term.a.data() : nullptr,
                              term.m.size() ? term.m.data() : nullptr,
                              term.b.size() ? term.b.data() : nullptr,
                              term.w.size() ? term.w.data() : nullptr,
                              den > 0 ? static_cast<T>(Accum(term.weight) / den) : T(0),
                              term.focus_on == FocusOn::batch_mean,
                              T(0)};
    weights[t] = term.weight;
  }

  KernelArgs<T, L> k;
  k.x = x;
  k.lx = lx;
  k.labels = labels;
  k.label_stride = label_stride;
  k.ignore_index = spec.ignore_index;
  k.terms = params.data();
  k.term_weights = weights.data();
  k.n_terms = n_terms;
  k.limit = limit;

  std::array<Accum, kMaxTerms> sums{};
  // 4. batch-mean focal terms need their mean cross entropy before any gradient is written
  bool any_batch = false;
  for (int t = 0; t < n_terms; ++t) any_batch |= params[t].batch_focus;
  if (any_batch && out.grad) {
    run_blocks(k, choose_kernel(spec, lx, Outputs<T>{}), spec.threads, sums);
    for (int t = 0; t < n_terms; ++t) {
      if (!params[t].batch_focus) continue;
      const Accum den = denominator(t);
      const T lbar = den > 0 ? static_cast<T>(sums[t] / den) : T(0);
      params[t].batch_derivative = math::focus(lbar, spec.terms[t].gamma).derivative;
    }
  }

  // 5. the fused pass
  k.grad = out.grad;
  k.lg = out.lg;
  k.row_values = out.row_values;
  k.row_values_stride = out.row_values_stride;
  const bool logits_ok = run_blocks(k, choose_kernel(spec, lx, out), spec.threads, sums);
  if (!logits_ok) {  // only reachable without outputs: writing paths checked in step 3
    Status s = check_logits(spec, x, lx, labels, label_stride, limit);
    return s ? Status::error(message("non-finite logits")) : s;
  }

  Accum total = 0;
  for (int t = 0; t < n_terms; ++t) {
    const Accum den = denominator(t);
    Accum term_value = den > 0 ? sums[t] / den : Accum(0);
    if (params[t].batch_focus)
      term_value = static_cast<Accum>(math::focus(static_cast<T>(term_value), spec.terms[t].gamma).value);
    total += Accum(weights[t]) * term_value;
  }
  value = static_cast<T>(total);
  return {};
}

}  // namespace detail
}  // namespace lmf
