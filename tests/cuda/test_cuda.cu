// The CUDA header's tests (CTest label `gpu`): every named loss and preset x layout x logits
// type against the CPU scalar kernel on the same rounded inputs; bad inputs (status, gradient and
// value untouched); in place; totals and grad_scale; determinism (two runs bitwise equal);
// calls the host rejects. Without a CUDA device the program prints why and exits 77, which CTest
// reports as skipped (SKIP_RETURN_CODE), never as passed.
#include <lmf/lmf.hpp>
#include <lmf/cuda.cuh>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <map>
#include <string>
#include <vector>

namespace {

int g_checks = 0, g_failures = 0;
// the largest elementwise gradient error seen, per logits type (printed at the end: what the
// docs quote)
std::map<std::string, double> g_worst;

void expect(bool ok, const std::string& what) {
  ++g_checks;
  if (!ok) {
    ++g_failures;
    if (g_failures <= 50) std::printf("FAILED: %s\n", what.c_str());
  }
}

#define CUDA_OK(call)                                                                              \
  do {                                                                                             \
    cudaError_t e_ = (call);                                                                       \
    if (e_ != cudaSuccess) {                                                                       \
      std::printf("CUDA error %s at %s:%d\n", cudaGetErrorString(e_), __FILE__, __LINE__);         \
      std::exit(1);                                                                                \
    }                                                                                              \
  } while (0)

/// A device buffer of n elements.
template <class U>
struct Buffer {
  U* p = nullptr;
  std::size_t n = 0;
  explicit Buffer(std::size_t count) : n(count) { CUDA_OK(cudaMalloc(&p, std::max<std::size_t>(n, 1) * sizeof(U))); }
  ~Buffer() { cudaFree(p); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  void up(const std::vector<U>& v) { CUDA_OK(cudaMemcpy(p, v.data(), n * sizeof(U), cudaMemcpyHostToDevice)); }
  std::vector<U> down() const {
    std::vector<U> v(n);
    CUDA_OK(cudaMemcpy(v.data(), p, n * sizeof(U), cudaMemcpyDeviceToHost));
    return v;
  }
};

// host conversions of the logits' types
template <class In>
double to_double(In v) {
  return double(v);
}
template <>
double to_double(__half v) {
  return double(__half2float(v));
}
template <>
double to_double(__nv_bfloat16 v) {
  return double(__bfloat162float(v));
}
template <class In>
In from_double(double v) {
  return In(v);
}
template <>
__half from_double<__half>(double v) {
  return __float2half_rn(float(v));
}
template <>
__nv_bfloat16 from_double<__nv_bfloat16>(double v) {
  return __float2bfloat16_rn(float(v));
}
template <class In>
const char* type_name() {
  return std::is_same<In, double>::value ? "double" : std::is_same<In, float>::value ? "float"
         : std::is_same<In, __half>::value ? "half" : "bf16";
}
/// Relative precision of the gradient as stored in In (its rounding), beyond the math's.
template <class In>
double storage_eps() {
  return std::is_same<In, __half>::value ? std::ldexp(1.0, -11) : std::is_same<In, __nv_bfloat16>::value ? std::ldexp(1.0, -8) : 0.0;
}

/// The most rounding to the storage type can move an entry in its subnormal range: half of the
/// spacing there (half: 2^-25, below 2^-14 = 6.1e-5, where a mean over N >~ 10^4 rows puts most
/// gradient entries; bf16 has float's exponent range, so nothing a float kernel gives is there).
template <class In>
double storage_floor() {
  return std::is_same<In, __half>::value ? std::ldexp(1.0, -25) : 0.0;
}

template <class T>
using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>;

/// A loss to test, by name.
template <class T>
struct Case {
  std::string name;
  std::function<lmf::Loss<T>(const Eigen::VectorXi& counts)> make;
  double max_s;  ///< the largest logit scale (exp's conditioning)
};

template <class T>
std::vector<Case<T>> cases() {
  using V = lmf::Vector<T>;
  auto weights = [](const Eigen::VectorXi& counts) {
    return lmf::class_balanced_weights<T>(counts, T(0.999)).eval();
  };
  std::vector<Case<T>> c;
  c.push_back({"CE", [](const Eigen::VectorXi&) { return lmf::Loss<T>(lmf::CrossEntropyLoss<T>()); }, 1});
  c.push_back({"CE weighted smoothing sum", [=](const Eigen::VectorXi& n) {
                 typename lmf::CrossEntropyLoss<T>::Options o;
                 o.class_weights = weights(n);
                 o.label_smoothing = T(0.1);
                 o.reduction = lmf::Reduction::sum;
                 return lmf::Loss<T>(lmf::CrossEntropyLoss<T>(o));
               }, 1});
  c.push_back({"CE smoothing (any C)", [](const Eigen::VectorXi&) {  // unweighted: W = C of the batch
                 typename lmf::CrossEntropyLoss<T>::Options o;
                 o.label_smoothing = T(0.2);
                 return lmf::Loss<T>(lmf::CrossEntropyLoss<T>(o));
               }, 1});
  c.push_back({"Focal", [](const Eigen::VectorXi&) { return lmf::Loss<T>(lmf::FocalLoss<T>()); }, 1});
  c.push_back({"Focal repo_code gamma 0.5", [](const Eigen::VectorXi&) {
                 return lmf::Loss<T>(lmf::FocalLoss<T>::repo_code(V(), T(0.5)));
               }, 1});
  c.push_back({"Focal ldam_drw_code", [=](const Eigen::VectorXi& n) {
                 return lmf::Loss<T>(lmf::FocalLoss<T>::ldam_drw_code(weights(n)));
               }, 1});
  c.push_back({"LDAM", [](const Eigen::VectorXi& n) { return lmf::Loss<T>(lmf::LDAMLoss<T>(n)); }, 30});
  c.push_back({"LMF", [](const Eigen::VectorXi& n) { return lmf::Loss<T>(lmf::LMFLoss<T>(n)); }, 30});
  c.push_back({"LMF weighted none", [=](const Eigen::VectorXi& n) {
                 typename lmf::LMFLoss<T>::Options o;
                 o.class_weights = weights(n);
                 o.reduction = lmf::Reduction::none;
                 return lmf::Loss<T>(lmf::LMFLoss<T>(n, o));
               }, 30});
  c.push_back({"LMF official_code", [](const Eigen::VectorXi& n) { return lmf::Loss<T>(lmf::LMFLoss<T>::official_code(n)); }, 30});
  c.push_back({"LMF seed_code", [=](const Eigen::VectorXi& n) {
                 return lmf::Loss<T>(lmf::LMFLoss<T>::seed_code(n, weights(n)));
               }, 30});
  c.push_back({"LogitAdjusted", [](const Eigen::VectorXi& n) { return lmf::Loss<T>(lmf::LogitAdjustedLoss<T>(n)); }, 1});
  c.push_back({"BalancedSoftmax", [](const Eigen::VectorXi& n) { return lmf::Loss<T>(lmf::BalancedSoftmaxLoss<T>(n)); }, 1});
  c.push_back({"VS", [](const Eigen::VectorXi& n) { return lmf::Loss<T>(lmf::VSLoss<T>(n)); }, 1});
  return c;
}

struct Shape {
  const char* name;
  lmf::Index n, c, inner;
  int kind;  // 0 row-major, 1 column-major, 2 (N, C, d), 3 row-major with padded rows
  lmf::Layout layout() const {
    switch (kind) {
      case 0: return lmf::Layout::row_major(n, c);
      case 1: return lmf::Layout::col_major(n, c);
      case 2: return lmf::Layout::nchw(n, c, inner);
      default: return lmf::Layout{n, c, 1, c + 3, 1, 0};
    }
  }
  std::size_t elements() const { return std::size_t(kind == 3 ? n * (c + 3) : n * c * inner); }
};

/// A batch: logits in In (random, a few confident rows, one row at +-1e4 when allowed), labels
/// with some ignored rows.
template <class In>
void make_batch(const Shape& sh, std::uint32_t seed, bool large, std::vector<In>& x, std::vector<std::int64_t>& y,
                Eigen::VectorXi& counts) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> normal(0.0, 2.0);
  const lmf::Layout l = sh.layout();
  const lmf::Index rows = l.rows(), C = sh.c;
  x.assign(sh.elements(), from_double<In>(0.0));
  y.resize(std::size_t(rows));
  counts.resize(C);
  for (lmf::Index c = 0; c < C; ++c) counts(c) = int(1000 / (1 + c)) + 1;
  for (lmf::Index i = 0; i < rows; ++i) {
    y[std::size_t(i)] = (i % 11 == 3) ? -100 : std::int64_t(rng() % std::uint32_t(C));
    const lmf::Index off = l.row_offset(i);
    for (lmf::Index c = 0; c < C; ++c) {
      double v = normal(rng);
      if (i % 7 == 1 && c == y[std::size_t(i)]) v += 12;  // confident rows
      if (large && i == 2) v = (c % 2 ? 1e4 : -1e4) * (0.5 + 0.5 * double(c % 3));
      x[std::size_t(off + c * l.class_stride)] = from_double<In>(v);
    }
  }
}

/// One loss on one batch: the device against the CPU scalar kernel on the same rounded logits.
template <class T, class In, class L>
void check_case(const Case<T>& cs, const Shape& sh, std::uint32_t seed) {
  const std::string what = cs.name + " " + sh.name + " " + type_name<In>() + (sizeof(L) == 4 ? " int32" : " int64");
  std::vector<In> xin;
  std::vector<std::int64_t> y64;
  Eigen::VectorXi counts;
  const bool large = cs.max_s <= 1;  // +-1e4 rows (s 30 would take them past the overflow limit in half)
  make_batch<In>(sh, seed, large && !std::is_same<In, __half>::value, xin, y64, counts);
  lmf::Loss<T> loss = cs.make(counts);
  const lmf::Layout l = sh.layout();
  const lmf::Index rows = l.rows();
  // the CPU reference on the rounded logits, in T
  std::vector<T> xt(xin.size());
  for (std::size_t k = 0; k < xin.size(); ++k) xt[k] = T(to_double(xin[k]));
  std::vector<L> y(y64.begin(), y64.end());
  lmf::Loss<T> ref = loss;
  ref.set_kernel(lmf::Kernel::scalar);
  std::vector<T> g_ref(xin.size(), T(0)), v_ref(std::size_t(rows), T(0));
  T value_ref = T(0);
  const bool none = loss.reduction() == lmf::Reduction::none;
  if (none)
    ref.per_row(xt.data(), l, y.data(), v_ref.data(), g_ref.data());
  else
    value_ref = ref.value_and_gradient(xt.data(), l, y.data(), g_ref.data());

  lmf::cuda::DeviceLoss<T> dev(loss);
  Buffer<In> dx(xin.size()), dg(xin.size());
  Buffer<L> dy(y.size());
  Buffer<T> dv(none ? std::size_t(rows) : 1);
  const std::size_t bytes = dev.workspace_bytes(l);
  Buffer<unsigned char> ws(bytes);
  dx.up(xin);
  dy.up(y);
  CUDA_OK(cudaMemset(dg.p, 0, dg.n * sizeof(In)));
  expect(dev.value_and_gradient(dx.p, l, dy.p, dg.p, dv.p, ws.p, bytes, nullptr) == cudaSuccess, what + ": launch");
  const lmf::Status st = dev.status(nullptr);
  expect(st.ok(), what + ": status " + st.message());
  const std::vector<In> g = dg.down();
  const std::vector<T> v = dv.down();

  double max_ref = 0, max_x = 0;
  for (T gv : g_ref) max_ref = std::max(max_ref, std::abs(double(gv)));
  for (T xv : xt) max_x = std::max(max_x, std::abs(double(xv)));
  const double eps = std::numeric_limits<T>::epsilon();
  const double tol = (sizeof(T) == 8 ? 4096.0 : 80.0) * eps + eps * cs.max_s * std::min(max_x, 1e4) + storage_eps<In>();
  // elementwise, relative to each entry (plus a floor of tol * 1e-3 * max|g| for entries that
  // are sums of terms of opposite signs), and normwise
  double worst = 0, diff2 = 0, ref2 = 0;
  std::size_t at = 0;
  for (lmf::Index i = 0; i < rows; ++i)
    for (lmf::Index c = 0; c < sh.c; ++c) {
      const std::size_t k = std::size_t(l.row_offset(i) + c * l.class_stride);
      const double a = to_double(g[k]), b = double(g_ref[k]);
      const double e = std::max(0.0, std::abs(a - b) - storage_floor<In>()) / (std::abs(b) + 1e-3 * max_ref + 1e-300);
      if (!(e <= worst)) worst = e, at = k;
      diff2 += (a - b) * (a - b), ref2 += b * b;
    }
  double& seen = g_worst[type_name<In>()];
  seen = std::max(seen, worst);
  expect(worst <= tol, what + ": gradient elementwise error " + std::to_string(worst) + " > " + std::to_string(tol) +
                           " at element " + std::to_string(at));
  expect(std::sqrt(diff2) <= tol * std::sqrt(ref2) + 1e-300, what + ": gradient normwise error");
  if (none) {
    double vw = 0;
    for (lmf::Index i = 0; i < rows; ++i)
      vw = std::max(vw, std::abs(double(v[std::size_t(i)]) - double(v_ref[std::size_t(i)])) /
                            (std::abs(double(v_ref[std::size_t(i)])) + 1e-30));
    expect(vw <= tol, what + ": per-row values error " + std::to_string(vw));
  } else {
    const double e = std::abs(double(v[0]) - double(value_ref)) / (std::abs(double(value_ref)) + 1e-30);
    expect(e <= tol, what + ": value error " + std::to_string(e) + " (device " + std::to_string(double(v[0])) +
                         ", CPU " + std::to_string(double(value_ref)) + ")");
  }

  // determinism: a second run, bitwise equal
  CUDA_OK(cudaMemset(dg.p, 0, dg.n * sizeof(In)));
  expect(dev.value_and_gradient(dx.p, l, dy.p, dg.p, dv.p, ws.p, bytes, nullptr) == cudaSuccess, what + ": launch 2");
  const std::vector<In> g2 = dg.down();
  const std::vector<T> v2 = dv.down();
  expect(std::memcmp(g.data(), g2.data(), g.size() * sizeof(In)) == 0 &&
             std::memcmp(v.data(), v2.data(), v.size() * sizeof(T)) == 0,
         what + ": two runs differ");

  // in place: the gradient over the logits, bitwise the separate buffer's
  Buffer<In> dxg(xin.size());
  dxg.up(xin);
  expect(dev.value_and_gradient(dxg.p, l, dy.p, dxg.p, dv.p, ws.p, bytes, nullptr) == cudaSuccess, what + ": in place");
  const std::vector<In> g3 = dxg.down();
  bool same = true;
  for (lmf::Index i = 0; i < rows; ++i)
    for (lmf::Index c = 0; c < sh.c; ++c) {
      const std::size_t k = std::size_t(l.row_offset(i) + c * l.class_stride);
      same &= std::memcmp(&g3[k], &g[k], sizeof(In)) == 0;
    }
  expect(same, what + ": in place differs from a separate gradient");
}

/// Bad inputs: the first bad label / logit named as on the CPU; gradient and value untouched.
template <class T, class In>
void check_bad_inputs(const Shape& sh) {
  const std::string what = std::string("bad input ") + sh.name + " " + type_name<In>();
  std::vector<In> xin;
  std::vector<std::int64_t> y;
  Eigen::VectorXi counts;
  make_batch<In>(sh, 7, false, xin, y, counts);
  lmf::LMFLoss<T> loss(counts);
  const lmf::Layout l = sh.layout();
  const lmf::Index rows = l.rows();
  lmf::cuda::DeviceLoss<T> dev(loss);
  Buffer<In> dx(xin.size()), dg(xin.size());
  Buffer<std::int64_t> dy(y.size());
  Buffer<T> dv(1);
  const std::size_t bytes = dev.workspace_bytes(l);
  Buffer<unsigned char> ws(bytes);
  const In sentinel = from_double<In>(-7.0);
  const std::vector<In> fill(xin.size(), sentinel);
  const T value_sentinel = T(-3);
  auto run_and_compare = [&](const std::vector<In>& xs, const std::vector<std::int64_t>& ys, const std::string& label) {
    dx.up(xs);
    dy.up(ys);
    dg.up(fill);
    dv.up(std::vector<T>{value_sentinel});
    expect(dev.value_and_gradient(dx.p, l, dy.p, dg.p, dv.p, ws.p, bytes, nullptr) == cudaSuccess, what + label + ": launch");
    const lmf::Status st = dev.status(nullptr);
    std::vector<T> xt(xs.size());
    for (std::size_t k = 0; k < xs.size(); ++k) xt[k] = T(to_double(xs[k]));
    std::vector<T> gc(xs.size());
    T vc{};
    const lmf::Status cpu = loss.try_value_and_gradient(xt.data(), l, ys.data(), gc.data(), vc);
    expect(!st.ok() && !cpu.ok() && st.message() == cpu.message(),
           what + label + ": device says '" + st.message() + "', CPU says '" + cpu.message() + "'");
    const std::vector<In> g = dg.down();
    expect(std::memcmp(g.data(), fill.data(), g.size() * sizeof(In)) == 0, what + label + ": gradient written");
    expect(dv.down()[0] == value_sentinel, what + label + ": value written");
  };
  // two bad labels: the first is named
  std::vector<std::int64_t> yb = y;
  yb[std::size_t(rows - 2)] = -5;
  yb[std::size_t(std::min<lmf::Index>(5, rows - 3))] = sh.c;
  run_and_compare(xin, yb, " label");
  // a NaN logit in a counted row, and a later infinite one; an ignored row's NaN is allowed
  std::vector<In> xb = xin;
  lmf::Index bad_row = 4;
  while (y[std::size_t(bad_row)] == -100) ++bad_row;
  xb[std::size_t(l.row_offset(bad_row) + (sh.c - 1) * l.class_stride)] = from_double<In>(std::nan(""));
  xb[std::size_t(l.row_offset(rows - 1))] = from_double<In>(INFINITY);
  xb[std::size_t(l.row_offset(3))] = from_double<In>(std::nan(""));  // row 3 is ignored (i % 11 == 3)
  run_and_compare(xb, y, " logit");
  // the same NaN, in place: the logits untouched
  dx.up(xb);
  expect(dev.value_and_gradient(dx.p, l, dy.p, dx.p, dv.p, ws.p, bytes, nullptr) == cudaSuccess, what + " in place: launch");
  expect(!dev.status(nullptr).ok(), what + " in place: status");
  const std::vector<In> after = dx.down();
  expect(std::memcmp(after.data(), xb.data(), xb.size() * sizeof(In)) == 0, what + " in place: logits written");
  // an ignored NaN alone is fine
  std::vector<In> xi = xin;
  xi[std::size_t(l.row_offset(3))] = from_double<In>(std::nan(""));
  dx.up(xi);
  dy.up(y);
  expect(dev.value_and_gradient(dx.p, l, dy.p, dg.p, dv.p, ws.p, bytes, nullptr) == cudaSuccess, what + " ignored NaN");
  expect(dev.status(nullptr).ok(), what + " ignored NaN: status " + dev.status(nullptr).message());
}

/// Totals and grad_scale (data parallel): the device's totals equal the CPU's, and the call with
/// totals from two shards and grad_scale 0.5 matches the CPU's.
template <class T>
void check_totals(const Shape& sh) {
  const std::string what = std::string("totals ") + sh.name;
  std::vector<T> x;
  std::vector<std::int64_t> y;
  Eigen::VectorXi counts;
  make_batch<T>(sh, 11, false, x, y, counts);
  for (int preset = 0; preset < 2; ++preset) {
    Eigen::VectorXf wf = lmf::class_balanced_weights<float>(counts, 0.999f);
    lmf::Loss<T> loss = preset == 0 ? lmf::Loss<T>(lmf::LMFLoss<T>::official_code(counts))
                                    : lmf::Loss<T>(lmf::LMFLoss<T>::seed_code(counts, wf.cast<T>().eval()));
    const lmf::Layout l = sh.layout();
    lmf::cuda::DeviceLoss<T> dev(loss);
    Buffer<T> dx(x.size()), dg(x.size()), dv(1);
    Buffer<std::int64_t> dy(y.size());
    Buffer<double> dt(dev.totals_size());
    const std::size_t bytes = dev.workspace_bytes(l);
    Buffer<unsigned char> ws(bytes);
    dx.up(x);
    dy.up(y);
    expect(dev.totals(dx.p, l, dy.p, dt.p, ws.p, bytes, nullptr) == cudaSuccess, what + ": totals launch");
    expect(dev.status(nullptr).ok(), what + ": totals status");
    const std::vector<double> t_dev = dt.down();
    const lmf::Totals t_cpu = loss.totals(x.data(), l, y.data());
    expect(t_dev.size() == t_cpu.size(), what + ": totals size");
    for (std::size_t k = 0; k < t_cpu.size() && k < t_dev.size(); ++k)
      expect(std::abs(t_dev[k] - t_cpu[k]) <= 1e-6 * std::abs(t_cpu[k]) + 1e-12,
             what + ": totals entry " + std::to_string(k) + " " + std::to_string(t_dev[k]) + " vs " + std::to_string(t_cpu[k]));
    // as if another shard held as much again
    lmf::Totals twice = t_cpu;
    twice += t_cpu;
    std::vector<double> tw(twice.data(), twice.data() + twice.size());
    dt.up(tw);
    std::vector<T> gc(x.size(), T(0));
    CUDA_OK(cudaMemset(dg.p, 0, dg.n * sizeof(T)));  // (padded layouts leave entries unwritten)
    const T vc = loss.value_and_gradient(x.data(), l, y.data(), gc.data(), twice, T(0.5));
    expect(dev.value_and_gradient(dx.p, l, dy.p, dg.p, dv.p, ws.p, bytes, nullptr, dt.p, T(0.5)) == cudaSuccess,
           what + ": launch with totals");
    expect(dev.status(nullptr).ok(), what + ": status with totals");
    const std::vector<T> g = dg.down();
    double worst = 0, mx = 0;
    for (T v : gc) mx = std::max(mx, std::abs(double(v)));
    for (std::size_t k = 0; k < g.size(); ++k)
      worst = std::max(worst, std::abs(double(g[k]) - double(gc[k])) / (std::abs(double(gc[k])) + 1e-3 * mx));
    const double tol = (sizeof(T) == 8 ? 1e-11 : 2e-4);
    expect(worst <= tol, what + ": gradient with totals, error " + std::to_string(worst));
    const double ve = std::abs(double(dv.down()[0]) - double(vc)) / std::abs(double(vc));
    expect(ve <= tol, what + ": value with totals, error " + std::to_string(ve));
    // totals below this batch's own: refused, nothing written
    tw[0] = t_cpu[0] * 0.5;
    dt.up(tw);
    dv.up(std::vector<T>{T(-3)});
    expect(dev.value_and_gradient(dx.p, l, dy.p, dg.p, dv.p, ws.p, bytes, nullptr, dt.p, T(1)) == cudaSuccess,
           what + ": launch with small totals");
    const lmf::Status st = dev.status(nullptr);
    expect(!st.ok() && st.message().find("less than this batch's own") != std::string::npos,
           what + ": small totals refused: '" + st.message() + "'");
    expect(dv.down()[0] == T(-3), what + ": small totals: value written");
  }
}

/// Calls the host refuses: cudaErrorInvalidValue and a status naming the problem.
void check_host_rejections() {
  Eigen::VectorXi counts(3);
  counts << 100, 10, 1;
  lmf::LMFLoss<float> loss(counts);
  lmf::cuda::DeviceLoss<float> dev(loss);
  const lmf::Layout l = lmf::Layout::row_major(8, 3);
  Buffer<float> dx(24), dv(1);
  Buffer<std::int64_t> dy(8);
  const std::size_t bytes = dev.workspace_bytes(l);
  Buffer<unsigned char> ws(bytes);
  auto refused = [&](cudaError_t e, const char* needle, const std::string& what) {
    const lmf::Status st = dev.status(nullptr);
    expect(e == cudaErrorInvalidValue && !st.ok() && st.message().find(needle) != std::string::npos,
           "host rejection " + what + ": '" + st.message() + "'");
  };
  refused(dev.value_and_gradient(dx.p, l, dy.p, dx.p, dv.p, ws.p, bytes - 1, nullptr), "workspace", "small workspace");
  refused(dev.value_and_gradient(dx.p, lmf::Layout::row_major(8, 4), dy.p, dx.p, dv.p, ws.p, bytes, nullptr), "classes",
          "wrong C");
  refused(dev.value_and_gradient(dx.p, l, static_cast<const std::int64_t*>(nullptr), dx.p, dv.p, ws.p, bytes, nullptr),
          "null", "null labels");
  refused(dev.value_and_gradient(dx.p, l, dy.p, dx.p + 1, dv.p, ws.p, bytes, nullptr), "overlaps", "overlap");
  refused(dev.value_and_gradient(dx.p, l, dy.p, dx.p, dv.p, ws.p, bytes, nullptr, nullptr, float(NAN)), "grad_scale",
          "NaN grad_scale");
  refused(dev.value_and_gradient(dx.p, lmf::Layout{8, 3, 1, 0, 1, 0}, dy.p, dx.p, dv.p, ws.p, bytes, nullptr),
          "two entries", "in place over an aliasing layout");
  refused(dev.value_and_gradient(dx.p, l, reinterpret_cast<const std::int64_t*>(dx.p + 4), dx.p, dv.p, ws.p, bytes,
                                 nullptr),
          "labels", "gradient over the labels");
}

}  // namespace

