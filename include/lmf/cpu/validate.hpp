// lmf/cpu/validate.hpp — the CPU passes that check a batch before anything is written: buffers
// (shapes, strides, limits, overlaps), labels (and each term's denominator, from a histogram of
// the counted labels), and logits (finite, within the overflow limit, on counted rows).
#pragma once

#include <lmf/cpu/kernel.hpp>
#include <lmf/cpu/isa_kernels.hpp>
#include <lmf/plan.hpp>
#include <lmf/spec.hpp>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>

namespace lmf {
namespace detail {

/// Batches with fewer logits than this run on one thread (LMF_PARALLEL_MIN_LOGITS, default 2^18 =
/// 262144: 0.5-3 ms of work on one core). Below it a team costs more than it saves, and on a busy
/// machine a pool thread that waits for a time slice holds the whole call at the team's closing
/// barrier: a 0.14 ms call took 16-20 ms with a team of two (issue 7), so mid-size batches stay on
/// the calling thread.
#ifndef LMF_PARALLEL_MIN_LOGITS
#define LMF_PARALLEL_MIN_LOGITS (1 << 18)
#endif
constexpr Index kParallelMinLogits = Index(LMF_PARALLEL_MIN_LOGITS);

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

/// Validates every label and computes each term's mean denominator (the first entries of the
/// loss's Totals; the others are left 0): from a histogram of the
/// counted labels when there are at least as many rows as classes (an integer pass; the weights
/// are applied per class), else row by row. Never throws: an allocation failure is a Status.
template <class T, class L>
Status check_labels(const LossSpec<T>& spec, const Layout& lx, const L* labels, Index label_stride,
                    Totals& denominators, Index& counted) {
  const Index C = lx.classes;
  for (std::size_t t = 0; t < denominators.size(); ++t) denominators[t] = 0;
  counted = 0;
  const Index rows = lx.rows();
  const std::int64_t ignore = spec.ignore_index;
  auto bad_label = [&](Index i) {
    const L y = labels[i * label_stride];
    return Status::error(message("label ", +y, " at row ", i, " is outside [0, ", C, ") (and is not ignore_index ",
                                 ignore, ")"));
  };
  auto class_weight = [&](const Term<T>& term, Index c) {
    const bool by_rows = term.mean_over != MeanOver::target_weights || term.w.size() == 0;
    return by_rows ? Accum(1) : static_cast<Accum>(term.w(c));
  };
  // MeanOver::all_rows: every row, ignored ones included
  auto all_rows = [&] {
    for (std::size_t t = 0; t < spec.terms.size(); ++t)
      if (spec.terms[t].mean_over == MeanOver::all_rows) denominators[t] = Accum(rows);
  };
  if (rows < C) {
    for (Index i = 0; i < rows; ++i) {
      const L y = labels[i * label_stride];
      if (!in_range(y, C) && !is_ignored(y, ignore)) return bad_label(i);
    }
    for (Index i = 0; i < rows; ++i) {
      const L y = labels[i * label_stride];
      if (is_ignored(y, ignore)) continue;
      ++counted;
      for (std::size_t t = 0; t < spec.terms.size(); ++t) denominators[t] += class_weight(spec.terms[t], Index(y));
    }
    all_rows();
    return {};
  }
  // One pass: check each label and count it, into 4 interleaved histograms (row i into copy
  // i % 4), so that consecutive rows of the same class do not wait on each other's increment
  // (with C = 2 one counter would serialise every row). Slot C of each copy takes ignored rows.
  // A bad label stops the pass: nothing but this scratch has been written.
  constexpr Index kCopies = 4;
  const Index stride = C + 1;
  std::unique_ptr<std::int64_t[]> histogram(new (std::nothrow) std::int64_t[std::size_t(kCopies * stride)]());
  if (!histogram) return Status::error(message("cannot allocate the label histogram (", C, " classes)"));
  std::int64_t* h = histogram.get();
  auto slot = [&](Index i) -> Index {  // the class, C for ignored rows, -1 for a bad label
    const L y = labels[i * label_stride];
    if (is_ignored(y, ignore)) return C;  // (ignore_index may lie in [0, C): it wins)
    return in_range(y, C) ? Index(y) : Index(-1);
  };
  Index i = 0;
  for (; i + kCopies <= rows; i += kCopies) {
    const Index s0 = slot(i), s1 = slot(i + 1), s2 = slot(i + 2), s3 = slot(i + 3);
    if ((s0 | s1 | s2 | s3) < 0) break;  // the rows from i on are rescanned one by one
    ++h[s0];
    ++h[stride + s1];
    ++h[2 * stride + s2];
    ++h[3 * stride + s3];
  }
  for (; i < rows; ++i) {
    const Index si = slot(i);
    if (si < 0) return bad_label(i);
    ++h[si];
  }
  for (Index c = 0; c < C; ++c) {
    for (Index k = 1; k < kCopies; ++k) h[c] += h[k * stride + c];
    counted += h[c];
  }
  for (std::size_t t = 0; t < spec.terms.size(); ++t) {
    Accum d = 0;
    for (Index c = 0; c < C; ++c) d += Accum(h[c]) * class_weight(spec.terms[t], c);
    denominators[t] = d;
  }
  all_rows();
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
  for (Index b = 0; b < chunks; ++b) ok = ok && isa_all_within(x + b * chunk, std::min(chunk, n - b * chunk), limit);
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

/// Address range [begin, end) of `span` elements of T at p, saturating instead of overflowing.
template <class T>
std::pair<std::uintptr_t, std::uintptr_t> byte_range(const T* p, Index span) {
  const std::uintptr_t begin = reinterpret_cast<std::uintptr_t>(p);
  const std::uintptr_t room = std::numeric_limits<std::uintptr_t>::max() - begin;
  const std::uintptr_t bytes = std::uintptr_t(span) > room / sizeof(T) ? room : std::uintptr_t(span) * sizeof(T);
  return {begin, begin + bytes};
}

inline bool same_layout(const Layout& a, const Layout& b) {
  return a.samples == b.samples && a.classes == b.classes && a.inner == b.inner && a.sample_stride == b.sample_stride &&
         a.class_stride == b.class_stride && (a.inner == 1 || a.inner_stride == b.inner_stride);
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
    const bool in_place = out.grad == x && same_layout(lg, lx);  // exact alias: allowed
    if (!in_place && ranges_overlap(out.grad, g_span, x, x_span))
      return Status::error(message("the gradient buffer overlaps the logits without being them (in place, the "
                                   "gradient must have the logits' pointer and layout)"));
  }
  // nothing written may land on the labels (a label overwritten mid-call could be read out of range)
  const auto labels_at = rows > 0 && labels ? byte_range(labels, label_span + 1)
                                            : std::pair<std::uintptr_t, std::uintptr_t>{0, 0};
  auto hits_labels = [&](const T* p, Index span) {
    if (p == nullptr || span == 0 || labels_at.first == labels_at.second) return false;
    const auto r = byte_range(p, span);
    return r.first < labels_at.second && labels_at.first < r.second;
  };
  if (hits_labels(out.grad, g_span))
    return Status::error(message("the gradient buffer overlaps the labels"));
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
    if (hits_labels(out.row_values, v_span))
      return Status::error(message("the per-row values buffer overlaps the labels"));
  }
  return {};
}

}  // namespace detail
}  // namespace lmf
