// libtorch_lt — lmf's losses in a libtorch training loop: a small CNN on long-tailed
// Fashion-MNIST (the main demo's split: n_c = floor(6000 * rho^(-c/9)), rho 100), trained with
// cross entropy, LDAM-DRW, LMF and LMF's official preset through lmf::libtorch::Loss
// (include/lmf/torch.hpp), evaluated on the balanced test set. stdout: the main demo's metrics
// table (accuracy, balanced accuracy, macro-F1, tail recall; mean ± std over seeds).
//
//   libtorch_lt                      # defaults: rho 100, 1 seed, 3 epochs, 2 threads (~2-3 min)
//   libtorch_lt --epochs 8 --seeds 3
//   libtorch_lt --quick              # CTest: 1 epoch on 3000 images, two losses
//
// lmf's part is one line per step — `torch::Tensor loss = criterion(model->forward(x), y);` —
// and, for LDAM-DRW, set_class_weights once per epoch.
#include <lmf/torch.hpp>  // first (it includes lmf/lmf.hpp)

#include "../fashion_lt/data.hpp"
#include "../fashion_lt/metrics.hpp"

#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

namespace {

const std::vector<int> kTail = {7, 8, 9};  // the three rarest classes

struct Settings {
  std::string data_dir = "/usr/share/datasets/fashion-mnist";
  int epochs = 3;
  int seeds = 1;
  double rho = 100;
  int threads = 2;
  int batch = 128;
  double lr = 2e-3;
  bool quick = false;
};

/// conv(1->16) relu pool, conv(16->32) relu pool, fc(32*7*7 -> 64) relu, fc(64 -> 10).
torch::nn::Sequential make_cnn() {
  namespace nn = torch::nn;
  return nn::Sequential(nn::Conv2d(nn::Conv2dOptions(1, 16, 3).padding(1)), nn::ReLU(), nn::MaxPool2d(2),
                        nn::Conv2d(nn::Conv2dOptions(16, 32, 3).padding(1)), nn::ReLU(), nn::MaxPool2d(2),
                        nn::Flatten(), nn::Linear(32 * 7 * 7, 64), nn::ReLU(), nn::Linear(64, fashion::kClasses));
}

struct Setup {
  std::string name;
  std::function<lmf::Loss<double>(const Eigen::VectorXi&)> make;
  bool drw = false;
};

std::vector<Setup> setups(bool quick) {
  std::vector<Setup> all = {
      {"cross entropy", [](const Eigen::VectorXi&) { return lmf::CrossEntropyLoss<double>(); }},
      {"LDAM-DRW", [](const Eigen::VectorXi& n) { return lmf::LDAMLoss<double>(n); }, true},
      {"LMF", [](const Eigen::VectorXi& n) { return lmf::LMFLoss<double>(n); }},
      {"LMF (official preset)", [](const Eigen::VectorXi& n) { return lmf::LMFLoss<double>::official_code(n); }},
  };
  if (quick) all = {all[0], all[2]};
  return all;
}

torch::Tensor images_tensor(const fashion::Dataset& d) {
  return torch::from_blob(const_cast<float*>(d.images.data()), {d.images.rows(), 1, 28, 28}, torch::kFloat32).clone();
}
torch::Tensor labels_tensor(const fashion::Dataset& d) {
  return torch::from_blob(const_cast<int*>(d.labels.data()), {d.labels.size()}, torch::kInt32).to(torch::kInt64);
}

fashion::Metrics train_and_evaluate(const Setup& setup, const Settings& s, const Eigen::VectorXi& counts,
                                    const torch::Tensor& x, const torch::Tensor& y, const torch::Tensor& tx,
                                    const fashion::Dataset& test, int seed, double& last_loss) {
  torch::manual_seed(uint64_t(seed));
  torch::nn::Sequential model = make_cnn();
  torch::optim::Adam opt(model->parameters(), torch::optim::AdamOptions(s.lr));
  lmf::libtorch::Loss criterion(setup.make(counts));
  const lmf::DeferredReweighting<double> drw(counts, (4 * s.epochs) / 5);
  const int64_t n = x.size(0);
  for (int epoch = 0; epoch < s.epochs; ++epoch) {
    if (setup.drw) criterion->set_class_weights(drw.weights(epoch));
    model->train();
    const torch::Tensor order = torch::randperm(n, torch::kInt64);
    double sum = 0;
    int64_t steps = 0;
    for (int64_t b = 0; b < n; b += s.batch) {
      const torch::Tensor idx = order.slice(0, b, std::min(n, b + s.batch));
      opt.zero_grad();
      torch::Tensor loss = criterion(model->forward(x.index_select(0, idx)), y.index_select(0, idx));
      loss.backward();
      opt.step();
      sum += loss.item<double>();
      ++steps;
    }
    last_loss = sum / double(steps);
  }
  model->eval();
  torch::NoGradGuard no_grad;
  const torch::Tensor logits = model->forward(tx).contiguous();
  Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> l(
      logits.data_ptr<float>(), logits.size(0), logits.size(1));
  return fashion::compute_metrics(fashion::confusion_matrix(l, test.labels), kTail);
}

}  // namespace

