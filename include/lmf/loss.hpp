// lmf/loss.hpp — lmf::Loss<T>, the generic loss (a LossSpec) with its Eigen and raw entry points.
// Every named loss (losses.hpp) is a Loss<T> built from a preset spec.
//
// Entry points, all validating everything before writing anything:
//   value(logits, labels)                        -> T
//   value_and_gradient(logits, labels, grad)     -> T, grad = dL/dlogits   (the fused core)
//   per_row(logits, labels, values)              values_i = sum_t weight_t * L_t,i
//   per_row_and_gradient(logits, labels, values, grad)   grad of sum_i values_i
// Eigen inputs: any dense N x C expression (row- or column-major, Map, Block; expressions without
// direct access are evaluated once); labels: any integer vector. Raw inputs: a pointer and a
// Layout (N x C with any strides, or (N, C, d1, ...)). try_* variants return lmf::Status.
#pragma once

#include <lmf/cpu/dispatch.hpp>
#include <lmf/plan.hpp>
#include <lmf/spec.hpp>
#include <lmf/view.hpp>

#include <Eigen/Core>

#include <exception>
#include <new>
#include <type_traits>
#include <utility>

namespace lmf {
namespace detail {

template <class D>
constexpr bool has_direct_access() {
  return (int(D::Flags) & Eigen::DirectAccessBit) != 0;
}

/// Layout of a directly accessible Eigen matrix (rows = samples, cols = classes).
template <class D>
Layout eigen_layout(const Eigen::MatrixBase<D>& m) {
  const Index inner = m.innerStride(), outer = m.outerStride();
  if (D::IsRowMajor) return Layout{m.rows(), m.cols(), 1, outer, inner, 0};
  return Layout{m.rows(), m.cols(), 1, inner, outer, 0};
}

/// Calls f(pointer, layout) on m, evaluating m into a temporary only if it has no direct access.
template <class D, class F>
decltype(auto) with_direct(const Eigen::MatrixBase<D>& m, F&& f) {
  if constexpr (has_direct_access<D>()) {
    return f(m.derived().data(), eigen_layout(m));
  } else {
    const typename D::PlainObject tmp = m;
    return f(tmp.data(), eigen_layout(tmp));
  }
}

/// Calls f(pointer, stride) on an integer label vector.
template <class D, class F>
decltype(auto) with_labels(const Eigen::MatrixBase<D>& labels, F&& f) {
  static_assert(std::is_integral<typename D::Scalar>::value,
                "lmf: labels must be an Eigen vector of integers (e.g. Eigen::VectorXi)");
  if constexpr (has_direct_access<D>()) {
    return f(labels.derived().data(), labels.innerStride());
  } else {
    const typename D::PlainObject tmp = labels;
    return f(tmp.data(), Index(1));
  }
}

/// Runs f() (which returns a Status) and turns an exception escaping it — std::bad_alloc from a
/// temporary copy of an Eigen expression, say — into an error Status: the try_* entry points
/// never throw. (The out-of-memory message fits the small-string buffer: making it allocates
/// nothing.)
template <class F>
Status never_throws(F&& f) noexcept {
#if LMF_NO_EXCEPTIONS
  return f();
#else
  try {
    return f();
  } catch (const std::bad_alloc&) {
    return Status::error("lmf: no memory");
  } catch (const std::exception& e) {
    try {
      return Status::error(message("unexpected error: ", e.what()));
    } catch (...) {
      return Status::error("lmf: failed");
    }
  } catch (...) {
    return Status::error("lmf: failed");
  }
#endif
}

template <class D>
void static_check_output() {
  static_assert(has_direct_access<D>() && (int(D::Flags) & Eigen::LvalueBit) != 0,
                "lmf: outputs must be writable Eigen objects with direct access "
                "(Matrix, Map, Block of them)");
}

}  // namespace detail

/// A loss: the weighted sum of terms of the one model (see spec.hpp and docs/math.md).
template <class T>
class Loss {
  static_assert(std::is_same<T, float>::value || std::is_same<T, double>::value,
                "lmf::Loss<T>: T must be float or double");

 public:
  using Scalar = T;

  /// Validates the spec; throws lmf::Error naming the offending option.
  explicit Loss(LossSpec<T> spec) : spec_(std::move(spec)), declared_classes_(spec_.classes) {
    detail::validate(spec_);
  }

