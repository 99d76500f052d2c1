// lmf/isa.hpp — which SIMD instruction set lmf's CPU kernels use, and which this CPU could run.
//
// lmf is header-only: its kernels are compiled with the flags of the program that includes it,
// and xsimd picks the widest instruction set those flags enable. A plain `g++ -O2` build gets
// x86-64's baseline, SSE2 (4 floats per vector), even on a CPU with AVX-512 (16): 2–4× slower
// (docs/performance.md). Until lmf chooses the set at run time (issue 7; docs/design-notes.md,
// "Run-time instruction-set dispatch"), these two functions make the mismatch visible:
//
//   if (std::strcmp(lmf::simd_isa(), lmf::cpu_simd_isa()) != 0)
//     std::fprintf(stderr, "lmf runs %s kernels on a CPU with %s: build with -march=native\n",
//                  lmf::simd_isa(), lmf::cpu_simd_isa());
#pragma once

#include <xsimd/xsimd.hpp>

namespace lmf {

/// The instruction set of the SIMD kernels in this build, by xsimd's name for it: "sse2" for
/// x86-64's baseline, "fma3+avx2" for `-mavx2 -mfma`, "avx512bw" for `-march=native` on an
/// AVX-512 CPU (other sets xsimd knows, e.g. "sse4.2", "avx" or "neon64", where the flags choose
/// them). Every call of every loss in the program uses it (Kernel::scalar aside).
inline const char* simd_isa() noexcept { return xsimd::default_arch::name(); }

/// The widest of the instruction sets lmf is tested with ("avx512bw", "fma3+avx2", "sse2") that
/// this CPU runs, by the same names; on other architectures, or with a compiler without
/// __builtin_cpu_supports, simd_isa(). When it names a wider set than simd_isa(), the program
/// would gain from being compiled for it (`-march=native`, or the flags in docs/guide.md).
inline const char* cpu_simd_isa() noexcept {
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  // xsimd's avx512bw builds on AVX-512 F, CD and DQ; its fma3+avx2 needs both
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512bw"))
    return "avx512bw";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "fma3+avx2";
  return "sse2";
#else
  return simd_isa();
#endif
}

}  // namespace lmf
