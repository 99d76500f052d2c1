// lmf/view.hpp — one description of "the batch": where row i, class c of the logits lives.
//
// Rows are samples (N x C) or pixels of a segmentation batch (N, C, d1, d2, ...): row
// i = n * inner + d has its class-c logit at  n * sample_stride + c * class_stride +
// d * inner_stride. Labels are one per row, in row order (the (N, d1, ...) label tensor of
// PyTorch, contiguous), at labels[i * label_stride].
#pragma once

#include <lmf/errors.hpp>

#include <cstdint>
#include <limits>
#include <utility>

namespace lmf {

/// Shape and strides (in elements) of a logits buffer; see the header comment.
struct Layout {
  Index samples = 0;        ///< N
  Index classes = 0;        ///< C
  Index inner = 1;          ///< d1 * d2 * ... (1 for N x C)
  Index sample_stride = 0;  ///< elements between sample n and n + 1
  Index class_stride = 1;   ///< elements between class c and c + 1
  Index inner_stride = 0;   ///< elements between pixel d and d + 1 (unused when inner == 1)

  /// Rows: samples * inner.
  LMF_HOST_DEVICE Index rows() const { return samples * inner; }
  /// Offset of (sample n, pixel d, class c).
  LMF_HOST_DEVICE Index offset(Index n, Index d, Index c) const {
    return n * sample_stride + d * inner_stride + c * class_stride;
  }
  /// Offset of class 0 of row i = n * inner + d.
  LMF_HOST_DEVICE Index row_offset(Index i) const {
    if (inner == 1) return i * sample_stride;
    return offset(i / inner, i % inner, 0);
  }

  /// Row-major N x C (PyTorch's (N, C) contiguous tensor).
  static Layout row_major(Index n, Index c) { return {n, c, 1, c, 1, 0}; }
  /// Column-major N x C (Eigen's default MatrixX).
  static Layout col_major(Index n, Index c) { return {n, c, 1, 1, n, 0}; }
  /// (N, C, d1, d2, ...) contiguous, `spatial` = d1 * d2 * ... (PyTorch segmentation logits).
  /// Sizes whose product overflows give a stride every entry point rejects (never UB here).
  static Layout nchw(Index n, Index c, Index spatial) { return {n, c, spatial, saturating_mul(c, spatial), spatial, 1}; }

  /// a * b for a, b >= 0, or the largest Index if that overflows.
  static Index saturating_mul(Index a, Index b) {
    if (a < 0 || b < 0) return -1;  // a negative size: rejected as such
    if (a != 0 && b > std::numeric_limits<Index>::max() / a) return std::numeric_limits<Index>::max();
    return a * b;
  }
};

namespace detail {

/// a * b for non-negative a, b; false if the product exceeds limit.
inline bool mul_within(Index a, Index b, Index limit, Index& out) {
  if (a != 0 && b > limit / a) return false;
  out = a * b;
  return out <= limit;
}

/// Elements from the first to the last one the layout reaches, plus one (0 for an empty layout).
/// Strides and sizes must be non-negative; false if it exceeds limit (nothing then overflows).
inline bool layout_span(const Layout& l, Index limit, Index& span) {
  span = 0;
  if (l.samples == 0 || l.classes == 0 || l.inner == 0) return true;
  const Index sizes[3] = {l.samples, l.classes, l.inner};
  const Index strides[3] = {l.sample_stride, l.class_stride, l.inner_stride};
  Index last = 0;
  for (int k = 0; k < 3; ++k) {
    Index part = 0;
    if (!mul_within(sizes[k] - 1, strides[k], limit, part) || part > limit - last) return false;
    last += part;
  }
  if (last >= limit) return false;
  span = last + 1;
  return true;
}

/// True if no two (sample, class, pixel) positions of the layout share an element: with the
/// dimensions of size > 1 sorted by stride, each stride exceeds the span of the smaller ones.
/// (Sufficient, and true of every dense or blocked layout; an interleaving that happens not to
/// collide is rejected too.) Call after layout_span succeeded.
inline bool non_overlapping(const Layout& l) {
  Index dims[3][2] = {{l.samples, l.sample_stride}, {l.classes, l.class_stride}, {l.inner, l.inner_stride}};
  // sort the three (size, stride) pairs by stride
  for (int i = 0; i < 3; ++i)
    for (int j = i + 1; j < 3; ++j)
      if (dims[j][1] < dims[i][1]) std::swap(dims[i], dims[j]);
  Index reach = 0;  // span - 1 of the dimensions so far
  for (const auto& d : dims) {
    if (d[0] <= 1) continue;
    if (d[1] <= reach) return false;
    reach += (d[0] - 1) * d[1];
  }
  return true;
}

/// Checks sizes and strides: non-negative, at most limits-worth of classes, and every offset and
/// element count representable (see lmf::limits; the bounds are passed in to keep this header
/// free of spec.hpp).
inline Status check_layout(const Layout& l, const char* what, Index max_classes, Index max_elements) {
  if (l.samples < 0 || l.classes < 0 || l.inner < 0)
    return Status::error(message(what, ": negative size (samples ", l.samples, ", classes ",
                                 l.classes, ", inner ", l.inner, ")"));
  if (l.sample_stride < 0 || l.class_stride < 0 || l.inner_stride < 0)
    return Status::error(message(what, ": negative stride"));
  if (l.classes > max_classes)
    return Status::error(message(what, " have ", l.classes, " classes (at most ", max_classes, ")"));
  Index rows = 0, elements = 0, span = 0;
  if (!mul_within(l.samples, l.inner, max_elements, rows) || !mul_within(rows, l.classes, max_elements, elements) ||
      !layout_span(l, max_elements, span))
    return Status::error(message(what, ": ", l.samples, " x ", l.classes, " x ", l.inner, " with strides ",
                                 l.sample_stride, ", ", l.class_stride, ", ", l.inner_stride,
                                 " reaches beyond ", max_elements, " elements"));
  return {};
}

}  // namespace detail
}  // namespace lmf