int main(int argc, char** argv) {
  Settings s;
  CLI::App app{"lmf's losses in a libtorch training loop on long-tailed Fashion-MNIST"};
  app.add_option("--data", s.data_dir, "directory of the four Fashion-MNIST IDX .gz files");
  app.add_option("--epochs", s.epochs, "epochs per run")->check(CLI::Range(1, 1000));
  app.add_option("--seeds", s.seeds, "runs per loss (seeds 0, 1, ...)")->check(CLI::Range(1, 100));
  app.add_option("--rho", s.rho, "imbalance ratio n_max / n_min")->check(CLI::Range(1.0, 6000.0));
  app.add_option("--threads", s.threads, "libtorch threads")->check(CLI::Range(1, 256));
  app.add_flag("--quick", s.quick, "1 epoch on a 3000-image subset, two losses (a smoke test)");
  CLI11_PARSE(app, argc, argv);
  try {
    const auto start = std::chrono::steady_clock::now();
    torch::set_num_threads(s.threads);
    fashion::check_data_present(s.data_dir);
    const fashion::Dataset full = fashion::load_split(s.data_dir, fashion::kFiles[0], fashion::kFiles[1]);
    fashion::Dataset test = fashion::load_split(s.data_dir, fashion::kFiles[2], fashion::kFiles[3]);
    Eigen::VectorXi counts = fashion::long_tail_counts(s.rho);
    if (s.quick) {
      counts = (counts.cast<double>() * (3000.0 / counts.sum())).cast<int>().cwiseMax(5);
      s.epochs = 1;
    }
    fashion::Dataset train = fashion::long_tailed_subset(full, counts, 0);
    fashion::standardize(train, test);
    const torch::Tensor x = images_tensor(train), y = labels_tensor(train), tx = images_tensor(test);
    std::cout << "libtorch_lt: a CNN on long-tailed Fashion-MNIST (rho " << s.rho << ", " << train.labels.size()
              << " training images, " << counts(0) << " to " << counts(fashion::kClasses - 1) << " per class), "
              << s.epochs << " epochs, " << s.seeds << " seed(s), Adam lr " << s.lr << ", batch " << s.batch
              << "; test: " << test.labels.size() << " images\n\n";
    std::cout << "| loss | accuracy | balanced accuracy | macro-F1 | tail recall |\n|---|---|---|---|---|\n";
    for (const Setup& setup : setups(s.quick)) {
      std::vector<double> acc, bal, f1, tail;
      double last_loss = 0;
      for (int seed = 0; seed < s.seeds; ++seed) {
        const fashion::Metrics m = train_and_evaluate(setup, s, counts, x, y, tx, test, seed, last_loss);
        acc.push_back(m.accuracy), bal.push_back(m.balanced_accuracy), f1.push_back(m.macro_f1),
            tail.push_back(m.tail_recall);
        std::fprintf(stderr, "libtorch_lt: %s, seed %d: last-epoch loss %.4f, accuracy %.1f%%\n", setup.name.c_str(),
                     seed, last_loss, 100 * m.accuracy);
      }
      std::cout << "| " << setup.name << " | " << fashion::percent_cell(fashion::mean_std(acc)) << " | "
                << fashion::percent_cell(fashion::mean_std(bal)) << " | " << fashion::percent_cell(fashion::mean_std(f1))
                << " | " << fashion::percent_cell(fashion::mean_std(tail)) << " |\n";
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::fprintf(stderr, "libtorch_lt: done in %.1f s\n", seconds);
  } catch (const fashion::MissingData& e) {
    std::cerr << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "libtorch_lt: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
