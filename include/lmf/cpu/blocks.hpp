// lmf/cpu/blocks.hpp — runs a kernel over a batch: the kernel choice, fixed blocks of rows on
// OpenMP threads, scratch allocated up front, and the per-term sums added in block order (bitwise
// the same for any thread count).
#pragma once

#include <lmf/cpu/fp_env.hpp>
#include <lmf/cpu/isa_kernels.hpp>
#include <lmf/cpu/scalar.hpp>
#include <lmf/cpu/validate.hpp>
#include <lmf/spec.hpp>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <atomic>
#include <new>

namespace lmf {
namespace detail {

/// Rows per block of the fixed-order reduction: about 16K logits (so that wide rows still give
/// many blocks to share among threads), a multiple of 32 (whole iterations of the lanes kernel,
/// up to 16-lane vectors), from 32 to 512. It depends on C only: block sums are added in block
/// order, so the result does not depend on how blocks are scheduled or on the thread count.
inline Index block_rows(Index classes) {
  const Index target = (Index(1) << 14) / std::max<Index>(classes, 1);
  return std::min<Index>(512, std::max<Index>(32, (target + 31) / 32 * 32));
}


/// A 64-byte aligned buffer, allocated without throwing (check ok()): an allocation failure
/// becomes an lmf Status like any other error, with or without exceptions. Zero-filled unless
/// `zero` is false (the kernels' scratch, which they write before they read: filling it cost 19%
/// of a call on one row of 32768 classes).
template <class T>
class AlignedBuffer {
 public:
  explicit AlignedBuffer(Index n, bool zero = true) {
    if (n <= 0) return;
    data_ = static_cast<T*>(::operator new(sizeof(T) * std::size_t(n), std::align_val_t(64), std::nothrow));
    ok_ = data_ != nullptr;
    if (ok_ && zero) std::fill(data_, data_ + n, T(0));
  }
  ~AlignedBuffer() {
    if (data_) ::operator delete(data_, std::align_val_t(64));
  }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  bool ok() const { return ok_; }
  T* data() const { return data_; }

