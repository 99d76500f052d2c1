// fashion_lt — the lmf losses on long-tailed Fashion-MNIST.
//
// Builds a long-tailed training set from Fashion-MNIST the way CIFAR-10-LT is built
// (n_c = floor(6000 * rho^(-c/9)): 6000 images of class 0 down to 60 of class 9 at rho 100),
// trains the same MLP (784-256-10, ReLU) with the same optimizer, schedule and seeds once per
// loss, and evaluates on the balanced 10,000-image test set. stdout: a Markdown table of
// accuracy, balanced accuracy, macro-F1 and tail recall (mean ± std over seeds), and the share
// of each training step spent in lmf's value_and_gradient. --out DIR: per-class recall and
// training-loss curves as CSV, and both as an SVG chart. stderr: progress.
//
//   fashion_lt                                   # defaults: rho 100, 3 seeds, 12 epochs (1-2 min)
//   fashion_lt --rho 10 --seeds 5 --out results
//
// Data: the Debian package dataset-fashion-mnist (/usr/share/datasets/fashion-mnist), or any
// directory holding the four original IDX .gz files (--data DIR).
//
// lmf's part is two calls per step: value_and_gradient (loss and dL/dlogits of a batch) and,
// for LDAM-DRW, set_class_weights once per epoch; everything else here is the usual training loop.
#include <lmf/lmf.hpp>  // first: its compiler workarounds must see <immintrin.h> first

#include "data.hpp"
#include "idx.hpp"
#include "metrics.hpp"
#include "mlp.hpp"
#include "progress.hpp"
#include "svg.hpp"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
using fashion::RowMatrix;
using Clock = std::chrono::steady_clock;

using fashion::kClasses;
using fashion::kPerClassMax;
constexpr int kHidden = 256;
const std::vector<std::string> kClassNames = {"T-shirt", "Trouser", "Pullover", "Dress", "Coat",
                                              "Sandal",  "Shirt",   "Sneaker",  "Bag",   "Boot"};
// The tail: the three rarest classes (n_c decreases with c for every rho > 1).
const std::vector<int> kTailClasses = {7, 8, 9};

/// Everything the command line sets.
struct Settings {
  std::string data_dir = "/usr/share/datasets/fashion-mnist";
  std::string out_dir = "fashion_lt_out";
  int seeds = 3;
  int epochs = 12;
  double rho = 100;
  std::uint64_t data_seed = 0;
  std::string optimizer = "adam";  ///< "adam" or "sgd"
  float lr = 0.003f;                ///< peak learning rate
  int batch = 128;
};

// Optimizer constants (the usual defaults). Adam: its step does not depend on the gradient's
// scale, so one learning rate trains every loss, although LDAM's logit scale s = 30 makes its
// gradients up to 30 times larger than cross entropy's; weight decay decoupled as in AdamW.
// SGD: momentum 0.9 and L2 weight decay, as in the LDAM paper; no single learning rate suits
// every loss there (see --optimizer).
constexpr float kAdamWeightDecay = 1e-2f;
constexpr float kSgdMomentum = 0.9f;
constexpr float kSgdWeightDecay = 5e-4f;

using fashion::check_data_present;
using fashion::Dataset;
using fashion::kFiles;
using fashion::load_split;
using fashion::long_tail_counts;
using fashion::long_tailed_subset;
using fashion::MissingData;
using fashion::standardize;

// ---- the losses compared -----------------------------------------------------------------------

/// One row of the comparison: how to build the loss from the training class counts, and
/// whether it uses deferred re-weighting (class-balanced weights from 80% of the epochs on).
struct LossSetup {
  std::string name;
  std::function<lmf::Loss<float>(const Eigen::VectorXi& counts)> make;
  bool deferred_reweighting = false;
};

/// Deferred re-weighting starts at 80% of the epochs, rounded down (Cao et al.: epoch 160 of 200);
/// 0-based.
int drw_start_epoch(int epochs) { return (4 * epochs) / 5; }

