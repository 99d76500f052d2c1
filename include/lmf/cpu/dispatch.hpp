// lmf/cpu/dispatch.hpp — the CPU backend's one entry point: a batch, a loss and its outputs in;
// validation (validate.hpp), totals, the plan's scales (plan.hpp) and the kernels over fixed
// blocks (blocks.hpp) in that order, so that nothing is written unless everything is valid:
//   1. shapes, strides and buffers (limits, overflow, overlaps);  2. every label (in range or
//   ignore_index), and this batch's totals (each term's denominator);  3. the caller's totals,
//   if given;  4. when any output buffer is given: every logit of a counted row is finite and
//   small enough that s * (a x - m) + b cannot overflow (for the rows kernel this pass also
//   keeps each row's largest non-target logit, which the kernel then needs not find);  5. batch-mean terms (seed-code preset)
//   without totals from the caller: a value-only pass for their cross-entropy sums;  6. the
//   fused pass with the plan's scales.
// A value-only call skips step 4: the kernel flags blocks with bad logits as it reads them (one
// compare per logit), blocks after the first bad one are skipped, and that block's rows are then
// scanned for the culprit to name it.
#pragma once

#include <lmf/cpu/blocks.hpp>
#include <lmf/cpu/validate.hpp>
#include <lmf/plan.hpp>
#include <lmf/spec.hpp>

#include <algorithm>
#include <array>

