// lmf/cpu/isa_kernels.hpp — the SIMD kernels compiled once per x86 instruction set, in one
// translation unit, and the choice among them at run time (issue 7: a plain `g++ -O2` build runs
// the AVX-512 kernels on an AVX-512 CPU).
//
// The kernel bodies (simd_layer.hpp, simd_math.hpp, epilogue_simd.hpp, rows_simd.hpp,
// lanes_simd.hpp, sweeps_simd.hpp) are read three times, each time inside a namespace of its own and a target
// region (GCC's `#pragma GCC target`, clang's `#pragma clang attribute push(target)`):
//   lmf::detail::sse2    16-byte vectors, the program's own flags (x86-64's baseline: SSE2)
//   lmf::detail::avx2    32-byte vectors, target("avx2,fma")
//   lmf::detail::avx512  64-byte vectors, target("avx512f,avx512cd,avx512bw,avx512dq,avx512vl,...")
// and isa_*() below call the one active_isa() names: the widest set that is compiled in and
// that the CPU runs, chosen once, or a narrower one named by the environment variable
// LMF_SIMD_ISA (sse2, avx2, avx512) at the first call. Defining the macro LMF_SIMD_ISA to sse2,
// avx2 or avx512 compiles that set only (no dispatch; the CPU must run it), and to `native` the
// widest set the compiler's flags enable, as xsimd chose before. Other architectures compile one
// set of 16-byte vectors with generic code. docs/design-notes.md has the why and the how.
#pragma once

#include <lmf/config.hpp>
#include <lmf/cpu/kernel.hpp>
#include <lmf/cpu/scalar.hpp>
#include <lmf/math/row.hpp>
#include <lmf/math/sigmoid.hpp>

#if !defined(__GNUC__) && !defined(__clang__)
#error "lmf's CPU kernels need GCC or clang (vector extensions)"
#endif

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>

#if defined(__x86_64__) || defined(__i386__)
#define LMF_X86 1
#include <immintrin.h>
#else
#define LMF_X86 0
#endif

// Which sets are compiled: LMF_BUILD_SSE2 / AVX2 / AVX512.
#define LMF_ISA_ID_sse2 1
#define LMF_ISA_ID_avx2 2
#define LMF_ISA_ID_avx512 3
#define LMF_ISA_ID_native 4
#define LMF_ISA_CAT2(a, b) a##b
#define LMF_ISA_CAT(a, b) LMF_ISA_CAT2(a, b)
// nvcc (CUDA 13) crashes on the target regions: its translation units compile the set their host
// flags enable (lmf/cuda.cuh's host code validates and calls the CPU kernels rarely).
#if !defined(LMF_SIMD_ISA) && defined(__CUDACC__) && LMF_X86
#define LMF_SIMD_ISA native
#endif
#if defined(LMF_SIMD_ISA) && !LMF_X86
#error "LMF_SIMD_ISA names an x86 instruction set; other architectures have one set"
#endif
#if !defined(LMF_SIMD_ISA) && LMF_X86
#define LMF_BUILD_SSE2 1
#define LMF_BUILD_AVX2 1
#define LMF_BUILD_AVX512 1
#elif !defined(LMF_SIMD_ISA)
#define LMF_BUILD_SSE2 1  // (the generic 16-byte set)
#define LMF_BUILD_AVX2 0
#define LMF_BUILD_AVX512 0
#elif LMF_ISA_CAT(LMF_ISA_ID_, LMF_SIMD_ISA) == 4
#if defined(__AVX512F__) && defined(__AVX512CD__) && defined(__AVX512BW__) && defined(__AVX512DQ__) && \
    defined(__AVX512VL__) && defined(__FMA__)
#define LMF_BUILD_SSE2 0
#define LMF_BUILD_AVX2 0
#define LMF_BUILD_AVX512 1
#elif defined(__AVX2__) && defined(__FMA__)
#define LMF_BUILD_SSE2 0
#define LMF_BUILD_AVX2 1
#define LMF_BUILD_AVX512 0
#else
#define LMF_BUILD_SSE2 1
#define LMF_BUILD_AVX2 0
#define LMF_BUILD_AVX512 0
#endif
#elif LMF_ISA_CAT(LMF_ISA_ID_, LMF_SIMD_ISA) >= 1 && LMF_ISA_CAT(LMF_ISA_ID_, LMF_SIMD_ISA) <= 3
#define LMF_BUILD_SSE2 (LMF_ISA_CAT(LMF_ISA_ID_, LMF_SIMD_ISA) == 1)
#define LMF_BUILD_AVX2 (LMF_ISA_CAT(LMF_ISA_ID_, LMF_SIMD_ISA) == 2)
#define LMF_BUILD_AVX512 (LMF_ISA_CAT(LMF_ISA_ID_, LMF_SIMD_ISA) == 3)
#else
#error "LMF_SIMD_ISA must be sse2, avx2, avx512 or native"
#endif

