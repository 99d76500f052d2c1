// idx.hpp — reads the gzip-compressed IDX files of (Fashion-)MNIST with zlib.
//
// IDX format: a big-endian header (magic number, then one 32-bit size per dimension) followed
// by the raw unsigned bytes. Magic 2051 = 3-d unsigned-byte tensor (images: N x rows x cols),
// 2049 = 1-d unsigned-byte tensor (labels: N).
#pragma once

#include <Eigen/Core>
#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace fashion {

/// Images as rows: N x (rows * cols), pixels scaled to [0, 1].
using ImageMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

namespace detail {

/// A gzFile that closes itself.
class GzFile {
 public:
  explicit GzFile(const std::string& path) : path_(path), file_(gzopen(path.c_str(), "rb")) {
    if (!file_) throw std::runtime_error("cannot open " + path);
  }
  ~GzFile() { gzclose(file_); }
  GzFile(const GzFile&) = delete;
  GzFile& operator=(const GzFile&) = delete;

  /// Reads exactly `size` bytes (the file must have them).
  void read(void* buffer, std::size_t size) {
    auto* out = static_cast<unsigned char*>(buffer);
    while (size > 0) {  // gzread takes an unsigned int: read in chunks of at most 1 GiB
      const unsigned chunk = static_cast<unsigned>(std::min<std::size_t>(size, std::size_t(1) << 30));
      const int got = gzread(file_, out, chunk);
      if (got <= 0) {
        int code = Z_OK;
        const char* why = gzerror(file_, &code);  // zlib's message starts with the path
        if (code == Z_OK || code == Z_BUF_ERROR || why == nullptr)
          throw std::runtime_error(path_ + ": truncated (unexpected end of file)");
        throw std::runtime_error(why);
      }
      out += got;
      size -= static_cast<std::size_t>(got);
    }
  }

  /// Reads one big-endian 32-bit unsigned integer.
  std::uint32_t read_u32() {
    unsigned char b[4];
    read(b, 4);
    return std::uint32_t(b[0]) << 24 | std::uint32_t(b[1]) << 16 | std::uint32_t(b[2]) << 8 | std::uint32_t(b[3]);
  }

  /// Reads the magic number and checks it.
  void expect_magic(std::uint32_t expected, const char* what) {
    const std::uint32_t magic = read_u32();
    if (magic != expected)
      throw std::runtime_error(path_ + ": magic number " + std::to_string(magic) + ", expected " +
                               std::to_string(expected) + " (" + what + ")");
  }

  const std::string& path() const { return path_; }

 private:
  std::string path_;
  gzFile file_;
};

}  // namespace detail

/// Reads an IDX image file (magic 2051) into an N x (rows * cols) matrix with pixels in [0, 1].
inline ImageMatrix read_idx_images(const std::string& path) {
  detail::GzFile f(path);
  f.expect_magic(2051, "IDX unsigned-byte images");
  const std::uint32_t n = f.read_u32(), rows = f.read_u32(), cols = f.read_u32();
  if (n == 0 || rows == 0 || cols == 0 || rows > 4096 || cols > 4096)
    throw std::runtime_error(path + ": implausible image dimensions " + std::to_string(n) + " x " +
                             std::to_string(rows) + " x " + std::to_string(cols));
  const std::size_t pixels = std::size_t(rows) * cols;
  std::vector<unsigned char> raw(std::size_t(n) * pixels);
  f.read(raw.data(), raw.size());
  ImageMatrix images(static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(pixels));
  for (std::size_t i = 0; i < raw.size(); ++i) images.data()[i] = float(raw[i]) / 255.0f;
  return images;
}

/// Reads an IDX label file (magic 2049).
inline Eigen::VectorXi read_idx_labels(const std::string& path) {
  detail::GzFile f(path);
  f.expect_magic(2049, "IDX unsigned-byte labels");
  const std::uint32_t n = f.read_u32();
  std::vector<unsigned char> raw(n);
  f.read(raw.data(), raw.size());
  Eigen::VectorXi labels(static_cast<Eigen::Index>(n));
  for (std::size_t i = 0; i < raw.size(); ++i) labels(Eigen::Index(i)) = raw[i];
  return labels;
}

}  // namespace fashion