// The named losses add no data members to lmf::Loss<float>, so they are held by value as one.
std::vector<LossSetup> loss_setups() {
  using Counts = const Eigen::VectorXi&;
  return {
      {"cross entropy", [](Counts) { return lmf::CrossEntropyLoss<float>(); }},
      {"focal (gamma 2)",
       [](Counts) {
         lmf::FocalLoss<float>::Options o;
         o.gamma = 2;
         return lmf::FocalLoss<float>(o);
       }},
      {"LDAM", [](Counts n) { return lmf::LDAMLoss<float>(n); }},
      {"LDAM-DRW", [](Counts n) { return lmf::LDAMLoss<float>(n); }, true},
      {"LMF", [](Counts n) { return lmf::LMFLoss<float>(n); }},
      {"LMF (official preset)", [](Counts n) { return lmf::LMFLoss<float>::official_code(n); }},
      {"logit adjustment", [](Counts n) { return lmf::LogitAdjustedLoss<float>(n); }},
      {"balanced softmax", [](Counts n) { return lmf::BalancedSoftmaxLoss<float>(n); }},
      {"VS (gamma 0.3, tau 1)", [](Counts n) { return lmf::VSLoss<float>(n); }},
  };
}

// ---- training --------------------------------------------------------------------------------

/// Learning rate at step `step` of `total`: linear warm-up over the first epoch (LDAM's s = 30
/// makes the first steps large), then cosine decay to zero.
float learning_rate(float base, long step, long warmup, long total) {
  if (step < warmup) return base * float(step + 1) / float(warmup);
  const double progress = double(step - warmup) / double(std::max(1L, total - warmup));
  return float(0.5 * base * (1 + std::cos(3.141592653589793 * progress)));
}

struct RunResult {
  fashion::Metrics metrics;
  std::vector<double> epoch_loss;  ///< mean training loss of each epoch
  double loss_seconds = 0;         ///< time inside value_and_gradient
  double step_seconds = 0;         ///< time of whole training steps (batch, forward, loss, backward, update)
  long steps = 0;                  ///< training steps (= loss calls)
};

/// Trains a fresh MLP with `setup`'s loss (model init and batch order from `seed`) and
/// evaluates it on the test set.
RunResult train_and_evaluate(const LossSetup& setup, const Dataset& train, const Dataset& test,
                             const Eigen::VectorXi& counts, const Settings& s, int seed,
                             fashion::ProgressBar& progress) {
  fashion::Rng rng{static_cast<std::uint64_t>(seed)};
  fashion::MLP model(int(train.images.cols()), kHidden, kClasses, rng);
  lmf::Loss<float> loss = setup.make(counts);
  const lmf::DeferredReweighting<float> drw(counts, drw_start_epoch(s.epochs), 0.9999);

  const Eigen::Index n = train.labels.size();
  const long steps_per_epoch = long((n + s.batch - 1) / s.batch);
  const long total_steps = steps_per_epoch * s.epochs;
  std::vector<Eigen::Index> order(static_cast<std::size_t>(n));
  for (Eigen::Index i = 0; i < n; ++i) order[std::size_t(i)] = i;

  RowMatrix X, grad;
  Eigen::VectorXi y;
  RunResult result;
  const std::string label = setup.name + ", seed " + std::to_string(seed);
  char padded[64];
  std::snprintf(padded, sizeof padded, "%-32s", label.c_str());

  for (int epoch = 0; epoch < s.epochs; ++epoch) {
    if (setup.deferred_reweighting) loss.set_class_weights(drw.weights(epoch));
    rng.shuffle(order);
    double loss_sum = 0;
    for (long b = 0; b < steps_per_epoch; ++b) {
      const auto step_start = Clock::now();
      // Gather the batch.
      const Eigen::Index first = b * s.batch, rows = std::min<Eigen::Index>(s.batch, n - first);
      X.resize(rows, train.images.cols());
      y.resize(rows);
      for (Eigen::Index r = 0; r < rows; ++r) {
        X.row(r) = train.images.row(order[std::size_t(first + r)]);
        y(r) = train.labels(order[std::size_t(first + r)]);
      }
      // Forward, loss and dL/dlogits from lmf, backward, update.
      const RowMatrix& logits = model.forward(X);
      grad.resize(rows, kClasses);
      const auto loss_start = Clock::now();
      float value = 0;
      try {
        value = loss.value_and_gradient(logits, y, grad);
      } catch (const lmf::Error& e) {  // e.g. non-finite logits after a divergence
        throw std::runtime_error(setup.name + ", seed " + std::to_string(seed) + ", epoch " +
                                 std::to_string(epoch + 1) + ": " + e.what() +
                                 "\n(training diverged? try a smaller --lr)");
      }
      const auto loss_end = Clock::now();
      model.backward(X, grad);
      const float lr = learning_rate(s.lr, epoch * steps_per_epoch + b, steps_per_epoch, total_steps);
      if (s.optimizer == "adam")
        model.adam_step(lr, kAdamWeightDecay);
      else
        model.sgd_step(lr, kSgdMomentum, kSgdWeightDecay);
      const auto step_end = Clock::now();
      result.loss_seconds += std::chrono::duration<double>(loss_end - loss_start).count();
      result.step_seconds += std::chrono::duration<double>(step_end - step_start).count();
      ++result.steps;

      loss_sum += double(value) * double(rows);
      if (b % 8 == 7 || b + 1 == steps_per_epoch)
        progress.update(padded, epoch + 1, s.epochs, b + 1, steps_per_epoch,
                        loss_sum / double(first + rows));
    }
    result.epoch_loss.push_back(loss_sum / double(n));
  }

  result.metrics = fashion::compute_metrics(fashion::confusion_matrix(model.predict(test.images), test.labels),
                                            kTailClasses);
  char done[256];
  std::snprintf(done, sizeof done, "%s  %d epochs, last-epoch loss %.4f  test: acc %.1f%%, macro-F1 %.1f%%, tail %.1f%%",
                padded, s.epochs, result.epoch_loss.back(), 100 * result.metrics.accuracy,
                100 * result.metrics.macro_f1, 100 * result.metrics.tail_recall);
  progress.finish(done);
  return result;
}

