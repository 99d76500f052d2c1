// The CUDA kernels' row math, run on the CPU: no GPU needed, so it runs in every CI build that
// has nvcc. The functions a row goes through on the device (row_stats: online softmax over a
// thread's classes; merge: the group's combination; finish_row: the epilogue; row_gradient) are
// __host__ __device__; this program calls them exactly as the kernels do for a thread, 8 threads,
// a warp and a block per row (G = 1, 8, 32, 256: lanes take classes lane, lane + G, ...; groups
// of up to 32 merge by xor butterflies, a block's warps then in index order), and compares
// values and gradients with the CPU's scalar kernel. It also checks that a butterfly leaves every
// lane with the same bits (the merge is exactly commutative), which the kernels rely on. What it
// cannot test (launches, shared memory, synchronisation, atomics, and row_exp's device path,
// ex2.approx: on the host row_exp is std::exp) is left to the GPU suite (test_cuda.cu, label gpu).
#include <lmf/lmf.hpp>
#include <lmf/cuda.cuh>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace {

using lmf::Index;
using lmf::cuda::detail::kMaxTerms;
using lmf::cuda::detail::TermState;

int g_checks = 0, g_failures = 0;
void expect(bool ok, const std::string& what) {
  ++g_checks;
  if (!ok && ++g_failures <= 40) std::printf("FAILED: %s\n", what.c_str());
}

template <class T>
struct HostRow {
  const T* x;
  T* g;
  Index stride;
  __host__ __device__ T load(Index c) const { return x[c * stride]; }
  __host__ __device__ void store(Index c, T v) const { g[c * stride] = v; }
};

template <class T>
bool same_bits(const TermState<T>& a, const TermState<T>& b) {
  return a.top == b.top && std::memcmp(&a.ax, &b.ax, sizeof(T)) == 0 && std::memcmp(&a.m, &b.m, sizeof(T)) == 0 &&
         std::memcmp(&a.b, &b.b, sizeof(T)) == 0 && std::memcmp(&a.rest, &b.rest, sizeof(T)) == 0 &&
         std::memcmp(&a.u, &b.u, sizeof(T)) == 0;
}

/// One row as a group of G threads computes it on the device; returns the row's value and
/// writes its gradient.
template <int G, class T>
T emulate_row(const lmf::cuda::detail::Plan<T>& p, const lmf::detail::TermParams<T>* params, const bool* smooth,
              const T* weights, const HostRow<T>& row, Index y, const std::string& what) {
  const int n = p.n_terms;
  std::vector<TermState<T>> lanes(std::size_t(G) * kMaxTerms);
  const T x0 = row.load(0), xy = row.load(y);
  const unsigned all = (1u << n) - 1;
  for (int lane = 0; lane < G; ++lane)
    lmf::cuda::detail::row_stats<G, kMaxTerms>(p, row, y, x0, lane, all, smooth, true, &lanes[std::size_t(lane) * kMaxTerms]);
  TermState<T> st[kMaxTerms];
  for (int t = 0; t < n; ++t) {
    auto at = [&](int lane) -> TermState<T>& { return lanes[std::size_t(lane) * kMaxTerms + t]; };
    const T s = p.terms[t].s;
    if constexpr (G == 1) {
      st[t] = at(0);
    } else {
    constexpr int W = G < 32 ? G : 32;  // butterflies within a warp, or within a group of G < 32
    for (int w = 0; w < G / W; ++w) {  // xor butterflies in each warp, all lanes at once
      for (int o = W / 2; o > 0; o >>= 1) {
        TermState<T> next[W];
        for (int i = 0; i < W; ++i) next[i] = lmf::cuda::detail::merge(at(w * W + i), at(w * W + (i ^ o)), s);
        for (int i = 0; i < W; ++i) at(w * W + i) = next[i];
      }
      bool same = true;
      for (int i = 1; i < W; ++i) same &= same_bits(at(w * W + i), at(w * W));
      expect(same, what + ": lanes of a warp disagree after the butterfly");
    }
    TermState<T> acc = at(0);
    for (int w = 1; w < G / W; ++w) acc = lmf::cuda::detail::merge(acc, at(w * W), s);
    st[t] = acc;
    }
  }
  const lmf::cuda::detail::RowFinish<T> f = lmf::cuda::detail::finish_row<kMaxTerms>(p, params, smooth, weights, st, y, xy, x0);
  for (int lane = 0; lane < G; ++lane) lmf::cuda::detail::row_gradient<G, kMaxTerms>(p, params, smooth, st, f, row, y, lane);
  return f.value;
}

