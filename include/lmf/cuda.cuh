// lmf/cuda.cuh — lmf's losses on NVIDIA GPUs: the fused value and gradient of any lmf::Loss on
// device buffers, CUB-style (explicit stream, caller's workspace, nothing allocated in a call,
// asynchronous, no host synchronisation, deterministic). Compiled by nvcc; includable together
// with <lmf/lmf.hpp> in one .cu file; never needed by the CPU build.
//
//   lmf::LMFLoss<float> loss(counts);                       // any lmf::Loss<float>
//   lmf::cuda::DeviceLoss<float> dev(loss);                 // copies its per-class data to the device
//   std::size_t bytes = dev.workspace_bytes(layout);        // scratch for this batch shape
//   cudaError_t e = dev.value_and_gradient(logits, layout, labels, grad, value, workspace, bytes, stream);
//   lmf::Status s = dev.status(stream);                     // synchronises: the first bad input
//
// logits: const float* | const __half* | const __nv_bfloat16* (DeviceLoss<float>: math and
// accumulation in fp32, sums over rows in double) or const double* (DeviceLoss<double>); labels:
// const int64_t* | const int32_t*, one per row; grad: the logits' type and layout, may be the
// logits (in place) or null (value only); value: a device T* (reduction none: one per row).
// Kernels: include/lmf/cuda/kernels.cuh. Docs: docs/api.md, "CUDA".
#pragma once

#if !defined(__CUDACC__)
#error "lmf/cuda.cuh is device code: include it from a .cu file compiled by nvcc (CPU code includes lmf/lmf.hpp)"
#endif

// lmf uses Eigen on the host only: unless Eigen was included first, keep it out of device code
// (its __host__ __device__ annotations only add nvcc warnings here).
#if !defined(EIGEN_WORLD_VERSION) && !defined(EIGEN_NO_CUDA)
#define EIGEN_NO_CUDA
#endif

#include <lmf/cpu/validate.hpp>
#include <lmf/cuda/kernels.cuh>
#include <lmf/loss.hpp>

#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace lmf {
namespace cuda {

/// A loss on the device: the per-class vectors of a host lmf::Loss<T> copied to device memory
/// (once, in the constructor), and the calls that run it on device buffers.
///
/// Thread safety: calls on one DeviceLoss share its status record; use one DeviceLoss per stream
/// when several streams run it at once (the per-class data is small).
template <class T>
class DeviceLoss {
  static_assert(std::is_same<T, float>::value || std::is_same<T, double>::value,
                "lmf::cuda::DeviceLoss<T>: T must be float or double");

 public:
  using Scalar = T;

  /// Copies `loss`'s terms to the device and waits for the device once, so that any stream may
  /// use them. Throws lmf::Error if the copy fails (no device, out of memory): cudaMalloc's
  /// message is in it.
  explicit DeviceLoss(const Loss<T>& loss) : spec_(loss.spec()) {
    const LossSpec<T>& spec = spec_;
    // one device buffer: the status record, then every term's per-class vectors
    std::vector<T> host;
    struct Slot {
      std::size_t offset;
      bool present;
    };
    std::vector<Slot> slots;
    auto add = [&](const Vector<T>& v) {
      slots.push_back({host.size(), v.size() > 0});
      for (Index j = 0; j < v.size(); ++j) host.push_back(v(j));
    };
    for (const Term<T>& t : spec.terms) add(t.a), add(t.m), add(t.b), add(t.w);
    const std::size_t status_bytes = detail::align_up(sizeof(detail::DeviceStatus) + sizeof(int));
    const std::size_t bytes = status_bytes + host.size() * sizeof(T);
    check_cuda(cudaMalloc(&memory_, bytes), "cudaMalloc");
    char* base = static_cast<char*>(memory_);
    record_ = reinterpret_cast<detail::DeviceStatus*>(base);
    record_ok_ = reinterpret_cast<int*>(base + sizeof(detail::DeviceStatus));
    T* vectors = reinterpret_cast<T*>(base + status_bytes);
    if (!host.empty())
      check_cuda(cudaMemcpy(vectors, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice), "cudaMemcpy");
    check_cuda(cudaMemset(base, 0, status_bytes), "cudaMemset");
    // cudaMemcpy from pageable memory may return before the data lands, and cudaMemset is
    // asynchronous, both on the default stream: a first call on a non-blocking stream (PyTorch's
    // side streams are) could read the vectors or the status record before they are written
    check_cuda(cudaDeviceSynchronize(), "cudaDeviceSynchronize");

    detail::Plan<T>& p = plan_;
    p = detail::Plan<T>{};
    p.n_terms = static_cast<int>(spec.terms.size());
    std::size_t k = 0;
    for (std::size_t t = 0; t < spec.terms.size(); ++t) {
      const Term<T>& term = spec.terms[t];
      lmf::detail::TermScalars<T> q = lmf::detail::term_scalars(term, spec.classes);
      const T* ptrs[4];
      for (int j = 0; j < 4; ++j, ++k) ptrs[j] = slots[k].present ? vectors + slots[k].offset : nullptr;
      q.a = ptrs[0], q.m = ptrs[1], q.b = ptrs[2], q.w = ptrs[3];
      p.terms[t] = q;
      p.mean_over[t] = static_cast<int>(term.mean_over);
      p.n_batch += term.focus_on == FocusOn::batch_mean ? 1 : 0;
    }
    p.reduction = spec.reduction;
    p.ignore_index = spec.ignore_index;
    p.limit = lmf::detail::logit_limit(spec);
  }

