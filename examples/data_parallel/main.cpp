// data_parallel — lmf's data-parallel contract on a real engine, Open MPI.
//
// A long-tailed batch of Fashion-MNIST images goes through a fixed linear layer to logits; the
// rows are split unevenly over the ranks, and the last rank holds only ignored rows. Each rank:
//
//     lmf::Totals t = loss.totals(my_logits, my_labels);                  // this shard's part
//     MPI_Allreduce(MPI_IN_PLACE, t.data(), int(t.size()), MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
//     float v = loss.value_and_gradient(my_logits, my_labels, my_grad, t); // my rows of the gradient
//
// Rank 0 then checks, for LMF (paper defaults), the official-code and seed-code presets and LDAM
// with LDAM-DRW's class-balanced weights, in float and double: the ranks' values add up to the
// value one process computes on the whole batch, and the gathered gradient is its gradient.
// Exit code 0 if every loss matches (1e-5 relative in float, 1e-12 in double), 1 otherwise.
//
// Usage: mpirun -np 2 (or more) data_parallel [DATA_DIR]   (DATA_DIR: /usr/share/datasets/fashion-mnist)
#include <lmf/lmf.hpp>  // first: its compiler workarounds must see <immintrin.h> first

#include "../fashion_lt/idx.hpp"

#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace {

constexpr int kClasses = 10;

template <class T>
using MatR = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// Rows [begin, end) of rank r out of p: uneven slices (shares 5, 3, 2, 1, ...), the last rank
/// gets the batch's last 7 rows, which are all ignored.
std::pair<Eigen::Index, Eigen::Index> slice(int r, int p, Eigen::Index n) {
  const Eigen::Index tail = p > 1 ? 7 : 0;
  std::vector<double> share;
  for (int k = 0; k < p - 1; ++k) share.push_back(std::max(1.0, 5.0 - 2.0 * k));
  double total = 0;
  for (double s : share) total += s;
  std::vector<Eigen::Index> cut = {0};
  double acc = 0;
  for (double s : share) {
    acc += s;
    cut.push_back(Eigen::Index(std::floor(double(n - tail) * acc / total)));
  }
  if (p == 1) return {0, n};
  if (r == p - 1) return {n - tail, n};
  return {cut[std::size_t(r)], cut[std::size_t(r) + 1]};
}

struct Batch {
  MatR<double> logits;  // N x 10
  Eigen::VectorXi labels;
  Eigen::VectorXi counts;  // long-tailed training class counts (for margins and weights)
};

/// A long-tailed batch (class c has about 60 * 100^(-c/9) rows, CIFAR-10-LT's profile), through a
/// fixed random linear layer; 5% of the labels and the last 7 rows set to ignore_index -100.
Batch make_batch(const std::string& dir) {
  const fashion::ImageMatrix images = fashion::read_idx_images(dir + "/train-images-idx3-ubyte.gz");
  const Eigen::VectorXi labels = fashion::read_idx_labels(dir + "/train-labels-idx1-ubyte.gz");
  Batch b;
  b.counts.resize(kClasses);
  std::vector<int> want(kClasses);
  for (int c = 0; c < kClasses; ++c) {
    b.counts(c) = int(std::floor(6000 * std::pow(100.0, -c / 9.0)));
    want[std::size_t(c)] = std::max(1, b.counts(c) / 100);
  }
  std::vector<Eigen::Index> rows;
  for (Eigen::Index i = 0; i < labels.size(); ++i)
    if (want[std::size_t(labels(i))]-- > 0) rows.push_back(i);
  std::mt19937_64 rng(7);
  std::normal_distribution<double> normal(0.0, 0.05);
  MatR<double> w(images.cols(), kClasses);
  for (Eigen::Index k = 0; k < w.size(); ++k) w.data()[k] = normal(rng);
  const Eigen::Index n = Eigen::Index(rows.size());
  b.logits.resize(n, kClasses);
  b.labels.resize(n);
  for (Eigen::Index i = 0; i < n; ++i) {
    b.logits.row(i) = images.row(rows[std::size_t(i)]).cast<double>() * w;
    b.labels(i) = labels(rows[std::size_t(i)]);
    if (i % 20 == 7 || i >= n - 7) b.labels(i) = -100;
  }
  return b;
}

template <class T>
MPI_Datatype mpi_type() {
  return sizeof(T) == 8 ? MPI_DOUBLE : MPI_FLOAT;
}

