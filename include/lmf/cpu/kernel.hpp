// lmf/cpu/kernel.hpp — what every CPU kernel receives and returns: the terms as plain numbers
// (the plan's scales, no reductions or presets), where the rows are, and the outputs. The
// kernels (scalar.hpp, rows_simd.hpp, lanes_simd.hpp) add per-term sums over a range of rows;
// the scalar kernel's per-row epilogue is plan.hpp's term_row (shared with the CUDA kernels), the
// SIMD kernels' the same formulas on vectors (epilogue_simd.hpp).
#pragma once

#include <lmf/math/row.hpp>
#include <lmf/plan.hpp>
#include <lmf/view.hpp>

#include <cmath>
#include <cstdint>

namespace lmf {
namespace detail {

/// Where the rows of a batch are, and what the kernel must produce for them.
template <class T, class L>
struct KernelArgs {
  const T* x = nullptr;
  Layout lx;
  const L* labels = nullptr;
  Index label_stride = 1;
  std::int64_t ignore_index = -100;
  T* grad = nullptr;        ///< null: no gradient
  Layout lg;                ///< gradient layout (same shape as lx)
  T* row_values = nullptr;  ///< null: no per-row output; else sum_t weight_t * value_t,i
  Index row_values_stride = 1;
  const TermParams<T>* terms = nullptr;
  const T* term_weights = nullptr;  ///< weight_t, for row_values
  int n_terms = 0;
  T limit = T(0);  ///< largest |x| the kernel accepts (see validate.hpp: logit_limit)
  /// rows kernel: X_i = max over c != y_i of x_ic at [2 i] and x_{i y_i} at [2 i + 1] for every
  /// counted row i, found by the validation pass (row_maxima); null: the kernel sweeps each row
  /// for them (and checks its logits)
  const T* row_max = nullptr;
  /// true: validation has checked every counted row's logits against `limit` before this call
  /// (dispatch.hpp, step 4, whenever outputs are written); the lanes kernel then skips its check
  bool logits_checked = false;
};

/// The loss's parameters as the kernel sees them (the reduction already turned into scales).
template <class T>
struct SigmoidParams {
  T alpha;            ///< < 0: no alpha
  T gamma;
  const T* w;         ///< per-class weights, null: 1
  Accum value_scale;  ///< 1 / (N C d) for mean, else 1
  T grad_scale;       ///< value_scale * the caller's grad_scale, in T
};

}  // namespace detail
}  // namespace lmf
