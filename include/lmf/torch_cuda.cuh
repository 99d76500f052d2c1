// lmf/torch_cuda.cuh — CUDA tensors for lmf::libtorch's modules (lmf/torch.hpp): include this
// header in one .cu file of the program (compiled by nvcc, linked with libtorch's CUDA
// libraries), and every lmf::libtorch::Loss sends CUDA logits to the CUDA header's kernels
// (lmf/cuda.cuh) instead of raising an error.
//
//   // lmf_cuda.cu — the whole file
//   #include <lmf/torch_cuda.cuh>
//
// (It registers itself when the program or shared library is loaded: compile that file into the
// executable or the shared library itself, not into a static library, whose unreferenced
// objects the linker drops.)
//
// The modules then take float32, float64, float16 and bfloat16 CUDA logits (16-bit ones computed
// in fp32: lmf::cuda::DeviceLoss<float>), labels on the same device, any strides the CPU path
// takes. A call runs on the current CUDA stream of the logits' device and waits for it once, to
// read the checks' status: bad input raises lmf::Error with the CPU's message, before the
// gradient is written. Each module keeps one copy of its per-class vectors per device. int32
// labels are widened to int64 on the device first (the kernels are compiled for int64 labels
// only: half the instantiations, half nvcc's time).
#pragma once

#include <lmf/cuda.cuh>
#include <lmf/detail/torch_cuda_backend.hpp>

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

namespace lmf {
namespace libtorch {
namespace detail {

class CudaBackendImpl final : public CudaBackend {
  /// A module's device copies of its two losses, per device index.
  struct State {
    struct Device {
      std::unique_ptr<cuda::DeviceLoss<float>> f;
      std::unique_ptr<cuda::DeviceLoss<double>> d;
    };
    std::map<int, Device> devices;
  };

  template <class T>
  static const cuda::DeviceLoss<T>& device_loss(CudaSlot& slot, const Loss<T>& loss, int device) {
    if (!slot.state) slot.state = std::make_shared<State>();
    State::Device& dev = static_cast<State*>(slot.state.get())->devices[device];
    if constexpr (std::is_same<T, float>::value) {
      if (!dev.f) dev.f = std::make_unique<cuda::DeviceLoss<float>>(loss);  // (the guard made `device` current)
      return *dev.f;
    } else {
      if (!dev.d) dev.d = std::make_unique<cuda::DeviceLoss<double>>(loss);
      return *dev.d;
    }
  }

  /// Runs f(device loss, logits pointer of the CUDA header's type, int64 labels pointer, stream)
  /// on x's device under the module's lock; returns its outcome, an exception caught on the way
  /// included. int32 labels are widened once on the device (N elements), so that the kernels are
  /// instantiated for one label type.
  template <class F>
  static CudaOutcome call(CudaSlot& slot, const Loss<double>& d, const Loss<float>& fl, const at::Tensor& x,
                          const at::Tensor& labels, F&& f) {
    try {
      const c10::cuda::CUDAGuard guard(x.device());
      const int device = x.get_device();
      const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(x.get_device()).stream();
      const at::Tensor y = labels.scalar_type() == at::kLong ? labels : labels.to(at::kLong);
      const std::int64_t* yp = y.data_ptr<std::int64_t>();
      const std::lock_guard<std::mutex> lock(slot.mutex);
      switch (x.scalar_type()) {
        case at::kFloat: return f(device_loss(slot, fl, device), static_cast<const float*>(x.data_ptr()), yp, stream);
        case at::kDouble: return f(device_loss(slot, d, device), static_cast<const double*>(x.data_ptr()), yp, stream);
        case at::kHalf: return f(device_loss(slot, fl, device), static_cast<const __half*>(x.data_ptr()), yp, stream);
        case at::kBFloat16:
          return f(device_loss(slot, fl, device), static_cast<const __nv_bfloat16*>(x.data_ptr()), yp, stream);
        default:
          return {lmf::detail::message("CUDA logits must be float32, float64, float16 or bfloat16, got ",
                                       c10::toString(x.scalar_type())),
                  nullptr};
      }
    } catch (...) {
      return {std::string(), std::current_exception()};
    }
  }

  /// 256-byte aligned scratch from torch's caching allocator (stream-ordered on the current stream).
  static void* workspace(const at::Tensor& x, std::size_t bytes, at::Tensor& owner) {
    owner = at::empty({static_cast<int64_t>(bytes + 256)}, x.options().dtype(at::kByte));
    const std::uintptr_t p = reinterpret_cast<std::uintptr_t>(owner.data_ptr());
    return reinterpret_cast<void*>((p + 255) & ~std::uintptr_t(255));
  }

  /// Waits for the stream: ok, or the status's message (a bad label or logit, a CUDA error).
  template <class T>
  static CudaOutcome outcome(const cuda::DeviceLoss<T>& dev, cudaStream_t stream) {
    const Status s = dev.status(stream);
    return {s ? std::string() : s.message(), nullptr};
  }

 public:
  CudaOutcome run(CudaSlot& slot, const Loss<double>& d, const Loss<float>& f, const CudaCall& c,
                  at::Tensor& value) const override {
    return call(slot, d, f, c.x, c.y, [&](const auto& dev, const auto* x, const std::int64_t* y, cudaStream_t stream) {
      using T = typename std::decay_t<decltype(dev)>::Scalar;
      using In = std::remove_const_t<std::remove_pointer_t<decltype(x)>>;
      const at::TensorOptions opt = c.x.options().dtype(std::is_same<T, float>::value ? at::kFloat : at::kDouble);
      value = c.per_row ? at::empty(c.row_shape, opt) : at::empty({}, opt);
      In* g = c.grad.defined() ? static_cast<In*>(c.grad.data_ptr()) : nullptr;
      const double* totals = c.totals ? c.totals->data_ptr<double>() : nullptr;
      at::Tensor ws_owner;
      const std::size_t bytes = dev.workspace_bytes(c.layout);
      void* ws = workspace(c.x, bytes, ws_owner);
      dev.value_and_gradient(x, c.layout, y, g, value.template data_ptr<T>(), ws, bytes, stream, totals, T(1));
      return outcome(dev, stream);
    });
  }

  CudaOutcome totals(CudaSlot& slot, const Loss<double>& d, const Loss<float>& f, const at::Tensor& xt,
                     const at::Tensor& yt, const Layout& layout, at::Tensor& out) const override {
    return call(slot, d, f, xt, yt, [&](const auto& dev, const auto* x, const std::int64_t* y, cudaStream_t stream) {
      out = at::empty({static_cast<int64_t>(dev.totals_size())}, xt.options().dtype(at::kDouble));
      at::Tensor ws_owner;
      const std::size_t bytes = dev.workspace_bytes(layout);
      void* ws = workspace(xt, bytes, ws_owner);
      dev.totals(x, layout, y, out.data_ptr<double>(), ws, bytes, stream);
      return outcome(dev, stream);
    });
  }
};

inline const CudaBackendImpl cuda_backend_instance{};

}  // namespace detail
}  // namespace libtorch
}  // namespace lmf

namespace {
// registers the backend when the program (or the extension module) is loaded; internal linkage,
// so every .cu file that includes this header registers the same instance
[[maybe_unused]] const bool lmf_torch_cuda_registered =
    (lmf::libtorch::detail::cuda_backend() = &lmf::libtorch::detail::cuda_backend_instance, true);
}  // namespace
