// quickstart — margins, class weights, the LMF loss and its gradient for a small imbalanced batch.
#include <lmf/lmf.hpp>

#include <iostream>

int main() {
  Eigen::VectorXi counts(4);
  counts << 5000, 500, 50, 5;  // samples per class in the training set
  const Eigen::VectorXf margins = lmf::ldam_margins<float>(counts, 0.5f);
  const Eigen::VectorXf weights = lmf::class_balanced_weights<float>(counts, 0.9999);
  std::cout << "class counts:            " << counts.transpose() << "\n"
            << "LDAM margins (max 0.5):  " << margins.transpose() << "\n"
            << "class-balanced weights:  " << weights.transpose() << "\n\n";

  Eigen::MatrixXf logits(6, 4);  // one sample per row
  logits << 2.0f, 0.5f, -1.0f, 0.1f,  //
      1.5f, 1.2f, 0.0f, -0.5f,        //
      0.2f, 2.2f, 0.3f, -1.0f,        //
      -0.3f, 0.1f, 1.8f, 0.4f,        //
      0.9f, -0.2f, 0.4f, 0.5f,        //
      3.0f, -1.0f, -1.0f, -2.0f;
  Eigen::VectorXi labels(6);
  labels << 0, 1, 1, 2, 3, 0;

  lmf::LMFLoss<float> loss(counts);  // paper defaults: 1*LDAM (s 30, max_m 0.5) + 1*Focal (gamma 2)
  Eigen::MatrixXf grad(6, 4);
  const float value = loss.value_and_gradient(logits, labels, grad);

  Eigen::VectorXf per_row(6);
  loss.per_row(logits, labels, per_row);

  std::cout << "LMF loss (mean over 6 rows): " << value << "\n"
            << "per-row values:              " << per_row.transpose() << "\n"
            << "gradient dL/dlogits:\n" << grad << "\n\n";

  lmf::LMFLoss<float>::Options weighted;
  weighted.class_weights = weights;  // class-balanced weights in both terms
  std::cout << "LMF with class-balanced weights: " << lmf::LMFLoss<float>(counts, weighted).value(logits, labels)
            << "\n";
  const auto official = lmf::LMFLoss<float>::official_code(counts);
  std::cout << "official-code preset (1.5 LDAM + 1 focal, gamma 1.5): "
            << official.value(logits, labels) << "\n";
  return 0;
}
