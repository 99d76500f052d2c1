// lmf/torch.hpp — lmf's losses as libtorch modules (optional: needs libtorch; Debian libtorch-dev).
//
//   #include <lmf/torch.hpp>
//   lmf::libtorch::Loss loss{lmf::LMFLoss<double>(counts)};   // any lmf::Loss<double>: named, preset, spec
//   at::Tensor value = loss(logits, labels);                   // float or double (N, C) / (N, C, d1, ...)
//   value.backward();                                          // logits.grad = the fused gradient
//
// forward computes the value and, when the logits require a gradient, the gradient in the same
// fused pass (lmf::Loss::value_and_gradient, or per_row for reduction none); backward returns the
// saved gradient scaled in place by grad_output (the tensor untouched when grad_output is 1, the
// usual loss.backward(): no second pass over N x C, no new tensor). Dense logits of any strides (contiguous,
// channels-last, transposed) are read in place, with a gradient of the same strides; other views
// are copied once. Labels int64 or int32 of shape (N, d1, ...).
// Double backward raises an error. The Python extension (python/) is built on this header.
//
// CUDA tensors: include lmf/torch_cuda.cuh in one .cu file of the program (nvcc); the modules
// then send CUDA logits (float32, float64, float16, bfloat16) to the CUDA header's kernels, on
// the current stream. Without it, CUDA logits raise lmf::Error saying so.
#pragma once

#include <lmf/detail/torch_cuda_backend.hpp>
#include <lmf/lmf.hpp>

