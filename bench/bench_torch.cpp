// The peer: libtorch 1.13 running the same losses in torch ops, the way the published PyTorch
// code writes them — forward, then autograd backward for the gradient — on one thread, on the
// same batches as bench_lmf (N * C ~ 4M logits, row-major; and ~32K, a training step's batch).
#include "common.hpp"

#include <lmf/torch.hpp>

#include <torch/torch.h>

using namespace lmf_bench;

namespace {

torch::Tensor ldam(const torch::Tensor& x, const torch::Tensor& y, const torch::Tensor& m, double s) {
  auto index = torch::zeros_like(x, torch::kBool).scatter_(1, y.view({-1, 1}), true);
  auto batch_m = m.index_select(0, y).view({-1, 1});
  auto x_m = torch::where(index, x - batch_m, x);
  return torch::nn::functional::cross_entropy(s * x_m, y);
}

torch::Tensor focal(const torch::Tensor& x, const torch::Tensor& y, double gamma) {
  auto log_p = torch::log_softmax(x, 1);
  auto ce = torch::nll_loss(log_p, y, {}, at::Reduction::None);
  auto pt = log_p.gather(1, y.view({-1, 1})).view(-1).exp();
  return (torch::pow(1 - pt, gamma) * ce).mean();
}

/// rows = 0: N * C ~ 4M logits (rows_for); else that many rows (the in-cache batch).
template <class T>
void bm_torch(benchmark::State& state, Which which, Index c, bool gradient, Index rows) {
  torch::set_num_threads(1);
  Batch<T> b(c, Logits::normal2, rows);
  const auto dtype = sizeof(T) == 4 ? torch::kFloat32 : torch::kFloat64;
  torch::Tensor x = torch::from_blob(b.x.data(), {b.n, c}, dtype).clone();
  torch::Tensor y = torch::from_blob(b.y.data(), {b.n}, torch::kInt32).to(torch::kInt64);
  const Eigen::Matrix<T, Eigen::Dynamic, 1> mv = lmf::ldam_margins<T>(long_tail_counts(c), T(0.5));
  torch::Tensor m = torch::from_blob(const_cast<T*>(mv.data()), {c}, dtype).clone();
  // the family's per-class vectors, as lmf builds them
  const Eigen::VectorXi counts = long_tail_counts(c);
  const Eigen::Matrix<T, Eigen::Dynamic, 1> la_b = lmf::logit_adjustments<T>(counts, 1.0);
  const Eigen::Matrix<T, Eigen::Dynamic, 1> bs_b = counts.cast<double>().array().log().cast<T>();
  const Eigen::Matrix<T, Eigen::Dynamic, 1> vs_a =
      (counts.cast<double>() / double(counts.maxCoeff())).array().pow(0.3).cast<T>();
  torch::Tensor tla = torch::from_blob(const_cast<T*>(la_b.data()), {c}, dtype).clone();
  torch::Tensor tbs = torch::from_blob(const_cast<T*>(bs_b.data()), {c}, dtype).clone();
  torch::Tensor tva = torch::from_blob(const_cast<T*>(vs_a.data()), {c}, dtype).clone();
  torch::Tensor targets = (torch::arange(b.n * c).view({b.n, c}) * 7919 % 5 == 0).to(dtype);
  namespace F = torch::nn::functional;
  auto loss = [&](const torch::Tensor& in) {
    switch (which) {
      case Which::ce: return F::cross_entropy(in, y);
      case Which::focal: return focal(in, y, 2.0);
      case Which::ldam: return ldam(in, y, m, 30.0);
      case Which::la: return F::cross_entropy(in + tla, y);
      case Which::bs: return F::cross_entropy(in + tbs, y);
      case Which::vs: return F::cross_entropy(in * tva + tla, y);
      case Which::ce_smooth: return F::cross_entropy(in, y, F::CrossEntropyFuncOptions().label_smoothing(0.1));
      case Which::sigmoid: {  // torchvision.ops.sigmoid_focal_loss (alpha 0.25, gamma 2), mean
        auto p = torch::sigmoid(in);
        auto ce = F::binary_cross_entropy_with_logits(
            in, targets, F::BinaryCrossEntropyWithLogitsFuncOptions().reduction(torch::kNone));
        auto p_t = p * targets + (1 - p) * (1 - targets);
        auto l = ce * torch::pow(1 - p_t, 2.0);
        return ((0.25 * targets + 0.75 * (1 - targets)) * l).mean();
      }
      default: return ldam(in, y, m, 30.0) + focal(in, y, 2.0);
    }
  };
  for (auto _ : state) {
    if (gradient) {
      torch::Tensor xg = x.detach().requires_grad_(true);
      torch::Tensor v = loss(xg);
      v.backward();
      benchmark::DoNotOptimize(xg.grad().data_ptr());
    } else {
      torch::NoGradGuard no_grad;
      torch::Tensor v = loss(x);
      benchmark::DoNotOptimize(v.data_ptr());
    }
  }
  set_logits(state, b.n, c);
}

/// lmf's libtorch module (lmf/torch.hpp): the same LMF, forward + autograd backward.
template <class T>
void bm_module(benchmark::State& state, Index c) {
  torch::set_num_threads(1);
  Batch<T> b(c);
  const auto dtype = sizeof(T) == 4 ? torch::kFloat32 : torch::kFloat64;
  torch::Tensor x = torch::from_blob(b.x.data(), {b.n, c}, dtype).clone();
  torch::Tensor y = torch::from_blob(b.y.data(), {b.n}, torch::kInt32).to(torch::kInt64);
  lmf::libtorch::Loss module(lmf::LMFLoss<double>(long_tail_counts(c)));
  module->set_threads(1);
  for (auto _ : state) {
    torch::Tensor xg = x.detach().requires_grad_(true);
    torch::Tensor v = module(xg, y);
    v.backward();
    benchmark::DoNotOptimize(xg.grad().data_ptr());
  }
  set_logits(state, b.n, c);
}

/// Issue 12's question: forward computes the gradient and backward returns it (what
/// lmf::libtorch::Loss does), or forward computes the value only and backward recomputes the
/// gradient with grad_scale = grad_output (no N x C tensor kept between the two)? Both with a
/// grad_output of 1 (loss.backward()) and of 0.5 (a scaled loss, e.g. AMP or a sum of losses).
struct Recompute : public torch::autograd::Function<Recompute> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::Tensor x, torch::Tensor y,
                               const lmf::Loss<float>* loss) {
    ctx->save_for_backward({x, y});
    ctx->saved_data["loss"] = reinterpret_cast<std::int64_t>(loss);
    const lmf::Layout layout = lmf::Layout::row_major(x.size(0), x.size(1));
    return torch::scalar_tensor(loss->value(x.data_ptr<float>(), layout, y.data_ptr<std::int64_t>()));
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor& x = saved[0];
    const torch::Tensor& y = saved[1];
    const auto* loss = reinterpret_cast<const lmf::Loss<float>*>(ctx->saved_data["loss"].toInt());
    const lmf::Layout layout = lmf::Layout::row_major(x.size(0), x.size(1));
    const std::int64_t* yp = y.data_ptr<std::int64_t>();
    torch::Tensor g = torch::empty_like(x);
    const lmf::Totals totals = loss->totals(x.data_ptr<float>(), layout, yp);
    loss->value_and_gradient(x.data_ptr<float>(), layout, yp, g.data_ptr<float>(), totals,
                             grad_out[0].item<float>());
    return {g, torch::Tensor(), torch::Tensor()};
  }
};