  DeviceLoss(const DeviceLoss&) = delete;
  DeviceLoss& operator=(const DeviceLoss&) = delete;
  DeviceLoss(DeviceLoss&& o) noexcept { *this = std::move(o); }
  DeviceLoss& operator=(DeviceLoss&& o) noexcept {
    if (this != &o) {
      release();
      spec_ = std::move(o.spec_);
      plan_ = o.plan_;
      memory_ = std::exchange(o.memory_, nullptr);
      record_ = o.record_;
      record_ok_ = o.record_ok_;
      validate_logits_ = o.validate_logits_;
      host_error_ = std::move(o.host_error_);
      last_validated_ = o.last_validated_;
      last_classes_ = o.last_classes_;
    }
    return *this;
  }
  ~DeviceLoss() { release(); }

  /// Number of classes, or 0 if the loss accepts any.
  Index classes() const { return spec_.classes; }
  /// Entries of this loss's totals (lmf::Totals::size() of the host loss).
  std::size_t totals_size() const { return lmf::detail::totals_size(spec_); }

  /// Whether every logit of a counted row is checked (finite, within the overflow limit) before
  /// anything is written (default true). false skips that read of the logits (one read and one
  /// write instead of two reads and one write): labels are still checked first, but a bad logit
  /// is then found while the gradient is written, and that call's gradient and value are not
  /// to be used (status() names the logit).
  void set_validate_logits(bool on) { validate_logits_ = on; }
  bool validates_logits() const { return validate_logits_; }

  /// Bytes of workspace a call on a batch of this layout needs (256-byte aligned pointer).
  std::size_t workspace_bytes(const Layout& layout) const {
    return detail::workspace_size<T>(detail::grid_for(detail::choose_mode<T>(layout), layout.rows()));
  }

  /// The loss and its gradient, asynchronously on `stream`. Returns cudaErrorInvalidValue (and
  /// writes nothing) for a call rejected on the host (see status()); the checks on the data run on
  /// the device: status() reports them, and a bad label or logit leaves grad and value untouched.
  template <class In, class L>
  cudaError_t value_and_gradient(const In* logits, const Layout& layout, const L* labels, In* grad, T* value,
                                 void* workspace, std::size_t bytes, cudaStream_t stream) const {
    return run(logits, layout, labels, grad, value, workspace, bytes, stream, nullptr, T(1), nullptr);
  }

  /// Data parallel: `totals` (device, totals_size() doubles) summed over every shard (e.g.
  /// ncclAllReduce of each shard's totals()), and grad_scale on the gradient (autograd's
  /// grad_output). With totals, the shards' values add up to the whole batch's.
  template <class In, class L>
  cudaError_t value_and_gradient(const In* logits, const Layout& layout, const L* labels, In* grad, T* value,
                                 void* workspace, std::size_t bytes, cudaStream_t stream, const double* totals,
                                 T grad_scale) const {
    return run(logits, layout, labels, grad, value, workspace, bytes, stream, totals, grad_scale, nullptr);
  }