#include <torch/torch.h>
#include <ATen/SavedTensorHooks.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace lmf {
namespace libtorch {
namespace detail {

/// The loss's spec in float (the per-class vectors rounded), for float logits.
inline LossSpec<float> to_float(const LossSpec<double>& d, Index declared_classes) {
  LossSpec<float> f;
  f.reduction = d.reduction;
  f.ignore_index = d.ignore_index;
  f.classes = declared_classes;  // (re-inferred from the vectors, as the double loss's)
  f.kernel = d.kernel;
  f.threads = d.threads;
  for (const Term<double>& t : d.terms) {
    Term<float> u;
    u.weight = float(t.weight);
    u.s = float(t.s);
    u.gamma = float(t.gamma);
    u.a = t.a.cast<float>();
    u.m = t.m.cast<float>();
    u.b = t.b.cast<float>();
    u.w = t.w.cast<float>();
    u.mean_over = t.mean_over;
    u.focus_on = t.focus_on;
    u.label_smoothing = float(t.label_smoothing);
    f.terms.push_back(std::move(u));
  }
  return f;
}

[[noreturn]] inline void fail(const std::string& what) { lmf::detail::raise(lmf::detail::message(what)); }

/// The Layout of an (N, C) or (N, C, d1, ..., dk) tensor read in place: the d dimensions must
/// collapse into one (each stride the next one's times its size, size-1 dimensions ignored).
/// False if they do not (the caller then makes the tensor contiguous).
inline bool tensor_layout(const at::Tensor& t, Layout& out) {
  const int64_t dims = t.dim();
  out = Layout{t.size(0), t.size(1), 1, t.stride(0), t.stride(1), 0};
  if (dims == 2) return true;
  Index inner = 1, inner_stride = 0;
  bool first = true;
  for (int64_t k = dims - 1; k >= 2; --k) {
    if (t.size(k) == 1) continue;
    if (first) {
      inner_stride = t.stride(k);
      first = false;
    } else if (t.stride(k) != inner_stride * inner) {
      return false;
    }
    inner *= t.size(k);
  }
  out.inner = inner;
  out.inner_stride = inner_stride;
  return true;
}

/// A batch as lmf reads it: the logits (the caller's tensor, or a contiguous copy), their Layout,
/// the labels in row order, and the per-row shape (N, d1, ...).
struct Batch {
  at::Tensor x, y;
  Layout layout;
  std::vector<int64_t> row_shape;
};

/// Checks logits and labels (device, dtypes, shapes) and lays them out for lmf. The logits are
/// read in place when their d dimensions collapse into one stride and, if a gradient is written,
/// when they are dense and non-overlapping (contiguous, channels-last, transposed: the gradient
/// then gets the same strides); otherwise they are copied once.
inline Batch prepare(const at::Tensor& logits, const at::Tensor& labels, bool needs_grad) {
  const bool on_cuda = logits.device().is_cuda();
  if (on_cuda) {
    if (cuda_backend() == nullptr)
      fail("CUDA logits need lmf's CUDA backend: include lmf/torch_cuda.cuh in one .cu file of the program "
           "(the Python extension builds it when PyTorch and nvcc have CUDA)");
    if (labels.device() != logits.device())
      fail("labels are on " + labels.device().str() + " but the logits on " + logits.device().str() +
           " (both must be on one device)");
  } else if (logits.device().type() != at::kCPU || labels.device().type() != at::kCPU) {
    fail("logits and labels must both be CPU tensors, or both on one CUDA device (got " + logits.device().str() +
         " and " + labels.device().str() + ")");
  }
  const at::ScalarType xt = logits.scalar_type();
  if (xt != at::kFloat && xt != at::kDouble && !(on_cuda && (xt == at::kHalf || xt == at::kBFloat16)))
    fail(std::string("logits must be float32 or float64") + (on_cuda ? ", float16 or bfloat16" : "") + ", got " +
         c10::toString(xt) + (on_cuda ? "" : " (float16 and bfloat16 on CUDA only)"));
  if (labels.scalar_type() != at::kLong && labels.scalar_type() != at::kInt)
    fail(std::string("labels must be int64 or int32, got ") + c10::toString(labels.scalar_type()));
  if (logits.dim() < 2)
    fail("logits must be (N, C) or (N, C, d1, ...), got " + std::to_string(logits.dim()) + " dimensions");
  Batch b;
  b.row_shape.push_back(logits.size(0));
  Index inner = 1;
  for (int64_t k = 2; k < logits.dim(); ++k) b.row_shape.push_back(logits.size(k)), inner *= logits.size(k);
  if (labels.sizes() != at::IntArrayRef(b.row_shape))
    fail("labels have shape " + c10::str(labels.sizes()) + " but the logits " + c10::str(logits.sizes()) + " need " +
         c10::str(at::IntArrayRef(b.row_shape)) + " (the logits' shape without the class dimension)");
  b.x = logits.detach();
  b.y = labels.contiguous();
  if (b.x.numel() == 0) {  // (every empty tensor is "contiguous": no stride to trust)
    b.layout = Layout::nchw(logits.size(0), logits.size(1), inner);
    return b;
  }
  if (!tensor_layout(b.x, b.layout) || (needs_grad && !b.x.is_non_overlapping_and_dense())) {
    b.x = b.x.contiguous();
    tensor_layout(b.x, b.layout);
  }
  return b;
}

}  // namespace detail

namespace detail {
struct Fused;
/// Totals summed over the shards, as forward_with_totals was given them: on the host for CPU
/// logits, the caller's float64 tensor for CUDA logits.
struct GivenTotals {
  Totals host;
  at::Tensor device;
};
}  // namespace detail

/// A loss for float and double tensors (and, on CUDA, float16 and bfloat16 ones): one lmf::Loss
/// per dtype, built from one spec.
class LossImpl : public torch::nn::Module {
 public:
  explicit LossImpl(const lmf::Loss<double>& loss)
      : double_(std::make_shared<lmf::Loss<double>>(loss)),
        float_(std::make_shared<lmf::Loss<float>>(detail::to_float(loss.spec(), loss.declared_classes()))) {}

  /// The reduced loss (a 0-dim tensor), or per-row values of shape (N, d1, ...) for reduction
  /// none; differentiable with respect to the logits.
  at::Tensor forward(const at::Tensor& logits, const at::Tensor& labels);

  /// Data parallel (torch.distributed): this shard's totals, a float64 tensor of
  /// totals_size() entries; all-reduce (sum) it over the shards, then pass it to forward. The
  /// shards' values then add up to the whole batch's value, and each shard's gradient is its
  /// rows of the whole batch's gradient.
  at::Tensor totals(const at::Tensor& logits, const at::Tensor& labels) const;
  /// forward with the totals summed over every shard (a float64 tensor on the logits' device).
  /// (Not an overload of forward: torch::nn::ModuleHolder deduces operator()'s type from a
  /// unique forward.)
  at::Tensor forward_with_totals(const at::Tensor& logits, const at::Tensor& labels, const at::Tensor& totals);
  std::size_t totals_size() const { return lmf::detail::totals_size(double_->spec()); }