void bm_backward_strategy(benchmark::State& state, Index c, bool recompute, double grad_output) {
  torch::set_num_threads(1);
  Batch<float> b(c);
  torch::Tensor x = torch::from_blob(b.x.data(), {b.n, c}, torch::kFloat32).clone();
  torch::Tensor y = torch::from_blob(b.y.data(), {b.n}, torch::kInt32).to(torch::kInt64);
  lmf::libtorch::Loss module(lmf::LMFLoss<double>(long_tail_counts(c)));
  module->set_threads(1);
  lmf::LMFLoss<float> loss(long_tail_counts(c));
  loss.set_threads(1);
  for (auto _ : state) {
    torch::Tensor xg = x.detach().requires_grad_(true);
    torch::Tensor v = recompute ? Recompute::apply(xg, y, &loss) : module(xg, y);
    if (grad_output == 1.0)
      v.backward();
    else
      (v * grad_output).backward();
    benchmark::DoNotOptimize(xg.grad().data_ptr());
  }
  set_logits(state, b.n, c);
}

template <class T>
void register_all(const char* type, const std::vector<Index>& classes, bool everything) {
  for (Index c : classes) {
    const std::string suffix = name_suffix(type, c);
    for (bool grad : {true, false}) {
      const std::string g = grad ? "value_and_gradient" : "value";
      benchmark::RegisterBenchmark(("libtorch/LMF/" + g + suffix).c_str(), bm_torch<T>, Which::lmf_loss, c, grad,
                                   Index(0))
          ->Unit(benchmark::kMillisecond)
          ->MinTime(1.0);
    }
    // a training step's batch: N * C ~ 32K logits, as bench_lmf's lmf_incache
    if (everything)
      benchmark::RegisterBenchmark(("libtorch_incache/LMF/value_and_gradient" + suffix).c_str(), bm_torch<T>,
                                   Which::lmf_loss, c, true, cached_rows_for(c))
          ->MinTime(0.5);
    benchmark::RegisterBenchmark(("lmf::libtorch/LMF/value_and_gradient" + suffix).c_str(), bm_module<T>, c)
        ->Unit(benchmark::kMillisecond)
        ->MinTime(1.0);
    if (everything)
      for (bool recompute : {false, true})
        for (double go : {1.0, 0.5})
          benchmark::RegisterBenchmark((std::string("backward/") + (recompute ? "recompute" : "saved") +
                                        (go == 1.0 ? "/grad_output_1" : "/grad_output_0.5") + suffix)
                                           .c_str(),
                                       bm_backward_strategy, c, recompute, go)
              ->Unit(benchmark::kMillisecond)
              ->MinTime(1.0);
    if (everything)
      for (Which w : {Which::ce, Which::focal, Which::ldam, Which::la, Which::bs, Which::vs, Which::ce_smooth,
                      Which::sigmoid})
        benchmark::RegisterBenchmark((std::string("libtorch/") + name(w) + "/value_and_gradient" + suffix).c_str(),
                                     bm_torch<T>, w, c, true, Index(0))
            ->Unit(benchmark::kMillisecond)
            ->MinTime(1.0);
  }
}

}  // namespace

int main(int argc, char** argv) {
  register_all<float>("float", float_classes(), true);
  register_all<double>("double", double_classes(), false);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
