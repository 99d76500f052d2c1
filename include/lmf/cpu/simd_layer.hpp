// lmf/cpu/simd_layer.hpp — lmf's SIMD layer: fixed-width vectors of float, double, int32 and int64
// over the compiler's vector extensions, with the operations the kernels use (the subset of
// xsimd's API they were written against: select, fma, hadd, all, ...).
//
// Not a normal header: isa_kernels.hpp includes it once per instruction set, inside that set's
// namespace (lmf::detail::sse2, avx2, avx512) and target region, with LMF_SIMD_BYTES the vector
// size (16, 32, 64). Everything here is then compiled for that set, whatever the program's flags:
// that is what lets a plain `g++ -O2` build run AVX-512 kernels on an AVX-512 CPU
// (docs/design-notes.md, "Run-time instruction-set dispatch").
//
// Rules that keep it correct under a target region (each one found by testing, GCC 12, clang 14):
//   - vector_size on a dependent type is ignored by GCC: the vector types are spelled per element
//     type (vec_traits specialisations), never as `T __attribute__((vector_size(N)))`;
//   - friend functions defined in a class template do not inherit the region's target (GCC): at
//     -O0 they were called with another ABI and returned wrong values. Operators are namespace-
//     scope templates; member functions do inherit it;
//   - on x86 the width-specific operations (fma, sqrt, rounding, movemask) are intrinsics, which
//     can only be called from functions that carry the set's target: this file is read inside the
//     region, never outside.
// Generic code (arithmetic, compares, ?: selects, shifts) is the compiler's; it works on any
// architecture GCC or clang supports, where only the 16-byte set is compiled.

#ifndef LMF_SIMD_BYTES
#error "lmf/cpu/simd_layer.hpp is included by lmf/cpu/isa_kernels.hpp only"
#endif

namespace simd {

/// Bytes per vector of this instruction set.
constexpr int kBytes = LMF_SIMD_BYTES;

template <class T>
struct vec_traits;
template <>
struct vec_traits<float> {
  typedef float type __attribute__((vector_size(LMF_SIMD_BYTES)));
  typedef std::int32_t bits __attribute__((vector_size(LMF_SIMD_BYTES)));
};
template <>
struct vec_traits<double> {
  typedef double type __attribute__((vector_size(LMF_SIMD_BYTES)));
  typedef std::int64_t bits __attribute__((vector_size(LMF_SIMD_BYTES)));
};
template <>
struct vec_traits<std::int32_t> {
  typedef std::int32_t type __attribute__((vector_size(LMF_SIMD_BYTES)));
  typedef std::int32_t bits __attribute__((vector_size(LMF_SIMD_BYTES)));
};
template <>
struct vec_traits<std::int64_t> {
  typedef std::int64_t type __attribute__((vector_size(LMF_SIMD_BYTES)));
  typedef std::int64_t bits __attribute__((vector_size(LMF_SIMD_BYTES)));
};

/// A lane mask of a batch<T>: every lane all ones (true) or all zeros (false), as integers.
template <class T>
struct mask {
  using raw = typename vec_traits<T>::bits;
  raw v;
  mask() = default;
  explicit mask(raw r) : v(r) {}
};

/// A vector of LMF_SIMD_BYTES / sizeof(T) lanes.
template <class T>
struct batch {
  using value_type = T;
  using raw = typename vec_traits<T>::type;
  static constexpr std::size_t size = LMF_SIMD_BYTES / sizeof(T);
  raw v;

  batch() = default;
  batch(T s) : v(raw{} + s) {}  // NOLINT: a scalar broadcasts, as in xsimd
  explicit batch(raw r) : v(r) {}

  static batch load_unaligned(const T* p) {
    raw r;
    std::memcpy(&r, p, sizeof r);
    return batch(r);
  }
  static batch load_aligned(const T* p) {
    return batch(*static_cast<const raw*>(__builtin_assume_aligned(static_cast<const void*>(p), LMF_SIMD_BYTES)));
  }
  void store_unaligned(T* p) const { std::memcpy(p, &v, sizeof v); }
  void store_aligned(T* p) const {
    *static_cast<raw*>(__builtin_assume_aligned(static_cast<void*>(p), LMF_SIMD_BYTES)) = v;
  }
  T get(std::size_t j) const { return v[j]; }