// ---- reporting -------------------------------------------------------------------------------

/// One loss's results over all seeds.
struct Summary {
  std::string name;
  fashion::MeanStd accuracy, balanced_accuracy, macro_f1, tail_recall;
  Eigen::VectorXd recall;      ///< per class, mean over seeds
  Eigen::VectorXd epoch_loss;  ///< per epoch, mean over seeds
  double loss_seconds = 0;     ///< summed over seeds
  double step_seconds = 0;     ///< summed over seeds
  long steps = 0;              ///< summed over seeds
};

Summary summarize(const std::string& name, const std::vector<RunResult>& runs) {
  Summary s;
  s.name = name;
  std::vector<double> acc, bal, f1, tail;
  const double k = double(runs.size());
  s.recall = Eigen::VectorXd::Zero(kClasses);
  s.epoch_loss = Eigen::VectorXd::Zero(Eigen::Index(runs.front().epoch_loss.size()));
  for (const RunResult& r : runs) {
    acc.push_back(r.metrics.accuracy);
    bal.push_back(r.metrics.balanced_accuracy);
    f1.push_back(r.metrics.macro_f1);
    tail.push_back(r.metrics.tail_recall);
    s.recall += r.metrics.recall / k;
    s.epoch_loss += Eigen::Map<const Eigen::VectorXd>(r.epoch_loss.data(), s.epoch_loss.size()) / k;
    s.loss_seconds += r.loss_seconds;
    s.step_seconds += r.step_seconds;
    s.steps += r.steps;
  }
  s.accuracy = fashion::mean_std(acc);
  s.balanced_accuracy = fashion::mean_std(bal);
  s.macro_f1 = fashion::mean_std(f1);
  s.tail_recall = fashion::mean_std(tail);
  return s;
}

/// Prints a Markdown table: the header line exactly as given ("| loss | accuracy | ... |"),
/// the first column left-aligned, the others right-aligned.
void print_markdown_table(std::ostream& os, const std::vector<std::string>& header,
                          const std::vector<std::vector<std::string>>& rows) {
  auto print_row = [&](const std::vector<std::string>& cells) {
    os << "|";
    for (const std::string& cell : cells) os << " " << cell << " |";
    os << "\n";
  };
  print_row(header);
  os << "|";
  for (std::size_t j = 0; j < header.size(); ++j) os << (j == 0 ? "---" : "---:") << "|";
  os << "\n";
  for (const auto& r : rows) print_row(r);
}

