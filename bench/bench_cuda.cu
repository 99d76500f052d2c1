// bench_cuda: lmf::cuda::DeviceLoss<float> on LMF (1 * LDAM s 30 + 1 * focal gamma 2), one
// GPU, timed with CUDA events (median of repetitions), beside
//   - a device-to-device cudaMemcpyAsync of the logits (the bandwidth floor: read + write), and
//   - a naive multi-kernel baseline written the way a framework runs it: per term, one kernel
//     for the adjusted logits, one for log_softmax, one for the per-row gather and focal
//     factor, one for the backward, each through N x C intermediates in global memory.
// Prints, per C in {2, 10, 100, 1000, 32768, 131072} and per logits type (fp32, bf16), with
// N * C = 64M (or --elements E): ns per logit, the ratio to the memcpy, and the naive/fused
// ratio. Usage: bench_cuda [--elements E] [--reps R] [--classes C]
#include <lmf/cuda.cuh>  // first: it keeps Eigen out of device code (EIGEN_NO_CUDA)
#include <lmf/lmf.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

#define CUDA_OK(call)                                                                      \
  do {                                                                                     \
    cudaError_t e_ = (call);                                                               \
    if (e_ != cudaSuccess) {                                                               \
      std::fprintf(stderr, "CUDA error %s at %s:%d\n", cudaGetErrorString(e_), __FILE__, __LINE__); \
      std::exit(1);                                                                        \
    }                                                                                      \
  } while (0)

template <class In>
__device__ __forceinline__ float ld(In v) {
  return lmf::cuda::detail::Convert<float, In>::load(v);
}
template <class In>
__device__ __forceinline__ In st(float v) {
  return lmf::cuda::detail::Convert<float, In>::store(v);
}

/// Logits of a half-trained network: N(0, 1)-like noise, the label's logit raised by 2.
template <class In>
__global__ void fill(In* x, std::int64_t* y, long long n, long long C) {
  for (long long k = blockIdx.x * (long long)blockDim.x + threadIdx.x; k < n * C; k += (long long)gridDim.x * blockDim.x) {
    const long long i = k / C, c = k % C;
    unsigned h = unsigned(k) * 2654435761u ^ unsigned(k >> 32) * 40503u;
    h ^= h >> 15, h *= 2246822519u, h ^= h >> 13;
    const long long label = (i * 7919) % C;
    float v = (float(h & 0xffff) / 65535.f - 0.5f) * 3.4f;
    if (c == label) v += 2.f;
    x[k] = st<In>(v);
    if (c == 0) y[i] = label;
  }
}

// ---- the naive baseline: a thread per row (C <= 64) or a block per row, one kernel per step ----

/// z = s * (x - m_y [c == y]) (the term's adjusted logits), written N x C.
template <class In>
__global__ void naive_adjust(const In* x, const std::int64_t* y, const float* m, float s, float* z, long long n, long long C) {
  for (long long k = blockIdx.x * (long long)blockDim.x + threadIdx.x; k < n * C; k += (long long)gridDim.x * blockDim.x) {
    const long long i = k / C, c = k % C;
    z[k] = s * (ld(x[k]) - (m && c == y[i] ? m[c] : 0.f));
  }
}

/// logp = z - logsumexp(z), a block per row (shared-memory reductions), written N x C.
__global__ void naive_log_softmax(const float* z, float* logp, long long C) {
  __shared__ float red[256];
  const float* row = z + blockIdx.x * C;
  float mx = -INFINITY;
  for (long long c = threadIdx.x; c < C; c += blockDim.x) mx = fmaxf(mx, row[c]);
  red[threadIdx.x] = mx;
  __syncthreads();
  for (int o = blockDim.x / 2; o > 0; o >>= 1) {
    if (threadIdx.x < o) red[threadIdx.x] = fmaxf(red[threadIdx.x], red[threadIdx.x + o]);
    __syncthreads();
  }
  mx = red[0];
  __syncthreads();
  float sum = 0;
  for (long long c = threadIdx.x; c < C; c += blockDim.x) sum += expf(row[c] - mx);
  red[threadIdx.x] = sum;
  __syncthreads();
  for (int o = blockDim.x / 2; o > 0; o >>= 1) {
    if (threadIdx.x < o) red[threadIdx.x] += red[threadIdx.x + o];
    __syncthreads();
  }
  const float lse = mx + logf(red[0]);
  for (long long c = threadIdx.x; c < C; c += blockDim.x) logp[blockIdx.x * C + c] = row[c] - lse;
}