template <class T>
struct Case {
  std::string name;
  lmf::Loss<T> (*make)(const Eigen::VectorXi&);
  double max_s;
};

template <class T>
std::vector<Case<T>> cases() {
  using V = lmf::Vector<T>;
  return {
      {"CE", [](const Eigen::VectorXi&) { return lmf::Loss<T>(lmf::CrossEntropyLoss<T>()); }, 1},
      {"CE weighted smoothing",
       [](const Eigen::VectorXi& n) {
         typename lmf::CrossEntropyLoss<T>::Options o;
         o.class_weights = lmf::class_balanced_weights<T>(n, T(0.999));
         o.label_smoothing = T(0.1);
         return lmf::Loss<T>(lmf::CrossEntropyLoss<T>(o));
       },
       1},
      {"Focal", [](const Eigen::VectorXi&) { return lmf::Loss<T>(lmf::FocalLoss<T>()); }, 1},
      {"Focal gamma 0.5", [](const Eigen::VectorXi&) { return lmf::Loss<T>(lmf::FocalLoss<T>::repo_code(V(), T(0.5))); }, 1},
      {"Focal ldam_drw_code",
       [](const Eigen::VectorXi& n) {
         return lmf::Loss<T>(lmf::FocalLoss<T>::ldam_drw_code(lmf::class_balanced_weights<T>(n, T(0.999))));
       },
       1},
      {"LDAM", [](const Eigen::VectorXi& n) { return lmf::Loss<T>(lmf::LDAMLoss<T>(n)); }, 30},
      {"LMF", [](const Eigen::VectorXi& n) { return lmf::Loss<T>(lmf::LMFLoss<T>(n)); }, 30},
      {"LMF official_code", [](const Eigen::VectorXi& n) { return lmf::Loss<T>(lmf::LMFLoss<T>::official_code(n)); }, 30},
      {"LogitAdjusted", [](const Eigen::VectorXi& n) { return lmf::Loss<T>(lmf::LogitAdjustedLoss<T>(n)); }, 1},
      {"BalancedSoftmax", [](const Eigen::VectorXi& n) { return lmf::Loss<T>(lmf::BalancedSoftmaxLoss<T>(n)); }, 1},
      {"VS", [](const Eigen::VectorXi& n) { return lmf::Loss<T>(lmf::VSLoss<T>(n)); }, 1},
  };
}

