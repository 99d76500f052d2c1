// lmf/sigmoid_focal.hpp — lmf::SigmoidFocalLoss<T>, the multi-label (binary per class) focal loss
// with torchvision's sigmoid_focal_loss semantics (Lin et al. 2017; torchvision.ops), its analytic
// gradient in the same pass, finite where torchvision's is NaN (gamma < 1, saturated logits).
//
//   lmf::SigmoidFocalLoss<float> loss;                       // alpha 0.25, gamma 2, mean over N*C
//   float L = loss.value_and_gradient(logits, targets, grad);  // targets: N x C, entries in [0, 1]
//
// Per element: L = w_c a_t (1 - p_t)^gamma BCE(x, t) (math/sigmoid.hpp); mean divides by the
// number of elements N * C (* d1 * ...), as torchvision's loss.mean(), with or without weights.
#pragma once

#include <lmf/class_stats.hpp>
#include <lmf/cpu/sigmoid.hpp>
#include <lmf/loss.hpp>
#include <lmf/spec.hpp>

#include <Eigen/Core>

#include <type_traits>

namespace lmf {

template <class T>
struct SigmoidFocalOptions {
  T alpha = T(0.25);  ///< weight of the positives, a_t = alpha t + (1 - alpha)(1 - t); < 0: none
  T gamma = T(2);     ///< focusing parameter, in [0, 20]
  /// mean (over all N * C elements, torchvision's loss.mean()), sum or none (per element: use
  /// per_element). torchvision's default is none; lmf's, like every lmf loss's, is mean.
  Reduction reduction = Reduction::mean;
  Vector<T> class_weights;  ///< w_c per class (column), e.g. class_balanced_weights; empty = 1
};

/// Sigmoid focal loss for multi-label classification (one scan, several findings).
template <class T>
class SigmoidFocalLoss {
  static_assert(std::is_same<T, float>::value || std::is_same<T, double>::value,
                "lmf::SigmoidFocalLoss<T>: T must be float or double");

 public:
  using Scalar = T;
  using Options = SigmoidFocalOptions<T>;

  explicit SigmoidFocalLoss(const Options& o = Options()) : o_(o) {
    LMF_CHECK_ARG(std::isfinite(o.alpha) && o.alpha <= T(1), "SigmoidFocalLoss: alpha is ", o.alpha,
                  " (must be <= 1; negative: no alpha)");
    detail::check_gamma(o.gamma, "SigmoidFocalLoss: ");
    const int r = static_cast<int>(o.reduction);
    LMF_CHECK_ARG(r >= 0 && r <= 2, "SigmoidFocalLoss: unknown reduction (enum value ", r, ")");
    Index classes = 0;
    detail::check_class_vector(o.class_weights, classes, "class weight", "SigmoidFocalLoss: ", true);
    classes_ = classes;
  }

  const Options& options() const { return o_; }
  Index classes() const { return classes_; }
  Reduction reduction() const { return o_.reduction; }
  /// Threads for large batches (OpenMP builds): 0 = OpenMP's default, 1 = single-threaded.
  void set_threads(int threads) {
    LMF_CHECK_ARG(threads >= 0, "threads is ", threads, " (must be >= 0)");
    threads_ = threads;
  }
  /// Forces the scalar reference path (Kernel::scalar) or lets the SIMD lines run (automatic).
  void set_kernel(Kernel kernel) {
    LMF_CHECK_ARG(kernel == Kernel::automatic || kernel == Kernel::scalar,
                  "SigmoidFocalLoss: kernel must be automatic or scalar");
    kernel_ = kernel;
  }

  // ---- Eigen entry points: logits and targets N x C (any dense storage, Map, Block) ----------

  template <class DX, class DT>
  T value(const Eigen::MatrixBase<DX>& logits, const Eigen::MatrixBase<DT>& targets) const {
    T v{};
    detail::raise_if(try_value(logits, targets, v));
    return v;
  }
  /// The reduced loss and its gradient (times grad_scale) in `grad`, N x C (may be `logits`).
  template <class DX, class DT, class DG>
  T value_and_gradient(const Eigen::MatrixBase<DX>& logits, const Eigen::MatrixBase<DT>& targets,
                       const Eigen::MatrixBase<DG>& grad, T grad_scale = T(1)) const {
    T v{};
    detail::raise_if(try_value_and_gradient(logits, targets, grad, grad_scale, v));
    return v;
  }
  /// Per-element values (N x C), whatever the reduction.
  template <class DX, class DT, class DV>
  void per_element(const Eigen::MatrixBase<DX>& logits, const Eigen::MatrixBase<DT>& targets,
                   const Eigen::MatrixBase<DV>& values) const {
    detail::raise_if(eigen(logits, targets, &values, static_cast<const Eigen::MatrixBase<DV>*>(nullptr), T(1),
                           Reduction::none, nullptr));
  }
  /// Per-element values and the gradient of their sum.
  template <class DX, class DT, class DV, class DG>
  void per_element_and_gradient(const Eigen::MatrixBase<DX>& logits, const Eigen::MatrixBase<DT>& targets,
                                const Eigen::MatrixBase<DV>& values, const Eigen::MatrixBase<DG>& grad) const {
    detail::raise_if(eigen(logits, targets, &values, &grad, T(1), Reduction::none, nullptr));
  }

  template <class DX, class DT>
  Status try_value(const Eigen::MatrixBase<DX>& logits, const Eigen::MatrixBase<DT>& targets, T& out) const {
    using None = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>;
    return eigen(logits, targets, static_cast<const Eigen::MatrixBase<None>*>(nullptr),
                 static_cast<const Eigen::MatrixBase<None>*>(nullptr), T(1), o_.reduction, &out);
  }
  template <class DX, class DT, class DG>
  Status try_value_and_gradient(const Eigen::MatrixBase<DX>& logits, const Eigen::MatrixBase<DT>& targets,
                                const Eigen::MatrixBase<DG>& grad, T grad_scale, T& out) const {
    return eigen(logits, targets, static_cast<const Eigen::MatrixBase<DG>*>(nullptr), &grad, grad_scale, o_.reduction,
                 &out);
  }