int main(int argc, char** argv) {
  // --small: the first ten shapes only (for compute-sanitizer, which runs kernels far slower)
  const bool small = argc > 1 && std::string(argv[1]) == "--small";
  int devices = 0;
  const cudaError_t e = cudaGetDeviceCount(&devices);
  if (e != cudaSuccess || devices == 0) {
    std::printf("SKIPPED: no CUDA device (%s)\n", e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
    return 77;
  }
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  std::printf("device: %s (sm_%d%d)\n", prop.name, prop.major, prop.minor);

  const Shape shapes[] = {
      {"row-major 300x2", 300, 2, 1, 0},     {"row-major 517x5", 517, 5, 1, 0},    {"row-major 260x32", 260, 32, 1, 0},
      {"row-major 90x33", 90, 33, 1, 0},     {"row-major 70x100", 70, 100, 1, 0},  {"row-major 9x1500", 9, 1500, 1, 0},
      {"column-major 300x7", 300, 7, 1, 1},  {"column-major 40x100", 40, 100, 1, 1}, {"nchw 3x5x37", 3, 5, 37, 2},
      {"padded rows 100x10", 100, 10, 1, 3},
      // many blocks: grid-stride loops, the fixed-order reduction across blocks
      {"row-major 200000x3", 200000, 3, 1, 0}, {"row-major 20000x64", 20000, 64, 1, 0},
      {"row-major 300x4000", 300, 4000, 1, 0}, {"column-major 100000x4", 100000, 4, 1, 1},
  };
  std::uint32_t seed = 1;
  for (const Shape& sh : shapes) {
    if (small && &sh - shapes >= 10) break;
    for (const Case<float>& cs : cases<float>()) {
      check_case<float, float, std::int64_t>(cs, sh, seed++);
      check_case<float, __nv_bfloat16, std::int64_t>(cs, sh, seed++);
    }
    for (const Case<double>& cs : cases<double>()) check_case<double, double, std::int64_t>(cs, sh, seed++);
    check_case<float, __half, std::int32_t>(cases<float>()[7], sh, seed++);  // LMF, half logits, int32 labels
    check_case<float, float, std::int32_t>(cases<float>()[9], sh, seed++);   // LMF official, int32 labels
    check_bad_inputs<float, float>(sh);
    check_bad_inputs<float, __nv_bfloat16>(sh);
    check_bad_inputs<double, double>(sh);
    check_totals<float>(sh);
    check_totals<double>(sh);
  }
  check_host_rejections();
  std::printf("largest gradient error against the CPU's scalar kernel (elementwise, |g - g_cpu| / (|g_cpu| + 1e-3 max|g_cpu|)):");
  for (const auto& w : g_worst) std::printf(" %s %.2e", w.first.c_str(), w.second);
  std::printf("\n%d checks, %d failed\n", g_checks, g_failures);
  return g_failures == 0 ? 0 : 1;
}