template <int G, class T>
void check(const Case<T>& cs, Index C, std::uint32_t seed) {
  const std::string what = cs.name + " C " + std::to_string(C) + " G " + std::to_string(G) + (sizeof(T) == 8 ? " double" : " float");
  const Index N = 12;
  Eigen::VectorXi counts(C);
  for (Index c = 0; c < C; ++c) counts(c) = int(1000 / (1 + c)) + 1;
  lmf::Loss<T> loss = cs.make(counts);
  loss.set_kernel(lmf::Kernel::scalar);
  std::mt19937 rng(seed);
  std::normal_distribution<double> normal(0.0, 2.0);
  Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> x(N, C);
  Eigen::VectorXi y(N);
  for (Index i = 0; i < N; ++i) {
    y(i) = int(rng() % unsigned(C));
    for (Index c = 0; c < C; ++c) x(i, c) = T(normal(rng));
    if (i == 1) x(i, y(i)) += T(14);                      // confident
    if (i == 2) x.row(i).setConstant(T(0.25));            // all tied: the first class is the maximum
    if (i == 3 && C > 1) x(i, C - 1) = x(i, 0) = T(5);    // a tie between the first and last class
    if (i == 4 && cs.max_s <= 1)
      for (Index c = 0; c < C; ++c) x(i, c) = T((c % 2 ? 1e4 : -1e4) * (0.5 + 0.5 * double(c % 3)));
  }
  // the CPU reference: per-row values and the gradient of their sum
  Eigen::Matrix<T, Eigen::Dynamic, 1> v_ref(N);
  Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> g_ref(N, C), g(N, C);
  loss.per_row_and_gradient(x, y, v_ref, g_ref);
  // the device's plan for reduction none, on the host
  const lmf::LossSpec<T>& spec = loss.spec();
  std::array<lmf::detail::TermParams<T>, kMaxTerms> params{};
  std::array<T, kMaxTerms> weights{};
  lmf::Totals totals(lmf::detail::totals_size(spec));
  lmf::detail::plan_terms(spec, C, lmf::Reduction::none, totals, T(1), params, weights);
  lmf::cuda::detail::Plan<T> p{};
  p.n_terms = int(spec.terms.size());
  for (int t = 0; t < p.n_terms; ++t) {
    p.terms[t] = lmf::detail::term_scalars(spec.terms[t], C);
    p.mean_over[t] = int(spec.terms[t].mean_over);
  }
  p.layout = lmf::Layout::row_major(N, C);
  p.limit = lmf::detail::logit_limit(spec);
  bool smooth[kMaxTerms] = {};
  for (int t = 0; t < p.n_terms; ++t) smooth[t] = params[t].smooth != T(0);
  double max_x = 0;
  for (Index k = 0; k < x.size(); ++k) max_x = std::max(max_x, std::abs(double(x.data()[k])));
  const double eps = std::numeric_limits<T>::epsilon();
  const double tol = (sizeof(T) == 8 ? 4096.0 : 80.0) * eps + eps * cs.max_s * std::min(max_x, 1e4);
  const double max_g = g_ref.cwiseAbs().maxCoeff();
  for (Index i = 0; i < N; ++i) {
    const T v = emulate_row<G>(p, params.data(), smooth, weights.data(), HostRow<T>{&x(i, 0), &g(i, 0), 1}, Index(y(i)),
                               what);
    const double ve = std::abs(double(v) - double(v_ref(i))) / (std::abs(double(v_ref(i))) + 1e-30);
    expect(ve <= tol, what + ": value of row " + std::to_string(i) + " error " + std::to_string(ve));
    for (Index c = 0; c < C; ++c) {
      const double a = double(g(i, c)), b = double(g_ref(i, c));
      const double e = std::abs(a - b) / (std::abs(b) + 1e-3 * max_g + 1e-300);
      if (!(e <= tol)) {
        expect(false, what + ": gradient row " + std::to_string(i) + " class " + std::to_string(c) + " error " +
                          std::to_string(e) + " (" + std::to_string(a) + " vs " + std::to_string(b) + ")");
        break;
      }
    }
  }
  ++g_checks;
}

template <class T>
void all() {
  std::uint32_t seed = 1;
  for (const Case<T>& cs : cases<T>())
    for (Index C : {1, 2, 5, 31, 33, 100, 257, 1000}) {
      check<1, T>(cs, C, seed++);
      check<8, T>(cs, C, seed++);
      check<32, T>(cs, C, seed++);
      check<256, T>(cs, C, seed++);
    }
}

}  // namespace

int main() {
  all<float>();
  all<double>();
  std::printf("%d checks, %d failed\n", g_checks, g_failures);
  return g_failures == 0 ? 0 : 1;
}