  const lmf::Loss<double>& loss_double() const { return *double_; }
  const lmf::Loss<float>& loss_float() const { return *float_; }
  /// Replaces the class weights of every term (e.g. each epoch, from DeferredReweighting).
  /// Both dtypes' losses change, or neither (an invalid vector throws lmf::Error).
  void set_class_weights(const Eigen::VectorXd& weights) {
    lmf::Loss<double> d = *double_;
    lmf::Loss<float> f = *float_;
    d.set_class_weights(weights);
    f.set_class_weights(weights.cast<float>());
    const std::lock_guard<std::mutex> lock(cuda_->mutex);  // (the device copies are made again when used)
    *double_ = std::move(d);
    *float_ = std::move(f);
    cuda_->state.reset();
  }
  /// OpenMP threads of lmf's kernels (0: OpenMP's default, which torch.set_num_threads sets).
  void set_threads(int threads) {
    double_->set_threads(threads);
    float_->set_threads(threads);
  }

 private:
  std::shared_ptr<lmf::Loss<double>> double_;
  std::shared_ptr<lmf::Loss<float>> float_;
  std::shared_ptr<detail::CudaSlot> cuda_ = std::make_shared<detail::CudaSlot>();  // CUDA tensors' state

  friend struct detail::Fused;
};
TORCH_MODULE(Loss);

namespace detail {

/// Raises a CUDA call's failure: lmf::Error with lmf's message, or the exception it caught.
inline void raise_if(const CudaOutcome& outcome) {
  if (outcome.exception) std::rethrow_exception(outcome.exception);
  if (!outcome.message.empty()) lmf::detail::raise(outcome.message);
}

/// Whether saved-tensor default hooks are set: PyTorch 1.x returns a pair of PyObject*, null when
/// unset; 2.x an optional pair.
template <class A, class B>
bool any_hooks(const std::pair<A, B>& hooks) {
  return hooks.first != nullptr;
}
template <class P>
bool any_hooks(const std::optional<P>& hooks) {
  return hooks.has_value();
}

/// What the fused call computed: the value, the gradient (undefined without one), and whether
/// the value is per row (reduction none).
struct Computed {
  at::Tensor value, grad;
  bool per_row = false;
};

/// The autograd node. lmf's call runs before it (compute: every check, every lmf::Error), so
/// that nothing can throw inside the node's forward, which only saves the gradient. (Observed
/// with PyTorch 2.11 on the GPU host: an lmf::Error leaving this Function's forward crashed the
/// Python process, for CPU and CUDA tensors alike, while one raised before Function::apply
/// reached Python as ValueError.) backward returns the saved gradient times grad_output.
struct Fused : public torch::autograd::Function<Fused> {
  /// The loss: compute, then (when the logits need a gradient and grad mode is on) the node.
  static at::Tensor evaluate(const LossImpl* module, const at::Tensor& logits, const at::Tensor& labels,
                             const GivenTotals* totals) {
    const bool needs_grad = logits.requires_grad() && torch::autograd::GradMode::is_enabled();
    const Computed c = compute(module, logits, labels, needs_grad, totals);
    if (!needs_grad) return c.value;
    return apply(logits, &c);
  }

  static at::Tensor forward(torch::autograd::AutogradContext* ctx, at::Tensor /*logits*/, const Computed* c) {
    finish_forward(ctx, c->grad, c->per_row);
    return c->value;
  }