  /// This shard's totals (device, totals_size() doubles), written only if the batch is valid.
  template <class In, class L>
  cudaError_t totals(const In* logits, const Layout& layout, const L* labels, double* out, void* workspace,
                     std::size_t bytes, cudaStream_t stream) const {
    if (out == nullptr) return reject("null totals pointer");
    return run(logits, layout, labels, static_cast<In*>(nullptr), static_cast<T*>(nullptr), workspace, bytes, stream,
               nullptr, T(1), out);
  }

  /// Waits for `stream` and returns the outcome of the last call: ok, or the message an
  /// lmf::Error would carry on the CPU (the first bad label, else the first bad logit, with row
  /// and class; bad totals; or why the host rejected the call). A CUDA error is a status too.
  Status status(cudaStream_t stream) const {
    if (!host_error_.empty()) return Status::error(host_error_);
    detail::DeviceStatus st{};
    if (cudaError_t e = read_record(stream, st); e != cudaSuccess)
      return Status::error(lmf::detail::message("CUDA error: ", cudaGetErrorString(e)));
    return describe(st);
  }

  /// The code of the last call's status (StatusCode::ok if valid); synchronises like status().
  StatusCode status_code(cudaStream_t stream) const {
    detail::DeviceStatus st{};
    if (!host_error_.empty() || read_record(stream, st) != cudaSuccess) return StatusCode::invalid_call;
    return static_cast<StatusCode>(st.code);
  }

 private:
  /// Waits for `stream`, then copies the last call's status record to the host.
  cudaError_t read_record(cudaStream_t stream, detail::DeviceStatus& st) const {
    cudaError_t e = cudaStreamSynchronize(stream);
    return e != cudaSuccess ? e : cudaMemcpy(&st, record_, sizeof(st), cudaMemcpyDeviceToHost);
  }

  static void check_cuda(cudaError_t e, const char* what) {
    if (e != cudaSuccess) lmf::detail::raise(lmf::detail::message("cuda: ", what, " failed: ", cudaGetErrorString(e)));
  }

  void release() noexcept {
    if (memory_) cudaFree(memory_);
    memory_ = nullptr;
  }

  cudaError_t reject(std::string why) const {
    host_error_ = std::move(why);
    if (host_error_.rfind("lmf: ", 0) != 0) host_error_ = "lmf: " + host_error_;
    return cudaErrorInvalidValue;
  }