// The target regions. GCC's pragma and clang's attribute both apply to every function defined
// inside, templates and lambdas included (tested: member functions too, friend functions not).
#if defined(__clang__)
#define LMF_TARGET_BEGIN_AVX2 _Pragma("clang attribute push(__attribute__((target(\"avx2,fma\"))), apply_to = function)")
// (one string literal each: _Pragma does not concatenate)
#define LMF_TARGET_BEGIN_AVX512 _Pragma("clang attribute push(__attribute__((target(\"avx512f,avx512cd,avx512bw,avx512dq,avx512vl,avx2,fma\"))), apply_to = function)")
#define LMF_TARGET_END _Pragma("clang attribute pop")
#else
#define LMF_TARGET_BEGIN_AVX2 _Pragma("GCC push_options") _Pragma("GCC target(\"avx2,fma\")")
#define LMF_TARGET_BEGIN_AVX512 \
  _Pragma("GCC push_options") _Pragma("GCC target(\"avx512f,avx512cd,avx512bw,avx512dq,avx512vl,avx2,fma\")")
#define LMF_TARGET_END _Pragma("GCC pop_options")
#endif

// Vectors wider than the program's flags change the ABI of functions that pass them (-Wpsabi);
// lmf's never cross from one set to another. GCC 12.1-12.2's AVX-512 headers also trip
// -Wmaybe-uninitialized in functions that inline some intrinsics (GCC bug 105593).
#define LMF_ISA_DIAGNOSTICS_BEGIN \
  _Pragma("GCC diagnostic push") _Pragma("GCC diagnostic ignored \"-Wpsabi\"")
#define LMF_ISA_DIAGNOSTICS_END _Pragma("GCC diagnostic pop")