  /// The fused value and gradient on the logits' device, outside autograd.
  static Computed compute(const LossImpl* module, const at::Tensor& logits, const at::Tensor& labels,
                          bool needs_grad, const GivenTotals* totals) {
    const at::NoGradGuard no_grad;
    if (logits._fw_grad(/*level=*/0).defined())
      fail("forward-mode AD (a dual tensor) is not supported: lmf computes the gradient, not a jvp");
    Batch batch = prepare(logits, labels, needs_grad);
    if (batch.x.is_cuda() && batch.x.scalar_type() == at::kHalf && needs_grad) {
      // fp16 logits with a gradient are computed as float32 (autocast's policy for losses): the
      // gradient is saved in float32 and scaled by grad_output before autograd rounds it to
      // fp16, so that loss scaling (GradScaler) keeps the small entries that a mean over many
      // rows makes subnormal or zero in fp16. (bfloat16 has float32's range: read natively.)
      batch.x = batch.x.to(at::kFloat);
      tensor_layout(batch.x, batch.layout);
    }
    const at::Tensor& x = batch.x;
    const at::Tensor& y = batch.y;
    const Layout& layout = batch.layout;
    const std::vector<int64_t>& row_shape = batch.row_shape;
    const bool none = module->loss_double().reduction() == Reduction::none;
    if (none && totals) fail("totals are for reductions sum and mean (reduction none has per-row values)");
    // the gradient has the logits' strides exactly (empty_strided allocates the span they reach)
    at::Tensor grad = needs_grad ? at::empty_strided(x.sizes(), x.strides(), x.options()) : at::Tensor();
    at::Tensor value;
    if (x.is_cuda()) {
      const at::Tensor* totals_device = totals ? &totals->device : nullptr;
      const CudaOutcome outcome = cuda_backend()->run(*module->cuda_, module->loss_double(), module->loss_float(),
                                                      CudaCall{x, y, layout, grad, totals_device, none, row_shape}, value);
      raise_if(outcome);
      // (16-bit logits: the value stays float32, as autocast keeps losses in float32; a sum in
      // fp16 would overflow past 65504, and so would GradScaler's scale times it)
    } else {
      value = none ? at::empty(row_shape, x.options()) : at::empty({}, x.options());
      run_cpu(module, x, y, layout, grad, value, none, totals ? &totals->host : nullptr);
    }
    return Computed{value, grad, none};
  }

  /// The CPU path of forward: lmf::Loss's calls on the tensors' memory.
  static void run_cpu(const LossImpl* module, const at::Tensor& x, const at::Tensor& y, const Layout& layout,
                      const at::Tensor& grad, const at::Tensor& value, bool none, const Totals* totals) {
    const bool needs_grad = grad.defined();
    auto run = [&](const auto& loss, auto* xp, auto* gp, auto* vp) {
      auto go = [&](const auto* labels_ptr) {
        using T = std::remove_pointer_t<decltype(xp)>;
        if (none)
          loss.per_row(xp, layout, labels_ptr, vp, gp);
        else if (totals)
          *vp = gp ? loss.value_and_gradient(xp, layout, labels_ptr, gp, *totals, T(1))
                   : loss.value(xp, layout, labels_ptr, *totals);
        else
          *vp = gp ? loss.value_and_gradient(xp, layout, labels_ptr, gp) : loss.value(xp, layout, labels_ptr);
      };
      if (y.scalar_type() == at::kLong)
        go(y.data_ptr<int64_t>());
      else
        go(y.data_ptr<int32_t>());
    };
    if (x.scalar_type() == at::kFloat)
      run(module->loss_float(), x.data_ptr<float>(), needs_grad ? grad.data_ptr<float>() : nullptr,
          value.data_ptr<float>());
    else
      run(module->loss_double(), x.data_ptr<double>(), needs_grad ? grad.data_ptr<double>() : nullptr,
          value.data_ptr<double>());
  }