  const LossSpec<T>& spec() const { return spec_; }
  /// Number of classes, or 0 if the loss accepts any.
  Index classes() const { return spec_.classes; }
  /// The number of classes as given to the constructor (0: inferred from the per-class vectors,
  /// and inferred again by set_class_weights).
  Index declared_classes() const { return declared_classes_; }
  Reduction reduction() const { return spec_.reduction; }
  std::int64_t ignore_index() const { return spec_.ignore_index; }

  /// Replaces the class weights of every term (e.g. each epoch, from DeferredReweighting).
  /// An empty vector makes the loss unweighted.
  template <class D>
  void set_class_weights(const Eigen::MatrixBase<D>& weights) {
    LossSpec<T> next = spec_;
    next.classes = declared_classes_;  // re-inferred: an empty vector accepts any C again
    for (Term<T>& t : next.terms) t.w = weights.template cast<T>();
    detail::validate(next);
    spec_ = std::move(next);
  }

  /// Forces a CPU kernel (default Kernel::automatic; see lmf::Kernel).
  void set_kernel(Kernel kernel) {
    LMF_CHECK_ARG(static_cast<int>(kernel) >= 0 && static_cast<int>(kernel) <= 3, "unknown kernel (enum value ",
                  static_cast<int>(kernel), ")");
    spec_.kernel = kernel;
  }
  /// Threads for large batches (OpenMP builds): 0 = OpenMP's default, 1 = single-threaded.
  /// Results are bitwise identical for every thread count.
  void set_threads(int threads) {
    LMF_CHECK_ARG(threads >= 0, "threads is ", threads, " (must be >= 0)");
    spec_.threads = threads;
  }

  // ---- Eigen entry points -------------------------------------------------------------------

  /// The reduced loss. Reduction none: an error (use per_row).
  template <class DX, class DY>
  T value(const Eigen::MatrixBase<DX>& logits, const Eigen::MatrixBase<DY>& labels) const {
    T v{};
    detail::raise_if(try_value(logits, labels, v));
    return v;
  }

  /// The reduced loss and, in `grad` (same shape as logits, any storage order), its gradient
  /// with respect to the logits, in one fused pass. In place: `grad` may be `logits` itself (same
  /// object: same pointer and layout); the result is bitwise that of a separate buffer.
  template <class DX, class DY, class DG>
  T value_and_gradient(const Eigen::MatrixBase<DX>& logits, const Eigen::MatrixBase<DY>& labels,
                       const Eigen::MatrixBase<DG>& grad) const {
    T v{};
    detail::raise_if(try_value_and_gradient(logits, labels, grad, v));
    return v;
  }

  // ---- data parallel: totals, and the calls that take them (docs/guide.md) -------------------

  /// This shard's part of what the reduction divides by (see plan.hpp): sum the totals of every
  /// shard (all-reduce data()/size()), then pass the sum to value or value_and_gradient. Validates
  /// labels (and, for the seed-code preset, logits).
  template <class DX, class DY>
  Totals totals(const Eigen::MatrixBase<DX>& logits, const Eigen::MatrixBase<DY>& labels) const {
    Totals t;
    detail::raise_if(try_totals(logits, labels, t));
    return t;
  }

  /// This shard's part of the loss: with `totals` summed over every shard, the shards' values add
  /// up to the whole batch's value.
  template <class DX, class DY>
  T value(const Eigen::MatrixBase<DX>& logits, const Eigen::MatrixBase<DY>& labels, const Totals& totals) const {
    T v{};
    detail::raise_if(try_value(logits, labels, totals, v));
    return v;
  }

  /// This shard's part of the loss and its rows of the whole batch's gradient, times grad_scale
  /// (autograd's grad_output; the value is not scaled), in the same single pass.
  template <class DX, class DY, class DG>
  T value_and_gradient(const Eigen::MatrixBase<DX>& logits, const Eigen::MatrixBase<DY>& labels,
                       const Eigen::MatrixBase<DG>& grad, const Totals& totals, T grad_scale = T(1)) const {
    T v{};
    detail::raise_if(try_value_and_gradient(logits, labels, grad, totals, grad_scale, v));
    return v;
  }

