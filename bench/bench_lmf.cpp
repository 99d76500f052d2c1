// lmf's benchmarks: the fast path, the scalar reference kernel, a naive Eigen version, and the
// memory floor (memcpy of the logits into the gradient buffer), for N * C ~ 4M logits; and the
// compute floors: the fast path on a batch that stays in cache, and the exponential alone.
// libtorch runs in bench_torch.cpp (a separate binary: it links libtorch). bench/run.py runs
// both and prints ns/logit and the ratios.
#include "common.hpp"

#include <cstring>
#if LMF_HAS_MXCSR
#include <xmmintrin.h>
#endif

using namespace lmf_bench;

namespace {

template <class T>
lmf::Loss<T> make(Which which, Index c) {
  const Eigen::VectorXi counts = long_tail_counts(c);
  switch (which) {
    case Which::ce: return lmf::CrossEntropyLoss<T>();
    case Which::focal: return lmf::FocalLoss<T>();
    case Which::ldam: return lmf::LDAMLoss<T>(counts);
    case Which::la: return lmf::LogitAdjustedLoss<T>(counts);
    case Which::bs: return lmf::BalancedSoftmaxLoss<T>(counts);
    case Which::vs: return lmf::VSLoss<T>(counts);
    case Which::ce_smooth: {
      typename lmf::CrossEntropyLoss<T>::Options o;
      o.label_smoothing = T(0.1);
      return lmf::CrossEntropyLoss<T>(o);
    }
    case Which::focal_drw:
      return lmf::FocalLoss<T>::ldam_drw_code(lmf::class_balanced_weights<T>(counts, 0.9999), T(1));
    default: return lmf::LMFLoss<T>(counts);
  }
}

/// The sigmoid focal loss (torchvision's defaults) on the same N x C batch, targets 0/1.
template <class T>
void bm_sigmoid(benchmark::State& state, Index c) {
  Batch<T> b(c);
  MatR<T> t(b.n, c);
  for (Index i = 0; i < t.size(); ++i) t.data()[i] = T((i * 7919) % 5 == 0);
  const lmf::SigmoidFocalLoss<T> loss;
  lmf::SigmoidFocalLoss<T> one = loss;
  one.set_threads(1);
  for (auto _ : state) {
    T v = one.value_and_gradient(b.x, t, b.g);
    benchmark::DoNotOptimize(v);
    benchmark::ClobberMemory();
  }
  set_logits(state, b.n, c);
}

/// rows = 0: N * C ~ 4M logits (rows_for); else that many rows (the in-cache benchmarks).
template <class T>
void bm_lmf(benchmark::State& state, Which which, Index c, lmf::Kernel kernel, bool gradient, int threads,
            Index rows = 0) {
  Batch<T> b(c, Logits::normal2, rows);
  lmf::Loss<T> loss = make<T>(which, c);
  loss.set_kernel(kernel);
  loss.set_threads(threads);
  for (auto _ : state) {
    T v = gradient ? loss.value_and_gradient(b.x, b.y, b.g) : loss.value(b.x, b.y);
    benchmark::DoNotOptimize(v);
    benchmark::ClobberMemory();
  }
  set_logits(state, b.n, c);
}

#if LMF_HAS_MXCSR
/// The subnormal check: LMF value_and_gradient on untrained or trained-network logits, with the
/// caller's MXCSR as a program starts (no FTZ/DAZ) or with FTZ/DAZ set by the caller. lmf
/// flushes subnormals inside its kernels (cpu/fp_env.hpp), so both should cost the same.
template <class T>
void bm_subnormals(benchmark::State& state, Index c, Logits kind, bool caller_ftz) {
  Batch<T> b(c, kind);
  lmf::Loss<T> loss = make<T>(Which::lmf_loss, c);
  loss.set_threads(1);
  const unsigned saved = _mm_getcsr();
  _mm_setcsr(caller_ftz ? saved | 0x8040u : saved & ~0x8040u);
  for (auto _ : state) {
    T v = loss.value_and_gradient(b.x, b.y, b.g);
    benchmark::DoNotOptimize(v);
    benchmark::ClobberMemory();
  }
  _mm_setcsr(saved);
  set_logits(state, b.n, c);
}
#endif

/// What a C++ user would write by hand with Eigen expressions: LMF = LDAM (s, margins) + focal
/// (gamma 2), mean, value and gradient. Row-wise softmax with the max subtracted.
template <class T>
void bm_naive_eigen(benchmark::State& state, Index c, bool gradient) {
  Batch<T> b(c);
  const Eigen::Matrix<T, Eigen::Dynamic, 1> m = lmf::ldam_margins<T>(long_tail_counts(c), T(0.5));
  const T s = 30, gamma = 2;
  const Index n = b.n;
  for (auto _ : state) {
    // LDAM term
    MatR<T> z = s * b.x;
    for (Index i = 0; i < n; ++i) z(i, b.y(i)) -= s * m(b.y(i));
    Eigen::Matrix<T, Eigen::Dynamic, 1> zmax = z.rowwise().maxCoeff();
    MatR<T> e = (z.colwise() - zmax).array().exp().matrix();
    Eigen::Matrix<T, Eigen::Dynamic, 1> sum = e.rowwise().sum();
    MatR<T> p = e.array().colwise() / sum.array();
    T ldam = 0;
    for (Index i = 0; i < n; ++i) ldam -= std::log(p(i, b.y(i)));
    // focal term on the raw logits
    Eigen::Matrix<T, Eigen::Dynamic, 1> xmax = b.x.rowwise().maxCoeff();
    MatR<T> e2 = (b.x.colwise() - xmax).array().exp().matrix();
    Eigen::Matrix<T, Eigen::Dynamic, 1> sum2 = e2.rowwise().sum();
    MatR<T> q = e2.array().colwise() / sum2.array();
    T focal = 0;
    Eigen::Matrix<T, Eigen::Dynamic, 1> coef(n);
    for (Index i = 0; i < n; ++i) {
      const T pt = q(i, b.y(i)), l = -std::log(pt), om = 1 - pt;
      focal += std::pow(om, gamma) * l;
      coef(i) = std::pow(om, gamma) + gamma * pt * l * std::pow(om, gamma - 1);
    }
    T value = (ldam + focal) / T(n);
    if (gradient) {
      for (Index i = 0; i < n; ++i) {
        p(i, b.y(i)) -= 1;
        q(i, b.y(i)) -= 1;
      }
      b.g = (s / T(n)) * p + (q.array().colwise() * (coef.array() / T(n))).matrix();
    }
    benchmark::DoNotOptimize(value);
    benchmark::ClobberMemory();
  }
  set_logits(state, n, c);
}

/// The throughput floor of one exponential per logit: the sweeps' fast_exp2 over 32K logits in cache,
/// each result stored and summed (the least a softmax term's sweep does per logit), in the
/// instruction set lmf's kernels run on.
template <class T>
void bm_exp_floor(benchmark::State& state, Index c) {
  Batch<T> b(c, Logits::normal2, cached_rows_for(c));
  const Index n = b.x.size() - b.x.size() % 16;
  for (Index i = 0; i < n; ++i) b.x.data()[i] = -std::abs(b.x.data()[i]);  // exponents <= 0, as in the kernels
  for (auto _ : state) {
    T s = lmf::detail::isa_exp_floor(b.x.data(), b.g.data(), n);
    benchmark::DoNotOptimize(s);
    benchmark::ClobberMemory();
  }
  set_logits(state, n, 1);
}

template <class T>
void bm_memcpy(benchmark::State& state, Index c) {
  Batch<T> b(c);
  for (auto _ : state) {
    std::memcpy(b.g.data(), b.x.data(), sizeof(T) * std::size_t(b.x.size()));
    benchmark::ClobberMemory();
  }
  set_logits(state, b.n, c);
}

template <class T>
void register_all(const char* type, const std::vector<Index>& classes, bool everything) {
  for (Index c : classes) {
    const std::string suffix = name_suffix(type, c);
    for (bool grad : {true, false}) {
      const std::string g = grad ? "value_and_gradient" : "value";
      benchmark::RegisterBenchmark(("lmf_fast/LMF/" + g + suffix).c_str(), bm_lmf<T>, Which::lmf_loss, c,
                                   lmf::Kernel::automatic, grad, 1, 0);
      benchmark::RegisterBenchmark(("lmf_scalar/LMF/" + g + suffix).c_str(), bm_lmf<T>, Which::lmf_loss, c,
                                   lmf::Kernel::scalar, grad, 1, 0);
      benchmark::RegisterBenchmark(("naive_eigen/LMF/" + g + suffix).c_str(), bm_naive_eigen<T>, c, grad);
    }
    if (everything) {
      for (Which w : {Which::ce, Which::focal, Which::ldam, Which::la, Which::bs, Which::vs, Which::ce_smooth,
                      Which::focal_drw})
        benchmark::RegisterBenchmark((std::string("lmf_fast/") + name(w) + "/value_and_gradient" + suffix).c_str(),
                                     bm_lmf<T>, w, c, lmf::Kernel::automatic, true, 1, 0);
      benchmark::RegisterBenchmark(("lmf_fast/SigmoidFocal/value_and_gradient" + suffix).c_str(), bm_sigmoid<T>, c);
      benchmark::RegisterBenchmark(("lmf_fast_2threads/LMF/value_and_gradient" + suffix).c_str(), bm_lmf<T>,
                                   Which::lmf_loss, c, lmf::Kernel::automatic, true, 2, 0);
      // the compute floors: the same calls on a batch that stays in cache, and the exponential
      for (Which w : {Which::lmf_loss, Which::ce})
        benchmark::RegisterBenchmark((std::string("lmf_incache/") + name(w) + "/value_and_gradient" + suffix).c_str(),
                                     bm_lmf<T>, w, c, lmf::Kernel::automatic, true, 1, cached_rows_for(c));
      if (c == classes.back())
        benchmark::RegisterBenchmark(("exp_floor/exp/one_per_logit" + suffix).c_str(), bm_exp_floor<T>, c);
#if LMF_HAS_MXCSR
      if (c == 2 || c == 10 || c == 1000)
        for (Logits kind : {Logits::untrained, Logits::trained})
          for (bool ftz : {false, true}) {
            const std::string op = std::string(kind == Logits::trained ? "trained" : "untrained") +
                                   (ftz ? "_callerftz" : "_plain");
            benchmark::RegisterBenchmark(("subnormals/LMF/" + op + suffix).c_str(), bm_subnormals<T>, c, kind, ftz);
          }
#endif
    }
    benchmark::RegisterBenchmark(("memcpy_floor" + suffix).c_str(), bm_memcpy<T>, c);
  }
}

}  // namespace

int main(int argc, char** argv) {
  // what this binary's kernels run on (bench/run.py prints it with each table)
  benchmark::AddCustomContext("lmf_simd", lmf::simd_isa());
  benchmark::AddCustomContext("lmf_cpu_simd", lmf::cpu_simd_isa());
  benchmark::AddCustomContext("lmf_flags", LMF_BENCH_FLAGS);
  benchmark::AddCustomContext("lmf_flushes_subnormals", lmf::detail::flushes_subnormals() ? "yes" : "no");
  register_all<float>("float", float_classes(), true);
  register_all<double>("double", double_classes(), false);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