  batch& operator+=(const batch& o) {
    v += o.v;
    return *this;
  }
  batch& operator-=(const batch& o) {
    v -= o.v;
    return *this;
  }
  batch& operator*=(const batch& o) {
    v *= o.v;
    return *this;
  }
  batch& operator/=(const batch& o) {
    v /= o.v;
    return *this;
  }
};

// ---- arithmetic, compares and mask logic (namespace scope: see the rules above) ----------------

template <class T>
batch<T> operator+(const batch<T>& a, const batch<T>& b) {
  return batch<T>(a.v + b.v);
}
template <class T>
batch<T> operator-(const batch<T>& a, const batch<T>& b) {
  return batch<T>(a.v - b.v);
}
template <class T>
batch<T> operator*(const batch<T>& a, const batch<T>& b) {
  return batch<T>(a.v * b.v);
}
template <class T>
batch<T> operator/(const batch<T>& a, const batch<T>& b) {
  return batch<T>(a.v / b.v);
}
template <class T>
batch<T> operator-(const batch<T>& a) {
  return batch<T>(-a.v);
}
template <class T>
batch<T> operator&(const batch<T>& a, const batch<T>& b) {  // integer batches
  return batch<T>(a.v & b.v);
}
template <class T>
batch<T> operator|(const batch<T>& a, const batch<T>& b) {
  return batch<T>(a.v | b.v);
}
template <class T>
batch<T> operator>>(const batch<T>& a, int n) {
  return batch<T>(a.v >> n);
}
template <class T>
batch<T> operator<<(const batch<T>& a, int n) {
  return batch<T>(a.v << n);
}

// Compares give all-ones lanes where true (the vector extensions' convention).
template <class T>
mask<T> operator<(const batch<T>& a, const batch<T>& b) {
  return mask<T>(typename mask<T>::raw(a.v < b.v));
}
template <class T>
mask<T> operator<=(const batch<T>& a, const batch<T>& b) {
  return mask<T>(typename mask<T>::raw(a.v <= b.v));
}
template <class T>
mask<T> operator>(const batch<T>& a, const batch<T>& b) {
  return mask<T>(typename mask<T>::raw(a.v > b.v));
}
template <class T>
mask<T> operator>=(const batch<T>& a, const batch<T>& b) {
  return mask<T>(typename mask<T>::raw(a.v >= b.v));
}
template <class T>
mask<T> operator==(const batch<T>& a, const batch<T>& b) {
  return mask<T>(typename mask<T>::raw(a.v == b.v));
}
template <class T>
mask<T> operator!=(const batch<T>& a, const batch<T>& b) {
  return mask<T>(typename mask<T>::raw(a.v != b.v));
}
template <class T>
mask<T> operator&&(const mask<T>& a, const mask<T>& b) {
  return mask<T>(a.v & b.v);
}
template <class T>
mask<T> operator||(const mask<T>& a, const mask<T>& b) {
  return mask<T>(a.v | b.v);
}
template <class T>
mask<T> operator!(const mask<T>& a) {
  return mask<T>(~a.v);
}

/// m ? a : b, lane by lane.
template <class T>
batch<T> select(const mask<T>& m, const batch<T>& a, const batch<T>& b) {
  return batch<T>(m.v ? a.v : b.v);
}

/// The same bits seen as another lane type of the same size.
template <class To, class From>
To bitwise_cast(const From& x) {
  static_assert(sizeof(To) == sizeof(From), "bitwise_cast between vectors of one size");
  return To((typename To::raw)x.v);
}

/// A mask of int32 lanes as a mask of float lanes (the same bits).
inline mask<float> bool_cast(const mask<std::int32_t>& m) { return mask<float>(m.v); }

/// int32 lanes converted to float.
inline batch<float> to_float(const batch<std::int32_t>& x) {
  return batch<float>(__builtin_convertvector(x.v, vec_traits<float>::type));
}

/// The lanes of a float batch as doubles: lanes 0 .. size/2 - 1 in lo, the others in hi (each a
/// batch<double> of the same byte size). Exact.
inline void widen(const batch<float>& x, batch<double>& lo, batch<double>& hi) {
  typedef float half __attribute__((vector_size(LMF_SIMD_BYTES / 2)));
  half l, h;
  std::memcpy(&l, &x.v, sizeof l);
  std::memcpy(&h, reinterpret_cast<const char*>(&x.v) + sizeof l, sizeof h);
  lo = batch<double>(__builtin_convertvector(l, vec_traits<double>::type));
  hi = batch<double>(__builtin_convertvector(h, vec_traits<double>::type));
}

/// A vector's bits as another vector type of the same size.
template <class To, class From>
To vector_cast(const From& v) {
  static_assert(sizeof(To) == sizeof(From), "vector_cast between vectors of one size");
  return (To)v;  // the vector extensions' cast reinterprets the bits
}

template <class T>
batch<T> abs(const batch<T>& x) {  // clears the sign bit (NaN stays NaN)
  using bits = typename vec_traits<T>::bits;
  using I = typename std::conditional<sizeof(T) == 4, std::int32_t, std::int64_t>::type;
  const bits magnitude = vector_cast<bits>(x.v) & (bits{} + std::numeric_limits<I>::max());
  return batch<T>(vector_cast<typename batch<T>::raw>(magnitude));
}

/// max/min as x86's maxps/minps: the second operand where either is NaN.
template <class T>
batch<T> max(const batch<T>& a, const batch<T>& b) {
  return batch<T>(a.v > b.v ? a.v : b.v);
}
template <class T>
batch<T> min(const batch<T>& a, const batch<T>& b) {
  return batch<T>(a.v < b.v ? a.v : b.v);
}

// ---- width-specific operations ----------------------------------------------------------------

#if defined(__x86_64__) || defined(__i386__)
#if LMF_SIMD_BYTES == 64
inline batch<float> fma(const batch<float>& a, const batch<float>& b, const batch<float>& c) {
  return batch<float>(_mm512_fmadd_ps(a.v, b.v, c.v));
}
inline batch<double> fma(const batch<double>& a, const batch<double>& b, const batch<double>& c) {
  return batch<double>(_mm512_fmadd_pd(a.v, b.v, c.v));
}
inline batch<float> fms(const batch<float>& a, const batch<float>& b, const batch<float>& c) {
  return batch<float>(_mm512_fmsub_ps(a.v, b.v, c.v));
}
inline batch<double> fms(const batch<double>& a, const batch<double>& b, const batch<double>& c) {
  return batch<double>(_mm512_fmsub_pd(a.v, b.v, c.v));
}
inline batch<float> sqrt(const batch<float>& x) { return batch<float>(_mm512_sqrt_ps(x.v)); }
// maxps/minps themselves (the ?: form above compiles to a compare and a blend on AVX-512)
inline batch<float> max(const batch<float>& a, const batch<float>& b) { return batch<float>(_mm512_max_ps(a.v, b.v)); }
inline batch<double> max(const batch<double>& a, const batch<double>& b) { return batch<double>(_mm512_max_pd(a.v, b.v)); }
inline batch<float> min(const batch<float>& a, const batch<float>& b) { return batch<float>(_mm512_min_ps(a.v, b.v)); }
inline batch<double> min(const batch<double>& a, const batch<double>& b) { return batch<double>(_mm512_min_pd(a.v, b.v)); }
inline batch<double> sqrt(const batch<double>& x) { return batch<double>(_mm512_sqrt_pd(x.v)); }
inline int movemask(const mask<float>& m) {
  return int(_mm512_cmpneq_epi32_mask(__m512i(m.v), _mm512_setzero_si512()));
}
inline int movemask(const mask<double>& m) {
  return int(_mm512_cmpneq_epi64_mask(__m512i(m.v), _mm512_setzero_si512()));
}
inline float hadd(const batch<float>& x) {
  const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(x.v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x.v), 1)));
  const __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  const __m128 p = _mm_add_ps(q, _mm_movehl_ps(q, q));
  return _mm_cvtss_f32(_mm_add_ss(p, _mm_shuffle_ps(p, p, 1)));
}
inline double hadd(const batch<double>& x) {
  const __m256d h = _mm256_add_pd(_mm512_castpd512_pd256(x.v), _mm512_extractf64x4_pd(x.v, 1));
  const __m128d q = _mm_add_pd(_mm256_castpd256_pd128(h), _mm256_extractf128_pd(h, 1));
  return _mm_cvtsd_f64(_mm_add_sd(q, _mm_unpackhi_pd(q, q)));
}
inline float hmax(const batch<float>& x) {
  const __m256 h = _mm256_max_ps(_mm512_castps512_ps256(x.v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x.v), 1)));
  const __m128 q = _mm_max_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  const __m128 p = _mm_max_ps(q, _mm_movehl_ps(q, q));
  return _mm_cvtss_f32(_mm_max_ss(p, _mm_shuffle_ps(p, p, 1)));
}
inline double hmax(const batch<double>& x) {
  const __m256d h = _mm256_max_pd(_mm512_castpd512_pd256(x.v), _mm512_extractf64x4_pd(x.v, 1));
  const __m128d q = _mm_max_pd(_mm256_castpd256_pd128(h), _mm256_extractf128_pd(h, 1));
  return _mm_cvtsd_f64(_mm_max_sd(q, _mm_unpackhi_pd(q, q)));
}
/// The first n lanes (0 <= n <= size) from p, the others pad; masked lanes are not read.
inline batch<float> load_partial(const float* p, Index n, float pad) {
  return batch<float>(_mm512_mask_loadu_ps(_mm512_set1_ps(pad), __mmask16((1u << n) - 1), p));
}
inline batch<double> load_partial(const double* p, Index n, double pad) {
  return batch<double>(_mm512_mask_loadu_pd(_mm512_set1_pd(pad), __mmask8((1u << n) - 1), p));
}
/// Stores the first n lanes of x to p; the memory after them is not touched.
inline void store_partial(const batch<float>& x, float* p, Index n) { _mm512_mask_storeu_ps(p, __mmask16((1u << n) - 1), x.v); }
inline void store_partial(const batch<double>& x, double* p, Index n) { _mm512_mask_storeu_pd(p, __mmask8((1u << n) - 1), x.v); }
#elif LMF_SIMD_BYTES == 32
inline batch<float> fma(const batch<float>& a, const batch<float>& b, const batch<float>& c) {
  return batch<float>(_mm256_fmadd_ps(a.v, b.v, c.v));
}
inline batch<double> fma(const batch<double>& a, const batch<double>& b, const batch<double>& c) {
  return batch<double>(_mm256_fmadd_pd(a.v, b.v, c.v));
}
inline batch<float> fms(const batch<float>& a, const batch<float>& b, const batch<float>& c) {
  return batch<float>(_mm256_fmsub_ps(a.v, b.v, c.v));
}
inline batch<double> fms(const batch<double>& a, const batch<double>& b, const batch<double>& c) {
  return batch<double>(_mm256_fmsub_pd(a.v, b.v, c.v));
}
inline batch<float> sqrt(const batch<float>& x) { return batch<float>(_mm256_sqrt_ps(x.v)); }
// maxps/minps themselves (the ?: form above compiles to a compare and a blend on AVX-512)
inline batch<float> max(const batch<float>& a, const batch<float>& b) { return batch<float>(_mm256_max_ps(a.v, b.v)); }
inline batch<double> max(const batch<double>& a, const batch<double>& b) { return batch<double>(_mm256_max_pd(a.v, b.v)); }
inline batch<float> min(const batch<float>& a, const batch<float>& b) { return batch<float>(_mm256_min_ps(a.v, b.v)); }
inline batch<double> min(const batch<double>& a, const batch<double>& b) { return batch<double>(_mm256_min_pd(a.v, b.v)); }
inline batch<double> sqrt(const batch<double>& x) { return batch<double>(_mm256_sqrt_pd(x.v)); }
inline int movemask(const mask<float>& m) { return _mm256_movemask_ps(__m256(m.v)); }
inline int movemask(const mask<double>& m) { return _mm256_movemask_pd(__m256d(m.v)); }
inline float hadd(const batch<float>& x) {
  const __m128 q = _mm_add_ps(_mm256_castps256_ps128(x.v), _mm256_extractf128_ps(x.v, 1));
  const __m128 p = _mm_add_ps(q, _mm_movehl_ps(q, q));
  return _mm_cvtss_f32(_mm_add_ss(p, _mm_shuffle_ps(p, p, 1)));
}
inline double hadd(const batch<double>& x) {
  const __m128d q = _mm_add_pd(_mm256_castpd256_pd128(x.v), _mm256_extractf128_pd(x.v, 1));
  return _mm_cvtsd_f64(_mm_add_sd(q, _mm_unpackhi_pd(q, q)));
}
inline float hmax(const batch<float>& x) {
  const __m128 q = _mm_max_ps(_mm256_castps256_ps128(x.v), _mm256_extractf128_ps(x.v, 1));
  const __m128 p = _mm_max_ps(q, _mm_movehl_ps(q, q));
  return _mm_cvtss_f32(_mm_max_ss(p, _mm_shuffle_ps(p, p, 1)));
}
inline double hmax(const batch<double>& x) {
  const __m128d q = _mm_max_pd(_mm256_castpd256_pd128(x.v), _mm256_extractf128_pd(x.v, 1));
  return _mm_cvtsd_f64(_mm_max_sd(q, _mm_unpackhi_pd(q, q)));
}
/// AVX2's maskload/maskstore: lanes whose mask is clear are neither read nor written.
inline __m256i first_lanes32(Index n) {  // lane j of 8 all ones for j < n
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
inline __m256i first_lanes64(Index n) {
  return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
}
inline batch<float> load_partial(const float* p, Index n, float pad) {
  const __m256i m = first_lanes32(n);
  return batch<float>(_mm256_blendv_ps(_mm256_set1_ps(pad), _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m)));
}
inline batch<double> load_partial(const double* p, Index n, double pad) {
  const __m256i m = first_lanes64(n);
  return batch<double>(_mm256_blendv_pd(_mm256_set1_pd(pad), _mm256_maskload_pd(p, m), _mm256_castsi256_pd(m)));
}
inline void store_partial(const batch<float>& x, float* p, Index n) { _mm256_maskstore_ps(p, first_lanes32(n), x.v); }
inline void store_partial(const batch<double>& x, double* p, Index n) { _mm256_maskstore_pd(p, first_lanes64(n), x.v); }
#else  // 16 bytes: SSE2, FMA where the program's flags enable it
inline batch<float> fma(const batch<float>& a, const batch<float>& b, const batch<float>& c) {
#if defined(__FMA__)
  return batch<float>(_mm_fmadd_ps(a.v, b.v, c.v));
#else
  return a * b + c;
#endif
}
inline batch<double> fma(const batch<double>& a, const batch<double>& b, const batch<double>& c) {
#if defined(__FMA__)
  return batch<double>(_mm_fmadd_pd(a.v, b.v, c.v));
#else
  return a * b + c;
#endif
}
inline batch<float> fms(const batch<float>& a, const batch<float>& b, const batch<float>& c) {
#if defined(__FMA__)
  return batch<float>(_mm_fmsub_ps(a.v, b.v, c.v));
#else
  return a * b - c;
#endif
}
inline batch<double> fms(const batch<double>& a, const batch<double>& b, const batch<double>& c) {
#if defined(__FMA__)
  return batch<double>(_mm_fmsub_pd(a.v, b.v, c.v));
#else
  return a * b - c;
#endif
}
inline batch<float> sqrt(const batch<float>& x) { return batch<float>(_mm_sqrt_ps(x.v)); }
// maxps/minps themselves (the ?: form above compiles to a compare and a blend on AVX-512)
inline batch<float> max(const batch<float>& a, const batch<float>& b) { return batch<float>(_mm_max_ps(a.v, b.v)); }
inline batch<double> max(const batch<double>& a, const batch<double>& b) { return batch<double>(_mm_max_pd(a.v, b.v)); }
inline batch<float> min(const batch<float>& a, const batch<float>& b) { return batch<float>(_mm_min_ps(a.v, b.v)); }
inline batch<double> min(const batch<double>& a, const batch<double>& b) { return batch<double>(_mm_min_pd(a.v, b.v)); }
inline batch<double> sqrt(const batch<double>& x) { return batch<double>(_mm_sqrt_pd(x.v)); }
inline int movemask(const mask<float>& m) { return _mm_movemask_ps(__m128(m.v)); }
inline int movemask(const mask<double>& m) { return _mm_movemask_pd(__m128d(m.v)); }
inline float hadd(const batch<float>& x) {
  const __m128 p = _mm_add_ps(x.v, _mm_movehl_ps(x.v, x.v));
  return _mm_cvtss_f32(_mm_add_ss(p, _mm_shuffle_ps(p, p, 1)));
}
inline double hadd(const batch<double>& x) { return _mm_cvtsd_f64(_mm_add_sd(x.v, _mm_unpackhi_pd(x.v, x.v))); }
inline float hmax(const batch<float>& x) {
  const __m128 p = _mm_max_ps(x.v, _mm_movehl_ps(x.v, x.v));
  return _mm_cvtss_f32(_mm_max_ss(p, _mm_shuffle_ps(p, p, 1)));
}
inline double hmax(const batch<double>& x) { return _mm_cvtsd_f64(_mm_max_sd(x.v, _mm_unpackhi_pd(x.v, x.v))); }
#endif
template <class T>
bool all(const mask<T>& m) {
  return movemask(m) == int((std::uint64_t(1) << batch<T>::size) - 1);
}
template <class T>
bool any(const mask<T>& m) {
  return movemask(m) != 0;
}
#else  // other architectures: generic code, one 16-byte set
template <class T>
batch<T> fma(const batch<T>& a, const batch<T>& b, const batch<T>& c) {
  return a * b + c;
}
template <class T>
batch<T> fms(const batch<T>& a, const batch<T>& b, const batch<T>& c) {
  return a * b - c;
}
template <class T>
batch<T> sqrt(const batch<T>& x) {
  batch<T> r;
  for (std::size_t j = 0; j < batch<T>::size; ++j) r.v[j] = std::sqrt(x.v[j]);
  return r;
}
template <class T>
T hadd(const batch<T>& x) {
  T s = x.v[0];
  for (std::size_t j = 1; j < batch<T>::size; ++j) s += x.v[j];
  return s;
}
template <class T>
T hmax(const batch<T>& x) {
  T m = x.v[0];
  for (std::size_t j = 1; j < batch<T>::size; ++j) m = x.v[j] > m ? x.v[j] : m;
  return m;
}
template <class T>
bool all(const mask<T>& m) {
  bool r = true;
  for (std::size_t j = 0; j < batch<T>::size; ++j) r &= m.v[j] != 0;
  return r;
}
template <class T>
bool any(const mask<T>& m) {
  bool r = false;
  for (std::size_t j = 0; j < batch<T>::size; ++j) r |= m.v[j] != 0;
  return r;
}
#endif

