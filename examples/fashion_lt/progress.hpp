// progress.hpp — a one-line progress bar on stderr, redrawn in place with '\r'.
// When stderr is not a terminal (a log file, CI) only the final line of each run is printed.
#pragma once

#include <cstdio>
#include <string>

#if defined(_WIN32)
#include <io.h>
#define FASHION_ISATTY(fd) _isatty(fd)
#else
#include <unistd.h>
#define FASHION_ISATTY(fd) isatty(fd)
#endif

namespace fashion {

class ProgressBar {
 public:
  ProgressBar() : interactive_(FASHION_ISATTY(2) != 0) {}
  /// Ends a bar left unfinished (an exception during training), so that messages start on a new line.
  ~ProgressBar() {
    if (last_length_ > 0) std::fputc('\n', stderr);
  }
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  /// Redraws the line: "<label>  epoch e/E  [#####-----]  loss x" (done of total steps in the epoch).
  void update(const std::string& label, int epoch, int epochs, long done, long total, double running_loss) {
    if (!interactive_) return;
    constexpr int kWidth = 24;
    const int filled = total > 0 ? int(kWidth * done / total) : kWidth;
    char line[256];
    std::snprintf(line, sizeof line, "%s  epoch %3d/%-3d [%s%s]  loss %.4f", label.c_str(), epoch, epochs,
                  std::string(std::size_t(filled), '#').c_str(), std::string(std::size_t(kWidth - filled), '-').c_str(),
                  running_loss);
    draw(line);
  }

  /// Replaces the bar by a final line and moves to the next line.
  void finish(const std::string& message) {
    draw(message);
    std::fputc('\n', stderr);
    std::fflush(stderr);
    last_length_ = 0;
  }

 private:
  void draw(const std::string& s) {
    // Pad with spaces so that a shorter line fully covers the previous one.
    const std::size_t pad = last_length_ > s.size() ? last_length_ - s.size() : 0;
    std::fprintf(stderr, "%s%s%s", interactive_ ? "\r" : "", s.c_str(), std::string(pad, ' ').c_str());
    std::fflush(stderr);
    last_length_ = s.size();
  }

  bool interactive_;
  std::size_t last_length_ = 0;
};

}  // namespace fashion