namespace lmf {
namespace detail {

/// The instruction sets lmf compiles its kernels for (x86); elsewhere only `sse2`, which names
/// the generic 16-byte set there.
enum class Isa : int { sse2 = 0, avx2 = 1, avx512 = 2 };

/// Bytes per vector of a set.
constexpr int isa_bytes(Isa isa) { return isa == Isa::avx512 ? 64 : isa == Isa::avx2 ? 32 : 16; }

/// Lanes of T per vector of a set.
template <class T>
constexpr Index isa_width(Isa isa) {
  return Index(isa_bytes(isa) / int(sizeof(T)));
}

/// Whether this program has the set's kernels compiled in.
constexpr bool isa_built(Isa isa) {
  return isa == Isa::avx512 ? bool(LMF_BUILD_AVX512) : isa == Isa::avx2 ? bool(LMF_BUILD_AVX2) : bool(LMF_BUILD_SSE2);
}

/// Whether the CPU runs the set (for sse2: always; elsewhere than x86: the generic set).
inline bool cpu_runs(Isa isa) {
#if LMF_X86
  __builtin_cpu_init();
  switch (isa) {
    case Isa::avx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma");
    case Isa::avx2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Isa::sse2: return true;
  }
  return false;
#else
  return isa == Isa::sse2;
#endif
}

/// Compiled in and run by this CPU.
inline bool isa_available(Isa isa) { return isa_built(isa) && cpu_runs(isa); }

/// The set's name, as lmf::simd_isa() reports it.
constexpr const char* isa_name(Isa isa) {
#if LMF_X86
  return isa == Isa::avx512 ? "avx512" : isa == Isa::avx2 ? "avx2" : "sse2";
#else
  return (void)isa, "generic128";
#endif
}

/// The widest available set no wider than `cap`; if none (a set pinned by LMF_SIMD_ISA that the
/// CPU lacks), the pinned set (calling it would fault: the program was built for that CPU).
inline Isa widest_isa(Isa cap) {
  for (int i = int(cap); i >= 0; --i)
    if (isa_available(Isa(i))) return Isa(i);
  for (int i = 0; i <= 2; ++i)
    if (isa_built(Isa(i))) return Isa(i);
  return Isa::sse2;
}

/// The set chosen at the first call: the widest available, capped by the environment variable
/// LMF_SIMD_ISA (sse2, avx2, avx512; anything else is ignored).
inline Isa initial_isa() {
  Isa cap = Isa::avx512;
  if (const char* env = std::getenv("LMF_SIMD_ISA")) {
    if (std::strcmp(env, "sse2") == 0) cap = Isa::sse2;
    if (std::strcmp(env, "avx2") == 0) cap = Isa::avx2;
  }
  return widest_isa(cap);
}

inline std::atomic<int>& isa_slot() {
  static std::atomic<int> slot{-1};
  return slot;
}

/// The set every SIMD kernel call uses.
inline Isa active_isa() {
  int v = isa_slot().load(std::memory_order_relaxed);
  if (v < 0) {
    v = int(initial_isa());
    isa_slot().store(v, std::memory_order_relaxed);
  }
  return Isa(v);
}

/// Makes `isa` the active set (tests and benchmarks: every set the CPU runs, one by one, in one
/// program). Returns false, changing nothing, if it is not available. Not for concurrent use with
/// running losses.
inline bool force_isa(Isa isa) {
  if (!isa_available(isa)) return false;
  isa_slot().store(int(isa), std::memory_order_relaxed);
  return true;
}

/// Groups of W rows per iteration of the lanes kernel, for vectors of `width` lanes. The row math
/// is one long chain of dependent steps (exponentials, sums, log1p, divisions, the modulation);
/// independent groups in flight let the out-of-order core overlap them. Four groups instead of
/// two took LMF 9-33% less time at C = 2 and 4-15% at C = 7 with AVX2, 10-15% on SSE2, and were
/// within noise at C = 10 (AMD EPYC; three groups were slower, eight no better: docs/performance.md);
/// 16-lane vectors keep two. An iteration covers at most 32 rows with every set, so a batch of 37
/// rows runs the vector path everywhere (the tests use lane_rows() and 37).
constexpr Index lane_groups(Index width) { return width >= 16 ? 2 : 4; }

/// Scratch the lanes kernel needs per thread with the set `isa`: the logits and gradient
/// tiles, the target masks and one tile of exponentials per term, C x (groups * W) each.
template <class T>
Index lanes_scratch_size(Isa isa, Index classes, int n_terms) {
  const Index W = isa_width<T>(isa);
  return (Index(n_terms) + 3) * classes * W * lane_groups(W);
}

/// The rows kernel's exponentials of its rows in flight stay within this many bytes (L1-sized:
/// the gradient sweep reads them back; the rows' gradient rows are as large again).
constexpr Index kRowsScratchBytes = 32 * 1024;

/// Rows the rows kernel keeps in flight with W lanes: their per-row epilogue runs on one vector,
/// so up to W; as many as keep one row of exponentials per term within kRowsScratchBytes; at
/// least 2 (two independent rows overlap each other's latency-bound steps).
template <class T>
constexpr Index rows_in_flight(Index classes, int n_terms, Index W) {
  const Index fit = kRowsScratchBytes / (Index(sizeof(T)) * Index(n_terms) * classes);
  return fit >= W ? W : fit >= 2 ? fit : 2;
}

/// Scratch the rows kernel needs per thread with any set (the widest's W: 64 bytes): one row of
/// exponentials per term for each row in flight.
template <class T>
Index rows_scratch_size(Index classes, int n_terms) {
  return rows_in_flight<T>(classes, n_terms, Index(64 / sizeof(T))) * Index(n_terms) * classes;
}

}  // namespace detail
}  // namespace lmf

// Inlined whatever the compiler's heuristics say (the kernels' per-row epilogue: its steps
// must interleave with the other groups' and terms' work; as a call it was 23% of the lanes
// kernel's time at C = 10).
#define LMF_ALWAYS_INLINE __attribute__((always_inline)) inline

// ---- the kernels, once per set ------------------------------------------------------------------

LMF_ISA_DIAGNOSTICS_BEGIN

#if LMF_BUILD_SSE2
namespace lmf {
namespace detail {
namespace sse2 {
#define LMF_SIMD_BYTES 16
#include <lmf/cpu/simd_layer.hpp>
#include <lmf/cpu/simd_math.hpp>
#include <lmf/cpu/epilogue_simd.hpp>
#include <lmf/cpu/rows_simd.hpp>
#include <lmf/cpu/lanes_simd.hpp>
#include <lmf/cpu/sweeps_simd.hpp>
#undef LMF_SIMD_BYTES
}  // namespace sse2
}  // namespace detail
}  // namespace lmf
#endif