/// The same for small C: a thread per row.
__global__ void naive_log_softmax_small(const float* z, float* logp, long long n, long long C) {
  const long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float* row = z + i * C;
  float mx = -INFINITY, sum = 0;
  for (long long c = 0; c < C; ++c) mx = fmaxf(mx, row[c]);
  for (long long c = 0; c < C; ++c) sum += expf(row[c] - mx);
  const float lse = mx + logf(sum);
  for (long long c = 0; c < C; ++c) logp[i * C + c] = row[c] - lse;
}

/// Per row: l = -logp_y, the row's value w * phi(l) and the gradient factor phi'(l) * s / n.
__global__ void naive_gather(const float* logp, const std::int64_t* y, float gamma, float s, float* value, float* coef,
                             long long n, long long C) {
  const long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float l = -logp[i * C + y[i]];
  const float p = expf(-l), q = 1.f - p;
  const float mod = gamma == 0.f ? 1.f : powf(q, gamma);
  value[i] = mod * l / float(n);
  coef[i] = (gamma == 0.f ? 1.f : mod - gamma * powf(q, gamma - 1.f) * p * l) * s / float(n);
}

/// grad (+)= coef_i * (exp(logp) - onehot), N x C.
template <class In>
__global__ void naive_backward(const float* logp, const std::int64_t* y, const float* coef, In* g, bool accumulate,
                               long long n, long long C) {
  for (long long k = blockIdx.x * (long long)blockDim.x + threadIdx.x; k < n * C; k += (long long)gridDim.x * blockDim.x) {
    const long long i = k / C, c = k % C;
    const float v = coef[i] * (expf(logp[k]) - (c == y[i] ? 1.f : 0.f));
    g[k] = st<In>(accumulate ? ld(g[k]) + v : v);
  }
}

/// Sum of the per-row values (one block; the baseline's reduction).
__global__ void naive_sum(const float* v, long long n, float* out, bool accumulate) {
  __shared__ float red[256];
  float s = 0;
  for (long long i = threadIdx.x; i < n; i += blockDim.x) s += v[i];
  red[threadIdx.x] = s;
  __syncthreads();
  for (int o = blockDim.x / 2; o > 0; o >>= 1) {
    if (threadIdx.x < o) red[threadIdx.x] += red[threadIdx.x + o];
    __syncthreads();
  }
  if (threadIdx.x == 0) *out = accumulate ? *out + red[0] : red[0];
}

