// lmf/cuda/kernels.cuh — the device side of lmf/cuda.cuh: the plan's numbers on the device and
// the four kernels of a call, all on the caller's stream, in this order:
//
//   1. check_kernel   every label (in range or ignore_index), every logit of a counted row
//                     (finite, within the overflow limit), this batch's totals (each term's
//                     denominator; for batch-mean terms, their cross-entropy sums): per-block
//                     partial sums in the workspace, the first bad input by integer atomicMin.
//   2. plan_kernel    one block: the partials summed in a fixed order, the caller's totals
//                     checked, the status decided, each term's TermParams from plan_term
//                     (plan.hpp, the CPU's own code): nothing below runs unless all is valid.
//   3. loss_kernel    per row: max and sum of exponentials of every term in one read of the row
//                     (online softmax), the per-row epilogue (term_row, plan.hpp), the gradient
//                     in a second read and one write; per-block partial sums of the value.
//   4. finish_kernel  one block: the value from the partials (fixed order, term_value) and the
//                     status copied where DeviceLoss::status reads it.
//
// Rows are handled by a group of G threads: G = 1 (a thread per row: few classes, or classes
// strided as in column-major and (N, C, d...) layouts, where neighbouring threads read
// neighbouring rows: coalesced), G = 8 (33 to 256 classes), G = 32 (a warp per row, up to 1024)
// or G = 256 (a block per row: more classes). A thread of a group reads K = LMF_CUDA_CHUNK of
// its classes before using them (memory parallelism). Dense row-major batches with few classes are staged through shared memory: a block
// loads its 256 rows as one contiguous, coalesced span, computes from shared memory and stores
// the gradient the same way. Every reduction has a fixed order (sequential per thread, xor
// butterflies, then warps in index order) and there is no floating-point atomic, so the results
// are bitwise identical from run to run for a given batch shape.
#pragma once

#include <lmf/math/row.hpp>
#include <lmf/plan.hpp>
#include <lmf/view.hpp>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

