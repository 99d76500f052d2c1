// lmf/config.hpp — version, the host/device annotation and the configuration macros a user may
// pre-define before including any lmf header.
#pragma once

#include <lmf/detail/compiler_workarounds.hpp>

// The one place the version is written (CMakeLists.txt reads LMF_VERSION_STRING from here).
#define LMF_VERSION_MAJOR 0
#define LMF_VERSION_MINOR 2
#define LMF_VERSION_PATCH 0
#define LMF_VERSION_STRING "0.2.0"

// Every scalar helper shared by the CPU kernels and the CUDA kernels is marked LMF_HOST_DEVICE.
#if defined(__CUDACC__) || defined(__HIPCC__)
#define LMF_HOST_DEVICE __host__ __device__
#else
#define LMF_HOST_DEVICE
#endif

// Exceptions: on unless the compiler has them switched off (-fno-exceptions), or the user
// defines LMF_NO_EXCEPTIONS. Without exceptions the throwing API prints the message and aborts;
// the try_* entry points return an lmf::Status instead and never abort.
#if !defined(LMF_NO_EXCEPTIONS)
#if defined(__cpp_exceptions) || defined(__EXCEPTIONS) || defined(_CPPUNWIND)
#define LMF_NO_EXCEPTIONS 0
#else
#define LMF_NO_EXCEPTIONS 1
#endif
#endif

// Debug assertions on internal invariants (never on user input, which is always validated and
// reported through lmf::Error / lmf::Status). Override by defining LMF_ASSERT before inclusion.
#ifndef LMF_ASSERT
#include <cassert>
#define LMF_ASSERT(cond) assert(cond)
#endif

#include <cstddef>

namespace lmf {

/// Signed index type used for sizes and strides (same as Eigen::Index).
using Index = std::ptrdiff_t;

}  // namespace lmf