  /// The host's checks (everything that needs no device data), then the four kernels.
  template <class In, class L>
  cudaError_t run(const In* x, const Layout& layout, const L* labels, In* grad, T* value, void* ws, std::size_t bytes,
                  cudaStream_t stream, const double* totals, T grad_scale, double* totals_out) const {
    static_assert(std::is_same<L, std::int64_t>::value || std::is_same<L, std::int32_t>::value ||
                      std::is_same<L, long long>::value || std::is_same<L, int>::value,
                  "lmf::cuda: labels must be int64_t or int32_t");
    static_assert(std::is_same<In, T>::value ||
                      (std::is_same<T, float>::value &&
                       (std::is_same<In, __half>::value || std::is_same<In, __nv_bfloat16>::value)),
                  "lmf::cuda: logits must be the loss's T, or __half / __nv_bfloat16 for DeviceLoss<float>");
    host_error_.clear();
    if (memory_ == nullptr) return reject("this DeviceLoss was moved from");
    if (Status s = lmf::detail::check_layout(layout, "logits", limits::max_classes, limits::max_elements); !s)
      return reject(s.message());
    const Index rows = layout.rows(), C = layout.classes;
    if (spec_.classes != 0 && C != spec_.classes)
      return reject(lmf::detail::message("logits have ", C, " classes but the loss has ", spec_.classes));
    if (C < 1 && rows > 0) return reject("logits have 0 classes");
    if (rows > 0 && (x == nullptr || labels == nullptr))
      return reject("null logits or labels pointer for a non-empty batch");
    Index span = 0;
    lmf::detail::layout_span(layout, limits::max_elements, span);
    // byte ranges, saturating (lmf::detail::byte_range): no product can overflow
    auto overlap = [](const auto* a, Index na, const auto* b, Index nb) {
      if (a == nullptr || b == nullptr || na == 0 || nb == 0) return false;
      const auto ra = lmf::detail::byte_range(a, na), rb = lmf::detail::byte_range(b, nb);
      return ra.first < rb.second && rb.first < ra.second;
    };
    if (grad) {  // (in place too: an aliasing layout would make rows write over each other)
      if ((layout.classes > 1 && layout.class_stride == 0) || (layout.samples > 1 && layout.sample_stride == 0) ||
          (layout.inner > 1 && layout.inner_stride == 0) || !lmf::detail::non_overlapping(layout))
        return reject("the layout maps two entries to one element: the gradient would overlap itself");
      if (grad != x && overlap(grad, span, x, span))
        return reject("the gradient buffer overlaps the logits without being them (in place, pass the logits' pointer)");
      if (overlap(grad, span, labels, rows)) return reject("the gradient buffer overlaps the labels");
    }
    if (value && totals_out == nullptr) {  // one value, or one per row for reduction none
      const Index nv = spec_.reduction == Reduction::none ? rows : Index(1);
      if (overlap(value, nv, x, span)) return reject("the value buffer overlaps the logits");
      if (overlap(value, nv, grad, span)) return reject("the value buffer overlaps the gradient");
      if (overlap(value, nv, labels, rows)) return reject("the value buffer overlaps the labels");
    }
    if (spec_.reduction == Reduction::none && totals_out == nullptr && value == nullptr && grad == nullptr)
      return reject("nothing to compute: null gradient and value");
    if (!std::isfinite(grad_scale)) return reject(lmf::detail::message("grad_scale is ", grad_scale, " (must be finite)"));
    const detail::Mode mode = detail::choose_mode<T>(layout);
    const int grid = detail::grid_for(mode, rows);
    const std::size_t need = detail::workspace_size<T>(grid);
    if (ws == nullptr || bytes < need)
      return reject(lmf::detail::message("workspace of ", bytes, " bytes", ws ? "" : " (null)", " but this batch needs ",
                                         need, " (workspace_bytes(layout))"));
    if (reinterpret_cast<std::uintptr_t>(ws) % 256 != 0) return reject("workspace must be 256-byte aligned");
    bool batch_mean = false;
    for (const Term<T>& t : spec_.terms) batch_mean |= t.focus_on == FocusOn::batch_mean;
    if (batch_mean && totals_out == nullptr && spec_.reduction != Reduction::mean)
      return reject("a batch-mean term needs reduction mean");

    detail::Plan<T> p = plan_;
    for (int t = 0; t < p.n_terms; ++t)  // W = C for unweighted terms (the loss may accept any C)
      if (p.terms[t].w == nullptr) p.terms[t].w_sum = double(C);
    p.layout = layout;
    p.mode = mode;
    p.grid = grid;
    p.validate_logits = validate_logits_;
    p.totals = totals;
    p.totals_size = static_cast<int>(totals_size());
    p.grad_scale = grad_scale;
    // the CPU checks logits before the smoothing factors when it writes, after them otherwise
    p.logits_first = grad != nullptr || (spec_.reduction == Reduction::none && value != nullptr) ||
                     (p.n_batch > 0 && totals == nullptr);
    // totals(), like the CPU's Loss::totals, reads the logits only for batch-mean terms' sums
    if (totals_out) p.validate_logits = p.n_batch > 0;
    last_validated_ = p.validate_logits;
    last_classes_ = C;

    detail::Scratch<T>* sc = static_cast<detail::Scratch<T>*>(ws);
    cudaError_t e = cudaMemsetAsync(&sc->status, 0xff, 2 * sizeof(unsigned long long), stream);
    if (e != cudaSuccess) return launch_failed(e);
    switch (mode) {
      case detail::Mode::thread: launch<detail::Mode::thread>(p, x, labels, grad, value, ws, stream, totals_out); break;
      case detail::Mode::staged: launch<detail::Mode::staged>(p, x, labels, grad, value, ws, stream, totals_out); break;
      case detail::Mode::warp: launch<detail::Mode::warp>(p, x, labels, grad, value, ws, stream, totals_out); break;
      case detail::Mode::block: launch<detail::Mode::block>(p, x, labels, grad, value, ws, stream, totals_out); break;
      case detail::Mode::group8: launch<detail::Mode::group8>(p, x, labels, grad, value, ws, stream, totals_out); break;
    }
    e = cudaGetLastError();
    return e == cudaSuccess ? e : launch_failed(e);
  }