  // ---- raw entry points: each buffer with its own Layout of the same shape -------------------

  T value(const T* logits, const Layout& lx, const T* targets, const Layout& lt) const {
    T v{};
    detail::raise_if(try_value(logits, lx, targets, lt, v));
    return v;
  }
  T value_and_gradient(const T* logits, const Layout& lx, const T* targets, const Layout& lt, T* grad,
                       const Layout& lg, T grad_scale = T(1)) const {
    T v{};
    detail::raise_if(try_value_and_gradient(logits, lx, targets, lt, grad, lg, grad_scale, v));
    return v;
  }
  /// values (layout lv) and, if grad is not null, the gradient of their sum.
  void per_element(const T* logits, const Layout& lx, const T* targets, const Layout& lt, T* values,
                   const Layout& lv, T* grad = nullptr, const Layout& lg = Layout()) const {
    detail::raise_if(try_per_element(logits, lx, targets, lt, values, lv, grad, lg));
  }

  Status try_value(const T* logits, const Layout& lx, const T* targets, const Layout& lt, T& out) const {
    return run(buffers(logits, lx, targets, lt), T(1), o_.reduction, &out);
  }
  Status try_value_and_gradient(const T* logits, const Layout& lx, const T* targets, const Layout& lt, T* grad,
                                const Layout& lg, T grad_scale, T& out) const {
    if (grad == nullptr && lx.samples > 0 && lx.inner > 0 && lx.classes > 0)
      return detail::never_throws([] { return Status::error(detail::message("null gradient pointer")); });
    detail::SigmoidBuffers<T> b = buffers(logits, lx, targets, lt);
    b.g = grad;
    b.lg = lg;
    return run(b, grad_scale, o_.reduction, &out);
  }
  Status try_per_element(const T* logits, const Layout& lx, const T* targets, const Layout& lt, T* values,
                         const Layout& lv, T* grad, const Layout& lg) const {
    if (values == nullptr && lx.samples > 0 && lx.inner > 0 && lx.classes > 0)
      return detail::never_throws([] { return Status::error(detail::message("null per-element values pointer")); });
    detail::SigmoidBuffers<T> b = buffers(logits, lx, targets, lt);
    b.g = grad;
    b.lg = lg;
    b.v = values;
    b.lv = lv;
    return run(b, T(1), Reduction::none, nullptr);
  }

 private:
  static detail::SigmoidBuffers<T> buffers(const T* x, const Layout& lx, const T* t, const Layout& lt) {
    detail::SigmoidBuffers<T> b;
    b.x = x;
    b.lx = lx;
    b.t = t;
    b.lt = lt;
    return b;
  }

  Status run(const detail::SigmoidBuffers<T>& b, T grad_scale, Reduction reduction, T* out) const {
    return detail::never_throws([&]() -> Status {
      if (reduction == Reduction::none && out)
        return Status::error(detail::message(
            "this loss has reduction none: call per_element or per_element_and_gradient for per-element values"));
      if (!std::isfinite(grad_scale))
        return Status::error(detail::message("grad_scale is ", grad_scale, " (must be finite)"));
      const Layout& l = b.lx;
      // (check_layout runs first inside evaluate_sigmoid; the count here saturates instead)
      const double elements = double(l.samples) * double(l.classes) * double(l.inner);
      const detail::Accum scale = reduction == Reduction::mean && elements > 0 ? 1.0 / elements : 1.0;
      const detail::SigmoidParams<T> p{o_.alpha, o_.gamma, o_.class_weights.size() ? o_.class_weights.data() : nullptr,
                                       scale, static_cast<T>(scale * detail::Accum(grad_scale))};
      detail::Accum sum = 0;
      Status s = detail::evaluate_sigmoid(p, b, classes_, threads_, kernel_ == Kernel::scalar, sum);
      if (s && out) *out = static_cast<T>(sum);
      return s;
    });
  }

  template <class DX, class DT, class DV, class DG>
  Status eigen(const Eigen::MatrixBase<DX>& logits, const Eigen::MatrixBase<DT>& targets,
               const Eigen::MatrixBase<DV>* values, const Eigen::MatrixBase<DG>* grad, T grad_scale,
               Reduction reduction, T* out) const {
    static_assert(std::is_same<typename DX::Scalar, T>::value && std::is_same<typename DT::Scalar, T>::value,
                  "lmf::SigmoidFocalLoss: logits and targets must have the loss's scalar type T");
    return detail::never_throws([&] {
      return detail::with_direct(logits, [&](const T* x, const Layout& lx) {
        return detail::with_direct(targets, [&](const T* t, const Layout& lt) {
          detail::SigmoidBuffers<T> b = buffers(x, lx, t, lt);
          if (grad) {
            detail::static_check_output<DG>();
            auto& g = const_cast<Eigen::MatrixBase<DG>&>(*grad);
            b.g = g.derived().data();
            b.lg = detail::eigen_layout(g);
          }
          if (values) {
            detail::static_check_output<DV>();
            auto& v = const_cast<Eigen::MatrixBase<DV>&>(*values);
            b.v = v.derived().data();
            b.lv = detail::eigen_layout(v);
          }
          return run(b, grad_scale, reduction, out);
        });
      });
    });
  }

  Options o_;
  Index classes_ = 0;
  int threads_ = 0;
  Kernel kernel_ = Kernel::automatic;
};

}  // namespace lmf
