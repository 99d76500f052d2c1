// lmf/cpu/dispatch.hpp — validates a batch against a loss, derives the reduction's scales,
// runs the kernel over fixed blocks of rows and reduces their sums in a fixed order.
//
// Order of work, so that nothing is written unless everything is valid:
//   1. shapes, strides and buffers (limits, overflow, overlaps);  2. every label (in range or
//   ignore_index), and each term's mean denominator;  3. when any output buffer is given: every
//   logit of a counted row is finite and small enough that s * (a x - m) + b cannot overflow;
//   4. batch-mean focal terms (seed-code preset): a value-only pass for their mean cross entropy;
//   5. the fused pass.
// A value-only call skips step 3: the kernel flags blocks with bad logits as it reads them (one
// compare per logit), blocks after the first bad one are skipped, and that block's rows are then
// scanned for the culprit to name it.
#pragma once

#include <lmf/cpu/lanes_simd.hpp>
#include <lmf/cpu/rows_simd.hpp>
#include <lmf/cpu/scalar.hpp>
#include <lmf/spec.hpp>

#include <atomic>
#include <memory>
#include <new>
#include <type_traits>

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

/// True if label v (of any integer type) is ignore_index, compared as integers: a uint64 label
/// 2^64 - 100 is not ignore_index -100.
template <class L>
bool is_ignored(L v, std::int64_t ignore) {
  if constexpr (std::is_unsigned<L>::value)
    return ignore >= 0 && static_cast<std::uint64_t>(v) == static_cast<std::uint64_t>(ignore);
  else
    return static_cast<std::int64_t>(v) == ignore;
}

/// True if label v is a class of [0, C).
template <class L>
bool in_range(L v, Index C) {
  if constexpr (std::is_unsigned<L>::value)
    return static_cast<std::uint64_t>(v) < static_cast<std::uint64_t>(C);
  else
    return static_cast<std::int64_t>(v) >= 0 && static_cast<std::int64_t>(v) < static_cast<std::int64_t>(C);
}