  /// Per-row values (the reduction none of PyTorch), whatever this loss's reduction is.
  template <class DX, class DY, class DV>
  void per_row(const Eigen::MatrixBase<DX>& logits, const Eigen::MatrixBase<DY>& labels,
               const Eigen::MatrixBase<DV>& values) const {
    detail::raise_if(try_per_row(logits, labels, values));
  }

  /// Per-row values and the gradient of their sum.
  template <class DX, class DY, class DV, class DG>
  void per_row_and_gradient(const Eigen::MatrixBase<DX>& logits, const Eigen::MatrixBase<DY>& labels,
                            const Eigen::MatrixBase<DV>& values, const Eigen::MatrixBase<DG>& grad) const {
    detail::raise_if(try_per_row_and_gradient(logits, labels, values, grad));
  }

  // ---- raw entry points: logits and gradient share `layout`; one label per row -------------

  template <class L>
  T value(const T* logits, const Layout& layout, const L* labels) const {
    static_assert(std::is_integral<L>::value, "lmf: labels must be integers (int32_t, int64_t, ...)");
    T v{};
    detail::raise_if(try_value(logits, layout, labels, v));
    return v;
  }
  template <class L>
  T value_and_gradient(const T* logits, const Layout& layout, const L* labels, T* grad) const {
    static_assert(std::is_integral<L>::value, "lmf: labels must be integers (int32_t, int64_t, ...)");
    T v{};
    detail::raise_if(try_value_and_gradient(logits, layout, labels, grad, v));
    return v;
  }
  /// grad may be `logits` (in place: same pointer, same layout).
  template <class L>
  T value_and_gradient(const T* logits, const Layout& layout, const L* labels, T* grad, const Totals& totals,
                       T grad_scale = T(1)) const {
    static_assert(std::is_integral<L>::value, "lmf: labels must be integers (int32_t, int64_t, ...)");
    T v{};
    detail::raise_if(try_value_and_gradient(logits, layout, labels, grad, totals, grad_scale, v));
    return v;
  }
  template <class L>
  T value(const T* logits, const Layout& layout, const L* labels, const Totals& totals) const {
    static_assert(std::is_integral<L>::value, "lmf: labels must be integers (int32_t, int64_t, ...)");
    T v{};
    detail::raise_if(try_value(logits, layout, labels, totals, v));
    return v;
  }
  template <class L>
  Totals totals(const T* logits, const Layout& layout, const L* labels) const {
    static_assert(std::is_integral<L>::value, "lmf: labels must be integers (int32_t, int64_t, ...)");
    Totals t;
    detail::raise_if(try_totals(logits, layout, labels, t));
    return t;
  }
  /// values: layout.rows() contiguous entries, row i = n * inner + d. grad may be null.
  template <class L>
  void per_row(const T* logits, const Layout& layout, const L* labels, T* values, T* grad = nullptr) const {
    static_assert(std::is_integral<L>::value, "lmf: labels must be integers (int32_t, int64_t, ...)");
    detail::raise_if(try_per_row(logits, layout, labels, values, grad));
  }

  // ---- non-throwing variants ---------------------------------------------------------------

  template <class DX, class DY>
  Status try_value(const Eigen::MatrixBase<DX>& logits, const Eigen::MatrixBase<DY>& labels, T& out) const {
    return eigen_call(logits, labels, [&](const T* x, const Layout& lx, auto* y, Index ys) {
      return reduced(x, lx, y, ys, detail::Outputs<T>{}, out);
    });
  }

  template <class DX, class DY>
  Status try_value(const Eigen::MatrixBase<DX>& logits, const Eigen::MatrixBase<DY>& labels, const Totals& totals,
                   T& out) const {
    return eigen_call(logits, labels, [&](const T* x, const Layout& lx, auto* y, Index ys) {
      return reduced(x, lx, y, ys, detail::Outputs<T>{}, out, detail::CallOptions<T>{&totals, T(1)});
    });
  }

  template <class DX, class DY>
  Status try_totals(const Eigen::MatrixBase<DX>& logits, const Eigen::MatrixBase<DY>& labels, Totals& out) const {
    return eigen_call(logits, labels, [&](const T* x, const Layout& lx, auto* y, Index ys) {
      return detail::never_throws([&] { return detail::compute_totals(spec_, x, lx, y, ys, out); });
    });
  }