 private:
  T* data_ = nullptr;
  bool ok_ = true;
};

/// Classes from which class-contiguous rows go to the rows kernel rather than the lanes kernel:
/// 6 vectors of the set `isa` (measured crossover with AVX2 floats: lanes is faster up to ~40
/// classes, rows from ~48).
template <class T>
constexpr Index rows_min_classes(Isa isa) {
  return 6 * isa_width<T>(isa);
}

/// Largest lanes-kernel scratch per thread, in elements (4M: 16 MB of floats; C up to 26214 for LMF
/// in float with AVX2 or AVX-512: 5 tiles of C x 32).
constexpr Index kMaxLanesScratch = Index(1) << 22;

/// The kernel that evaluates this batch (see lmf::Kernel).
template <class T>
Kernel choose_kernel(const LossSpec<T>& spec, const Layout& lx, const Outputs<T>& out) {
  const Isa isa = active_isa();
  const bool simd_ok = lx.classes >= 2;  // (C <= limits::max_classes: labels are exact in T)
  const bool contiguous = lx.class_stride == 1 && (out.grad == nullptr || out.lg.class_stride == 1);
  // the lanes kernel's tiles grow with C: past kMaxLanesScratch (per thread) wide class-strided
  // rows go to the scalar kernel instead of allocating gigabytes
  const bool lanes_ok = lanes_scratch_size<T>(isa, lx.classes, int(spec.terms.size())) <= kMaxLanesScratch;
  switch (spec.kernel) {
    case Kernel::scalar: return Kernel::scalar;
    case Kernel::rows: return simd_ok && contiguous ? Kernel::rows : Kernel::scalar;
    case Kernel::lanes: return simd_ok && lanes_ok ? Kernel::lanes : Kernel::scalar;
    case Kernel::automatic: break;
  }
  if (!simd_ok) return Kernel::scalar;
  if (contiguous && lx.classes >= rows_min_classes<T>(isa)) return Kernel::rows;
  return lanes_ok ? Kernel::lanes : Kernel::scalar;
}

/// The rows kernel's validation pass (dispatch.hpp, step 4): X_i and x_{i y_i} into X[2 i] and
/// X[2 i + 1] for every counted row (row_maxima), over the same blocks and threads as run_blocks.
/// False if a counted row has a logit beyond k.limit; nothing is written but X.
template <class T, class L>
bool run_row_maxima(const KernelArgs<T, L>& k, int threads, T* X) {
  const Index rows = k.lx.rows(), C = k.lx.classes;
  const Index block = block_rows(C);
  const Index blocks = (rows + block - 1) / block;
  const Isa isa = active_isa();
  bool ok = true;
#if defined(_OPENMP)
  const int team = rows * C >= kParallelMinLogits
                       ? int(std::min<Index>(threads > 0 ? threads : omp_get_max_threads(), std::max<Index>(blocks, 1)))
                       : 1;
#pragma omp parallel for schedule(static) reduction(&& : ok) num_threads(team) if (team > 1)
#else
  (void)threads;
#endif
  for (Index b = 0; b < blocks; ++b)
    ok = isa_row_maxima(isa, k, b * block, std::min(rows, (b + 1) * block), X) && ok;
  return ok;
}

/// Whether any parameter of the pass is subnormal: then it runs without FTZ/DAZ (fp_env.hpp),
/// which would read it as 0.
template <class T, class L>
bool params_have_subnormals(const KernelArgs<T, L>& k) {
  const Index C = k.lx.classes;
  bool any = any_subnormal(k.term_weights, k.n_terms);
  for (int t = 0; t < k.n_terms; ++t) {
    const TermParams<T>& p = k.terms[t];
    // (named arrays, not braced lists in the range-for: nvcc's front end mis-parses those)
    const T scalars[] = {p.s, p.gamma, p.one_minus_eps, p.smooth, p.w_sum, p.smooth_mass, p.smooth_grad};
    const Accum scales[] = {p.weight_scale, p.value_scale, p.grad_scale};
    for (T v : scalars) any |= is_subnormal(v);
    for (Accum v : scales) any |= is_subnormal(v);
    any |= any_subnormal(p.a, C) || any_subnormal(p.m, C) || any_subnormal(p.b, C) || any_subnormal(p.w, C);
    // the gradient factor each row starts from, rounded to T (term_row: T(w_y weight_scale
    // grad_scale (1 - eps))): a tiny caller grad_scale over a large denominator can make it
    // subnormal in T although every double above is normal
    Accum w_min = 1;
    if (p.w) {
      w_min = std::numeric_limits<Accum>::infinity();
      for (Index c = 0; c < C; ++c)
        if (p.w[c] != T(0)) w_min = std::min(w_min, Accum(std::fabs(p.w[c])));
    }
    const Accum g = w_min * p.weight_scale * std::fabs(p.grad_scale) * Accum(p.one_minus_eps);
    any |= g > 0 && g < Accum(std::numeric_limits<T>::min());
  }
  return any;
}

/// What run_blocks reports: whether its buffers could be allocated (nothing was computed if
/// not), and the first block with a counted logit beyond k.limit (-1: none).
struct BlockRun {
  bool allocated = true;
  Index first_bad_block = -1;
};

/// Runs `kernel` over the rows in fixed blocks of block_rows(C) rows, on up to `threads` threads,
/// and adds the block sums in block order: the totals are bitwise the same for any thread count.
/// Every buffer is allocated before any row is evaluated. Once a block has found a bad logit,
/// the blocks after it are skipped (only the first bad one is reported). Every thread runs its
/// blocks with subnormals flushed (fp_env.hpp) unless a parameter is subnormal.
template <class T, class L>
BlockRun run_blocks(const KernelArgs<T, L>& k, Kernel kernel, int threads, std::array<Accum, kMaxTerms>& sums) {
  sums.fill(0);
  BlockRun result;
  const Index rows = k.lx.rows(), C = k.lx.classes;
  const Index block = block_rows(C);
  const Index blocks = (rows + block - 1) / block;
  if (blocks == 0) return result;
  const Isa isa = active_isa();
  const Index scratch_size = kernel == Kernel::rows    ? rows_scratch_size<T>(C, k.n_terms)
                             : kernel == Kernel::lanes ? lanes_scratch_size<T>(isa, C, k.n_terms)
                                                       : 0;
  int team = 1;
#if defined(_OPENMP)
  const int max_threads = threads > 0 ? threads : omp_get_max_threads();
  if (rows * C >= kParallelMinLogits) team = int(std::min<Index>(max_threads, blocks));
#else
  (void)threads;
#endif
  // one slot of scratch per thread, rounded to 64 bytes
  const Index slot = (scratch_size + 63) / 64 * 64;
  AlignedBuffer<Accum> block_sums(blocks * kMaxTerms);
  AlignedBuffer<T> scratch(slot * team, false);  // (each kernel writes its scratch before reading it)
  if (!block_sums.ok() || !scratch.ok()) {
    result.allocated = false;
    return result;
  }
  const bool flush = !params_have_subnormals(k);
  std::atomic<Index> first_bad{blocks};
  auto run = [&](Index b, T* thread_scratch) {
    if (b > first_bad.load(std::memory_order_relaxed)) return;  // an earlier block is bad
    const Index begin = b * block, end = std::min(rows, begin + block);
    Accum* out = block_sums.data() + b * kMaxTerms;
    bool ok;
    switch (kernel) {
      case Kernel::rows: ok = isa_rows_simd(isa, k, begin, end, out, thread_scratch); break;
      case Kernel::lanes: ok = isa_lanes_simd(isa, k, begin, end, out, thread_scratch); break;
      default: ok = scalar_rows(k, begin, end, out); break;
    }
    if (!ok) {
      Index seen = first_bad.load(std::memory_order_relaxed);
      while (b < seen && !first_bad.compare_exchange_weak(seen, b, std::memory_order_relaxed)) {
      }
    }
  };
#if defined(_OPENMP)
  if (team > 1) {
#pragma omp parallel num_threads(team)
    {
      const FlushSubnormals no_subnormals(flush);
      T* mine = scratch.data() + slot * omp_get_thread_num();
#pragma omp for schedule(static)
      for (Index b = 0; b < blocks; ++b) run(b, mine);
    }
  } else
#endif
  {
    const FlushSubnormals no_subnormals(flush);
    for (Index b = 0; b < blocks; ++b) run(b, scratch.data());
  }
  if (first_bad.load() < blocks) {
    result.first_bad_block = first_bad.load();
    return result;
  }
  for (Index b = 0; b < blocks; ++b)
    for (int t = 0; t < k.n_terms; ++t) sums[t] += block_sums.data()[b * kMaxTerms + t];
  return result;
}

}  // namespace detail
}  // namespace lmf
