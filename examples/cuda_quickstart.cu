// The GPU path in a few lines (docs/guide.md, section 4c): LMF value and gradient of a small
// long-tailed batch on the device, the same on the CPU, and a bad label reported by status().
// Exits 77 without a CUDA device (CTest: skipped).
#include <lmf/cuda.cuh>  // before Eigen / lmf.hpp: keeps Eigen out of device code
#include <lmf/lmf.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

int main() {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("no CUDA device: nothing to run\n");
    return 77;
  }
  const lmf::Index N = 1024, C = 10;
  Eigen::VectorXi counts(C);
  for (lmf::Index c = 0; c < C; ++c) counts(c) = int(5000 / (1 + 3 * c));
  std::vector<float> x(static_cast<std::size_t>(N * C));
  std::vector<std::int64_t> y(static_cast<std::size_t>(N));
  for (lmf::Index i = 0; i < N; ++i) {
    y[std::size_t(i)] = (i * 7) % C;
    for (lmf::Index c = 0; c < C; ++c) x[std::size_t(i * C + c)] = std::sin(float(i * C + c)) + (c == y[std::size_t(i)] ? 1.f : 0.f);
  }

  lmf::LMFLoss<float> loss(counts);
  lmf::cuda::DeviceLoss<float> dev(loss);  // once: copies margins, weights to the device
  const lmf::Layout layout = lmf::Layout::row_major(N, C);
  const std::size_t bytes = dev.workspace_bytes(layout);
  float *d_logits, *d_grad, *d_loss;
  std::int64_t* d_labels;
  void* ws = nullptr;
  cudaMalloc(&d_logits, x.size() * sizeof(float));
  cudaMalloc(&d_grad, x.size() * sizeof(float));
  cudaMalloc(&d_loss, sizeof(float));
  cudaMalloc(&d_labels, y.size() * sizeof(std::int64_t));
  cudaMalloc(&ws, bytes);  // once per batch shape
  cudaMemcpy(d_logits, x.data(), x.size() * sizeof(float), cudaMemcpyHostToDevice);
  cudaMemcpy(d_labels, y.data(), y.size() * sizeof(std::int64_t), cudaMemcpyHostToDevice);
  cudaStream_t stream = nullptr;

  dev.value_and_gradient(d_logits, layout, d_labels, d_grad, d_loss, ws, bytes, stream);
  if (lmf::Status s = dev.status(stream); !s) {
    std::fprintf(stderr, "%s\n", s.message().c_str());
    return 1;
  }
  float gpu = 0;
  std::vector<float> g(x.size()), g_cpu(x.size());
  cudaMemcpy(&gpu, d_loss, sizeof(float), cudaMemcpyDeviceToHost);
  cudaMemcpy(g.data(), d_grad, g.size() * sizeof(float), cudaMemcpyDeviceToHost);
  const float cpu = loss.value_and_gradient(x.data(), layout, y.data(), g_cpu.data());
  double worst = 0;
  for (std::size_t k = 0; k < g.size(); ++k) worst = std::max(worst, double(std::abs(g[k] - g_cpu[k])));
  std::printf("LMF on the GPU %.7f, on the CPU %.7f; largest gradient difference %.2e\n", gpu, cpu, worst);

  // a bad label: nothing written, the status names it
  y[17] = 12;
  cudaMemcpy(d_labels, y.data(), y.size() * sizeof(std::int64_t), cudaMemcpyHostToDevice);
  dev.value_and_gradient(d_logits, layout, d_labels, d_grad, d_loss, ws, bytes, stream);
  const lmf::Status bad = dev.status(stream);
  std::printf("with a bad label: %s\n", bad.message().c_str());

  cudaFree(d_logits), cudaFree(d_grad), cudaFree(d_loss), cudaFree(d_labels), cudaFree(ws);
  const bool ok = std::abs(gpu - cpu) <= 1e-5f * std::abs(cpu) && worst <= 1e-5 && !bad.ok();
  return ok ? 0 : 1;
}