  template <class DX, class DY, class DG>
  Status try_value_and_gradient(const Eigen::MatrixBase<DX>& logits, const Eigen::MatrixBase<DY>& labels,
                                const Eigen::MatrixBase<DG>& grad, T& out) const {
    return eigen_gradient(logits, labels, grad, detail::CallOptions<T>{}, out);
  }

  template <class DX, class DY, class DG>
  Status try_value_and_gradient(const Eigen::MatrixBase<DX>& logits, const Eigen::MatrixBase<DY>& labels,
                                const Eigen::MatrixBase<DG>& grad, const Totals& totals, T grad_scale, T& out) const {
    return eigen_gradient(logits, labels, grad, detail::CallOptions<T>{&totals, grad_scale}, out);
  }

 private:
  template <class DX, class DY, class DG>
  Status eigen_gradient(const Eigen::MatrixBase<DX>& logits, const Eigen::MatrixBase<DY>& labels,
                        const Eigen::MatrixBase<DG>& grad, const detail::CallOptions<T>& options, T& out) const {
    detail::static_check_output<DG>();
    auto& g = const_cast<Eigen::MatrixBase<DG>&>(grad);
    return eigen_call(logits, labels, [&](const T* x, const Layout& lx, auto* y, Index ys) {
      detail::Outputs<T> o;
      o.grad = g.derived().data();
      o.lg = detail::eigen_layout(g);
      return reduced(x, lx, y, ys, o, out, options);
    });
  }

 public:
  template <class DX, class DY, class DV>
  Status try_per_row(const Eigen::MatrixBase<DX>& logits, const Eigen::MatrixBase<DY>& labels,
                     const Eigen::MatrixBase<DV>& values) const {
    return per_row_impl(logits, labels, values, static_cast<const Eigen::MatrixBase<DV>*>(nullptr));
  }

  template <class DX, class DY, class DV, class DG>
  Status try_per_row_and_gradient(const Eigen::MatrixBase<DX>& logits, const Eigen::MatrixBase<DY>& labels,
                                  const Eigen::MatrixBase<DV>& values, const Eigen::MatrixBase<DG>& grad) const {
    return per_row_impl(logits, labels, values, &grad);
  }

  template <class L>
  Status try_value(const T* logits, const Layout& layout, const L* labels, T& out) const {
    static_assert(std::is_integral<L>::value, "lmf: labels must be integers (int32_t, int64_t, ...)");
    return reduced(logits, layout, labels, 1, detail::Outputs<T>{}, out);
  }
  template <class L>
  Status try_value_and_gradient(const T* logits, const Layout& layout, const L* labels, T* grad, T& out) const {
    return try_raw_gradient(logits, layout, labels, grad, detail::CallOptions<T>{}, out);
  }
  template <class L>
  Status try_value_and_gradient(const T* logits, const Layout& layout, const L* labels, T* grad, const Totals& totals,
                                T grad_scale, T& out) const {
    return try_raw_gradient(logits, layout, labels, grad, detail::CallOptions<T>{&totals, grad_scale}, out);
  }
  template <class L>
  Status try_value(const T* logits, const Layout& layout, const L* labels, const Totals& totals, T& out) const {
    static_assert(std::is_integral<L>::value, "lmf: labels must be integers (int32_t, int64_t, ...)");
    return reduced(logits, layout, labels, 1, detail::Outputs<T>{}, out, detail::CallOptions<T>{&totals, T(1)});
  }
  template <class L>
  Status try_totals(const T* logits, const Layout& layout, const L* labels, Totals& out) const {
    static_assert(std::is_integral<L>::value, "lmf: labels must be integers (int32_t, int64_t, ...)");
    return detail::never_throws([&] { return detail::compute_totals(spec_, logits, layout, labels, Index(1), out); });
  }
  template <class L>
  Status try_per_row(const T* logits, const Layout& layout, const L* labels, T* values, T* grad) const {
    static_assert(std::is_integral<L>::value, "lmf: labels must be integers (int32_t, int64_t, ...)");
    detail::Outputs<T> o;
    o.row_values = values;
    o.grad = grad;
    o.lg = layout;
    if (values == nullptr && layout.samples > 0 && layout.inner > 0)  // (layout not validated yet: no rows())
      return detail::never_throws([] { return Status::error(detail::message("null per-row values pointer")); });
    return unreduced(logits, layout, labels, 1, o);
  }

