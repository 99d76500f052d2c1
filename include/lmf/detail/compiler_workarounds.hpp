// lmf/detail/compiler_workarounds.hpp — a defect of GCC 12's x86 intrinsics headers that
// surfaces in lmf's AVX-512 kernels (compiled in every x86 build: lmf/cpu/isa_kernels.hpp).
// Included first by every lmf header (through config.hpp), so that <immintrin.h> is first read
// here. It does nothing when <immintrin.h> was already included before lmf.
#pragma once

#if defined(__GNUC__) && !defined(__clang__) && (defined(__x86_64__) || defined(__i386__))

// GCC 12.1-12.2 initialise some AVX-512 intrinsics' results with themselves
// (`__m512d __Y = __Y;` in avx512fintrin.h), which -Wmaybe-uninitialized and -Wuninitialized
// report in every function that inlines them (GCC bug 105593, fixed in 12.3). The warning is
// about the compiler's own header, not about lmf or its user: silence it for that header only.
#if __GNUC__ == 12 && __GNUC_MINOR__ < 3
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#else
#include <immintrin.h>
#endif

#endif