#if !((defined(__x86_64__) || defined(__i386__)) && LMF_SIMD_BYTES >= 32)
/// The first n lanes (0 <= n <= size) from p, the others pad; 16-byte sets have no masked load.
template <class T>
batch<T> load_partial(const T* p, Index n, T pad) {
  batch<T> r(pad);
  for (Index j = 0; j < n; ++j) r.v[j] = p[j];
  return r;
}
/// Stores the first n lanes of x to p; the memory after them is not touched.
template <class T>
void store_partial(const batch<T>& x, T* p, Index n) {
  for (Index j = 0; j < n; ++j) p[j] = x.v[j];
}
#endif

/// x rounded to the nearest integer (ties to even): the rounding instruction where the set has
/// one (SSE4.1 and up), else x + 1.5 * 2^23 (2^52) - the same, with an empty asm statement
/// between the two so that -ffast-math cannot fold them into x (tested: it did, and exp went
/// wrong by 1e-4).
inline batch<float> round_nearest(const batch<float>& x) {
#if defined(__x86_64__) || defined(__i386__)
#if LMF_SIMD_BYTES == 64
  return batch<float>(_mm512_roundscale_ps(x.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
#elif LMF_SIMD_BYTES == 32
  return batch<float>(_mm256_round_ps(x.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
#elif defined(__SSE4_1__)
  return batch<float>(_mm_round_ps(x.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
#else
  batch<float> sum = x + batch<float>(12582912.0f);
  __asm__("" : "+x"(sum.v));
  batch<float> n = sum - batch<float>(12582912.0f);
  __asm__("" : "+x"(n.v));  // (and n itself: -ffast-math turned fast_exp2's x - n into (x + 1.5 * 2^23) - sum, 0)
  return n;
#endif
#else
  batch<float> r;
  for (std::size_t j = 0; j < batch<float>::size; ++j) r.v[j] = std::nearbyint(x.v[j]);
  return r;
#endif
}
inline batch<double> round_nearest(const batch<double>& x) {
#if defined(__x86_64__) || defined(__i386__)
#if LMF_SIMD_BYTES == 64
  return batch<double>(_mm512_roundscale_pd(x.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
#elif LMF_SIMD_BYTES == 32
  return batch<double>(_mm256_round_pd(x.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
#elif defined(__SSE4_1__)
  return batch<double>(_mm_round_pd(x.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
#else
  batch<double> sum = x + batch<double>(6755399441055744.0);
  __asm__("" : "+x"(sum.v));
  batch<double> n = sum - batch<double>(6755399441055744.0);
  __asm__("" : "+x"(n.v));
  return n;
#endif
#else
  batch<double> r;
  for (std::size_t j = 0; j < batch<double>::size; ++j) r.v[j] = std::nearbyint(x.v[j]);
  return r;
#endif
}

/// y * 2^n for integer-valued n with 2^n a normal number (fast_exp's last step): AVX-512's
/// scalef, one instruction; elsewhere 2^n is built in the exponent bits of n + 1.5 * 2^23
/// (2^52), whose low mantissa bits are n (exact: n is an integer; no float-to-int conversion,
/// which is undefined behaviour on out-of-range values). The same product either way.
inline batch<float> times_pow2(const batch<float>& y, const batch<float>& n) {
#if (defined(__x86_64__) || defined(__i386__)) && LMF_SIMD_BYTES == 64
  return batch<float>(_mm512_scalef_ps(y.v, n.v));
#else
  const auto bits = bitwise_cast<batch<std::int32_t>>(n + batch<float>(12582912.0f));
  return y * bitwise_cast<batch<float>>((bits - batch<std::int32_t>(0x4b400000 - 127)) << 23);
#endif
}
inline batch<double> times_pow2(const batch<double>& y, const batch<double>& n) {
#if (defined(__x86_64__) || defined(__i386__)) && LMF_SIMD_BYTES == 64
  return batch<double>(_mm512_scalef_pd(y.v, n.v));
#else
  const auto bits = bitwise_cast<batch<std::int64_t>>(n + batch<double>(6755399441055744.0));
  return y * bitwise_cast<batch<double>>((bits - batch<std::int64_t>(std::int64_t(0x4338000000000000) - 1023)) << 52);
#endif
}

}  // namespace simd