template <class F>
double median_ms(F&& f, int reps) {
  cudaEvent_t a, b;
  CUDA_OK(cudaEventCreate(&a));
  CUDA_OK(cudaEventCreate(&b));
  f();  // warm-up
  CUDA_OK(cudaDeviceSynchronize());
  std::vector<float> t;
  for (int r = 0; r < reps; ++r) {
    CUDA_OK(cudaEventRecord(a));
    f();
    CUDA_OK(cudaEventRecord(b));
    CUDA_OK(cudaEventSynchronize(b));
    float ms = 0;
    CUDA_OK(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms);
  }
  CUDA_OK(cudaEventDestroy(a));
  CUDA_OK(cudaEventDestroy(b));
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

template <class In>
void run(long long C, long long elements, int reps) {
  const long long n = elements / C;
  const std::size_t count = std::size_t(n * C);
  In *x, *g;
  std::int64_t* y;
  float *value, *z, *logp, *rowv, *coef, *m;
  CUDA_OK(cudaMalloc(&x, count * sizeof(In)));
  CUDA_OK(cudaMalloc(&g, count * sizeof(In)));
  CUDA_OK(cudaMalloc(&y, std::size_t(n) * sizeof(std::int64_t)));
  CUDA_OK(cudaMalloc(&value, 2 * sizeof(float)));
  fill<In><<<4096, 256>>>(x, y, n, C);
  CUDA_OK(cudaGetLastError());

  Eigen::VectorXi counts(C);
  for (long long c = 0; c < C; ++c) counts(c) = int(std::max(1.0, 5000.0 / double(1 + c)));
  lmf::LMFLoss<float> loss(counts);
  lmf::cuda::DeviceLoss<float> dev(loss);
  const lmf::Layout layout = lmf::Layout::row_major(n, C);
  const std::size_t bytes = dev.workspace_bytes(layout);
  void* ws;
  CUDA_OK(cudaMalloc(&ws, bytes));

  const double t_copy = median_ms([&] { CUDA_OK(cudaMemcpyAsync(g, x, count * sizeof(In), cudaMemcpyDeviceToDevice)); }, reps);
  const double t_fused = median_ms([&] { CUDA_OK(dev.value_and_gradient(x, layout, y, g, value, ws, bytes, nullptr)); }, reps);
  const lmf::Status status = dev.status(nullptr);
  if (!status.ok()) std::fprintf(stderr, "lmf status: %s\n", status.message().c_str());
  float fused_value = 0;
  CUDA_OK(cudaMemcpy(&fused_value, value, sizeof(float), cudaMemcpyDeviceToHost));
  dev.set_validate_logits(false);
  const double t_unchecked = median_ms([&] { CUDA_OK(dev.value_and_gradient(x, layout, y, g, value, ws, bytes, nullptr)); }, reps);
  dev.set_validate_logits(true);

  // the naive baseline (float intermediates)
  CUDA_OK(cudaMalloc(&z, count * sizeof(float)));
  CUDA_OK(cudaMalloc(&logp, count * sizeof(float)));
  CUDA_OK(cudaMalloc(&rowv, std::size_t(n) * sizeof(float)));
  CUDA_OK(cudaMalloc(&coef, std::size_t(n) * sizeof(float)));
  CUDA_OK(cudaMalloc(&m, std::size_t(C) * sizeof(float)));
  const Eigen::VectorXf margins = lmf::ldam_margins<float>(counts, 0.5f);
  CUDA_OK(cudaMemcpy(m, margins.data(), std::size_t(C) * sizeof(float), cudaMemcpyHostToDevice));
  const int rows_blocks = int((n + 255) / 256);
  auto naive = [&] {
    for (int term = 0; term < 2; ++term) {  // LDAM (s 30, margins), then focal (gamma 2)
      const float s = term == 0 ? 30.f : 1.f, gamma = term == 0 ? 0.f : 2.f;
      naive_adjust<In><<<4096, 256>>>(x, y, term == 0 ? m : nullptr, s, z, n, C);
      if (C <= 64)
        naive_log_softmax_small<<<rows_blocks, 256>>>(z, logp, n, C);
      else
        naive_log_softmax<<<unsigned(n), 256>>>(z, logp, C);
      naive_gather<<<rows_blocks, 256>>>(logp, y, gamma, s, rowv, coef, n, C);
      naive_backward<In><<<4096, 256>>>(logp, y, coef, g, term == 1, n, C);
      naive_sum<<<1, 256>>>(rowv, n, value + 1, term == 1);
    }
  };
  const double t_naive = median_ms(naive, reps);
  CUDA_OK(cudaGetLastError());
  float naive_value = 0;
  CUDA_OK(cudaMemcpy(&naive_value, value + 1, sizeof(float), cudaMemcpyDeviceToHost));

  const double per = 1e6 / double(count);  // ms -> ns per logit
  std::printf("| %6lld | %4s | %8.4f | %8.4f | %5.2f | %8.4f | %5.2f | %8.4f | %5.1f | %.6g / %.6g |\n", C,
              sizeof(In) == 4 ? "fp32" : "bf16", t_copy * per, t_fused * per, t_fused / t_copy, t_unchecked * per,
              t_unchecked / t_copy, t_naive * per, t_naive / t_fused, double(fused_value), double(naive_value));
  cudaFree(x), cudaFree(g), cudaFree(y), cudaFree(value), cudaFree(ws), cudaFree(z), cudaFree(logp), cudaFree(rowv),
      cudaFree(coef), cudaFree(m);
}

}  // namespace

int main(int argc, char** argv) {
  long long elements = 64ll << 20;
  int reps = 20;
  long long only = 0;  // --classes C: that C alone
  for (int a = 1; a + 1 < argc; a += 2) {
    if (!std::strcmp(argv[a], "--elements")) elements = std::atoll(argv[a + 1]);
    if (!std::strcmp(argv[a], "--reps")) reps = std::atoi(argv[a + 1]);
    if (!std::strcmp(argv[a], "--classes")) only = std::atoll(argv[a + 1]);
  }
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("bench_cuda: no CUDA device\n");
    return 77;
  }
  cudaDeviceProp prop{};
  CUDA_OK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s (sm_%d%d, %d SMs); LMF (LDAM s 30 + focal gamma 2), row-major, N*C = %lld, median of %d\n\n",
              prop.name, prop.major, prop.minor, prop.multiProcessorCount, elements, reps);
  std::printf("| C | type | memcpy ns/logit | lmf ns/logit | lmf/memcpy | unvalidated ns/logit | unvalidated/memcpy | "
              "naive ns/logit | naive/lmf | value lmf / naive |\n|---|---|---|---|---|---|---|---|---|---|\n");
  for (long long C : {2ll, 10ll, 100ll, 1000ll, 32768ll, 131072ll}) {
    if (only && C != only) continue;
    run<float>(C, elements, reps);
    run<__nv_bfloat16>(C, elements, reps);
  }
  return 0;
}
