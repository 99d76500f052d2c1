// lmf/isa.hpp — which SIMD instruction set lmf's CPU kernels use, and which this CPU could run.
//
// lmf is header-only, yet its x86 kernels are compiled for SSE2, AVX2+FMA and AVX-512 in every
// program that includes it, and each call runs the widest set this CPU has
// (lmf/cpu/isa_kernels.hpp; docs/design-notes.md, "Run-time instruction-set dispatch"): a plain
// `g++ -O2` build runs the AVX-512 kernels on an AVX-512 CPU. Two ways to choose otherwise:
//   - the environment variable LMF_SIMD_ISA=sse2|avx2|avx512, read at the first call, caps the set
//     (benchmarks, or to compare sets);
//   - the macro LMF_SIMD_ISA=sse2|avx2|avx512 compiles only that set (no dispatch; the program
//     then needs a CPU that runs it), and LMF_SIMD_ISA=native the widest set the compiler's flags
//     enable (-march=native).
#pragma once

#include <lmf/cpu/isa_kernels.hpp>

namespace lmf {

/// The instruction set of lmf's SIMD kernels in this program, on this CPU: "avx512" (AVX-512 F,
/// CD, BW, DQ, VL with FMA; 16 floats per vector), "avx2" (AVX2 with FMA; 8), "sse2" (x86-64's
/// baseline; 4); "generic128" on other architectures. Every call of every loss uses it
/// (Kernel::scalar aside).
inline const char* simd_isa() noexcept { return detail::isa_name(detail::active_isa()); }

/// The widest of the sets lmf compiles ("avx512", "avx2", "sse2") that this CPU runs, whatever
/// this program was built with; "generic128" on other architectures. simd_isa() names a
/// narrower one only where the program was built so (the LMF_SIMD_ISA macro) or asked for it
/// (the LMF_SIMD_ISA environment variable).
inline const char* cpu_simd_isa() noexcept {
  using detail::Isa;
  return detail::isa_name(detail::cpu_runs(Isa::avx512) ? Isa::avx512
                          : detail::cpu_runs(Isa::avx2) ? Isa::avx2
                                                        : Isa::sse2);
}

}  // namespace lmf