  /// A launch that failed: status() must not report the previous call's record.
  cudaError_t launch_failed(cudaError_t e) const {
    host_error_ = lmf::detail::message("CUDA error launching the kernels: ", cudaGetErrorString(e));
    return e;
  }

  template <detail::Mode M, class In, class L>
  void launch(const detail::Plan<T>& p, const In* x, const L* labels, In* grad, T* value, void* ws,
              cudaStream_t stream, double* totals_out) const {
    // the row kernels handle at most NT terms (loops unrolled to NT: see LMF_CUDA_FOR_TERMS)
    if (p.n_terms <= 2)
      launch<M, 2>(p, x, labels, grad, value, ws, stream, totals_out);
    else
      launch<M, detail::kMaxTerms>(p, x, labels, grad, value, ws, stream, totals_out);
  }

  template <detail::Mode M, int NT, class In, class L>
  void launch(const detail::Plan<T>& p, const In* x, const L* labels, In* grad, T* value, void* ws,
              cudaStream_t stream, double* totals_out) const {
    // staged tiles are T[kThreads * 33] of shared memory: only float batches are staged
    constexpr detail::Mode MM = (M == detail::Mode::staged && !std::is_same<T, float>::value) ? detail::Mode::thread : M;
    detail::check_kernel<MM, NT, T, In, L><<<p.grid, detail::kThreads, 0, stream>>>(p, x, labels, ws);
    detail::plan_kernel<T, In, L><<<1, 32, 0, stream>>>(p, x, labels, ws, totals_out);
    if (totals_out == nullptr) {
      T* row_values = p.reduction == Reduction::none ? value : nullptr;
      detail::loss_kernel<MM, NT, T, In, L><<<p.grid, detail::kThreads, 0, stream>>>(p, x, labels, grad, row_values, ws);
    }
    detail::finish_kernel<T, In><<<1, 32, 0, stream>>>(p, x, ws, totals_out ? nullptr : value, record_, record_ok_);
  }

  Status describe(const detail::DeviceStatus& st) const {
    using lmf::detail::message;
    switch (static_cast<StatusCode>(st.code)) {
      case StatusCode::ok: return {};
      case StatusCode::bad_label:
        return Status::error(message("label ", st.label, " at row ", st.row, " is outside [0, ", last_classes(), ") (and is not ignore_index ",
                                     spec_.ignore_index, ")"));
      case StatusCode::bad_logit:
        if (!last_validated_)
          return Status::error(message("logit at row ", st.row, ", class ", st.cls,
                                       " is not finite or beyond the overflow limit ", st.bound,
                                       " (found while the gradient was written: logits were not validated first)"));
        if (!std::isfinite(st.value))
          return Status::error(message("logit at row ", st.row, ", class ", st.cls, " is ", st.value, " (must be finite)"));
        return Status::error(message("logit ", st.value, " at row ", st.row, ", class ", st.cls,
                                     " is too large: the adjusted logit s*(a*x - m) + b would overflow (|x| must be <= ",
                                     st.bound, ")"));
      case StatusCode::bad_totals:
        return Status::error(message("totals entry ", st.term, " is ", st.value, " (must be finite and >= 0)"));
      case StatusCode::small_totals:
        return Status::error(message("totals entry ", st.term, " is ", st.value, ", less than this batch's own ", st.bound,
                                     ": totals must be summed over every shard, this one included"));
      case StatusCode::batch_mean_range:
        return Status::error(message("totals give term ", st.term, " a batch-mean cross entropy of ", st.value,
                                     ", beyond the range of the logits' type"));
      case StatusCode::smoothing_overflow:
        return Status::error(message("term ", st.term, ": label smoothing's gradient factors (eps / C) s sum_c w_c / D "
                                     "overflow the logits' type (class weights spanning more than its range; D = the "
                                     "sum of the counted rows' weights)"));
      case StatusCode::invalid_call: break;
    }
    return Status::error(message("unknown device status ", st.code));
  }

  Index last_classes() const { return last_classes_; }

  LossSpec<T> spec_;
  detail::Plan<T> plan_{};
  void* memory_ = nullptr;
  detail::DeviceStatus* record_ = nullptr;
  int* record_ok_ = nullptr;
  bool validate_logits_ = true;
  mutable std::string host_error_;
  mutable bool last_validated_ = true;
  mutable Index last_classes_ = 0;
};

}  // namespace cuda
}  // namespace lmf
