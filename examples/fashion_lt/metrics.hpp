// metrics.hpp — test-set metrics from a confusion matrix, and mean ± std over seeds.
#pragma once

#include <Eigen/Core>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

namespace fashion {

/// counts(true class, predicted class).
using Confusion = Eigen::MatrixXi;

/// Builds the confusion matrix of predictions (argmax of each logit row) against labels.
template <class D>
Confusion confusion_matrix(const Eigen::MatrixBase<D>& logits, const Eigen::VectorXi& labels) {
  const Eigen::Index C = logits.cols();
  Confusion cm = Confusion::Zero(C, C);
  for (Eigen::Index i = 0; i < logits.rows(); ++i) {
    Eigen::Index predicted = 0;
    logits.row(i).maxCoeff(&predicted);
    ++cm(labels(i), predicted);
  }
  return cm;
}

/// The metrics of one trained model on the test set (fractions in [0, 1]).
struct Metrics {
  double accuracy = 0;           ///< correct / all
  double balanced_accuracy = 0;  ///< mean per-class recall (macro recall)
  double macro_f1 = 0;           ///< mean per-class F1
  double tail_recall = 0;        ///< mean recall of the tail classes
  Eigen::VectorXd recall;        ///< per class
};

/// Metrics from a confusion matrix; `tail` lists the classes whose recall tail_recall averages.
inline Metrics compute_metrics(const Confusion& cm, const std::vector<int>& tail) {
  const Eigen::Index C = cm.rows();
  Metrics m;
  m.recall.resize(C);
  double f1_sum = 0;
  for (Eigen::Index c = 0; c < C; ++c) {
    const double tp = cm(c, c);
    const double actual = cm.row(c).sum(), predicted = cm.col(c).sum();
    const double recall = actual > 0 ? tp / actual : 0.0;
    const double precision = predicted > 0 ? tp / predicted : 0.0;  // never predicted: 0
    m.recall(c) = recall;
    f1_sum += precision + recall > 0 ? 2 * precision * recall / (precision + recall) : 0.0;
  }
  m.accuracy = double(cm.trace()) / double(cm.sum());
  m.balanced_accuracy = m.recall.mean();
  m.macro_f1 = f1_sum / double(C);
  for (int c : tail) m.tail_recall += m.recall(c) / double(tail.size());
  return m;
}

/// Mean and sample standard deviation (n - 1; 0 for a single value).
struct MeanStd {
  double mean = 0, std = 0;
};

inline MeanStd mean_std(const std::vector<double>& xs) {
  MeanStd r;
  if (xs.empty()) return r;
  for (double x : xs) r.mean += x / double(xs.size());
  if (xs.size() > 1) {
    double ss = 0;
    for (double x : xs) ss += (x - r.mean) * (x - r.mean);
    r.std = std::sqrt(ss / double(xs.size() - 1));
  }
  return r;
}

/// "82.1 ± 0.4": a fraction's mean ± std, in percent with one decimal.
inline std::string percent_cell(const MeanStd& v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.1f ± %.1f", 100 * v.mean, 100 * v.std);
  return buf;
}

}  // namespace fashion
