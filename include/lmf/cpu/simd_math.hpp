// lmf/cpu/simd_math.hpp — SIMD building blocks of the kernels on xsimd batches: a fast exp
// (both kernels), and the focal modulation of math/row.hpp with one row per lane (the lanes
// kernel): same formulas, the branches expressed as selects.
#pragma once

#include <lmf/math/row.hpp>

#include <xsimd/xsimd.hpp>

#include <cstring>
#include <cmath>
#include <cstdint>
#include <utility>

namespace lmf {
namespace detail {
namespace simd {

template <class T>
using batch = xsimd::batch<T>;
template <class T>
using mask = xsimd::batch_bool<T>;

template <class T>
constexpr Index width() {
  return Index(batch<T>::size);
}

namespace detail_lanes {
template <class T, class F, std::size_t... J>
batch<T> make(F&& f, std::index_sequence<J...>) {
  return batch<T>({static_cast<T>(f(Index(J)))...});
}
}  // namespace detail_lanes

/// The batch {f(0), f(1), ..., f(W-1)}, built in registers. (Writing the lanes to memory one by
/// one and loading them as a vector would stall on store forwarding.)
template <class T, class F>
batch<T> lanes_from(F&& f) {
  return detail_lanes::make<T>(f, std::make_index_sequence<batch<T>::size>());
}

/// Largest lane of v.
template <class T>
T hmax(const batch<T>& v) {
  alignas(64) T tmp[batch<T>::size];
  v.store_aligned(tmp);
  T m = tmp[0];
  for (std::size_t j = 1; j < batch<T>::size; ++j) m = tmp[j] > m ? tmp[j] : m;
  return m;
}

/// Clamps x into [lo, hi]; NaN goes to lo. (xsimd::max/min pass a NaN through, and a NaN or
/// out-of-range value must never reach the float-to-int conversion of fast_exp: that is
/// undefined behaviour, and UBSan aborts on it where the conversion is scalar, e.g. SSE2 double.)
template <class T>
batch<T> clamp_nan_low(const batch<T>& x, T lo, T hi) {
  const batch<T> low(lo);
  return xsimd::min(xsimd::select(x >= low, x, low), batch<T>(hi));  // x >= lo is false for NaN
}

/// exp(x) for the kernels' exponents z_c - z_k (<= 0 up to rounding): Cody-Waite reduction
/// x = n ln2 + r, |r| <= ln2/2, a polynomial for e^r (Cephes' minimax for float, the Taylor
/// series to r^12 for double: both within 1-2 ulp), and 2^n put into the exponent bits.
/// Arguments are clamped to [log(smallest normal), log(largest finite) - 1] (NaN to the low
/// end), so results are never subnormal, infinite or NaN: exp(-1000) gives 1e-38 in float, not 0
/// (it is added to a sum >= 1, where it changes nothing), and exp(+1000) a large finite number.
/// Without xsimd::exp's overflow, NaN and denormal branches it is about twice as fast.
inline batch<float> fast_exp(batch<float> x) {
  using B = batch<float>;
  x = clamp_nan_low(x, -87.33f, 87.0f);
  const B n = xsimd::nearbyint(x * B(1.44269504088896341f));
  B r = xsimd::fma(n, B(-0.693359375f), x);
  r = xsimd::fma(n, B(2.12194440e-4f), r);
  B y = B(1.9875691500e-4f);
  y = xsimd::fma(y, r, B(1.3981999507e-3f));
  y = xsimd::fma(y, r, B(8.3334519073e-3f));
  y = xsimd::fma(y, r, B(4.1665795894e-2f));
  y = xsimd::fma(y, r, B(1.6666665459e-1f));
  y = xsimd::fma(y, r, B(5.0000001201e-1f));
  y = xsimd::fma(y, r * r, r + B(1.0f));
  return xsimd::ldexp(y, xsimd::to_int(n));
}

inline batch<double> fast_exp(batch<double> x) {
  using B = batch<double>;
  x = clamp_nan_low(x, -708.39, 708.0);
  const B n = xsimd::nearbyint(x * B(1.4426950408889634074));
  B r = xsimd::fma(n, B(-6.93145751953125e-1), x);
  r = xsimd::fma(n, B(-1.42860682030941723212e-6), r);
  // Taylor series of e^r to r^12: the remainder is below 2e-16 for |r| <= ln2 / 2
  B y = B(1.0 / 479001600.0);
  y = xsimd::fma(y, r, B(1.0 / 39916800.0));
  y = xsimd::fma(y, r, B(1.0 / 3628800.0));
  y = xsimd::fma(y, r, B(1.0 / 362880.0));
  y = xsimd::fma(y, r, B(1.0 / 40320.0));
  y = xsimd::fma(y, r, B(1.0 / 5040.0));
  y = xsimd::fma(y, r, B(1.0 / 720.0));
  y = xsimd::fma(y, r, B(1.0 / 120.0));
  y = xsimd::fma(y, r, B(1.0 / 24.0));
  y = xsimd::fma(y, r, B(1.0 / 6.0));
  y = xsimd::fma(y, r, B(0.5));
  y = xsimd::fma(y, r * r, r + B(1.0));
  return xsimd::ldexp(y, xsimd::to_int(n));
}

/// a * b + c: one fma on batches; on scalars a multiply and an add (std::fma would be a slow
/// library call where the build has no FMA instruction, e.g. x86-64's baseline).
inline float mul_add(float a, float b, float c) { return a * b + c; }
template <class V>
V mul_add(const V& a, const V& b, const V& c) {
  return xsimd::fma(a, b, c);
}

/// Cephes' logf polynomial: log(1 + f) - f as f^3 P(f) - f^2/2, for f = m - 1 with m in
/// [sqrt(1/2), sqrt(2)) (~1 ulp); V is float or a batch of floats.
template <class V>
V log1p_mantissa(const V& f) {
  const V z = f * f;
  V p = V(7.0376836292e-2f);
  for (float c : {-1.1514610310e-1f, 1.1676998740e-1f, -1.2420140846e-1f, 1.4249322787e-1f, -1.6668057665e-1f,
                  2.0000714765e-1f, -2.4999993993e-1f, 3.3333331174e-1f})
    p = mul_add(p, f, V(c));
  return mul_add(f * z, p, V(-0.5f) * z);
}

/// log1p(e) for e in [0, 1], given inv = 1 / (1 + e) (the sigmoid kernel has both): u = 1 + e is
/// in [1, 2], so no exponent needs extracting; log u = k ln2 + log m, m = u or u / 2 in
/// [sqrt(1/2), sqrt(2)], log m = f - f^2/2 + f^3 P(f) with f = m - 1 exact (Cephes' minimax for
/// float, ~1 ulp), and the rounding of 1 + e is put back exactly: c = e - (u - 1), log1p(e) =
/// log u + c / u. About half the cost of xsimd::log1p, which handles every argument.
inline batch<float> log1p_unit(const batch<float>& e, const batch<float>& inv) {
  using B = batch<float>;
  const B one(1.0f), u = one + e;
  const auto big = u > B(1.41421356237f);
  const B m = xsimd::select(big, u * B(0.5f), u);
  const B k = xsimd::select(big, one, B(0.0f));
  const B f = m - one;
  const B y = log1p_mantissa(f);
  const B c = e - (u - one);  // exact: u - 1 is exact for u in [1, 2]
  return xsimd::fma(k, B(0.693359375f), f + xsimd::fma(k, B(-2.12194440e-4f), xsimd::fma(c, inv, y)));
}
inline batch<double> log1p_unit(const batch<double>& e, const batch<double>&) { return xsimd::log1p(e); }

/// log1p(r) for finite r >= 0, given inv = 1 / (1 + r) (the lanes kernel has both: r is a row's
/// sum of exponentials relative to its reference class, in [0, C]). The same scheme as
/// log1p_unit for any exponent: u = 1 + r = m 2^k with m in [sqrt(1/2), sqrt(2)) (from the bits
/// of u), log m by Cephes' polynomial, and the rounding of 1 + r put back exactly (Fast2Sum with
/// the larger operand first): log1p(r) = k ln2 + log m + c / u. About 1 ulp; less than half the
/// cost of xsimd::log1p, which handles every argument (negative, infinite, subnormal).
inline batch<float> log1p_pos(const batch<float>& r, const batch<float>& inv) {
  using B = batch<float>;
  using I = batch<std::int32_t>;
  const B one(1.0f), u = one + r;
  const B c = xsimd::select(r > one, one - (u - r), r - (u - one));
  const I bits = xsimd::bitwise_cast<I>(u);
  // mantissa in [1, 2), then halved when above sqrt(2) (0x3fb504f3), with the exponent raised
  const I mant = (bits & I(0x007fffff)) | I(0x3f800000);
  const auto big = mant > I(0x3fb504f3);
  const B m = xsimd::select(xsimd::bool_cast(big), xsimd::bitwise_cast<B>(mant) * B(0.5f), xsimd::bitwise_cast<B>(mant));
  const B k = xsimd::to_float((bits >> 23) - I(127) + xsimd::select(big, I(1), I(0)));
  const B f = m - one;
  const B y = log1p_mantissa(f);
  return xsimd::fma(k, B(0.693359375f), f + xsimd::fma(k, B(-2.12194440e-4f), xsimd::fma(c, inv, y)));
}
inline batch<double> log1p_pos(const batch<double>& r, const batch<double>&) { return xsimd::log1p(r); }

/// The same for one float (the rows kernel's per-row epilogue: glibc's log1pf was 17% of LMF at
/// C = 100); the same bits, polynomial and correction as the batch version. Double: std::log1p.
inline float log1p_pos(float r) {
  const float u = 1.0f + r;
  const float c = r > 1.0f ? 1.0f - (u - r) : r - (u - 1.0f);
  std::uint32_t bits;
  std::memcpy(&bits, &u, sizeof bits);
  std::uint32_t mant = (bits & 0x007fffffu) | 0x3f800000u;
  const bool big = mant > 0x3fb504f3u;
  float m;
  std::memcpy(&m, &mant, sizeof m);
  if (big) m *= 0.5f;
  const float k = float(int(bits >> 23) - 127 + (big ? 1 : 0));
  const float f = m - 1.0f;
  const float y = log1p_mantissa(f);
  return mul_add(k, 0.693359375f, f + mul_add(k, -2.12194440e-4f, c / u + y));
}
inline double log1p_pos(double r) { return std::log1p(r); }

/// 1 - exp(-u) for u >= 0 without cancellation (-expm1(-u)); u is clamped to 60 first (1 - e^-60
/// is 1 in double), so xsimd's expm1 never converts an out-of-range value to an integer.
template <class T>
batch<T> one_minus_exp_neg(const batch<T>& u) {
  return -xsimd::expm1(-clamp_nan_low(u, T(0), T(60)));
}

/// (1 - p)^gamma for the gammas that matter, without pow where it is not needed.
template <class T>
batch<T> modulation(const batch<T>& one_minus_p, T gamma) {
  if (gamma == T(1)) return one_minus_p;
  if (gamma == T(2)) return one_minus_p * one_minus_p;
  if (gamma == T(0.5)) return xsimd::sqrt(one_minus_p);
  if (gamma == T(1.5)) return one_minus_p * xsimd::sqrt(one_minus_p);
  if (gamma == T(3)) return one_minus_p * one_minus_p * one_minus_p;
  // exp(gamma log(1 - p)), as xsimd::pow computes it, but through fast_exp: xsimd 8.1's exp
  // converts out-of-range arguments (gamma log of a tiny 1 - p) to integers, undefined behaviour.
  // pow(0, gamma) = 0 for gamma > 0, and so is every result below the smallest normal.
  const mask<T> zero = one_minus_p <= batch<T>(T(0));
  const batch<T> e = batch<T>(gamma) * xsimd::log(xsimd::select(zero, batch<T>(T(1)), one_minus_p));
  const T lowest = sizeof(T) == 4 ? T(-87.33) : T(-708.39);
  return xsimd::select(zero || e < batch<T>(lowest), batch<T>(T(0)), fast_exp(e));
}

/// math::focus on a batch: phi(l) and phi'(l) per lane, given p = e^-l and 1 - p, each computed by
/// the caller without cancellation (the kernels have them from the softmax sums).
template <class T>
void focus(const batch<T>& l, const batch<T>& one_minus_p, const batch<T>& p, T gamma, batch<T>& value,
           batch<T>& derivative) {
  if (gamma == T(0)) {
    value = l;
    derivative = batch<T>(T(1));
    return;
  }
  const mask<T> positive = one_minus_p > batch<T>(T(0));
  const batch<T> r = xsimd::select(positive, l / xsimd::select(positive, one_minus_p, batch<T>(T(1))), batch<T>(T(1)));
  const batch<T> mod = modulation(one_minus_p, gamma);
  value = mod * l;
  derivative = mod * (batch<T>(T(1)) + batch<T>(gamma) * p * r);
}

}  // namespace simd
}  // namespace detail
}  // namespace lmf