#if LMF_BUILD_AVX2
LMF_TARGET_BEGIN_AVX2
namespace lmf {
namespace detail {
namespace avx2 {
#define LMF_SIMD_BYTES 32
#include <lmf/cpu/simd_layer.hpp>
#include <lmf/cpu/simd_math.hpp>
#include <lmf/cpu/epilogue_simd.hpp>
#include <lmf/cpu/rows_simd.hpp>
#include <lmf/cpu/lanes_simd.hpp>
#include <lmf/cpu/sweeps_simd.hpp>
#undef LMF_SIMD_BYTES
}  // namespace avx2
}  // namespace detail
}  // namespace lmf
LMF_TARGET_END
#endif

#if LMF_BUILD_AVX512
LMF_TARGET_BEGIN_AVX512
namespace lmf {
namespace detail {
namespace avx512 {
#define LMF_SIMD_BYTES 64
#include <lmf/cpu/simd_layer.hpp>
#include <lmf/cpu/simd_math.hpp>
#include <lmf/cpu/epilogue_simd.hpp>
#include <lmf/cpu/rows_simd.hpp>
#include <lmf/cpu/lanes_simd.hpp>
#include <lmf/cpu/sweeps_simd.hpp>
#undef LMF_SIMD_BYTES
}  // namespace avx512
}  // namespace detail
}  // namespace lmf
LMF_TARGET_END
#endif

LMF_ISA_DIAGNOSTICS_END

// ---- the calls ----------------------------------------------------------------------------------

#if LMF_BUILD_AVX512
#define LMF_ISA_CASE_AVX512(call) \
  case Isa::avx512: return avx512::call;
#else
#define LMF_ISA_CASE_AVX512(call)
#endif
#if LMF_BUILD_AVX2
#define LMF_ISA_CASE_AVX2(call) \
  case Isa::avx2: return avx2::call;
#else
#define LMF_ISA_CASE_AVX2(call)
#endif
#if LMF_BUILD_SSE2
#define LMF_ISA_NARROWEST sse2
#elif LMF_BUILD_AVX2
#define LMF_ISA_NARROWEST avx2
#else
#define LMF_ISA_NARROWEST avx512
#endif
/// `call` in the namespace of the set `isa`, or of the narrowest set compiled in if `isa` is not
/// (active_isa() always is; this keeps a program whose translation units were built with
/// different LMF_SIMD_ISA correct, whichever copy of these inline functions the linker keeps).
#define LMF_ISA_DISPATCH(isa, call) \
  switch (isa) {                    \
    LMF_ISA_CASE_AVX512(call)       \
    LMF_ISA_CASE_AVX2(call)         \
    default: break;                 \
  }                                 \
  return LMF_ISA_NARROWEST::call

namespace lmf {
namespace detail {

template <class T, class L>
bool isa_rows_simd(Isa isa, const KernelArgs<T, L>& k, Index begin, Index end, Accum* sums, T* scratch) {
  LMF_ISA_DISPATCH(isa, rows_simd(k, begin, end, sums, scratch));
}

template <class T, class L>
bool isa_lanes_simd(Isa isa, const KernelArgs<T, L>& k, Index begin, Index end, Accum* sums, T* scratch) {
  LMF_ISA_DISPATCH(isa, lanes_simd(k, begin, end, sums, scratch));
}

template <class T, class L>
bool isa_row_maxima(Isa isa, const KernelArgs<T, L>& k, Index begin, Index end, T* X) {
  LMF_ISA_DISPATCH(isa, row_maxima(k, begin, end, X));
}

/// True if every element of [x, x + n) is within `limit`.
template <class T>
bool isa_all_within(const T* x, Index n, T limit) {
  LMF_ISA_DISPATCH(active_isa(), all_within_serial(x, n, limit));
}

/// sweeps_simd.hpp's exp_floor in the active set (bench/ only).
template <class T>
T isa_exp_floor(const T* x, T* e, Index n) {
  LMF_ISA_DISPATCH(active_isa(), exp_floor(x, e, n));
}

template <class T>
Accum isa_sigmoid_line(const SigmoidParams<T>& p, const T* x, const T* t, T* g, T* v, Index n, const T* w, T wc,
                       bool simd_ok, Index sx, Index st, Index sg, Index sv) {
  LMF_ISA_DISPATCH(active_isa(), sigmoid_line(p, x, t, g, v, n, w, wc, simd_ok, sx, st, sg, sv));
}

template <class T>
bool isa_sigmoid_inputs_ok(const T* x, const T* t, Index n, Index sx, Index st) {
  LMF_ISA_DISPATCH(active_isa(), sigmoid_inputs_ok(x, t, n, sx, st));
}

}  // namespace detail
}  // namespace lmf
