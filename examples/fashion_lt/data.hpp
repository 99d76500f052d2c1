// data.hpp — Fashion-MNIST and its long-tailed training split (the CIFAR-10-LT recipe), shared
// by the main demo (fashion_lt) and the libtorch example (examples/libtorch_lt).
#pragma once

#include "idx.hpp"
#include "mlp.hpp"  // fashion::Rng

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

namespace fashion {

constexpr int kClasses = 10;
constexpr int kPerClassMax = 6000;  // Fashion-MNIST has 6000 training images per class

// ---- data ------------------------------------------------------------------------------------

struct Dataset {
  RowMatrix images;        ///< N x 784, one image per row
  Eigen::VectorXi labels;  ///< N, in [0, 10)
};

const char* const kFiles[] = {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                              "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"};

/// Thrown when the dataset is not where --data says; main() turns it into exit code 1.
struct MissingData : std::runtime_error {
  using std::runtime_error::runtime_error;
};

inline void check_data_present(const std::string& dir) {
  std::string missing;
  for (const char* f : kFiles)
    if (!std::filesystem::exists(std::filesystem::path(dir) / f)) missing += std::string("\n  ") + f;
  if (!missing.empty())
    throw MissingData("Fashion-MNIST not found in " + dir + "; missing:" + missing +
                      "\nInstall the Debian package dataset-fashion-mnist "
                      "(sudo apt install dataset-fashion-mnist),\n"
                      "or pass --data DIR, a directory holding the four IDX .gz files.");
}

inline Dataset load_split(const std::string& dir, const char* images_file, const char* labels_file) {
  Dataset d;
  d.images = read_idx_images((std::filesystem::path(dir) / images_file).string());
  d.labels = read_idx_labels((std::filesystem::path(dir) / labels_file).string());
  if (d.images.rows() != d.labels.size())
    throw std::runtime_error(std::string(images_file) + " has " + std::to_string(d.images.rows()) +
                             " images but " + labels_file + " has " + std::to_string(d.labels.size()) +
                             " labels");
  if (d.images.cols() != 28 * 28)
    throw std::runtime_error(std::string(images_file) + ": expected 28 x 28 images");
  if (d.labels.minCoeff() < 0 || d.labels.maxCoeff() >= kClasses)
    throw std::runtime_error(std::string(labels_file) + ": labels outside [0, 10)");
  return d;
}

/// The long-tailed class sizes of CIFAR-10-LT: n_c = floor(6000 * rho^(-c/9)).
inline Eigen::VectorXi long_tail_counts(double rho) {
  Eigen::VectorXi n(kClasses);
  for (int c = 0; c < kClasses; ++c)
    n(c) = int(std::floor(kPerClassMax * std::pow(rho, -double(c) / (kClasses - 1))));
  return n;
}

/// Draws n_c images of each class c at random (seeded), keeping the original order.
inline Dataset long_tailed_subset(const Dataset& full, const Eigen::VectorXi& counts, std::uint64_t seed) {
  std::vector<std::vector<Eigen::Index>> by_class(kClasses);
  for (Eigen::Index i = 0; i < full.labels.size(); ++i) by_class[std::size_t(full.labels(i))].push_back(i);
  Rng rng(seed);
  std::vector<Eigen::Index> chosen;
  for (int c = 0; c < kClasses; ++c) {
    auto& pool = by_class[std::size_t(c)];
    if (Eigen::Index(pool.size()) < counts(c))
      throw std::runtime_error("class " + std::to_string(c) + " has only " + std::to_string(pool.size()) +
                               " training images, " + std::to_string(counts(c)) + " wanted");
    rng.shuffle(pool);
    chosen.insert(chosen.end(), pool.begin(), pool.begin() + counts(c));
  }
  std::sort(chosen.begin(), chosen.end());
  Dataset d;
  d.images.resize(Eigen::Index(chosen.size()), full.images.cols());
  d.labels.resize(Eigen::Index(chosen.size()));
  for (std::size_t k = 0; k < chosen.size(); ++k) {
    d.images.row(Eigen::Index(k)) = full.images.row(chosen[k]);
    d.labels(Eigen::Index(k)) = full.labels(chosen[k]);
  }
  return d;
}

/// Standardizes pixels with the mean and standard deviation of the training set (one scalar
/// each, the usual Normalize((0.286,), (0.353,)) of Fashion-MNIST, measured on this subset).
inline void standardize(Dataset& train, Dataset& test) {
  const double mean = train.images.cast<double>().mean();
  const double var = (train.images.cast<double>().array() - mean).square().mean();
  const float m = float(mean), inv_std = float(1 / std::sqrt(var));
  train.images = (train.images.array() - m) * inv_std;
  test.images = (test.images.array() - m) * inv_std;
}

}  // namespace fashion
