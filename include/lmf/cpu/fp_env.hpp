// lmf/cpu/fp_env.hpp — no subnormal arithmetic inside a kernel pass: flush-to-zero (FTZ) and
// denormals-are-zero (DAZ) are set in MXCSR for the duration of the pass, on every thread that
// runs a block, and the caller's control bits are put back exactly when it ends.
//
// Why: LDAM's s = 30 sends most exponentials e_c of a row to ~1e-38, and the gradient's products
// k * e_c are then subnormal. Intel cores take a microcode assist for every SSE/AVX operation
// that produces or reads a subnormal (hundreds of cycles): measured 8-12x slower at C = 1000
// with AVX2 on an Intel Xeon. With FTZ/DAZ those results are 0 and the loads read 0.
//
// What it changes (docs/math.md, "Subnormal numbers"): an output whose exact value is below the
// smallest normal number (1.2e-38 in float, 2.2e-308 in double) may be 0 instead, and a
// subnormal logit is read as 0 (its softmax and gradient are those of 0: a change below one ulp
// of any other quantity). Inputs that must not be read as 0 are the loss's own parameters:
// when a class weight, margin, multiplier, offset or scale of the call is subnormal, the pass
// runs without flushing (run_blocks checks; see params_have_subnormals).
//
// Off switch: define LMF_FLUSH_SUBNORMALS to 0 before including lmf (then the caller's MXCSR
// is used as it is). On targets without MXCSR (not x86) nothing is changed.
#pragma once

#include <lmf/config.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#ifndef LMF_FLUSH_SUBNORMALS
#define LMF_FLUSH_SUBNORMALS 1
#endif

#if LMF_FLUSH_SUBNORMALS && (defined(__SSE2__) || defined(_M_X64) || (defined(_M_IX86_FP) && _M_IX86_FP >= 2))
#include <xmmintrin.h>
#define LMF_HAS_MXCSR 1
#else
#define LMF_HAS_MXCSR 0
#endif

namespace lmf {
namespace detail {

/// MXCSR: FTZ is bit 15, DAZ bit 6; bits 0-5 are the sticky exception flags (status, not control).
constexpr unsigned kMxcsrFlushBits = 0x8040u;
constexpr unsigned kMxcsrStatusBits = 0x003Fu;

/// Sets FTZ and DAZ on this thread for its lifetime (when `on` and they are not set already) and
/// then restores the caller's control bits exactly; the exception flags raised meanwhile are
/// kept, as for any other arithmetic the caller runs.
class FlushSubnormals {
 public:
  explicit FlushSubnormals(bool on) {
#if LMF_HAS_MXCSR
    if (!on) return;
    saved_ = _mm_getcsr();
    active_ = (saved_ & kMxcsrFlushBits) != kMxcsrFlushBits;
    if (active_) _mm_setcsr(saved_ | kMxcsrFlushBits);
#else
    (void)on;
#endif
  }
  ~FlushSubnormals() {
#if LMF_HAS_MXCSR
    if (active_) _mm_setcsr((_mm_getcsr() & kMxcsrStatusBits) | (saved_ & ~kMxcsrStatusBits));
#endif
  }
  FlushSubnormals(const FlushSubnormals&) = delete;
  FlushSubnormals& operator=(const FlushSubnormals&) = delete;

 private:
  unsigned saved_ = 0;
  bool active_ = false;
};

/// True when the build flushes subnormals in its kernel passes (x86 with LMF_FLUSH_SUBNORMALS).
constexpr bool flushes_subnormals() { return LMF_HAS_MXCSR != 0; }

/// x is subnormal (nonzero and below the smallest normal number of its type; false for NaN).
template <class T>
bool is_subnormal(T x) {
  return x != T(0) && std::abs(x) < std::numeric_limits<T>::min();
}

/// Any of v[0..n) subnormal (null: none). Every call scans the loss's per-class parameters with
/// it, so it works on the bits, which compilers vectorize (a subnormal's magnitude bits are
/// 1 ... 2^mantissa_bits - 1): with std::fpclassify it was 45% of a call on one row of 32768
/// classes.
template <class T>
bool any_subnormal(const T* v, Index n) {
  if (v == nullptr) return false;
  using U = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
  static_assert(sizeof(U) == sizeof(T) && std::numeric_limits<T>::is_iec559, "IEEE binary32 or binary64");
  constexpr U magnitude = ~U(0) >> 1, largest = (U(1) << (std::numeric_limits<T>::digits - 1)) - 1;
  U any = 0;
  for (Index i = 0; i < n; ++i) {
    U bits;
    std::memcpy(&bits, v + i, sizeof bits);
    any |= U(((bits & magnitude) - 1) < largest);
  }
  return any != 0;
}

}  // namespace detail
}  // namespace lmf