/// One loss, data parallel over the ranks, checked on rank 0 against the whole batch.
template <class T>
bool check(const char* name, const lmf::Loss<T>& loss, const Batch& batch, int rank, int ranks) {
  const Eigen::Index n = batch.logits.rows();
  const MatR<T> x = batch.logits.template cast<T>();
  const auto [begin, end] = slice(rank, ranks, n);
  const Eigen::Index rows = end - begin;
  const auto my_x = x.middleRows(begin, rows);
  const auto my_y = batch.labels.segment(begin, rows);

  lmf::Totals t = loss.totals(my_x, my_y);  // this shard's part of the denominators
  MPI_Allreduce(MPI_IN_PLACE, t.data(), int(t.size()), MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  MatR<T> my_g(rows, kClasses);
  double v = double(loss.value_and_gradient(my_x, my_y, my_g, t));
  MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);

  std::vector<int> counts(static_cast<std::size_t>(ranks)), displs(static_cast<std::size_t>(ranks));
  for (int r = 0; r < ranks; ++r) {
    const auto [b, e] = slice(r, ranks, n);
    counts[std::size_t(r)] = int((e - b) * kClasses);
    displs[std::size_t(r)] = int(b * kClasses);
  }
  MatR<T> g(n, kClasses);
  MPI_Gatherv(my_g.data(), int(rows * kClasses), mpi_type<T>(), g.data(), counts.data(), displs.data(), mpi_type<T>(),
              0, MPI_COMM_WORLD);
  int ok = 1;
  if (rank == 0) {
    MatR<T> g_ref(n, kClasses);
    const double v_ref = double(loss.value_and_gradient(x, batch.labels, g_ref));
    const double ev = std::abs(v - v_ref) / std::abs(v_ref);
    const double scale = double(g_ref.cwiseAbs().maxCoeff());
    const double eg = double((g - g_ref).cwiseAbs().maxCoeff()) / scale;
    const double tol = sizeof(T) == 8 ? 1e-12 : 1e-5;
    ok = ev <= tol && eg <= tol;
    std::printf("%-28s %-6s  value %.9g (one process %.9g)  rel. error: value %.1e, gradient %.1e  %s\n", name,
                sizeof(T) == 8 ? "double" : "float", v, v_ref, ev, eg, ok ? "ok" : "MISMATCH");
  }
  MPI_Bcast(&ok, 1, MPI_INT, 0, MPI_COMM_WORLD);
  return ok != 0;
}

template <class T>
bool check_all(const Batch& b, int rank, int ranks) {
  const lmf::Vector<T> drw = lmf::class_balanced_weights<T>(b.counts, 0.9999);
  typename lmf::LDAMLoss<T>::Options ldam;
  ldam.class_weights = drw;
  bool ok = true;
  ok &= check("LMF (paper defaults)", lmf::LMFLoss<T>(b.counts), b, rank, ranks);
  ok &= check("LMF official_code", lmf::LMFLoss<T>::official_code(b.counts), b, rank, ranks);
  ok &= check("LMF seed_code (weighted)", lmf::LMFLoss<T>::seed_code(b.counts, drw), b, rank, ranks);
  ok &= check("LDAM, DRW weights", lmf::LDAMLoss<T>(b.counts, ldam), b, rank, ranks);
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, ranks = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  const std::string dir = argc > 1 ? argv[1] : "/usr/share/datasets/fashion-mnist";
  int code = 0;
  try {
    const Batch batch = make_batch(dir);
    if (rank == 0) {
      std::printf("data_parallel: %d ranks, a long-tailed batch of %ld rows (%ld ignored); rows per rank:",
                  ranks, long(batch.labels.size()), long((batch.labels.array() == -100).count()));
      for (int r = 0; r < ranks; ++r) {
        const auto [b, e] = slice(r, ranks, batch.labels.size());
        std::printf(" %ld", long(e - b));
      }
      std::printf(" (the last rank's rows are all ignored)\n");
    }
    const bool ok = check_all<float>(batch, rank, ranks) & check_all<double>(batch, rank, ranks);
    if (rank == 0) std::printf(ok ? "data_parallel: every loss matches one process\n" : "data_parallel: MISMATCH\n");
    code = ok ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "data_parallel (rank %d): %s\n", rank, e.what());
    code = 2;
  }
  MPI_Finalize();
  return code;
}