/// Validates every label and computes each term's mean denominator: from a histogram of the
/// counted labels when there are at least as many rows as classes (an integer pass; the weights
/// are applied per class), else row by row. Never throws: an allocation failure is a Status.
template <class T, class L>
Status check_labels(const LossSpec<T>& spec, const Layout& lx, const L* labels, Index label_stride,
                    std::array<Accum, kMaxTerms>& denominators, Index& counted) {
  const Index C = lx.classes;
  denominators.fill(0);
  counted = 0;
  const Index rows = lx.rows();
  const std::int64_t ignore = spec.ignore_index;
  for (Index i = 0; i < rows; ++i) {
    const L y = labels[i * label_stride];
    if (!in_range(y, C) && !is_ignored(y, ignore))
      return Status::error(message("label ", +y, " at row ", i, " is outside [0, ", C,
                                   ") (and is not ignore_index ", ignore, ")"));
  }
  auto class_weight = [&](const Term<T>& term, Index c) {
    const bool by_rows = term.mean_over == MeanOver::rows || term.w.size() == 0;
    return by_rows ? Accum(1) : static_cast<Accum>(term.w(c));
  };
  if (rows < C) {
    for (Index i = 0; i < rows; ++i) {
      const L y = labels[i * label_stride];
      if (is_ignored(y, ignore)) continue;
      ++counted;
      for (std::size_t t = 0; t < spec.terms.size(); ++t) denominators[t] += class_weight(spec.terms[t], Index(y));
    }
    return {};
  }
  std::unique_ptr<std::int64_t[]> histogram(new (std::nothrow) std::int64_t[std::size_t(C)]());
  if (!histogram) return Status::error(message("cannot allocate the label histogram (", C, " classes)"));
  for (Index i = 0; i < rows; ++i) {
    const L y = labels[i * label_stride];
    if (!is_ignored(y, ignore)) ++histogram[std::size_t(y)];
  }
  for (Index c = 0; c < C; ++c) counted += histogram[std::size_t(c)];
  for (std::size_t t = 0; t < spec.terms.size(); ++t) {
    Accum d = 0;
    for (Index c = 0; c < C; ++c) d += Accum(histogram[std::size_t(c)]) * class_weight(spec.terms[t], c);
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

/// Names the first logit of a counted row in rows [begin, end) that is not finite or beyond
/// `limit` (an error Status); ok if there is none.
template <class T, class L>
Status find_bad_logit(const LossSpec<T>& spec, const T* x, const Layout& lx, const L* labels, Index label_stride,
                      T limit, Index begin, Index end) {
  const Index C = lx.classes;
  for (Index i = begin; i < end; ++i) {
    if (is_ignored(labels[i * label_stride], spec.ignore_index)) continue;
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

/// Checks every logit of the counted rows (see find_bad_logit). A buffer that is one contiguous
/// block is swept with SIMD first; only if that finds something (possibly in an ignored row,
/// which is allowed) are the rows examined one by one.
template <class T, class L>
Status check_logits(const LossSpec<T>& spec, const T* x, const Layout& lx, const L* labels,
                    Index label_stride, T limit) {
  const Index rows = lx.rows(), C = lx.classes;
  const bool contiguous_rows = lx.inner == 1 && lx.class_stride == 1 && lx.sample_stride == C;
  const bool contiguous_cols = lx.inner == 1 && lx.sample_stride == 1 && lx.class_stride == lx.samples;
  const bool contiguous_nchw = lx.inner_stride == 1 && lx.class_stride == lx.inner && lx.sample_stride == C * lx.inner;
  if ((contiguous_rows || contiguous_cols || contiguous_nchw) && all_within(x, rows * C, limit, spec.threads))
    return {};
  return find_bad_logit(spec, x, lx, labels, label_stride, limit, 0, rows);
}

/// A 64-byte aligned buffer, allocated without throwing (check ok()): an allocation failure
/// becomes an lmf Status like any other error, with or without exceptions.
template <class T>
class AlignedBuffer {
 public:
  explicit AlignedBuffer(Index n) {
    if (n <= 0) return;
    data_ = static_cast<T*>(::operator new(sizeof(T) * std::size_t(n), std::align_val_t(64), std::nothrow));
    ok_ = data_ != nullptr;
    if (ok_) std::fill(data_, data_ + n, T(0));
  }
  ~AlignedBuffer() {
    if (data_) ::operator delete(data_, std::align_val_t(64));
  }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  bool ok() const { return ok_; }
  T* data() const { return data_; }

 private:
  T* data_ = nullptr;
  bool ok_ = true;
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
  bool simd_ok = lx.classes >= 2;  // (C <= limits::max_classes: labels are exact in T)
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

/// What run_blocks reports: whether its buffers could be allocated (nothing was computed if
/// not), and the first block with a counted logit beyond k.limit (-1: none).
struct BlockRun {
  bool allocated = true;
  Index first_bad_block = -1;
};

/// Runs `kernel` over the rows in fixed blocks of block_rows(C) rows, on up to `threads` threads,
/// and adds the block sums in block order: the totals are bitwise the same for any thread count.
/// Every buffer is allocated before any row is evaluated. Once a block has found a bad logit,
/// the blocks after it are skipped (only the first bad one is reported).
template <class T, class L>
BlockRun run_blocks(const KernelArgs<T, L>& k, Kernel kernel, int threads, std::array<Accum, kMaxTerms>& sums) {
  sums.fill(0);
  BlockRun result;
  const Index rows = k.lx.rows(), C = k.lx.classes;
  const Index block = block_rows(C);
  const Index blocks = (rows + block - 1) / block;
  if (blocks == 0) return result;
  const Index scratch_size = kernel == Kernel::rows    ? k.n_terms * C
                             : kernel == Kernel::lanes ? (k.n_terms + 2) * C * simd::width<T>() * kLaneGroups
                                                       : 0;
  int team = 1;
#if defined(_OPENMP)
  const int max_threads = threads > 0 ? threads : omp_get_max_threads();
  if (rows * C >= kParallelMinLogits) team = int(std::min<Index>(max_threads, blocks));
#else
  (void)threads;
#endif
  // one slot of scratch per thread, rounded to 64 bytes
  const Index slot = (scratch_size + 63) / 64 * 64;
  AlignedBuffer<Accum> block_sums(blocks * kMaxTerms);
  AlignedBuffer<T> scratch(slot * team);
  if (!block_sums.ok() || !scratch.ok()) {
    result.allocated = false;
    return result;
  }
  std::atomic<Index> first_bad{blocks};
  auto run = [&](Index b, T* thread_scratch) {
    if (b > first_bad.load(std::memory_order_relaxed)) return;  // an earlier block is bad
    const Index begin = b * block, end = std::min(rows, begin + block);
    Accum* out = block_sums.data() + b * kMaxTerms;
    bool ok;
    switch (kernel) {
      case Kernel::rows: ok = rows_simd(k, begin, end, out, thread_scratch); break;
      case Kernel::lanes: ok = lanes_simd(k, begin, end, out, thread_scratch); break;
      default: ok = scalar_rows(k, begin, end, out); break;
    }
    if (!ok) {
      Index seen = first_bad.load(std::memory_order_relaxed);
      while (b < seen && !first_bad.compare_exchange_weak(seen, b, std::memory_order_relaxed)) {
      }
    }
  };
#if defined(_OPENMP)
  if (team > 1) {
#pragma omp parallel num_threads(team)
    {
      T* mine = scratch.data() + slot * omp_get_thread_num();
#pragma omp for schedule(static)
      for (Index b = 0; b < blocks; ++b) run(b, mine);
    }
  } else
#endif
  {
    for (Index b = 0; b < blocks; ++b) run(b, scratch.data());
  }
  if (first_bad.load() < blocks) {
    result.first_bad_block = first_bad.load();
    return result;
  }
  for (Index b = 0; b < blocks; ++b)
    for (int t = 0; t < k.n_terms; ++t) sums[t] += block_sums.data()[b * kMaxTerms + t];
  return result;
}

/// Evaluates `spec` on a batch with `reduction` (which overrides spec.reduction, so that per-row
/// calls need no copy of the spec). `value` receives the reduced loss (for reduction none: the
/// sum of the per-row values). Writes nothing and returns an error status if anything is invalid.
/// Address range [begin, end) of `span` elements of T at p, saturating instead of overflowing.
template <class T>
std::pair<std::uintptr_t, std::uintptr_t> byte_range(const T* p, Index span) {
  const std::uintptr_t begin = reinterpret_cast<std::uintptr_t>(p);
  const std::uintptr_t room = std::numeric_limits<std::uintptr_t>::max() - begin;
  const std::uintptr_t bytes = std::uintptr_t(span) > room / sizeof(T) ? room : std::uintptr_t(span) * sizeof(T);
  return {begin, begin + bytes};
}

template <class T>
bool ranges_overlap(const T* a, Index a_span, const T* b, Index b_span) {
  if (a == nullptr || b == nullptr || a_span == 0 || b_span == 0) return false;
  const auto ra = byte_range(a, a_span), rb = byte_range(b, b_span);
  return ra.first < rb.second && rb.first < ra.second;
}

/// Step 1: shapes, strides, limits and the output buffers (no two gradient entries, per-row
/// values or logits in the same place).
template <class T, class L>
Status check_buffers(const LossSpec<T>& spec, const T* x, const Layout& lx, const L* labels, Index label_stride,
                     const Outputs<T>& out) {
  if (Status s = check_layout(lx, "logits", limits::max_classes, limits::max_elements); !s) return s;
  if (spec.classes != 0 && lx.classes != spec.classes)
    return Status::error(message("logits have ", lx.classes, " classes but the loss has ", spec.classes));
  const Index rows = lx.rows();
  if (lx.classes < 1 && rows > 0) return Status::error(message("logits have 0 classes"));
  Index label_span = 0;
  if (label_stride < 0 || (rows > 1 && !mul_within(rows - 1, label_stride, limits::max_elements, label_span)))
    return Status::error(message("label stride ", label_stride, " is negative or reaches beyond ",
                                 limits::max_elements, " elements"));
  if (rows > 0 && (x == nullptr || labels == nullptr))
    return Status::error(message("null logits or labels pointer for a non-empty batch"));
  Index x_span = 0;
  layout_span(lx, limits::max_elements, x_span);
  Index g_span = 0;
  if (out.grad) {
    const Layout& lg = out.lg;
    if (Status s = check_layout(lg, "gradient", limits::max_classes, limits::max_elements); !s) return s;
    if (lg.samples != lx.samples || lg.classes != lx.classes || lg.inner != lx.inner)
      return Status::error(message("gradient is ", lg.samples, "x", lg.classes, " (inner ", lg.inner,
                                   ") but logits are ", lx.samples, "x", lx.classes, " (inner ", lx.inner, ")"));
    if ((lg.classes > 1 && lg.class_stride == 0) || (lg.samples > 1 && lg.sample_stride == 0) ||
        (lg.inner > 1 && lg.inner_stride == 0))
      return Status::error(message("gradient layout has a zero stride: its entries would overlap"));
    if (!non_overlapping(lg))
      return Status::error(message("gradient layout (strides ", lg.sample_stride, ", ", lg.class_stride, ", ",
                                   lg.inner_stride, " for sizes ", lg.samples, ", ", lg.classes, ", ", lg.inner,
                                   ") maps two entries to one element"));
    layout_span(lg, limits::max_elements, g_span);
    if (ranges_overlap(out.grad, g_span, x, x_span))
      return Status::error(message("the gradient buffer overlaps the logits (write the gradient to a separate buffer)"));
  }
  if (out.row_values && rows > 0) {
    Index v_span = 0;
    if (out.row_values_stride < 1 ||
        !mul_within(rows - 1, out.row_values_stride, limits::max_elements - 1, v_span))
      return Status::error(message("per-row values stride ", out.row_values_stride, " must be >= 1 (and within ",
                                   limits::max_elements, " elements)"));
    v_span += 1;
    if (ranges_overlap(out.row_values, v_span, x, x_span))
      return Status::error(message("the per-row values buffer overlaps the logits"));
    if (ranges_overlap(out.row_values, v_span, out.grad, g_span))
      return Status::error(message("the per-row values buffer overlaps the gradient"));
  }
  return {};
}

/// Evaluates `spec` on a batch with `reduction` (which overrides spec.reduction, so that per-row
/// calls need no copy of the spec). `value` receives the reduced loss (for reduction none: the
/// sum of the per-row values). Writes nothing and returns an error status if anything is invalid.
/// Never throws.
template <class T, class L>
Status evaluate(const LossSpec<T>& spec, Reduction reduction, const T* x, const Layout& lx, const L* labels,
                Index label_stride, const Outputs<T>& out, T& value) {
  // 1. shapes and buffers
  if (Status s = check_buffers(spec, x, lx, labels, label_stride, out); !s) return s;

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
  // zero gradient, where PyTorch returns 0/0 = NaN: see docs/api.md. The kernels' sums are then
  // already divided by it (TermParams::value_scale).
  for (int t = 0; t < n_terms; ++t) {
    const Term<T>& term = spec.terms[t];
    const Accum den = reduction == Reduction::mean ? denominators[t] : Accum(1);
    const Accum weight_scale = den > 0 && den < 0x1p-900 ? 0x1p1000 : Accum(1);  // see TermParams
    const Accum inv = den > 0 ? Accum(1) / (den * weight_scale) : Accum(0);
    params[t] = TermParams<T>{term.s,
                              term.gamma,
                              term.a.size() ? term.a.data() : nullptr,
                              term.m.size() ? term.m.data() : nullptr,
                              term.b.size() ? term.b.data() : nullptr,
                              term.w.size() ? term.w.data() : nullptr,
                              weight_scale,
                              inv,
                              Accum(term.weight) * inv,
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

  auto failed = [&](const BlockRun& run) -> Status {
    if (!run.allocated) return Status::error(message("cannot allocate the kernel's scratch buffers"));
    if (run.first_bad_block < 0) return {};
    // only reachable without outputs (writing paths checked in step 3): name the culprit
    const Index block = block_rows(lx.classes), begin = run.first_bad_block * block;
    Status s = find_bad_logit(spec, x, lx, labels, label_stride, limit, begin, std::min(lx.rows(), begin + block));
    return s ? Status::error(message("non-finite logits")) : s;
  };

  std::array<Accum, kMaxTerms> sums{};
  // 4. batch-mean focal terms need their mean cross entropy before any gradient is written
  bool any_batch = false;
  for (int t = 0; t < n_terms; ++t) any_batch |= params[t].batch_focus;
  if (any_batch && out.grad) {
    if (Status s = failed(run_blocks(k, choose_kernel(spec, lx, Outputs<T>{}), spec.threads, sums)); !s) return s;
    for (int t = 0; t < n_terms; ++t)
      if (params[t].batch_focus)
        params[t].batch_derivative = math::focus(static_cast<T>(sums[t]), spec.terms[t].gamma).derivative;
  }

  // 5. the fused pass
  k.grad = out.grad;
  k.lg = out.lg;
  k.row_values = out.row_values;
  k.row_values_stride = out.row_values_stride;
  if (Status s = failed(run_blocks(k, choose_kernel(spec, lx, out), spec.threads, sums)); !s) return s;

  Accum total = 0;
  for (int t = 0; t < n_terms; ++t) {
    Accum term_value = sums[t];
    if (params[t].batch_focus)
      term_value = static_cast<Accum>(math::focus(static_cast<T>(term_value), spec.terms[t].gamma).value);
    total += Accum(weights[t]) * term_value;
  }
  value = static_cast<T>(total);
  return {};
}

}  // namespace detail
}  // namespace lmf
