// lmf/cpu/simd_math.hpp — the per-row math of math/row.hpp on xsimd batches (one row per
// lane), for the lanes kernel. Same formulas, same branches expressed as selects.
#pragma once

#include <lmf/math/row.hpp>

#include <xsimd/xsimd.hpp>

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

/// Largest lane of v.
template <class T>
T hmax(const batch<T>& v) {
  alignas(64) T tmp[batch<T>::size];
  v.store_aligned(tmp);
  T m = tmp[0];
  for (std::size_t j = 1; j < batch<T>::size; ++j) m = tmp[j] > m ? tmp[j] : m;
  return m;
}

/// (1 - p)^gamma for the gammas that matter, without pow where it is not needed.
template <class T>
batch<T> modulation(const batch<T>& one_minus_p, T gamma) {
  if (gamma == T(1)) return one_minus_p;
  if (gamma == T(2)) return one_minus_p * one_minus_p;
  if (gamma == T(1.5)) return one_minus_p * xsimd::sqrt(one_minus_p);
  if (gamma == T(3)) return one_minus_p * one_minus_p * one_minus_p;
  // pow(0, gamma) = 0 for gamma > 0; xsimd's pow goes through log, so guard the zero lane
  const mask<T> zero = one_minus_p <= batch<T>(T(0));
  return xsimd::select(zero, batch<T>(T(0)), xsimd::pow(xsimd::select(zero, batch<T>(T(1)), one_minus_p), batch<T>(gamma)));
}

/// math::focus on a batch: phi(l) and phi'(l) per lane.
template <class T>
void focus(const batch<T>& l, T gamma, batch<T>& value, batch<T>& derivative) {
  if (gamma == T(0)) {
    value = l;
    derivative = batch<T>(T(1));
    return;
  }
  const batch<T> one_minus_p = -xsimd::expm1(-l);
  const batch<T> p = batch<T>(T(1)) - one_minus_p;
  const mask<T> positive = one_minus_p > batch<T>(T(0));
  const batch<T> r = xsimd::select(positive, l / xsimd::select(positive, one_minus_p, batch<T>(T(1))), batch<T>(T(1)));
  const batch<T> mod = modulation(one_minus_p, gamma);
  value = mod * l;
  derivative = mod * (batch<T>(T(1)) + batch<T>(gamma) * p * r);
}

}  // namespace simd
}  // namespace detail
}  // namespace lmf
