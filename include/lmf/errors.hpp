// lmf/errors.hpp — how lmf reports bad input.
//
// Every public entry point validates all of its input before it writes a single byte of output.
// A violation is reported as lmf::Error (derived from std::invalid_argument) whose message says
// what is wrong and where, e.g.
// "lmf: label 7 at row 12 is outside [0, 4) (and is not ignore_index -100)".
// The try_* entry points report the same message through lmf::Status and never throw.
#pragma once

#include <lmf/config.hpp>

#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace lmf {

/// The exception thrown for invalid input (shapes, labels, counts, options, non-finite logits).
class Error : public std::invalid_argument {
 public:
  explicit Error(const std::string& what) : std::invalid_argument(what) {}
};

/// The result of a try_* call: ok, or the message an lmf::Error would have carried.
class Status {
 public:
  Status() = default;
  static Status error(std::string message) {
    Status s;
    s.ok_ = false;
    s.message_ = std::move(message);
    return s;
  }
  bool ok() const noexcept { return ok_; }
  explicit operator bool() const noexcept { return ok_; }
  const std::string& message() const noexcept { return message_; }

 private:
  bool ok_ = true;
  std::string message_;
};

namespace detail {

/// Builds "lmf: " + the streamed arguments.
template <class... Args>
std::string message(const Args&... args) {
  std::ostringstream os;
  os.precision(9);
  os << "lmf: ";
  (os << ... << args);
  return os.str();
}

[[noreturn]] inline void raise(const std::string& what) {
#if LMF_NO_EXCEPTIONS
  std::fprintf(stderr, "%s\n", what.c_str());
  std::abort();
#else
  throw Error(what);
#endif
}

inline void raise_if(const Status& s) {
  if (!s.ok()) raise(s.message());
}

}  // namespace detail

#define LMF_CHECK_ARG(cond, ...)                                     \
  do {                                                               \
    if (!(cond)) ::lmf::detail::raise(::lmf::detail::message(__VA_ARGS__)); \
  } while (0)

}  // namespace lmf
