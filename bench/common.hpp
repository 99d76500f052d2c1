// Shared set-up of lmf's benchmarks: the sizes, the batches, the losses.
#pragma once

#include <lmf/lmf.hpp>

#include <benchmark/benchmark.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

namespace lmf_bench {

using lmf::Index;
template <class T>
using MatR = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// The class counts benchmarked (bench_lmf and bench_torch use the same): float at every C,
/// double at 10 and 1000.
inline const std::vector<Index>& float_classes() {
  static const std::vector<Index> c = {2, 7, 10, 100, 1000, 32768};
  return c;
}
inline const std::vector<Index>& double_classes() {
  static const std::vector<Index> c = {10, 1000};
  return c;
}

/// "/float/C:10": the end of every benchmark name; bench/run.py parses it.
inline std::string name_suffix(const char* type, Index c) {
  return std::string("/") + type + "/C:" + std::to_string(c);
}

/// N * C ~ 4M logits for every C (the setting).
inline Index rows_for(Index c) { return std::max<Index>(1, (Index(1) << 22) / c); }

/// N * C ~ 32K logits: 128 KB of float logits and as much gradient, which stay in L2 (512 KB
/// and more per core on the project's hosts) from one call to the next. The in-cache benchmarks
/// time the compute alone, without memory traffic.
inline Index cached_rows_for(Index c) { return std::max<Index>(1, (Index(1) << 15) / c); }

inline Eigen::VectorXi long_tail_counts(Index c) {
  Eigen::VectorXi n(c);
  for (Index j = 0; j < c; ++j)
    n(j) = std::max(1, int(std::lround(5000.0 * std::pow(100.0, -double(j) / double(std::max<Index>(c - 1, 1))))));
  return n;
}

/// The logits of a batch: N(0, 2) (the default of every table), N(0, 1) (an untrained network),
/// or those of a trained network: wide spread and a dominant target (N(-4, 3), the target's
/// N(8, 2)), where LDAM's s = 30 sends most exponentials below 1e-30 and the gradient's products
/// with them would be subnormal.
enum class Logits { normal2, untrained, trained };

/// A fixed random batch: row-major N x C logits (PyTorch's layout) and labels.
template <class T>
struct Batch {
  MatR<T> x, g;
  Eigen::VectorXi y;
  Index n, c;
  explicit Batch(Index classes, Logits kind = Logits::normal2, Index rows = 0)
      : n(rows > 0 ? rows : rows_for(classes)), c(classes) {
    std::mt19937_64 gen(42);
    const double mean = kind == Logits::trained ? -4 : 0;
    const double sd = kind == Logits::normal2 ? 2 : kind == Logits::untrained ? 1 : 3;
    std::normal_distribution<double> d(mean, sd), target(8, 2);
    std::uniform_int_distribution<int> u(0, int(c) - 1);
    x.resize(n, c);
    g.resize(n, c);
    y.resize(n);
    for (Index i = 0; i < x.size(); ++i) x.data()[i] = T(d(gen));
    for (Index i = 0; i < n; ++i) y(i) = u(gen);
    if (kind == Logits::trained)
      for (Index i = 0; i < n; ++i) x(i, y(i)) = T(target(gen));
  }
};

/// The losses benchmarked: LMF (the paper's defaults), its single-term relatives and the
/// long-tail family (logit adjustment, balanced softmax, VS, label smoothing, LDAM-DRW's focal).
enum class Which { lmf_loss, ce, focal, ldam, la, bs, vs, ce_smooth, focal_drw, sigmoid };

inline const char* name(Which w) {
  switch (w) {
    case Which::ce: return "CE";
    case Which::focal: return "Focal";
    case Which::ldam: return "LDAM";
    case Which::la: return "LogitAdjusted";
    case Which::bs: return "BalancedSoftmax";
    case Which::vs: return "VS";
    case Which::ce_smooth: return "CE_smooth0.1";
    case Which::focal_drw: return "Focal_LDAM-DRW";
    case Which::sigmoid: return "SigmoidFocal";
    default: return "LMF";
  }
}

/// Benchmark counters: logits per second (Google Benchmark prints its inverse in the script).
inline void set_logits(benchmark::State& state, Index n, Index c) {
  state.SetItemsProcessed(int64_t(state.iterations()) * n * c);
  state.counters["N"] = double(n);
  state.counters["C"] = double(c);
}

}  // namespace lmf_bench