std::string format(const char* fmt, double value) {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, value);
  return buf;
}

/// The Markdown report on stdout: the setup, the metrics table and the loss-call time share.
void print_report(const Settings& s, Eigen::Index train_size, Eigen::Index test_size,
                  const std::vector<Summary>& summaries) {
  std::cout << "Long-tailed Fashion-MNIST (rho " << s.rho << ", " << train_size
            << " training images; balanced test set of " << test_size << "), MLP 784-" << kHidden << "-10, "
            << (s.optimizer == "adam" ? "Adam" : "SGD (momentum 0.9)") << ", lr " << s.lr
            << " (warm-up + cosine), batch " << s.batch << ", " << s.epochs
            << " epochs. Test metrics in %, mean ± std over seeds 1.." << s.seeds
            << ". The test set is balanced, so accuracy equals balanced accuracy. Tail recall: classes 7, 8, 9, "
               "the three rarest in training.\n\n";
  std::vector<std::vector<std::string>> metrics, timing;
  for (const Summary& r : summaries) {
    using fashion::percent_cell;
    metrics.push_back({r.name, percent_cell(r.accuracy), percent_cell(r.balanced_accuracy),
                       percent_cell(r.macro_f1), percent_cell(r.tail_recall)});
    timing.push_back({r.name, format("%.2f%%", 100 * r.loss_seconds / r.step_seconds),
                      format("%.1f", 1e6 * r.loss_seconds / double(r.steps))});
  }
  print_markdown_table(std::cout, {"loss", "accuracy", "balanced accuracy", "macro-F1", "tail recall"}, metrics);
  std::cout << "\nShare of training-step time (batch, forward, loss, backward, update) spent in the loss call "
               "(lmf value_and_gradient; lmf's kernels: "
            << lmf::simd_isa() << ", this CPU: " << lmf::cpu_simd_isa() << "):\n\n";
  print_markdown_table(std::cout, {"loss", "loss call / step time", "µs per loss call"}, timing);
}

/// A CSV with one row per loss: "loss,<columns...>".
void write_csv(const fs::path& path, const std::vector<std::string>& columns, const std::vector<Summary>& summaries,
               Eigen::VectorXd Summary::*values, int precision) {
  std::ofstream f(path);
  f << "loss";
  for (const std::string& c : columns) f << "," << c;
  f << "\n";
  f.setf(std::ios::fixed);
  f.precision(precision);
  for (const Summary& r : summaries) {
    f << '"' << r.name << '"';
    for (double v : r.*values) f << "," << v;
    f << "\n";
  }
  if (!f) throw std::runtime_error("cannot write " + path.string());
}

void write_chart(const fs::path& path, const Settings& s, const Eigen::VectorXi& counts,
                 const std::vector<Summary>& summaries) {
  fashion::ChartData chart;
  std::ostringstream title;
  title << "Long-tailed Fashion-MNIST (rho " << s.rho << "), MLP 784-" << kHidden << "-10, " << s.epochs
        << " epochs, " << s.seeds << (s.seeds == 1 ? " seed" : " seeds");
  chart.title = title.str();
  chart.class_labels = kClassNames;
  for (int c = 0; c < kClasses; ++c) chart.class_counts.push_back(counts(c));
  chart.recall.resize(Eigen::Index(summaries.size()), kClasses);
  chart.loss_curves.resize(Eigen::Index(summaries.size()), s.epochs);
  for (std::size_t l = 0; l < summaries.size(); ++l) {
    chart.loss_names.push_back(summaries[l].name);
    chart.recall.row(Eigen::Index(l)) = summaries[l].recall.transpose();
    chart.loss_curves.row(Eigen::Index(l)) = summaries[l].epoch_loss.transpose();
  }
  chart.reweighting_epoch = drw_start_epoch(s.epochs);
  fashion::write_chart_svg(path.string(), chart);
}