 private:
  template <class DX, class DY, class F>
  Status eigen_call(const Eigen::MatrixBase<DX>& logits, const Eigen::MatrixBase<DY>& labels, F&& f) const {
    static_assert(std::is_same<typename DX::Scalar, T>::value,
                  "lmf: the logits' scalar type must be the loss's T (float or double)");
    return detail::never_throws([&] {
      return detail::with_direct(logits, [&](const T* x, const Layout& lx) {
        if (labels.size() != lx.rows() || (labels.rows() != 1 && labels.cols() != 1))
          return Status::error(detail::message("labels have ", labels.rows(), "x", labels.cols(),
                                               " entries but logits have ", lx.rows(),
                                               " rows (one label per row is needed)"));
        return detail::with_labels(labels, [&](auto* y, Index ys) { return f(x, lx, y, ys); });
      });
    });
  }

  template <class DX, class DY, class DV, class DG>
  Status per_row_impl(const Eigen::MatrixBase<DX>& logits, const Eigen::MatrixBase<DY>& labels,
                      const Eigen::MatrixBase<DV>& values, const Eigen::MatrixBase<DG>* grad) const {
    detail::static_check_output<DV>();
    auto& v = const_cast<Eigen::MatrixBase<DV>&>(values);
    return eigen_call(logits, labels, [&](const T* x, const Layout& lx, auto* y, Index ys) {
      if (v.size() != lx.rows() || (v.rows() != 1 && v.cols() != 1))
        return Status::error(detail::message("per-row values have ", v.rows(), "x", v.cols(),
                                             " entries but logits have ", lx.rows(), " rows"));
      detail::Outputs<T> o;
      o.row_values = v.derived().data();
      o.row_values_stride = v.innerStride();
      if (grad) {
        detail::static_check_output<DG>();
        auto& g = const_cast<Eigen::MatrixBase<DG>&>(*grad);
        o.grad = g.derived().data();
        o.lg = detail::eigen_layout(g);
      }
      return unreduced(x, lx, y, ys, o);
    });
  }

  template <class L>
  Status try_raw_gradient(const T* logits, const Layout& layout, const L* labels, T* grad,
                          const detail::CallOptions<T>& options, T& out) const {
    static_assert(std::is_integral<L>::value, "lmf: labels must be integers (int32_t, int64_t, ...)");
    detail::Outputs<T> o;
    o.grad = grad;
    o.lg = layout;
    // (no layout.rows() here: the layout is not validated yet, the product could overflow)
    if (grad == nullptr && layout.samples > 0 && layout.inner > 0 && layout.classes > 0)
      return detail::never_throws([] { return Status::error(detail::message("null gradient pointer")); });
    return reduced(logits, layout, labels, 1, o, out, options);
  }

  template <class L>
  Status reduced(const T* x, const Layout& lx, const L* y, Index ys, const detail::Outputs<T>& o, T& out,
                 const detail::CallOptions<T>& options = {}) const {
    if (spec_.reduction == Reduction::none)
      return detail::never_throws([] {
        return Status::error(detail::message(
            "this loss has reduction none: call per_row or per_row_and_gradient for per-row values"));
      });
    T v{};
    Status s = detail::never_throws([&] { return detail::evaluate(spec_, spec_.reduction, x, lx, y, ys, o, options, v); });
    if (s) out = v;
    return s;
  }

  template <class L>
  Status unreduced(const T* x, const Layout& lx, const L* y, Index ys, const detail::Outputs<T>& o) const {
    for (const Term<T>& t : spec_.terms)
      if (t.focus_on == FocusOn::batch_mean)
        return detail::never_throws([] {
          return Status::error(detail::message(
              "per-row values are undefined for a loss whose focal term acts on the batch mean "
              "(seed-code preset); use value or value_and_gradient"));
        });
    T ignored{};
    return detail::never_throws(
        [&] { return detail::evaluate(spec_, Reduction::none, x, lx, y, ys, o, detail::CallOptions<T>{}, ignored); });
  }

  LossSpec<T> spec_;
  Index declared_classes_;  ///< spec.classes as given (0: inferred from the per-class vectors)
};

}  // namespace lmf