namespace lmf {
namespace detail {

/// What a call asks for beyond its outputs: totals summed over shards (null: this batch is the
/// whole batch) and a factor on the gradient (autograd's grad_output).
template <class T>
struct CallOptions {
  const Totals* totals = nullptr;
  T grad_scale = T(1);
};

template <class T, class L>
KernelArgs<T, L> kernel_args(const LossSpec<T>& spec, const T* x, const Layout& lx, const L* labels,
                             Index label_stride, const TermParams<T>* params, const T* weights, T limit) {
  KernelArgs<T, L> k;
  k.x = x;
  k.lx = lx;
  k.labels = labels;
  k.label_stride = label_stride;
  k.ignore_index = spec.ignore_index;
  k.terms = params;
  k.term_weights = weights;
  k.n_terms = static_cast<int>(spec.terms.size());
  k.limit = limit;
  return k;
}

/// The Status of a run_blocks call: allocation failure, or the first bad logit of its first bad
/// block (only reachable without outputs: writing paths check every logit beforehand).
template <class T, class L>
Status block_status(const BlockRun& run, const LossSpec<T>& spec, const T* x, const Layout& lx, const L* labels,
                    Index label_stride, T limit) {
  if (!run.allocated) return Status::error(message("cannot allocate the kernel's scratch buffers"));
  if (run.first_bad_block < 0) return {};
  const Index block = block_rows(lx.classes), begin = run.first_bad_block * block;
  Status s = find_bad_logit(spec, x, lx, labels, label_stride, limit, begin, std::min(lx.rows(), begin + block));
  return s ? Status::error(message("non-finite logits")) : s;
}

/// Step 5: the cross-entropy sums of the batch-mean terms (a value-only pass, which also checks
/// their logits), into `totals` whose denominators check_labels has filled; their means M too.
template <class T, class L>
Status batch_sums(const LossSpec<T>& spec, const T* x, const Layout& lx, const L* labels, Index label_stride,
                  Totals& totals, std::array<Accum, kMaxTerms>& means) {
  bool any_batch = false;
  for (const Term<T>& t : spec.terms) any_batch |= focused_on_batch(t);
  if (!any_batch) return {};
  std::array<TermParams<T>, kMaxTerms> params{};
  std::array<T, kMaxTerms> weights{};
  plan_terms(spec, lx.classes, Reduction::mean, totals, T(1), params, weights);
  const T limit = logit_limit(spec);
  const KernelArgs<T, L> k = kernel_args(spec, x, lx, labels, label_stride, params.data(), weights.data(), limit);
  std::array<Accum, kMaxTerms> sums{};
  const BlockRun run = run_blocks(k, choose_kernel(spec, lx, Outputs<T>{}), spec.threads, sums);
  if (Status s = block_status(run, spec, x, lx, labels, label_stride, limit); !s) return s;
  std::size_t b = spec.terms.size();
  for (std::size_t t = 0; t < spec.terms.size(); ++t) {  // sums are M = S / D: S = M * D
    if (!focused_on_batch(spec.terms[t])) continue;
    means[t] = sums[t];
    totals[b++] = sums[t] * totals[t];
  }
  return {};
}

/// This batch's totals, validating labels and logits (Loss::totals).
template <class T, class L>
Status compute_totals(const LossSpec<T>& spec, const T* x, const Layout& lx, const L* labels, Index label_stride,
                      Totals& out) {
  if (Status s = check_buffers(spec, x, lx, labels, label_stride, Outputs<T>{}); !s) return s;
  Totals totals(totals_size(spec));
  Index counted = 0;
  if (Status s = check_labels(spec, lx, labels, label_stride, totals, counted); !s) return s;
  std::array<Accum, kMaxTerms> means{};
  if (Status s = batch_sums(spec, x, lx, labels, label_stride, totals, means); !s) return s;
  // S = M * D cannot carry M's digits when D is subnormal (double class weights below ~1e-270
  // in a seed-code preset): refuse rather than return totals that would change the value
  for (std::size_t t = 0; t < spec.terms.size(); ++t)
    if (focused_on_batch(spec.terms[t]) && totals[t] > 0 && totals[t] < 0x1p-900)
      return Status::error(message("totals: term ", t, "'s denominator ", totals[t],
                                   " is below 2^-900, too small to carry its cross-entropy sum (class weights "
                                   "this small need one process: call value_and_gradient without totals)"));
  out = totals;
  return {};
}

/// Evaluates `spec` on a batch with `reduction` (which overrides spec.reduction, so that per-row
/// calls need no copy of the spec). `value` receives the reduced loss (for reduction none: the
/// sum of the per-row values). Writes nothing and returns an error status if anything is invalid.
/// Never throws.
template <class T, class L>
Status evaluate(const LossSpec<T>& spec, Reduction reduction, const T* x, const Layout& lx, const L* labels,
                Index label_stride, const Outputs<T>& out, const CallOptions<T>& options, T& value) {
  // 1. shapes and buffers
  if (Status s = check_buffers(spec, x, lx, labels, label_stride, out); !s) return s;
  if (!std::isfinite(options.grad_scale))
    return Status::error(message("grad_scale is ", options.grad_scale, " (must be finite)"));

  // 2. labels and this batch's denominators; 3. the caller's totals
  Totals local(totals_size(spec));
  Index counted = 0;
  if (Status s = check_labels(spec, lx, labels, label_stride, local, counted); !s) return s;
  if (options.totals)
    if (Status s = check_totals(spec, *options.totals, local); !s) return s;

  // 4. logits, when something will be written. For the rows kernel this pass also keeps each
  // row's largest non-target logit, which the kernel would otherwise sweep the row for again, and
  // its target logit (two numbers per row).
  const T limit = logit_limit(spec);
  const bool writes = out.grad != nullptr || out.row_values != nullptr;
  const Kernel kernel = choose_kernel(spec, lx, out);
  AlignedBuffer<T> row_max(writes && kernel == Kernel::rows ? 2 * lx.rows() : 0);
  if (!row_max.ok()) return Status::error(message("cannot allocate the kernel's scratch buffers"));
  if (row_max.data()) {
    const KernelArgs<T, L> scan = kernel_args<T, L>(spec, x, lx, labels, label_stride, nullptr, nullptr, limit);
    if (!run_row_maxima(scan, spec.threads, row_max.data())) {
      Status s = find_bad_logit(spec, x, lx, labels, label_stride, limit, 0, lx.rows());
      return s ? Status::error(message("non-finite logits")) : s;
    }
  } else if (writes) {
    if (Status s = check_logits(spec, x, lx, labels, label_stride, limit); !s) return s;
  }

  // 5. batch-mean terms need their cross-entropy sums before any gradient is written
  std::array<Accum, kMaxTerms> means{};
  const bool own_means = !options.totals && totals_size(spec) > spec.terms.size();
  if (own_means)
    if (Status s = batch_sums(spec, x, lx, labels, label_stride, local, means); !s) return s;
  const Totals& totals = options.totals ? *options.totals : local;

  // 6. the fused pass with the plan's scales
  std::array<TermParams<T>, kMaxTerms> params{};
  std::array<T, kMaxTerms> weights{};
  plan_terms(spec, lx.classes, reduction, totals, options.grad_scale, params, weights, own_means ? &means : nullptr);
  if (Status s = check_params(spec, params); !s) return s;
  KernelArgs<T, L> k = kernel_args(spec, x, lx, labels, label_stride, params.data(), weights.data(), limit);
  k.grad = out.grad;
  k.lg = out.lg;
  k.row_values = out.row_values;
  k.row_values_stride = out.row_values_stride;
  k.row_max = row_max.data();
  k.logits_checked = writes;
  std::array<Accum, kMaxTerms> sums{};
  const BlockRun run = run_blocks(k, kernel, spec.threads, sums);
  if (Status s = block_status(run, spec, x, lx, labels, label_stride, limit); !s) return s;
  value = static_cast<T>(plan_value(spec, totals, sums, options.totals == nullptr, own_means ? &means : nullptr));
  return {};
}

}  // namespace detail
}  // namespace lmf