int run(const Settings& s) {
  // Data: the long-tailed training subset and the full test set, standardized.
  check_data_present(s.data_dir);
  const Dataset full_train = load_split(s.data_dir, kFiles[0], kFiles[1]);
  Dataset test = load_split(s.data_dir, kFiles[2], kFiles[3]);
  const Eigen::VectorXi counts = long_tail_counts(s.rho);
  Dataset train = long_tailed_subset(full_train, counts, s.data_seed);
  standardize(train, test);
  std::cerr << "fashion_lt: " << train.labels.size() << " training images (rho " << s.rho
            << ", per class: " << counts.transpose() << "), " << test.labels.size()
            << " test images (balanced)\n";

  // Every loss, every seed.
  const auto start = Clock::now();
  fashion::ProgressBar progress;
  std::vector<Summary> summaries;
  for (const LossSetup& setup : loss_setups()) {
    std::vector<RunResult> runs;
    for (int seed = 1; seed <= s.seeds; ++seed)
      runs.push_back(train_and_evaluate(setup, train, test, counts, s, seed, progress));
    summaries.push_back(summarize(setup.name, runs));
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();

  // Report.
  print_report(s, train.labels.size(), test.labels.size(), summaries);
  fs::create_directories(s.out_dir);
  std::vector<std::string> class_columns, epoch_columns;
  for (int c = 0; c < kClasses; ++c) class_columns.push_back("class_" + std::to_string(c));
  for (int e = 1; e <= s.epochs; ++e) epoch_columns.push_back("epoch_" + std::to_string(e));
  const fs::path recall_csv = fs::path(s.out_dir) / "per_class_recall.csv";
  const fs::path loss_csv = fs::path(s.out_dir) / "training_loss.csv";
  const fs::path svg = fs::path(s.out_dir) / "fashion_lt.svg";
  write_csv(recall_csv, class_columns, summaries, &Summary::recall, 4);
  write_csv(loss_csv, epoch_columns, summaries, &Summary::epoch_loss, 5);
  write_chart(svg, s, counts, summaries);

  std::cout << "\nper-class test recall (mean over seeds): " << recall_csv.string() << "\n"
            << "training loss per epoch (mean over seeds): " << loss_csv.string() << "\n"
            << "chart: " << svg.string() << "\n";
  std::fprintf(stderr, "fashion_lt: %zu losses x %d seeds x %d epochs in %.1f s\n", summaries.size(), s.seeds,
               s.epochs, seconds);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Settings s;
  CLI::App app{"Trains one MLP per lmf loss on long-tailed Fashion-MNIST and compares them on the balanced test set."};
  app.add_option("--data", s.data_dir, "Directory holding the four Fashion-MNIST IDX .gz files")->capture_default_str();
  app.add_option("--out", s.out_dir, "Directory for the CSV files and the SVG chart")->capture_default_str();
  app.add_option("--seeds", s.seeds, "Number of seeds K: runs seeds 1..K, each setting the model init and batch order (the same for every loss)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  app.add_option("--epochs", s.epochs, "Training epochs")->capture_default_str()->check(CLI::Range(1, 10000));
  app.add_option("--rho", s.rho, "Imbalance ratio n_0 / n_9 of the training set (1 = balanced)")
      ->capture_default_str()
      ->check(CLI::Range(1.0, double(kPerClassMax)));
  app.add_option("--data-seed", s.data_seed, "Seed of the long-tailed subset")->capture_default_str();
  app.add_option("--optimizer", s.optimizer,
                 "adam, or sgd (momentum 0.9): with SGD, LDAM's s = 30 needs a ~10x smaller --lr than cross entropy")
      ->capture_default_str()
      ->check(CLI::IsMember({"adam", "sgd"}));
  app.add_option("--lr", s.lr, "Peak learning rate (linear warm-up over the first epoch, then cosine decay)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--batch", s.batch, "Mini-batch size")->capture_default_str()->check(CLI::Range(1, 1 << 20));
  CLI11_PARSE(app, argc, argv);

  // lmf::lmf links OpenMP when it is found, which also turns on Eigen's multi-threaded matrix
  // products in this program. For these small products (128 x 784 x 256) threads gain little,
  // and on a busy machine OpenMP's waiting threads can make a run many times slower, so the
  // model runs on one thread: the run time stays predictable. (lmf itself only threads
  // batches of 32K+ logits; this example's batches have 1,280.)
  Eigen::setNbThreads(1);

  try {
    return run(s);
  } catch (const MissingData& e) {
    std::cerr << "fashion_lt: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "fashion_lt: error: " << e.what() << "\n";
    return 1;
  }
}
