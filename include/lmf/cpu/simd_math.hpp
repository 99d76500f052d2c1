// lmf/cpu/simd_math.hpp — SIMD building blocks of the kernels on the SIMD layer's batches
// (simd_layer.hpp): a fast exp (both kernels), log, log1p and expm1, and the focal modulation of
// math/row.hpp with one row per lane (the lanes kernel): same formulas, the branches expressed as
// selects.
//
// Re-included once per instruction set by isa_kernels.hpp (inside its namespace and target
// region, after simd_layer.hpp): no include guard, no includes.

namespace simd {

template <class T>
constexpr Index width() {
  return Index(batch<T>::size);
}

namespace detail_lanes {
template <class T, class F, std::size_t... J>
LMF_ALWAYS_INLINE batch<T> make(F&& f, std::index_sequence<J...>) {
  return batch<T>(typename batch<T>::raw{static_cast<T>(f(Index(J)))...});
}
}  // namespace detail_lanes

/// The batch {f(0), f(1), ..., f(W-1)}, built in registers. (Writing the lanes to memory one by
/// one and loading them as a vector would stall on store forwarding.)
template <class T, class F>
LMF_ALWAYS_INLINE batch<T> lanes_from(F&& f) {
  return detail_lanes::make<T>(f, std::make_index_sequence<batch<T>::size>());
}

/// Clamps x into [lo, hi]; NaN goes to lo (simd::max returns its second operand where either is
/// NaN, as maxps does). Two instructions; a NaN or out-of-range value never reaches fast_exp's
/// exponent arithmetic.
template <class T>
batch<T> clamp_nan_low(const batch<T>& x, T lo, T hi) {
  return min(max(x, batch<T>(lo)), batch<T>(hi));  // max gives its second operand for NaN
}

/// exp(x) for the kernels' exponents z_c - z_k (<= 0 up to rounding): Cody-Waite reduction
/// x = n ln2 + r, |r| <= ln2/2, a polynomial for e^r (Cephes' minimax for float, the Taylor
/// series to r^12 for double), and 2^n put into the exponent bits: within 1.3 ulp in float and
/// 2.6 in double (tests/test_numerics.cpp).
/// Arguments are clamped to [log(smallest normal), log(largest finite) - 1] (NaN to the low
/// end), so results are never subnormal, infinite or NaN: exp(-1000) gives 1e-38 in float, not 0
/// (it is added to a sum >= 1, where it changes nothing), and exp(+1000) a large finite number.
/// n is rounded by round_nearest and 2^n applied by times_pow2 (simd_layer.hpp): scalef on AVX-512.
inline batch<float> fast_exp(batch<float> x) {
  using B = batch<float>;
  x = clamp_nan_low(x, -87.33f, 87.0f);
  const B n = round_nearest(x * B(1.44269504088896341f));
  B r = fma(n, B(-0.693359375f), x);
  r = fma(n, B(2.12194440e-4f), r);
  B y = B(1.9875691500e-4f);
  y = fma(y, r, B(1.3981999507e-3f));
  y = fma(y, r, B(8.3334519073e-3f));
  y = fma(y, r, B(4.1665795894e-2f));
  y = fma(y, r, B(1.6666665459e-1f));
  y = fma(y, r, B(5.0000001201e-1f));
  y = fma(y, r * r, r + B(1.0f));
  return times_pow2(y, n);
}

/// e^r for |r| <= ln2 / 2 in double: the Taylor series to r^12 (remainder below 2e-16, 1.5 ulp).
inline batch<double> exp_reduced(const batch<double>& r) {
  using B = batch<double>;
  B y = B(1.0 / 479001600.0);
  y = fma(y, r, B(1.0 / 39916800.0));
  y = fma(y, r, B(1.0 / 3628800.0));
  y = fma(y, r, B(1.0 / 362880.0));
  y = fma(y, r, B(1.0 / 40320.0));
  y = fma(y, r, B(1.0 / 5040.0));
  y = fma(y, r, B(1.0 / 720.0));
  y = fma(y, r, B(1.0 / 120.0));
  y = fma(y, r, B(1.0 / 24.0));
  y = fma(y, r, B(1.0 / 6.0));
  y = fma(y, r, B(0.5));
  return fma(y, r * r, r + B(1.0));
}

inline batch<double> fast_exp(batch<double> x) {
  using B = batch<double>;
  x = clamp_nan_low(x, -708.39, 708.0);
  const B n = round_nearest(x * B(1.4426950408889634074));
  B r = fma(n, B(-6.93145751953125e-1), x);
  r = fma(n, B(-1.42860682030941723212e-6), r);
  return times_pow2(exp_reduced(r), n);
}

/// log2(e) and ln(2): the sweeps' exponents are in base-2 units, u = log2(e) z (see fast_exp2).
template <class T>
constexpr T kLog2e = T(1.44269504088896340736);
template <class T>
constexpr T kLn2 = T(0.693147180559945309417);

/// A term's scale s in base-2 units, s log2(e), rounded once.
template <class T>
T exponent_scale(T s) {
  return static_cast<T>(double(s) * kLog2e<double>);
}

/// 2^u, for the sweeps' exponents in base-2 units: they multiply by s log2(e) where they would
/// multiply by s, so that u = log2(e) z costs nothing. u = n + f with n = round(u) and f = u - n
/// exact (|f| <= 1/2): no Cody-Waite reduction (fast_exp's multiply and two fmas). In float a
/// degree-6 polynomial in f, 1 + f q(f) by Horner's scheme, its coefficients fitted for minimax
/// relative error on [-1/2, 1/2] by scripts/fit_exp2.py (0.94 ulp at most, evaluated in float
/// with fmas; 1.2 ulp with x86-64's baseline, which has none); in double e^(f ln2) by
/// exp_reduced (2.6 ulp). Clamped to [-126, 126] ([-1022, 1022]; NaN to the low
/// end): never subnormal, infinite or NaN, as fast_exp. Per vector of floats that is 6 fmas and
/// 1 multiply (the scaling) where fast_exp has 8 fmas and 3 multiplies: the sweeps' exponential,
/// whose throughput on the multiply-add pipes bounds them (docs/performance.md).
inline batch<float> fast_exp2(batch<float> u) {
  using B = batch<float>;
  u = clamp_nan_low(u, -126.0f, 126.0f);
  const B n = round_nearest(u);
  const B f = u - n;
  B y = B(1.5357414667960256e-4f);
  y = fma(y, f, B(1.3400305761024356e-3f));
  y = fma(y, f, B(9.618433192372322e-3f));
  y = fma(y, f, B(5.550328642129898e-2f));
  y = fma(y, f, B(2.4022647738456726e-1f));
  y = fma(y, f, B(6.931471824645996e-1f));
  y = fma(y, f, B(1.0f));
  return times_pow2(y, n);
}

inline batch<double> fast_exp2(batch<double> u) {
  using B = batch<double>;
  u = clamp_nan_low(u, -1022.0, 1022.0);
  const B n = round_nearest(u);
  return times_pow2(exp_reduced((u - n) * B(kLn2<double>)), n);
}

/// a * b + c: one fma on batches; on scalars a multiply and an add (std::fma would be a slow
/// library call where the build has no FMA instruction, e.g. x86-64's baseline).
inline float mul_add(float a, float b, float c) { return a * b + c; }
template <class V>
V mul_add(const V& a, const V& b, const V& c) {
  return fma(a, b, c);
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

/// ln 2 split in two (fdlibm's ln2_hi, ln2_lo): k * kLn2Hi is exact for |k| < 2^11.
constexpr double kLn2Hi = 6.93147180369123816490e-01, kLn2Lo = 1.90821492927058770002e-10;

/// log(1 + f) for f = m - 1, m in [sqrt(1/2), sqrt(2)), in double: 2 atanh(s) with
/// s = f / (2 + f) (|s| <= 0.1716, s^2 <= 0.0295), written f - s (f - R) with
/// R = sum_{k=1..11} 2 s^2k / (2k + 1); the series' remainder is below 1e-18 relative.
inline batch<double> log1p_mantissa(const batch<double>& f) {
  using B = batch<double>;
  const B s = f / (B(2.0) + f);
  const B z = s * s;
  B r = B(2.0 / 23);
  for (double c : {2.0 / 21, 2.0 / 19, 2.0 / 17, 2.0 / 15, 2.0 / 13, 2.0 / 11, 2.0 / 9, 2.0 / 7, 2.0 / 5, 2.0 / 3})
    r = fma(r, z, B(c));
  r = r * z;
  return f - s * (f - r);
}

/// The exponent k and mantissa m in [sqrt(1/2), sqrt(2)) of normal positive x (x = m 2^k), the
/// exponent as a float (double).
inline batch<float> split_exponent(const batch<float>& x, batch<float>& k) {
  using I = batch<std::int32_t>;
  const I bits = bitwise_cast<I>(x);
  const I mant = (bits & I(0x007fffff)) | I(0x3f800000);  // in [1, 2)
  const mask<std::int32_t> big = mant > I(0x3fb504f3);     // above sqrt(2): halved
  k = to_float((bits >> 23) - I(127) + select(big, I(1), I(0)));
  return select(bool_cast(big), bitwise_cast<batch<float>>(mant) * batch<float>(0.5f), bitwise_cast<batch<float>>(mant));
}
inline batch<double> split_exponent(const batch<double>& x, batch<double>& k) {
  using I = batch<std::int64_t>;
  const I bits = bitwise_cast<I>(x);
  const I mant = (bits & I(0x000fffffffffffff)) | I(0x3ff0000000000000);
  const mask<std::int64_t> big = mant > I(0x3ff6a09e667f3bcd);
  // the biased exponent (< 2^11) as a double without a 64-bit conversion: 2^52 + e - 2^52
  const batch<double> e = bitwise_cast<batch<double>>((bits >> 52) | I(0x4330000000000000)) - batch<double>(4503599627370496.0);
  k = e - batch<double>(1023.0) + select(mask<double>(big.v), batch<double>(1.0), batch<double>(0.0));
  return select(mask<double>(big.v), bitwise_cast<batch<double>>(mant) * batch<double>(0.5), bitwise_cast<batch<double>>(mant));
}

/// log(x) for finite x > 0, subnormals included (scaled by 2^24 / 2^54 first); ~1-2 ulp.
template <class T>
batch<T> log(batch<T> x) {
  using B = batch<T>;
  const mask<T> tiny = x < B(std::numeric_limits<T>::min());
  const T up = sizeof(T) == 4 ? T(16777216.0) : T(18014398509481984.0);  // 2^24, 2^54
  x = select(tiny, x * B(up), x);
  B k;
  const B m = split_exponent(x, k);
  k = k - select(tiny, B(sizeof(T) == 4 ? T(24) : T(54)), B(T(0)));
  const B f = m - B(T(1));
  if constexpr (sizeof(T) == 4) {
    return fma(k, B(0.693359375f), f + fma(k, B(-2.12194440e-4f), log1p_mantissa(f)));
  } else {
    return fma(k, B(kLn2Hi), fma(k, B(kLn2Lo), log1p_mantissa(f)));
  }
}

/// log1p(r) for finite r >= 0 in double: u = 1 + r, log u, and the rounding of 1 + r put back
/// exactly (c / u, Fast2Sum with the larger operand first).
inline batch<double> log1p_nonneg(const batch<double>& r) {
  using B = batch<double>;
  const B one(1.0), u = one + r;
  const B c = select(r > one, one - (u - r), r - (u - one));
  B k;
  const B f = split_exponent(u, k) - one;
  return fma(k, B(kLn2Hi), fma(k, B(kLn2Lo), log1p_mantissa(f) + c / u));
}

/// expm1(x) for x in [-60, 0] (NaN-free): the Taylor series to x^16 / 16! (x^9 / 9! in float)
/// above -0.5, exp(x) - 1 below, where 1 - e^x > 0.39 and the subtraction costs under 2 ulp.
template <class T>
batch<T> expm1_nonpos(const batch<T>& x) {
  using B = batch<T>;
  const int terms = sizeof(T) == 4 ? 9 : 16;
  double inv_fact[17];
  inv_fact[0] = 1;
  for (int j = 1; j <= 16; ++j) inv_fact[j] = inv_fact[j - 1] / j;
  B q = B(T(inv_fact[terms]));
  for (int j = terms - 1; j >= 2; --j) q = fma(q, x, B(T(inv_fact[j])));
  const B series = fma(x * x, q, x);
  return select(x > B(T(-0.5)), series, fast_exp(x) - B(T(1)));
}

/// log1p(e) for e in [0, 1], given inv = 1 / (1 + e) (the sigmoid kernel has both): u = 1 + e is
/// in [1, 2], so no exponent needs extracting; log u = k ln2 + log m, m = u or u / 2 in
/// [sqrt(1/2), sqrt(2)], log m = f - f^2/2 + f^3 P(f) with f = m - 1 exact (Cephes' minimax for
/// float, ~1 ulp), and the rounding of 1 + e is put back exactly: c = e - (u - 1), log1p(e) =
/// log u + c / u. About half the cost of a log1p for every argument (xsimd's, used before).
inline batch<float> log1p_unit(const batch<float>& e, const batch<float>& inv) {
  using B = batch<float>;
  const B one(1.0f), u = one + e;
  const auto big = u > B(1.41421356237f);
  const B m = select(big, u * B(0.5f), u);
  const B k = select(big, one, B(0.0f));
  const B f = m - one;
  const B y = log1p_mantissa(f);
  const B c = e - (u - one);  // exact: u - 1 is exact for u in [1, 2]
  return fma(k, B(0.693359375f), f + fma(k, B(-2.12194440e-4f), fma(c, inv, y)));
}
inline batch<double> log1p_unit(const batch<double>& e, const batch<double>&) { return log1p_nonneg(e); }

/// log1p(r) for finite r >= 0, given inv = 1 / (1 + r) (the lanes kernel has both: r is a row's
/// sum of exponentials relative to its reference class, in [0, C]). The same scheme as
/// log1p_unit for any exponent: u = 1 + r = m 2^k with m in [sqrt(1/2), sqrt(2)) (from the bits
/// of u), log m by Cephes' polynomial, and the rounding of 1 + r put back exactly (Fast2Sum with
/// the larger operand first): log1p(r) = k ln2 + log m + c / u. About 1 ulp; less than half the
/// cost of a log1p for every argument (negative, infinite, subnormal; xsimd's, used before).
inline batch<float> log1p_pos(const batch<float>& r, const batch<float>& inv) {
  using B = batch<float>;
  const B one(1.0f), u = one + r;
  const B c = select(r > one, one - (u - r), r - (u - one));
  B k;
  const B f = split_exponent(u, k) - one;
  const B y = log1p_mantissa(f);
  return fma(k, B(0.693359375f), f + fma(k, B(-2.12194440e-4f), fma(c, inv, y)));
}
inline batch<double> log1p_pos(const batch<double>& r, const batch<double>&) { return log1p_nonneg(r); }

/// The same for one float: the same bits, polynomial and correction as the batch version (the
/// rows kernel's scalar epilogue used it until the epilogue ran on vectors; glibc's log1pf was
/// 17% of LMF at C = 100; kept, and tested against the batch version). Double: std::log1p.
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

/// 1 - exp(-u) for u >= 0 without cancellation (-expm1(-u)); u is clamped to [0, 60] first (1 -
/// e^-60 is 1 in double; NaN goes to 0).
template <class T>
batch<T> one_minus_exp_neg(const batch<T>& u) {
  return -expm1_nonpos(-clamp_nan_low(u, T(0), T(60)));
}

/// (1 - p)^gamma for the gammas that matter, without pow where it is not needed.
template <class T>
batch<T> modulation(const batch<T>& one_minus_p, T gamma) {
  if (gamma == T(1)) return one_minus_p;
  if (gamma == T(2)) return one_minus_p * one_minus_p;
  if (gamma == T(0.5)) return sqrt(one_minus_p);
  if (gamma == T(1.5)) return one_minus_p * sqrt(one_minus_p);
  if (gamma == T(3)) return one_minus_p * one_minus_p * one_minus_p;
  // exp(gamma log(1 - p)), as pow computes it, through fast_exp, which clamps its argument.
  // pow(0, gamma) = 0 for gamma > 0, and so is every result below the smallest normal.
  const mask<T> zero = one_minus_p <= batch<T>(T(0));
  const batch<T> e = batch<T>(gamma) * log(select(zero, batch<T>(T(1)), one_minus_p));
  const T lowest = sizeof(T) == 4 ? T(-87.33) : T(-708.39);
  return select(zero || e < batch<T>(lowest), batch<T>(T(0)), fast_exp(e));
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
  const batch<T> r = select(positive, l / select(positive, one_minus_p, batch<T>(T(1))), batch<T>(T(1)));
  const batch<T> mod = modulation(one_minus_p, gamma);
  value = mod * l;
  derivative = mod * (batch<T>(T(1)) + batch<T>(gamma) * p * r);
}

}  // namespace simd