namespace lmf {
namespace cuda {

/// What DeviceLoss::status found (the device's status word; lmf::Status carries the message).
enum class StatusCode : int {
  ok = 0,
  bad_label = 1,      ///< a label outside [0, C) that is not ignore_index
  bad_logit = 2,      ///< a logit of a counted row that is not finite or beyond the overflow limit
  bad_totals = 3,     ///< the caller's totals: an entry not finite or < 0 (term = the entry)
  small_totals = 4,   ///< the caller's totals: a denominator below this batch's own (term)
  batch_mean_range = 5,  ///< the caller's totals: a batch-mean M beyond T's range (term)
  smoothing_overflow = 6,  ///< label smoothing's factors overflow T (term)
  invalid_call = 7,   ///< rejected on the host (shapes, pointers, workspace): see the message
};

namespace detail {

using lmf::detail::Accum;
using lmf::detail::kMaxTerms;
using lmf::detail::TermParams;
using lmf::detail::TermScalars;

constexpr int kThreads = 256;              ///< threads per block of the row kernels
constexpr int kWarps = kThreads / 32;
constexpr long long kMaxBlocks = 2048;     ///< grid of the row kernels (fixed: deterministic sums)
constexpr unsigned long long kNone = ~0ull;
constexpr int kStageMaxClasses = 32;       ///< dense row-major float batches up to this C are staged

/// Blocks of the row kernels (2 terms at most) an SM should hold at once: their register budget,
/// 65536 / (256 x this). 4 (64 registers, a few spills) measured 1.1-1.4x faster than 1 or 3 on
/// an H200 (docs/performance.md, "GPU").
#ifndef LMF_CUDA_MIN_BLOCKS
#define LMF_CUDA_MIN_BLOCKS 4
#endif
static_assert(LMF_CUDA_MIN_BLOCKS >= 1 && LMF_CUDA_MIN_BLOCKS <= 8, "LMF_CUDA_MIN_BLOCKS: 1 to 8 blocks of 256 threads");

/// LMF_CUDA_FOR_TERMS loops over a call's terms. The kernels take NT, the most terms they handle
/// (2, or kMaxTerms for specs of 3 or 4 terms), as a template parameter, so on the device the
/// loop is unrolled to NT and every per-term array (states, factors, sums) stays in registers;
/// with the run-time count as the bound they lived in local memory (a 672-byte stack frame per
/// thread, and a loss kernel 10x slower than its memory traffic).
/// LMF_CUDA_UNROLL: `#pragma unroll` in the device pass only (the host compiler of a
/// __host__ __device__ function would warn about it).
#ifdef __CUDA_ARCH__
#define LMF_CUDA_UNROLL _Pragma("unroll")
#define LMF_CUDA_FOR_TERMS(t, n) _Pragma("unroll") for (int t = 0; t < NT; ++t) if (t < (n))
#else
#define LMF_CUDA_UNROLL
#define LMF_CUDA_FOR_TERMS(t, n) for (int t = 0; t < NT && t < (n); ++t)
#endif

/// The status word of a call, in the workspace (and copied to DeviceLoss's record at the end).
struct DeviceStatus {
  unsigned long long bad_label_row;  ///< first row with a bad label (kNone: none)
  unsigned long long bad_logit;      ///< first bad logit, as row * C + class (kNone: none)
  int code;                          ///< StatusCode
  int term;                          ///< the term or totals entry a totals/smoothing code names
  long long row, cls, label;
  double value, bound;
};

/// How a row is read: the group size G, and whether the rows of a block are staged.
enum class Mode : int { thread = 0, staged = 1, warp = 2, block = 3, group8 = 4 };

/// Logits' element types and their conversions to the math type T (fp32 for float, __half and
/// __nv_bfloat16; double for double), rounding to nearest on the way back.
template <class T, class In>
struct Convert;
template <class T>
struct Convert<T, T> {
  static __device__ __forceinline__ T load(T v) { return v; }
  static __device__ __forceinline__ T store(T v) { return v; }
};
template <>
struct Convert<float, __half> {
  static __device__ __forceinline__ float load(__half v) { return __half2float(v); }
  static __device__ __forceinline__ __half store(float v) { return __float2half_rn(v); }
};
template <>
struct Convert<float, __nv_bfloat16> {
  static __device__ __forceinline__ float load(__nv_bfloat16 v) { return __bfloat162float(v); }
  static __device__ __forceinline__ __nv_bfloat16 store(float v) { return __float2bfloat16_rn(v); }
};

/// Everything a kernel needs of the loss and the call, passed by value.
template <class T>
struct Plan {
  int n_terms;
  int n_batch;  ///< batch-mean terms (seed-code preset)
  TermScalars<T> terms[kMaxTerms];  ///< per-class pointers on the device
  int mean_over[kMaxTerms];         ///< MeanOver of each term
  Reduction reduction;
  long long ignore_index;
  T limit;  ///< largest |x| accepted (validate.hpp's logit_limit)
  Layout layout;
  Mode mode;
  int grid;  ///< blocks of check_kernel and loss_kernel
  bool validate_logits;
  const double* totals;  ///< the caller's totals (device), or null: this batch is the whole batch
  int totals_size;
  T grad_scale;
  bool logits_first;  ///< a bad logit is reported before the smoothing factors' overflow (as on the CPU)
};

/// The start of the workspace: what the plan kernel decides, read by the kernels after it.
template <class T>
struct Scratch {
  DeviceStatus status;
  TermParams<T> params[kMaxTerms];
  double totals[Totals::capacity];  ///< this batch's totals
  double means[kMaxTerms];          ///< batch-mean terms' M
  int ok;
};

/// The largest finite T (std::numeric_limits is host-only without --expt-relaxed-constexpr).
template <class T>
__host__ __device__ constexpr double max_of() {
  return std::is_same<T, float>::value ? 3.4028234663852886e38 : 1.7976931348623157e308;
}

__host__ __device__ constexpr std::size_t align_up(std::size_t n) { return (n + 255) / 256 * 256; }

/// Workspace: the scratch, then check_kernel's partials (grid x 2 kMaxTerms doubles), then
/// loss_kernel's (grid x kMaxTerms doubles).
template <class T>
std::size_t workspace_size(int grid) {
  return align_up(sizeof(Scratch<T>)) + align_up(sizeof(double) * std::size_t(grid) * 2 * kMaxTerms) +
         align_up(sizeof(double) * std::size_t(grid) * kMaxTerms);
}
template <class T>
__host__ __device__ inline double* check_partials(void* ws) {
  return reinterpret_cast<double*>(static_cast<char*>(ws) + align_up(sizeof(Scratch<T>)));
}
template <class T>
__host__ __device__ inline double* loss_partials(void* ws, int grid) {
  return reinterpret_cast<double*>(static_cast<char*>(ws) + align_up(sizeof(Scratch<T>)) +
                                   align_up(sizeof(double) * std::size_t(grid) * 2 * kMaxTerms));
}

/// The mode for a batch: a thread per row when the classes are strided (column-major, (N, C,
/// d...)) or few, 8 threads per row up to 256 classes, a warp per row up to 1024, a block per
/// row beyond; staged when the
/// batch is dense row-major with few classes and the math is fp32.
template <class T>
Mode choose_mode(const Layout& l) {
  const bool rows_contiguous = l.class_stride == 1 && (l.inner == 1 || l.classes == 1);
  if (!rows_contiguous) return Mode::thread;
  if (l.classes <= kStageMaxClasses) {
    const bool dense = l.inner == 1 && l.sample_stride == l.classes;
    return dense && std::is_same<T, float>::value ? Mode::staged : Mode::thread;
  }
  // 8 threads per row up to 256 classes: a warp per row there left each thread ~3 classes and
  // had all 32 compute the row's merge and epilogue (C = 100: 2x slower than 8 per row)
  return l.classes <= 256 ? Mode::group8 : l.classes <= 1024 ? Mode::warp : Mode::block;
}

template <Mode M>
__host__ __device__ constexpr int group_of() {
  return M == Mode::group8 ? 8 : M == Mode::warp ? 32 : M == Mode::block ? kThreads : 1;
}

inline int rows_per_block(Mode m) {
  return m == Mode::group8 ? kThreads / 8 : m == Mode::warp ? kWarps : m == Mode::block ? 1 : kThreads;
}

inline int grid_for(Mode m, Index rows) {
  const long long per = rows_per_block(m);
  const long long blocks = (static_cast<long long>(rows) + per - 1) / per;
  return int(blocks < 1 ? 1 : blocks > kMaxBlocks ? kMaxBlocks : blocks);
}

// ---- labels ---------------------------------------------------------------------------------

template <class L>
__device__ __forceinline__ bool is_ignored(L v, long long ignore) {
  return static_cast<long long>(v) == ignore;
}
template <class L>
__device__ __forceinline__ bool in_range(L v, Index C) {
  return static_cast<long long>(v) >= 0 && static_cast<long long>(v) < static_cast<long long>(C);
}

/// The weight a counted row with label y adds to term t's denominator.
template <class T>
__device__ __forceinline__ double denominator_weight(const Plan<T>& p, int t, Index y) {
  const TermScalars<T>& term = p.terms[t];
  if (p.mean_over[t] != int(MeanOver::target_weights) || term.w == nullptr) return 1.0;
  return double(term.w[y]);
}

// ---- one row: online softmax over a group's classes -----------------------------------------

/// A term's running state over some classes of a row: the maximal adjusted logit so far (its
/// class `top` and raw parts a x, margin, b), rest = sum over the other classes seen of
/// exp(z_c - z_top), and u = sum_c w_c (z_c - z_ref) (label smoothing, z_ref = class 0's).
/// top < 0: no class seen.
template <class T>
struct TermState {
  int top;
  T ax, m, b, rest, u;
};

template <class T>
__host__ __device__ __forceinline__ TermState<T> empty_state() {
  return TermState<T>{-1, T(0), T(0), T(0), T(0), T(0)};
}

/// Adds class c (raw parts ax = a_c x_c, margin mc, offset bc) to st. Classes arrive in
/// increasing order within a thread, so on a tie the first class stays the maximum, as on the CPU.
template <class T>
__host__ __device__ __forceinline__ void absorb(TermState<T>& st, int c, T ax, T mc, T bc, T s) {
  if (st.top < 0) {
    st.top = c, st.ax = ax, st.m = mc, st.b = bc;
    return;
  }
  const T d = math::adjusted_difference(ax, st.ax, mc, st.m, bc, st.b, s);  // z_c - z_top
  if (d > T(0)) {
    st.rest = (T(1) + st.rest) * std::exp(-d);
    st.top = c, st.ax = ax, st.m = mc, st.b = bc;
  } else {
    st.rest += std::exp(d);
  }
}

/// The state of the union of two disjoint sets of classes. Exactly commutative (the winner is
/// decided by z and then by the lower class index, and every operation is symmetric), so both
/// partners of a butterfly hold the same bits afterwards.
template <class T>
__host__ __device__ __forceinline__ TermState<T> merge(const TermState<T>& A, const TermState<T>& B, T s) {
  if (B.top < 0) return A;
  if (A.top < 0) return B;
  const T d = math::adjusted_difference(B.ax, A.ax, B.m, A.m, B.b, A.b, s);  // z_B - z_A, exactly -(z_A - z_B)
  const bool b_wins = d > T(0) || (d == T(0) && B.top < A.top);
  TermState<T> W = b_wins ? B : A;
  const TermState<T>& Lo = b_wins ? A : B;
  W.rest = W.rest + (T(1) + Lo.rest) * std::exp(b_wins ? -d : d);
  W.u = A.u + B.u;
  return W;
}

template <class T>
__device__ __forceinline__ TermState<T> shfl_xor(TermState<T> s, int offset, unsigned mask) {
  s.top = __shfl_xor_sync(mask, s.top, offset);
  s.ax = __shfl_xor_sync(mask, s.ax, offset);
  s.m = __shfl_xor_sync(mask, s.m, offset);
  s.b = __shfl_xor_sync(mask, s.b, offset);
  s.rest = __shfl_xor_sync(mask, s.rest, offset);
  s.u = __shfl_xor_sync(mask, s.u, offset);
  return s;
}

/// Merges the states of the G threads of a row's group (fixed order; every thread ends with
/// the same bits). Block mode uses `shared` (kWarps x kMaxTerms states) and synchronises the
/// block; afterwards every read of the row by the group has completed, so the gradient may be
/// written over the logits (in place).
template <int G, int NT, class T>
__device__ __forceinline__ void group_merge(const Plan<T>& p, TermState<T>* st, TermState<T>* shared) {
  if constexpr (G > 1) {
    // butterflies within each warp, or within each group of G < 32 lanes (its own mask: a group
    // past the last row has left, the others go on)
    constexpr int W = G < 32 ? G : 32;
    const unsigned mask = W == 32 ? 0xffffffffu : ((1u << W) - 1) << (threadIdx.x % 32 / W * W);
    LMF_CUDA_FOR_TERMS(t, p.n_terms)
LMF_CUDA_UNROLL
      for (int o = W / 2; o > 0; o >>= 1) st[t] = merge(st[t], shfl_xor(st[t], o, mask), p.terms[t].s);
    if constexpr (G <= 32) {
      __syncwarp(mask);
    } else {
      const int warp = threadIdx.x / 32;
      if (threadIdx.x % 32 == 0) {
        LMF_CUDA_FOR_TERMS(t, p.n_terms) shared[warp * kMaxTerms + t] = st[t];
      }
      __syncthreads();
      LMF_CUDA_FOR_TERMS(t, p.n_terms) {
        TermState<T> acc = shared[t];
        for (int w = 1; w < kWarps; ++w) acc = merge(acc, shared[w * kMaxTerms + t], p.terms[t].s);
        st[t] = acc;
      }
      __syncthreads();  // shared is reused by the next row
    }
  }
}

/// Sums K doubles per thread over the block (fixed order: xor butterflies in each warp, then the
/// warps in index order); thread k < K returns sum k.
template <int K>
__device__ __forceinline__ double block_sum(double (&v)[K], int k_out) {
  __shared__ double warp_sums[kWarps][K];
LMF_CUDA_UNROLL
  for (int k = 0; k < K; ++k)
    for (int o = 16; o > 0; o >>= 1) v[k] += __shfl_xor_sync(0xffffffffu, v[k], o);
  if (threadIdx.x % 32 == 0)
    for (int k = 0; k < K; ++k) warp_sums[threadIdx.x / 32][k] = v[k];
  __syncthreads();
  double total = 0;
  if (k_out < K)
    for (int w = 0; w < kWarps; ++w) total += warp_sums[w][k_out];
  return total;
}

/// Where a row lives: in global memory (any class stride) or in a block's shared tile.
/// Unit: the classes are contiguous (stride 1, known at compile time: warp and block modes).
template <class T, class In, bool Unit = false>
struct GlobalRow {
  const In* x;
  In* g;  ///< null: no gradient
  Index stride;
  __device__ __forceinline__ T load(int c) const { return Convert<T, In>::load(x[Unit ? Index(c) : c * stride]); }
  __device__ __forceinline__ void store(int c, T v) const {
    if (g) g[Unit ? Index(c) : c * stride] = Convert<T, In>::store(v);
  }
};
template <class T>
struct SharedRow {
  T* row;
  __device__ __forceinline__ T load(int c) const { return row[c]; }
  __device__ __forceinline__ void store(int c, T v) const { row[c] = v; }
};

/// The flag of a bad logit (not finite, or beyond the limit): false.
template <class T>
__host__ __device__ __forceinline__ bool logit_ok(T v, T limit) {
  return std::abs(v) <= limit;  // false for NaN too
}

/// Classes a thread of a G-thread group reads at once (its classes c0, c0 + G, ..., c0 + (K-1) G):
/// all K loads are issued before the arithmetic that needs them, so a warp keeps K lines in
/// flight. With one load at a time (K = 1) a warp per row waited for each line in turn and the
/// loss kernel reached a tenth of the memory bandwidth. Threads that own whole rows (G = 1) get
/// their parallelism from neighbouring rows: K = 1.
#ifndef LMF_CUDA_CHUNK
#define LMF_CUDA_CHUNK 4
#endif
static_assert(LMF_CUDA_CHUNK >= 1 && LMF_CUDA_CHUNK <= 16, "LMF_CUDA_CHUNK: 1 to 16 classes per thread at once");
template <int G>
__host__ __device__ constexpr int chunk_of() {
  return G == 1 ? 1 : LMF_CUDA_CHUNK;
}

/// exp(x) in the row loops. On the device, for float: 2^t by the SFU (ex2.approx, 2 ulp), with
/// t = x log2(e) split into t_hi + t_lo so that the rounding of the product is not lost (the
/// cause of __expf's error, 2 + 1.2 |x| ulp): 6 instructions where expf takes 11; within 3 ulp
/// for the x <= 0 of the kernels (results below 2^-126 flush to 0). Elsewhere std::exp.
template <class T>
__host__ __device__ __forceinline__ T row_exp(T x) {
#ifdef __CUDA_ARCH__
  if constexpr (std::is_same<T, float>::value) {
    if (x < -104.f) x = -104.f;  // exp is 0 in float below -103.3; keeps -inf from giving NaN (NaN stays)
    const float t = x * 1.44269502f;                                      // log2(e) rounded
    const float t_lo = fmaf(x, 1.44269502f, -t) + x * 1.925963033e-8f;   // + x (log2(e) - 1.44269502f)
    float r;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(t));
    return fmaf(r, t_lo * 0.693147182f, r);  // 2^(t + t_lo) = 2^t (1 + t_lo ln 2)
  }
#endif
  return std::exp(x);
}

/// A term's raw parts of class c (logit xc): a_c x_c, the margin (at the label only), b_c.
template <class T>
struct Parts {
  T ax, m, b;
};
template <class T>
__host__ __device__ __forceinline__ Parts<T> parts_of(const TermScalars<T>& q, int c, T xc, int y) {
  return Parts<T>{(q.a ? q.a[c] : T(1)) * xc, c == y && q.m ? q.m[y] : T(0), q.b ? q.b[c] : T(0)};
}

/// Adds K classes (c0 + k G, those below C) to st, in three steps that keep the K
/// exponentials independent: the differences to the current maximum; if one is positive, the
/// first largest becomes the maximum (rest rescaled, (1 + rest) e^{-d}, as absorb does) and the
/// differences are taken again against it; then the exponentials of all but the maximum (and
/// the old one, already in rest) are summed. Every exponent is an adjusted_difference against
/// the maximum of its time, as in absorb; ties keep the lower class.
template <int G, int K, class T>
__host__ __device__ __forceinline__ void absorb_chunk(TermState<T>& st, const TermScalars<T>& q, int c0, int C, int y,
                                                      const T (&xs)[K]) {
  int old_top = -1;  // the chunk's index of the maximum before this chunk, when it is in the chunk
  if (st.top < 0) {
    const Parts<T> f = parts_of(q, c0, xs[0], y);
    st.top = c0, st.ax = f.ax, st.m = f.m, st.b = f.b, st.rest = T(0);
    old_top = 0;
  }
  T d[K];
  int best = -1;
  T d_best = T(0);
  Parts<T> top{};
LMF_CUDA_UNROLL
  for (int k = 0; k < K; ++k) {
    const int c = c0 + k * G;
    d[k] = T(0);
    if (c >= C) continue;  // (no per-class entry to read there)
    const Parts<T> f = parts_of(q, c, xs[k], y);
    d[k] = math::adjusted_difference(f.ax, st.ax, f.m, st.m, f.b, st.b, q.s);
    if (d[k] > d_best) d_best = d[k], best = k, top = f;
  }
  if (best >= 0) {  // a new maximum (rare after a row's first classes)
    st.rest = (T(1) + st.rest) * row_exp(-d_best);
    st.top = c0 + best * G, st.ax = top.ax, st.m = top.m, st.b = top.b;
LMF_CUDA_UNROLL
    for (int k = 0; k < K; ++k) {
      const int c = c0 + k * G;
      if (c >= C) continue;
      const Parts<T> f = parts_of(q, c, xs[k], y);
      d[k] = math::adjusted_difference(f.ax, st.ax, f.m, st.m, f.b, st.b, q.s);
    }
  }
  T sum = T(0);
LMF_CUDA_UNROLL
  for (int k = 0; k < K; ++k)
    if (c0 + k * G < C && k != best && k != old_top) sum += row_exp(d[k]);
  st.rest += sum;
}

/// The K classes c0, c0 + G, ... of a thread's chunk (0 past C), all loads issued before any use.
#pragma nv_exec_check_disable
template <int G, int K, class T, class Row>
__host__ __device__ __forceinline__ void load_chunk(const Row& row, int c0, int C, T (&xs)[K]) {
LMF_CUDA_UNROLL
  for (int k = 0; k < K; ++k) {
    const int c = c0 + k * G;
    xs[k] = c < C ? row.load(c) : T(0);
  }
}

/// Statistics of a row for the terms in `which` (bit t: term t): one read of the lane's
/// classes, K at a time (chunk_of). Also finds the row's first bad logit among them (kNone if
/// none) when `check`. x0 is class 0's logit, the reference of label smoothing's sum (read by
/// every lane).
#pragma nv_exec_check_disable
template <int G, int NT, class T, class Row>
__host__ __device__ __forceinline__ unsigned long long row_stats(const Plan<T>& p, const Row& row, Index y, T x0, int lane,
                                                        unsigned which, const bool* smooth, bool check,
                                                        TermState<T>* st) {
  constexpr int K = chunk_of<G>();
  const int C = int(p.layout.classes), yi = int(y);  // (C <= limits::max_classes = 2^24)
  unsigned long long bad = kNone;
  LMF_CUDA_FOR_TERMS(t, p.n_terms) st[t] = empty_state<T>();
  for (int c0 = lane; c0 < C; c0 += G * K) {
    T xs[K];
    load_chunk<G>(row, c0, C, xs);
    if (check && bad == kNone) {
LMF_CUDA_UNROLL
      for (int k = K - 1; k >= 0; --k)  // the lowest bad class of the chunk
        if (c0 + k * G < C && !logit_ok(xs[k], p.limit)) bad = static_cast<unsigned long long>(c0 + k * G);
    }
    LMF_CUDA_FOR_TERMS(t, p.n_terms) {
      if (!(which & (1u << t))) continue;
      const TermScalars<T>& q = p.terms[t];
      absorb_chunk<G>(st[t], q, c0, C, yi, xs);
      if (smooth[t]) {
        const Parts<T> f0 = parts_of(q, 0, x0, yi);
LMF_CUDA_UNROLL
        for (int k = 0; k < K; ++k) {
          const int c = c0 + k * G;
          if (c >= C) continue;
          const Parts<T> f = parts_of(q, c, xs[k], yi);
          st[t].u += (q.w ? q.w[c] : T(1)) * math::adjusted_difference(f.ax, f0.ax, f.m, f0.m, f.b, f0.b, q.s);
        }
      }
    }
  }
  return bad;
}

/// l = logsumexp(z) - z_y of term t from its merged state (xy: the label's logit).
template <class T>
__host__ __device__ __forceinline__ T row_cross_entropy(const TermScalars<T>& q, const TermState<T>& st, Index y, T xy, T& dy) {
  const T ay = (q.a ? q.a[y] : T(1)) * xy;
  const T my = q.m ? q.m[y] : T(0);
  const T by = q.b ? q.b[y] : T(0);
  dy = Index(st.top) == y ? T(0) : math::adjusted_difference(ay, st.ax, my, st.m, by, st.b, q.s);
  return math::cross_entropy_from(dy, st.rest);
}

/// What a row's epilogue gives each term: the gradient factor, 1 / (1 + rest), the share of the
/// term's sum; and the row's value sum_t weight_t L_t.
template <class T>
struct RowFinish {
  T coef[kMaxTerms];
  T inv[kMaxTerms];
  double contribution[kMaxTerms];
  T value;
};

/// The per-row epilogue from the merged states (every thread of the group computes the same):
/// l from the label's logit xy, label smoothing's wd from class 0's x0, then term_row.
template <int NT, class T>
__host__ __device__ inline RowFinish<T> finish_row(const Plan<T>& p, const TermParams<T>* params, const bool* smooth,
                                                   const T* weights, const TermState<T>* st, Index y, T xy, T x0) {
  RowFinish<T> f{};
  LMF_CUDA_FOR_TERMS(t, p.n_terms) {
    const TermParams<T>& q = params[t];
    T dy;
    const T l = row_cross_entropy(p.terms[t], st[t], y, xy, dy);
    const T wy = q.w ? q.w[y] : T(1);
    T wd = T(0);  // sum_c w_c (z_c - z_top) = u - W (z_top - z_0)
    if (smooth[t])
      wd = st[t].u - q.w_sum * math::adjusted_difference(st[t].ax, (q.a ? q.a[0] : T(1)) * x0, st[t].m,
                                                         y == 0 && q.m ? q.m[0] : T(0), st[t].b, q.b ? q.b[0] : T(0), q.s);
    const lmf::detail::TermRow<T> r =
        lmf::detail::term_row(q, wy, l, st[t].rest, wd, [&] { return math::focus(l, q.gamma); });
    f.contribution[t] = r.contribution;
    f.value += weights[t] * r.value;
    f.coef[t] = r.coef;
    f.inv[t] = T(1) / (T(1) + st[t].rest);
  }
  return f;
}

/// The gradient entries of the lane's classes (c = lane, lane + G, ..., K at a time): the K
/// logits read, then their entries written (over them, in place), with the formulas of the
/// CPU's scalar kernel.
#pragma nv_exec_check_disable
template <int G, int NT, class T, class Row>
__host__ __device__ inline void row_gradient(const Plan<T>& p, const TermParams<T>* params, const bool* smooth,
                                             const TermState<T>* st, const RowFinish<T>& f, const Row& row, Index y,
                                             int lane) {
  constexpr int K = chunk_of<G>();
  const int C = int(p.layout.classes), yi = int(y);
  for (int c0 = lane; c0 < C; c0 += G * K) {
    T xs[K];
    load_chunk<G>(row, c0, C, xs);
LMF_CUDA_UNROLL
    for (int k = 0; k < K; ++k) {
      const int c = c0 + k * G;
      if (c >= C) break;
      const T xc = xs[k];
      T gc = T(0);
      LMF_CUDA_FOR_TERMS(t, p.n_terms) {
        const TermParams<T>& q = params[t];
        const T ac = q.a ? q.a[c] : T(1);
        const T mc = c == yi && q.m ? q.m[y] : T(0), bc = q.b ? q.b[c] : T(0);
        const T e = st[t].top == c
                        ? T(1)
                        : row_exp(math::adjusted_difference(ac * xc, st[t].ax, mc, st[t].m, bc, st[t].b, q.s));
        gc += f.coef[t] * ac * math::softmax_minus_onehot(e, c == yi, st[t].rest, f.inv[t]);
        if (smooth[t]) gc += ac * (q.smooth_mass * (e * f.inv[t]) - q.smooth_grad * (q.w ? q.w[c] : T(1)));
      }
      row.store(c, gc);
    }
  }
}

// ---- the kernels ----------------------------------------------------------------------------

/// Runs body(row_index, Row, lane) over the rows for the mode; staged tiles are loaded before and
/// (when `writes`) stored after. In the staged, warp and block modes every thread of a block runs
/// the same number of iterations (they synchronise); in the thread mode they need not.
template <Mode M, class T, class In, class Body>
__device__ __forceinline__ void for_each_row(const Plan<T>& p, const In* x, In* g, bool writes, Body&& body) {
  const Layout& l = p.layout;
  const Index rows = l.rows(), C = l.classes;
  if constexpr (M == Mode::staged) {
    __shared__ T tile[kThreads * (kStageMaxClasses + 1)];
    // (32-bit tile indices: a 64-bit division per element cost more than the loss)
    const int Ci = int(C), pitch = Ci | 1;  // odd: a thread per row hits distinct banks
    for (Index r0 = Index(blockIdx.x) * kThreads; r0 < rows; r0 += Index(gridDim.x) * kThreads) {
      const int count = rows - r0 < kThreads ? int(rows - r0) : kThreads;
      const In* src = x + r0 * C;
      for (int e = threadIdx.x; e < count * Ci; e += kThreads) {
        const int r = e / Ci;
        tile[r * pitch + (e - r * Ci)] = Convert<T, In>::load(src[e]);
      }
      __syncthreads();
      if (int(threadIdx.x) < count) body(r0 + threadIdx.x, SharedRow<T>{tile + threadIdx.x * pitch}, 0);
      __syncthreads();
      if (writes && g) {
        In* dst = g + r0 * C;
        for (int e = threadIdx.x; e < count * Ci; e += kThreads) {
          const int r = e / Ci;
          dst[e] = Convert<T, In>::store(tile[r * pitch + (e - r * Ci)]);
        }
      }
      __syncthreads();
    }
  } else if constexpr (M == Mode::thread) {  // (no barrier: threads may run different counts)
    for (Index i = Index(blockIdx.x) * kThreads + threadIdx.x; i < rows; i += Index(gridDim.x) * kThreads) {
      const Index off = l.row_offset(i);
      body(i, GlobalRow<T, In>{x + off, g ? g + off : nullptr, l.class_stride}, 0);
    }
  } else {
    constexpr int G = group_of<M>();
    const Index per_block = kThreads / G;
    const int lane = threadIdx.x % G;
    // every thread of the block runs the same number of iterations (block mode synchronises)
    for (Index base = Index(blockIdx.x) * per_block; base < rows; base += Index(gridDim.x) * per_block) {
      const Index i = base + threadIdx.x / G;
      if (G <= 32 && i >= rows) continue;  // whole groups leave together (block mode: never)
      const Index off = l.row_offset(i);
      body(i, GlobalRow<T, In, true>{x + off, g ? g + off : nullptr, 1}, lane);
    }
  }
}

/// Pass 1: labels, logits (when p.validate_logits) and this batch's totals. Writes per-block
/// partials [D_0..D_3, S_0..S_3] and, by atomicMin, the first bad label row and the first bad
/// logit (row * C + class) of a counted row.
template <Mode M, int NT, class T, class In, class L>
__global__ void __launch_bounds__(kThreads, NT <= 2 ? LMF_CUDA_MIN_BLOCKS : 2) check_kernel(Plan<T> p, const In* x, const L* labels, void* ws) {
  constexpr int G = group_of<M>();
  __shared__ TermState<T> shared[kWarps * kMaxTerms];
  Scratch<T>* sc = static_cast<Scratch<T>*>(ws);
  const Index C = p.layout.classes;
  double acc[2 * kMaxTerms] = {};
  unsigned batch_terms = 0;
  bool smooth[kMaxTerms] = {};
  LMF_CUDA_FOR_TERMS(t, p.n_terms)
    if (p.terms[t].focus_on == FocusOn::batch_mean) batch_terms |= 1u << t;
  const bool reads_logits = p.validate_logits || batch_terms != 0;
  auto body = [&](Index i, const auto& row, int lane) {
    const L label = labels[i];
    if (is_ignored(label, p.ignore_index)) return;
    if (!in_range(label, C)) {
      if (lane == 0) atomicMin(&sc->status.bad_label_row, static_cast<unsigned long long>(i));
      return;
    }
    const Index y = static_cast<Index>(label);
    if (lane == 0) {
      LMF_CUDA_FOR_TERMS(t, p.n_terms) acc[t] += denominator_weight(p, t, y);
    }
    if (!reads_logits) return;
    TermState<T> st[kMaxTerms];
    const T x0 = row.load(0);
    const unsigned long long bad = row_stats<G, NT>(p, row, y, x0, lane, batch_terms, smooth, p.validate_logits, st);
    if (bad != kNone) atomicMin(&sc->status.bad_logit, static_cast<unsigned long long>(i) * C + bad);
    if (batch_terms == 0) return;
    group_merge<G, NT>(p, st, shared);
    if (lane != 0) return;
    const T xy = row.load(y);
    LMF_CUDA_FOR_TERMS(t, p.n_terms) {
      if (!(batch_terms & (1u << t))) continue;
      T dy;
      const T l = row_cross_entropy(p.terms[t], st[t], y, xy, dy);
      const double wy = p.terms[t].w ? double(p.terms[t].w[y]) : 1.0;
      if (std::isfinite(l)) acc[kMaxTerms + t] += wy * double(l);  // (a bad logit is reported)
    }
  };
  if (reads_logits || M == Mode::thread)
    for_each_row<M, T, In>(p, x, static_cast<In*>(nullptr), false, body);
  else  // labels only: a thread per row, no logit read
    for_each_row<Mode::thread, T, In>(p, x, static_cast<In*>(nullptr), false, body);
  double* out = check_partials<T>(ws) + std::size_t(blockIdx.x) * 2 * kMaxTerms;
  const double s = block_sum(acc, threadIdx.x);
  if (threadIdx.x < 2 * kMaxTerms) out[threadIdx.x] = s;
}

/// Turns the first bad logit's key (row * C + class), if any, into a bad_logit status with its
/// row, class, value and the limit.
template <class T, class In>
__device__ inline void record_bad_logit(const Plan<T>& p, const In* x, DeviceStatus& st) {
  if (st.bad_logit == kNone) return;
  const Layout& l = p.layout;
  st.code = int(StatusCode::bad_logit);
  st.row = static_cast<long long>(st.bad_logit / static_cast<unsigned long long>(l.classes));
  st.cls = static_cast<long long>(st.bad_logit % static_cast<unsigned long long>(l.classes));
  st.value = double(Convert<T, In>::load(x[l.row_offset(st.row) + st.cls * l.class_stride]));
  st.bound = double(p.limit);
}

/// Pass 2 (one block of 32 threads): this batch's totals, the status, and the terms' params.
/// `totals_out` (device, may be null): this batch's totals, written only if all is valid.
template <class T, class In, class L>
__global__ void plan_kernel(Plan<T> p, const In* x, const L* labels, void* ws, double* totals_out) {
  Scratch<T>* sc = static_cast<Scratch<T>*>(ws);
  __shared__ double sums[2 * kMaxTerms];
  if (threadIdx.x < 2 * kMaxTerms) {
    const double* part = check_partials<T>(ws);
    double s = 0;
    for (int b = 0; b < p.grid; ++b) s += part[std::size_t(b) * 2 * kMaxTerms + threadIdx.x];
    sums[threadIdx.x] = s;
  }
  __syncthreads();
  if (threadIdx.x != 0) return;
  DeviceStatus& st = sc->status;
  const Layout& l = p.layout;
  const Index C = l.classes, rows = l.rows();
  // this batch's totals: [D_0 .. D_{n-1}, S of each batch-mean term]
  double local[Totals::capacity] = {};
  int b = p.n_terms;
  for (int t = 0; t < p.n_terms; ++t) {
    local[t] = p.mean_over[t] == int(MeanOver::all_rows) ? double(rows) : sums[t];
    if (p.terms[t].focus_on == FocusOn::batch_mean) local[b++] = sums[kMaxTerms + t];
  }
  // the CPU's order (cpu/dispatch.hpp): labels, the caller's totals, logits, smoothing factors
  st.code = int(StatusCode::ok);
  if (st.bad_label_row != kNone) {
    st.code = int(StatusCode::bad_label);
    st.row = static_cast<long long>(st.bad_label_row);
    st.label = static_cast<long long>(labels[st.row]);
  }
  const double* totals = p.totals ? p.totals : local;
  if (st.code == 0 && p.totals) {  // lmf::detail::check_totals, on the device
    for (int i = 0; i < p.totals_size && st.code == 0; ++i)
      if (!isfinite(totals[i]) || totals[i] < 0) st.code = int(StatusCode::bad_totals), st.term = i, st.value = totals[i];
    for (int t = 0; t < p.n_terms && st.code == 0; ++t)
      if (totals[t] < local[t] * (1 - 1e-6))
        st.code = int(StatusCode::small_totals), st.term = t, st.value = totals[t], st.bound = local[t];
  }
  // the batch-mean terms' M = S / D
  b = p.n_terms;
  for (int t = 0; t < p.n_terms; ++t) {
    sc->means[t] = 0;
    if (p.terms[t].focus_on != FocusOn::batch_mean) continue;
    const double m = totals[t] > 0 ? totals[b] / totals[t] : 0.0;
    ++b;
    sc->means[t] = m;
    if (st.code == 0 && p.totals && !(m <= max_of<T>()))
      st.code = int(StatusCode::batch_mean_range), st.term = t, st.value = m;
  }
  auto check_logits = [&] {
    if (st.code == 0) record_bad_logit(p, x, st);
  };
  if (p.logits_first) check_logits();
  for (int t = 0; t < p.n_terms; ++t) {
    const double den = p.reduction == Reduction::mean ? totals[t] : 1.0;
    sc->params[t] = lmf::detail::plan_term(p.terms[t], C, den, p.grad_scale, sc->means[t]);
    if (st.code == 0 && !totals_out && (!isfinite(sc->params[t].smooth_mass) || !isfinite(sc->params[t].smooth_grad)))
      st.code = int(StatusCode::smoothing_overflow), st.term = t;
  }
  if (!p.logits_first) check_logits();
  for (int i = 0; i < int(Totals::capacity); ++i) sc->totals[i] = local[i];
  sc->ok = st.code == 0;
  if (st.code == 0 && totals_out)
    for (int i = 0; i < p.totals_size; ++i) totals_out[i] = local[i];
}

/// Pass 3: value and gradient of every row. Does nothing unless the plan kernel found the call
/// valid. Writes per-block partials of the terms' sums (or the per-row values for reduction
/// none) and the gradient (g may be x: in place; null: no gradient).
template <Mode M, int NT, class T, class In, class L>
__global__ void __launch_bounds__(kThreads, NT <= 2 ? LMF_CUDA_MIN_BLOCKS : 2) loss_kernel(Plan<T> p, const In* x, const L* labels, In* g, T* row_values,
                                                       void* ws) {
  constexpr int G = group_of<M>();
  __shared__ TermState<T> shared[kWarps * kMaxTerms];
  Scratch<T>* sc = static_cast<Scratch<T>*>(ws);
  if (!sc->ok) return;  // (the same for every thread: no barrier is skipped by some)
  const Index C = p.layout.classes;
  // the terms' params in shared memory: read by broadcast where they are needed, not held in
  // registers for the whole kernel (they would halve the blocks an SM holds)
  __shared__ TermParams<T> params[NT];
  if (threadIdx.x < unsigned(NT) && int(threadIdx.x) < p.n_terms) params[threadIdx.x] = sc->params[threadIdx.x];
  __syncthreads();
  bool smooth[kMaxTerms] = {};
  T weights[kMaxTerms] = {};
  LMF_CUDA_FOR_TERMS(t, p.n_terms) {
    smooth[t] = params[t].smooth != T(0);
    weights[t] = p.terms[t].weight;
  }
  const unsigned all_terms = (1u << p.n_terms) - 1;
  double acc[kMaxTerms] = {};
  auto body = [&](Index i, const auto& row, int lane) {
    const L label = labels[i];
    if (is_ignored(label, p.ignore_index)) {
      for (Index c = lane; c < C; c += G) row.store(c, T(0));
      if (row_values && lane == 0) row_values[i] = T(0);
      return;
    }
    const Index y = static_cast<Index>(label);
    // the label's and class 0's logits, read before the group's merge (in place, a lane's
    // gradient may overwrite them once it is past the merge)
    const T xy = row.load(y), x0 = row.load(0);
    TermState<T> st[kMaxTerms];
    const unsigned long long bad = row_stats<G, NT>(p, row, y, x0, lane, all_terms, smooth, !p.validate_logits, st);
    if (bad != kNone) atomicMin(&sc->status.bad_logit, static_cast<unsigned long long>(i) * C + bad);
    group_merge<G, NT>(p, st, shared);  // every read of the row is done: the gradient may overwrite it
    const RowFinish<T> f = finish_row<NT>(p, params, smooth, weights, st, y, xy, x0);
    if (lane == 0) {
      LMF_CUDA_FOR_TERMS(t, p.n_terms) acc[t] += f.contribution[t];
    }
    if (row_values && lane == 0) row_values[i] = f.value;
    if (g) row_gradient<G, NT>(p, params, smooth, st, f, row, y, lane);
  };
  for_each_row<M, T, In>(p, x, g, true, body);
  double* out = loss_partials<T>(ws, p.grid) + std::size_t(blockIdx.x) * kMaxTerms;
  const double s = block_sum(acc, threadIdx.x);
  if (threadIdx.x < kMaxTerms) out[threadIdx.x] = s;
}

/// Pass 4 (one block of 32 threads): the value (reductions sum and mean) and the status record.
template <class T, class In>
__global__ void finish_kernel(Plan<T> p, const In* x, void* ws, T* value, DeviceStatus* record, int* record_ok) {
  Scratch<T>* sc = static_cast<Scratch<T>*>(ws);
  __shared__ double sums[kMaxTerms];
  const bool ok = sc->ok != 0;
  if (ok && threadIdx.x < kMaxTerms) {
    const double* part = loss_partials<T>(ws, p.grid);
    double s = 0;
    for (int b = 0; b < p.grid; ++b) s += part[std::size_t(b) * kMaxTerms + threadIdx.x];
    sums[threadIdx.x] = s;
  }
  __syncthreads();
  if (threadIdx.x != 0) return;
  DeviceStatus st = sc->status;
  // logits not validated beforehand: found by the loss kernel (its value read after the gradient
  // was written: in place, that of the gradient entry; the host does not print it then)
  if (ok) record_bad_logit(p, x, st);
  if (ok && value && p.reduction != Reduction::none) {
    double v = 0;
    for (int t = 0; t < p.n_terms; ++t) v += lmf::detail::term_value(p.terms[t], sums[t], sc->means[t], p.totals == nullptr);
    *value = static_cast<T>(v);
  }
  *record = st;
  *record_ok = st.code == 0;
}

}  // namespace detail
}  // namespace cuda
}  // namespace lmf
