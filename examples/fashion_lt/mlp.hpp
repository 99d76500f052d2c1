// mlp.hpp — the model of the example: a 784-256-10 ReLU MLP with hand-written backprop and
// SGD with momentum, in Eigen (float, one sample per row). Also a small seeded RNG.
#pragma once

#include <Eigen/Core>

#include <cmath>
#include <cstdint>
#include <utility>
#include <random>

namespace fashion {

using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// A seeded random source whose streams are identical with every standard library
/// (std::normal_distribution and std::shuffle are implementation-defined; mt19937_64 is not).
class Rng {
 public:
  explicit Rng(std::uint64_t seed) : engine_(seed) {}

  /// Uniform in [0, 1).
  double uniform() { return double(engine_() >> 11) * 0x1.0p-53; }

  /// Standard normal (Box-Muller).
  double normal() {
    const double u1 = 1.0 - uniform(), u2 = uniform();  // u1 in (0, 1]: log(u1) is finite
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }

  /// Fisher-Yates shuffle. The modulo bias of a 64-bit draw over < 2^32 items is negligible.
  template <class V>
  void shuffle(V& v) {
    for (std::size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[engine_() % i]);
  }

 private:
  std::mt19937_64 engine_;
};

/// x -> relu(x W1 + b1) W2 + b2. Weights are stored input-major (W1 is inputs x hidden) so a
/// row-major batch times a weight is the layer.
class MLP {
 public:
  MLP(int inputs, int hidden, int classes, Rng& rng)
      : W1_(inputs, hidden), b1_(Eigen::RowVectorXf::Zero(hidden)), W2_(hidden, classes),
        b2_(Eigen::RowVectorXf::Zero(classes)) {
    he_init(W1_, rng);
    he_init(W2_, rng);
  }

  /// Forward pass of a batch X (N x inputs): keeps the hidden activations for backward().
  const RowMatrix& forward(const RowMatrix& X) {
    H_.noalias() = X * W1_;
    H_.rowwise() += b1_;
    H_ = H_.cwiseMax(0.0f);
    logits_.noalias() = H_ * W2_;
    logits_.rowwise() += b2_;
    return logits_;
  }

  /// Logits of X without keeping anything (evaluation).
  RowMatrix predict(const RowMatrix& X) const {
    RowMatrix H = X * W1_;
    H.rowwise() += b1_;
    RowMatrix logits = H.cwiseMax(0.0f) * W2_;
    logits.rowwise() += b2_;
    return logits;
  }

  /// Backward pass of the last forward(X): G = dL/dlogits (N x classes) -> parameter gradients.
  void backward(const RowMatrix& X, const RowMatrix& G) {
    gW2_.noalias() = H_.transpose() * G;
    gb2_ = G.colwise().sum();
    dH_.noalias() = G * W2_.transpose();
    dH_ = (H_.array() > 0.0f).select(dH_, 0.0f);  // ReLU': 1 where the unit was active
    gW1_.noalias() = X.transpose() * dH_;
    gb1_ = dH_.colwise().sum();
  }

  /// Adam (Kingma & Ba 2015) with decoupled weight decay (AdamW) on the weights. Its step does not
  /// depend on the scale of the gradient, so one learning rate suits losses whose gradients
  /// differ by a constant factor (LDAM's logit scale s = 30 multiplies them by up to 30).
  void adam_step(float lr, float weight_decay, float beta1 = 0.9f, float beta2 = 0.999f, float eps = 1e-8f) {
    ++adam_t_;
    const float c1 = 1.0f / (1.0f - std::pow(beta1, float(adam_t_)));
    const float c2 = 1.0f / (1.0f - std::pow(beta2, float(adam_t_)));
    adam(W1_, gW1_, vW1_, sW1_, lr, weight_decay, beta1, beta2, eps, c1, c2);
    adam(b1_, gb1_, vb1_, sb1_, lr, 0.0f, beta1, beta2, eps, c1, c2);
    adam(W2_, gW2_, vW2_, sW2_, lr, weight_decay, beta1, beta2, eps, c1, c2);
    adam(b2_, gb2_, vb2_, sb2_, lr, 0.0f, beta1, beta2, eps, c1, c2);
  }

  /// SGD with momentum (PyTorch's form: v = mu v + g + wd w; w -= lr v). Weight decay applies
  /// to the weights, not the biases.
  void sgd_step(float lr, float momentum, float weight_decay) {
    step(W1_, gW1_, vW1_, lr, momentum, weight_decay);
    step(b1_, gb1_, vb1_, lr, momentum, 0.0f);
    step(W2_, gW2_, vW2_, lr, momentum, weight_decay);
    step(b2_, gb2_, vb2_, lr, momentum, 0.0f);
  }

 private:
  /// He (Kaiming) normal initialization for ReLU layers: N(0, 2 / fan_in).
  static void he_init(RowMatrix& W, Rng& rng) {
    const double stddev = std::sqrt(2.0 / double(W.rows()));
    for (Eigen::Index i = 0; i < W.size(); ++i) W.data()[i] = float(stddev * rng.normal());
  }

  template <class P>
  static void step(P& param, const P& grad, P& velocity, float lr, float momentum, float weight_decay) {
    if (velocity.size() == 0) velocity = P::Zero(param.rows(), param.cols());
    velocity = momentum * velocity + grad + weight_decay * param;
    param -= lr * velocity;
  }

  template <class P>
  static void adam(P& param, const P& grad, P& m, P& v, float lr, float weight_decay, float beta1, float beta2,
                   float eps, float c1, float c2) {
    if (m.size() == 0) m = P::Zero(param.rows(), param.cols());
    if (v.size() == 0) v = P::Zero(param.rows(), param.cols());
    m = beta1 * m + (1 - beta1) * grad;
    v = beta2 * v + (1 - beta2) * grad.cwiseProduct(grad);
    param -= lr * (weight_decay * param.array() + (c1 * m.array()) / ((c2 * v.array()).sqrt() + eps)).matrix();
  }

  RowMatrix W1_;
  Eigen::RowVectorXf b1_;
  RowMatrix W2_;
  Eigen::RowVectorXf b2_;
  // Activations of the last forward pass, and scratch for backward.
  RowMatrix H_, logits_, dH_;
  // Gradients and momentum buffers.
  RowMatrix gW1_, gW2_, vW1_, vW2_, sW1_, sW2_;
  Eigen::RowVectorXf gb1_, gb2_, vb1_, vb2_, sb1_, sb2_;
  long adam_t_ = 0;
};

}  // namespace fashion
