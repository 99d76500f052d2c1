// lmf/detail/compiler_workarounds.hpp — two defects of GCC 12's x86 intrinsics headers that
// surface through xsimd 8.1 when AVX-512 is enabled (-march=native on an AVX-512 host). Included
// first by every lmf header (through config.hpp), so that <immintrin.h> is first read here. Each
// fix is scoped to the compiler, version and instruction set that need it; it does nothing when
// <immintrin.h> was already included before lmf.
#pragma once

#if defined(__GNUC__) && !defined(__clang__) && (defined(__x86_64__) || defined(__i386__)) && defined(__AVX512F__)

// 1. GCC 12.1-12.2 initialise some AVX-512 intrinsics' results with themselves
//    (`__m512d __Y = __Y;` in avx512fintrin.h), which -Wmaybe-uninitialized and -Wuninitialized report in every
//    function that inlines them (GCC bug 105593, fixed in 12.3). The warning is about the
//    compiler's own header, not about lmf or its user: silence it for that header only.
#if __GNUC__ == 12 && __GNUC_MINOR__ < 3
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#else
#include <immintrin.h>
#endif

// 2. Without optimisation (-O0, Debug builds) GCC defines _mm512_mask_blend_epi8/16 as macros
//    that cast their operands straight to __v64qi/__v32hi, which fails on xsimd 8.1's batch
//    objects ("invalid cast ... to type '__v64qi'", xsimd_avx512bw.hpp:321; fixed in later
//    xsimd). Redefined with the intermediate (__m512i) cast that GCC's other macros have, and
//    the same meaning for __m512i operands.
#if !defined(__OPTIMIZE__) && defined(__AVX512BW__)
#undef _mm512_mask_blend_epi8
#define _mm512_mask_blend_epi8(U, A, W)                                                     \
  ((__m512i)__builtin_ia32_blendmb_512_mask((__v64qi)(__m512i)(A), (__v64qi)(__m512i)(W), \
                                            (__mmask64)(U)))
#undef _mm512_mask_blend_epi16
#define _mm512_mask_blend_epi16(U, A, W)                                                    \
  ((__m512i)__builtin_ia32_blendmw_512_mask((__v32hi)(__m512i)(A), (__v32hi)(__m512i)(W), \
                                            (__mmask32)(U)))
#endif

#endif
