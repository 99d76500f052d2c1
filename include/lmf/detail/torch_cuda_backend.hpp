// lmf/detail/torch_cuda_backend.hpp — the seam between lmf/torch.hpp (compiled by the host
// compiler) and lmf/torch_cuda.cuh (compiled by nvcc): lmf::libtorch's modules send CUDA tensors
// through a CudaBackend, which lmf/torch_cuda.cuh registers when a .cu file of the program
// includes it. Nothing here needs CUDA; the host side only sees tensors and lmf's own types.
#pragma once

#include <lmf/loss.hpp>

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace lmf {
namespace libtorch {
namespace detail {

/// A module's device-side state (its losses' per-class vectors copied to each GPU it has seen),
/// owned by the module, made and read by the backend under `mutex`. set_class_weights drops it.
struct CudaSlot {
  std::mutex mutex;
  std::shared_ptr<void> state;
};

/// One call on CUDA tensors: logits x (float32, float64, float16 or bfloat16) read through
/// `layout`, labels y (int64 or int32, contiguous, on x's device).
///
/// The backend returns its outcome instead of throwing (CudaOutcome), and lmf/torch.hpp raises
/// it before the autograd node is made (see Fused there).
struct CudaCall {
  const at::Tensor& x;
  const at::Tensor& y;
  const Layout& layout;
  at::Tensor grad;                 ///< x's dtype and strides on x's device, or undefined (no gradient)
  const at::Tensor* totals;        ///< float64 on x's device, summed over the shards, or null
  bool per_row;                    ///< reduction none: one value per row, of shape row_shape
  std::vector<int64_t> row_shape;  ///< (N, d1, ...)
};

/// A call's outcome: ok, lmf's message for bad input (raised as lmf::Error), or another exception
/// (out of memory, a CUDA error inside PyTorch) to rethrow as it was.
struct CudaOutcome {
  std::string message;
  std::exception_ptr exception;
  bool ok() const { return message.empty() && !exception; }
};

class CudaBackend {
 public:
  virtual ~CudaBackend() = default;
  /// The value (float32 for x of 16 or 32 bits, float64 for double; 0-dim or row_shape) into
  /// `value` and, if call.grad is defined, the gradient written into it, on the current stream of
  /// x's device. Waits for that stream; for bad input the outcome carries the message an
  /// lmf::Error carries on the CPU, and grad and value are not written.
  virtual CudaOutcome run(CudaSlot& slot, const Loss<double>& d, const Loss<float>& f, const CudaCall& call,
                          at::Tensor& value) const = 0;
  /// This shard's totals into `out` (float64, totals_size entries, on x's device); outcome as run.
  virtual CudaOutcome totals(CudaSlot& slot, const Loss<double>& d, const Loss<float>& f, const at::Tensor& x,
                             const at::Tensor& y, const Layout& layout, at::Tensor& out) const = 0;
};

/// The registered backend (null until a .cu file of the program includes lmf/torch_cuda.cuh).
inline const CudaBackend*& cuda_backend() {
  static const CudaBackend* backend = nullptr;
  return backend;
}

}  // namespace detail
}  // namespace libtorch
}  // namespace lmf
