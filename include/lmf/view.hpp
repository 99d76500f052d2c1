// lmf/view.hpp — one description of "the batch": where row i, class c of the logits lives.
//
// Rows are samples (N x C) or pixels of a segmentation batch (N, C, d1, d2, ...): row
// i = n * inner + d has its class-c logit at  n * sample_stride + c * class_stride +
// d * inner_stride. Labels are one per row, in row order (the (N, d1, ...) label tensor of
// PyTorch, contiguous), at labels[i * label_stride].
#pragma once

#include <lmf/errors.hpp>

#include <cstdint>

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
  Index rows() const { return samples * inner; }
  /// Offset of (sample n, pixel d, class c).
  Index offset(Index n, Index d, Index c) const {
    return n * sample_stride + d * inner_stride + c * class_stride;
  }
  /// Offset of class 0 of row i = n * inner + d.
  Index row_offset(Index i) const {
    if (inner == 1) return i * sample_stride;
    return offset(i / inner, i % inner, 0);
  }

  /// Row-major N x C (PyTorch's (N, C) contiguous tensor).
  static Layout row_major(Index n, Index c) { return {n, c, 1, c, 1, 0}; }
  /// Column-major N x C (Eigen's default MatrixX).
  static Layout col_major(Index n, Index c) { return {n, c, 1, 1, n, 0}; }
  /// (N, C, d1, d2, ...) contiguous, `spatial` = d1 * d2 * ... (PyTorch segmentation logits).
  static Layout nchw(Index n, Index c, Index spatial) { return {n, c, spatial, c * spatial, spatial, 1}; }
};

namespace detail {

inline Status check_layout(const Layout& l, const char* what) {
  if (l.samples < 0 || l.classes < 0 || l.inner < 0)
    return Status::error(message(what, ": negative size (samples ", l.samples, ", classes ",
                                 l.classes, ", inner ", l.inner, ")"));
  if (l.sample_stride < 0 || l.class_stride < 0 || l.inner_stride < 0)
    return Status::error(message(what, ": negative stride"));
  return {};
}

}  // namespace detail
}  // namespace lmf
