// The suite's main: each test binary (tests/CMakeLists.txt, one per entry of LMF_TEST_ISAS)
// makes its own instruction set the active one for every test: the baseline binary (the
// program's default flags, a user's plain build) runs the SSE2 kernels, the avx2 and avx512
// binaries theirs, and native the widest the CPU runs. Tests that go through every set
// (test_kernels.cpp, "[isa]") force each one in turn and restore this one.
#define CATCH_CONFIG_RUNNER
#include "support.hpp"

#include <cstring>

int main(int argc, char* argv[]) {
  using lmf::detail::Isa;
  const char* build = LMF_TEST_ISA;
  const Isa isa = std::strcmp(build, "baseline") == 0 ? Isa::sse2
                  : std::strcmp(build, "avx2") == 0   ? Isa::avx2
                  : std::strcmp(build, "avx512") == 0 ? Isa::avx512
                                                      : lmf::detail::widest_isa(Isa::avx512);
  if (!lmf::detail::force_isa(isa)) {
    std::fprintf(stderr, "lmf tests (%s): this CPU does not run the %s kernels\n", build, lmf::detail::isa_name(isa));
    return 2;
  }
  lmf_test::suite_isa() = isa;
  return Catch::Session().run(argc, argv);
}