  static void finish_forward(torch::autograd::AutogradContext* ctx, const at::Tensor& grad, bool none) {
    const bool needs_grad = grad.defined();
    // saved-tensor hooks (torch.autograd.graph.saved_tensors_hooks, save_on_cpu) may hand
    // backward a new copy at each unpack, and autograd does not check versions through them:
    // backward then neither scales in place nor hands out the saved tensor itself
    ctx->saved_data["hooked"] = any_hooks(at::SavedTensorDefaultHooks::get_hooks());
    ctx->saved_data["per_row"] = none;
    ctx->saved_data["given"] = false;
    if (needs_grad) ctx->save_for_backward({grad});
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    if (torch::autograd::GradMode::is_enabled())
      fail("double backward is not supported (the gradient is computed analytically in forward; "
           "backward(create_graph=True) / torch.autograd.grad(..., create_graph=True) through an lmf loss is an "
           "error)");
    const torch::autograd::variable_list saved = ctx->get_saved_variables();
    if (saved.empty()) fail("backward through a loss evaluated without a gradient (no_grad)");
    at::Tensor grad = saved[0];
    const at::Tensor& go = grad_outputs[0];
    const bool per_row = ctx->saved_data["per_row"].toBool();
    at::Tensor out;
    if (!per_row) {
      // The saved gradient is handed out once, scaled in place: loss.backward() (grad_output 1)
      // costs nothing, a scaled loss one in-place multiply (a new tensor would cost its
      // allocation and first touch too: 13.5 against 7 ms per 4M floats, docs/api.md). The
      // multiply goes through variable_data(), which does not bump the saved tensor's version,
      // so autograd's own check still catches a caller's in-place change (clip_grad_norm_ on
      // the handed-out tensor) if a retained graph is run again. Without retain_graph autograd
      // releases the saved tensor after this call, and AccumulateGrad takes the returned one as
      // logits.grad without a copy. A retained graph's later backward gets a new tensor: the
      // saved one rescaled by grad_output / (the first grad_output) — a rounding or two, unless
      // the first grad_output took entries beyond the dtype's range (below 1e-38 or above 3e38
      // in float) — and an error after a first grad_output of 0 or not finite, which left
      // nothing to rescale.
      const double g = go.item<double>();
      if (ctx->saved_data["hooked"].toBool()) {
        out = g == 1.0 ? grad.clone() : grad * g;
      } else if (!ctx->saved_data["given"].toBool()) {
        if (g != 1.0) grad.variable_data().mul_(g);
        out = grad;
        ctx->saved_data["given"] = true;
        ctx->saved_data["first_grad_output"] = g;
      } else {
        const double first = ctx->saved_data["first_grad_output"].toDouble();
        if (!(std::isfinite(first) && first != 0.0))
          fail("a second backward through an lmf loss after a first grad_output of " + std::to_string(first) +
               " (the saved gradient was scaled by it in place; keep the graph and use a nonzero, finite "
               "grad_output first)");
        out = g == first ? grad.clone() : grad * (g / first);
      }
    } else {
      out = grad * go.unsqueeze(1);  // (N, d...) -> (N, 1, d...), broadcast over the classes
    }
    return {out, at::Tensor()};
  }
};

}  // namespace detail

inline at::Tensor LossImpl::forward(const at::Tensor& logits, const at::Tensor& labels) {
  return detail::Fused::evaluate(this, logits, labels, nullptr);
}

inline at::Tensor LossImpl::forward_with_totals(const at::Tensor& logits, const at::Tensor& labels,
                                                const at::Tensor& totals) {
  // the totals live where the logits do (totals() returns them there)
  if (totals.device() != logits.device() || totals.scalar_type() != at::kDouble || totals.dim() != 1)
    detail::fail("totals must be a 1-dimensional float64 tensor on the logits' device (" + logits.device().str() +
                 "; from totals(), all-reduced), got " + c10::toString(totals.scalar_type()) + " with " +
                 std::to_string(totals.dim()) + " dimensions on " + totals.device().str());
  if (std::size_t(totals.numel()) != totals_size())
    detail::fail("totals have " + std::to_string(totals.numel()) + " entries but this loss needs " +
                 std::to_string(totals_size()));
  detail::GivenTotals t;
  if (totals.device().is_cuda()) {
    t.device = totals.contiguous();  // checked on the device, like the CPU's (status: bad_totals)
  } else {
    t.host = Totals(totals_size());
    const at::Tensor c = totals.contiguous();
    for (std::size_t i = 0; i < t.host.size(); ++i) t.host[i] = c.data_ptr<double>()[i];
  }
  return detail::Fused::evaluate(this, logits, labels, &t);
}

inline at::Tensor LossImpl::totals(const at::Tensor& logits, const at::Tensor& labels) const {
  const detail::Batch batch = detail::prepare(logits, labels, false);
  const at::Tensor& x = batch.x;
  const at::Tensor& y = batch.y;
  const Layout& layout = batch.layout;
  if (x.is_cuda()) {
    at::Tensor out;
    detail::raise_if(detail::cuda_backend()->totals(*cuda_, *double_, *float_, x, y, layout, out));
    return out;
  }
  Totals t;
  auto with_labels = [&](const auto& loss, const auto* xp) {
    if (y.scalar_type() == at::kLong)
      t = loss.totals(xp, layout, y.data_ptr<int64_t>());
    else
      t = loss.totals(xp, layout, y.data_ptr<int32_t>());
  };
  if (x.scalar_type() == at::kFloat)
    with_labels(*float_, x.data_ptr<float>());
  else
    with_labels(*double_, x.data_ptr<double>());
  at::Tensor out = at::empty({int64_t(t.size())}, at::TensorOptions().dtype(at::kDouble));
  for (std::size_t i = 0; i < t.size(); ++i) out.data_ptr<double>()[i] = t[i];
  return out;
}

}  // namespace libtorch
}  // namespace lmf
