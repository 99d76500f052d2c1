// lmf/cpu/sigmoid.hpp — the CPU backend of the sigmoid focal loss (sigmoid_focal.hpp): an
// elementwise loss, so the batch is cut into "lines", runs of elements that are contiguous in all
// buffers (a row of a row-major N x C matrix, a column of a column-major one, the pixels of one
// (sample, class) plane of an (N, C, d1, ...) tensor), each swept with SIMD batches: one exp, one
// log1p and one division per element (math/sigmoid.hpp's formulas on vectors). Other layouts go
// element by element through the scalar formulas, the reference the SIMD path is tested against.
// Lines are grouped into fixed blocks whose sums are added in block order: the value is bitwise
// the same for any thread count.
#pragma once

#include <lmf/cpu/blocks.hpp>
#include <lmf/cpu/isa_kernels.hpp>
#include <lmf/cpu/validate.hpp>
#include <lmf/math/sigmoid.hpp>

#include <algorithm>
#include <array>

namespace lmf {
namespace detail {

/// Where the buffers are: logits, targets, and the optional gradient and per-element values.
template <class T>
struct SigmoidBuffers {
  const T* x = nullptr;
  Layout lx;
  const T* t = nullptr;
  Layout lt;
  T* g = nullptr;
  Layout lg;
  T* v = nullptr;
  Layout lv;
};

/// How the elements are cut into lines (see the header comment). `flat`: every buffer is the
/// same dense row-major N x C block, swept as one run of N C elements in chunks of kFlatChunk
/// (short rows, C < 16, would otherwise leave the vectors mostly empty).
enum class LineMode { flat, rows, samples, pixels, scalar };

constexpr Index kFlatChunk = Index(1) << 14;

template <class T>
LineMode line_mode(const SigmoidBuffers<T>& b) {
  const Layout* ls[4] = {&b.lx, &b.lt, b.g ? &b.lg : nullptr, b.v ? &b.lv : nullptr};
  bool rows = true, samples = b.lx.inner == 1, pixels = b.lx.inner > 1;
  for (const Layout* l : ls) {
    if (!l) continue;
    rows &= l->class_stride == 1 || l->classes == 1;
    samples &= l->sample_stride == 1 || l->samples == 1;
    pixels &= l->inner_stride == 1;
  }
  bool flat = true;
  for (const Layout* l : ls)
    if (l) flat &= l->inner == 1 && l->class_stride == 1 && l->sample_stride == l->classes;
  if (flat) return LineMode::flat;
  if (rows && b.lx.classes > 1) return LineMode::rows;
  if (samples) return LineMode::samples;
  if (pixels) return LineMode::pixels;
  return rows ? LineMode::rows : LineMode::scalar;
}

/// Number of lines, and their length.
template <class T>
void line_shape(const SigmoidBuffers<T>& b, LineMode mode, Index& lines, Index& length) {
  const Layout& l = b.lx;
  switch (mode) {
    case LineMode::flat: lines = (l.rows() * l.classes + kFlatChunk - 1) / kFlatChunk, length = kFlatChunk; return;
    case LineMode::rows: lines = l.rows(), length = l.classes; return;
    case LineMode::samples: lines = l.classes, length = l.samples; return;
    case LineMode::pixels: lines = l.samples * l.classes, length = l.inner; return;
    case LineMode::scalar: lines = l.rows(), length = l.classes; return;
  }
}

/// Offset of the first element of line j in a buffer with layout l; `cls` gets the class of a
/// line whose elements share one (-1 for LineMode::rows and scalar: one class per element).
inline Index line_offset(const Layout& l, LineMode mode, Index j, Index& cls) {
  switch (mode) {
    case LineMode::flat: cls = -1; return j * kFlatChunk;
    case LineMode::samples: cls = j; return j * l.class_stride;
    case LineMode::pixels: cls = j % l.classes; return (j / l.classes) * l.sample_stride + cls * l.class_stride;
    default: cls = -1; return l.row_offset(j);
  }
}

/// Step of consecutive elements of a line in layout l (1 in the SIMD modes).
inline Index line_step(const Layout& l, LineMode mode) { return mode == LineMode::scalar ? l.class_stride : 1; }

/// Lines [begin, end): their value sum (times value_scale).
/// `wtile`: for LineMode::flat with class weights, w repeated to kFlatChunk + C entries (the
/// weights of a chunk starting at class k are wtile + k).
template <class T>
Accum sigmoid_lines(const SigmoidParams<T>& p, const SigmoidBuffers<T>& b, LineMode mode, Index begin, Index end,
                    Index length, bool force_scalar, const T* wtile) {
  Accum sum = 0;
  const bool simd_ok = mode != LineMode::scalar && !force_scalar;
  const Index total = b.lx.rows() * b.lx.classes, C = b.lx.classes;
  for (Index j = begin; j < end; ++j) {
    if (mode == LineMode::flat) {
      const Index start = j * kFlatChunk, n = std::min(kFlatChunk, total - start);
      sum += isa_sigmoid_line(p, b.x + start, b.t + start, b.g ? b.g + start : nullptr, b.v ? b.v + start : nullptr, n,
                          p.w ? wtile + start % C : nullptr, T(1), simd_ok, 1, 1, 1, 1);
      continue;
    }
    Index cls = -1;
    const Index ox = line_offset(b.lx, mode, j, cls);
    const Index ot = line_offset(b.lt, mode, j, cls);
    T* g = b.g ? b.g + line_offset(b.lg, mode, j, cls) : nullptr;
    T* v = b.v ? b.v + line_offset(b.lv, mode, j, cls) : nullptr;
    const T* w = cls < 0 ? p.w : nullptr;
    const T wc = cls >= 0 && p.w ? p.w[cls] : T(1);
    sum += isa_sigmoid_line(p, b.x + ox, b.t + ot, g, v, length, w, wc, simd_ok, line_step(b.lx, mode),
                        line_step(b.lt, mode), b.g ? line_step(b.lg, mode) : 0, b.v ? line_step(b.lv, mode) : 0);
  }
  return sum * p.value_scale;
}

/// The first logit that is not finite or target outside [0, 1] (row-major order), as a Status.
/// Swept line by line with SIMD first; only a failing batch is scanned element by element.
template <class T>
Status check_sigmoid_inputs(const SigmoidBuffers<T>& b, LineMode mode, Index lines, Index length) {
  const Layout &lx = b.lx, &lt = b.lt;
  bool all_ok = true;
  const Index total = lx.rows() * lx.classes;
  for (Index j = 0; j < lines && all_ok; ++j) {
    Index cls = -1;
    if (mode == LineMode::flat) {
      const Index start = j * kFlatChunk;
      all_ok = isa_sigmoid_inputs_ok(b.x + start, b.t + start, std::min(kFlatChunk, total - start), 1, 1);
    } else {
      all_ok = isa_sigmoid_inputs_ok(b.x + line_offset(lx, mode, j, cls), b.t + line_offset(lt, mode, j, cls), length,
                                 line_step(lx, mode), line_step(lt, mode));
    }
  }
  if (all_ok) return {};
  const Index rows = lx.rows(), C = lx.classes;
  for (Index i = 0; i < rows; ++i) {
    const T* x = b.x + lx.row_offset(i);
    const T* t = b.t + lt.row_offset(i);
    bool ok = true;
    for (Index c = 0; c < C; ++c) {
      const T xv = x[c * lx.class_stride], tv = t[c * lt.class_stride];
      ok &= std::abs(xv) <= std::numeric_limits<T>::max() && tv >= T(0) && tv <= T(1);
    }
    if (ok) continue;
    for (Index c = 0; c < C; ++c) {
      const T xv = x[c * lx.class_stride], tv = t[c * lt.class_stride];
      if (!(std::abs(xv) <= std::numeric_limits<T>::max()))
        return Status::error(message("logit at row ", i, ", class ", c, " is ", xv, " (must be finite)"));
      if (!(tv >= T(0) && tv <= T(1)))
        return Status::error(message("target at row ", i, ", class ", c, " is ", tv, " (must be in [0, 1])"));
    }
  }
  return {};
}

/// Shapes, strides and buffer overlaps of a sigmoid call.
template <class T>
Status check_sigmoid_buffers(const SigmoidBuffers<T>& b, Index classes) {
  if (Status s = check_layout(b.lx, "logits", limits::max_classes, limits::max_elements); !s) return s;
  if (classes != 0 && b.lx.classes != classes)
    return Status::error(message("logits have ", b.lx.classes, " classes but the loss has ", classes));
  auto same_shape = [&](const Layout& l, const char* what) -> Status {
    if (Status s = check_layout(l, what, limits::max_classes, limits::max_elements); !s) return s;
    if (l.samples != b.lx.samples || l.classes != b.lx.classes || l.inner != b.lx.inner)
      return Status::error(message(what, " are ", l.samples, "x", l.classes, " (inner ", l.inner, ") but logits are ",
                                   b.lx.samples, "x", b.lx.classes, " (inner ", b.lx.inner, ")"));
    return {};
  };
  if (Status s = same_shape(b.lt, "targets"); !s) return s;
  const Index elements = b.lx.rows() * b.lx.classes;
  if (elements > 0 && (b.x == nullptr || b.t == nullptr))
    return Status::error(message("null logits or targets pointer for a non-empty batch"));
  Index sx = 0, st = 0, sg = 0, sv = 0;
  layout_span(b.lx, limits::max_elements, sx);
  layout_span(b.lt, limits::max_elements, st);
  auto writable = [&](const T* p, const Layout& l, const char* what, Index& span) -> Status {
    if (Status s = same_shape(l, what); !s) return s;
    if (!non_overlapping(l) || (l.classes > 1 && l.class_stride == 0) || (l.samples > 1 && l.sample_stride == 0) ||
        (l.inner > 1 && l.inner_stride == 0))
      return Status::error(message(what, " layout maps two entries to one element"));
    layout_span(l, limits::max_elements, span);
    if (ranges_overlap(p, span, b.t, st)) return Status::error(message(what, " overlap the targets"));
    return {};
  };
  if (b.g) {
    if (Status s = writable(b.g, b.lg, "gradient entries", sg); !s) return s;
    const bool in_place = b.g == b.x && same_layout(b.lg, b.lx);
    if (!in_place && ranges_overlap(static_cast<const T*>(b.g), sg, b.x, sx))
      return Status::error(message("the gradient buffer overlaps the logits without being them (in place, the "
                                   "gradient must have the logits' pointer and layout)"));
  }
  if (b.v) {
    if (Status s = writable(b.v, b.lv, "per-element values", sv); !s) return s;
    if (ranges_overlap(static_cast<const T*>(b.v), sv, b.x, sx) ||
        (b.g && ranges_overlap(static_cast<const T*>(b.v), sv, static_cast<const T*>(b.g), sg)))
      return Status::error(message("per-element values overlap the logits or the gradient"));
  }
  return {};
}

/// Evaluates the sigmoid focal loss: validation first (nothing written on bad input), then the
/// lines in fixed blocks, on up to `threads` OpenMP threads. `sum` gets the sum of the values
/// times value_scale.
template <class T>
Status evaluate_sigmoid(const SigmoidParams<T>& p, const SigmoidBuffers<T>& b, Index classes, int threads,
                        bool force_scalar, Accum& sum) {
  if (Status s = check_sigmoid_buffers(b, classes); !s) return s;
  sum = 0;
  const LineMode mode = line_mode(b);
  Index lines = 0, length = 0;
  line_shape(b, mode, lines, length);
  if (lines == 0 || length == 0) return {};
  if (Status s = check_sigmoid_inputs(b, mode, lines, length); !s) return s;
  const Index per_block = std::max<Index>(1, (Index(1) << 14) / length);
  const Index blocks = (lines + per_block - 1) / per_block;
  AlignedBuffer<Accum> block_sums(blocks);
  const Index C = b.lx.classes;
  AlignedBuffer<T> wtile(mode == LineMode::flat && p.w ? kFlatChunk + C : 0);
  if (!block_sums.ok() || !wtile.ok()) return Status::error(message("cannot allocate the block sums"));
  if (mode == LineMode::flat && p.w)
    for (Index i = 0; i < kFlatChunk + C; ++i) wtile.data()[i] = p.w[i % C];
  // subnormals flushed on every thread (fp_env.hpp), unless a parameter is subnormal
  const bool flush = !(is_subnormal(p.alpha) || is_subnormal(p.gamma) || is_subnormal(p.value_scale) ||
                       is_subnormal(p.grad_scale) || any_subnormal(p.w, C));
  auto run = [&](Index k) {
    const Index begin = k * per_block, end = std::min(lines, begin + per_block);
    block_sums.data()[k] = sigmoid_lines(p, b, mode, begin, end, length, force_scalar, wtile.data());
  };
#if defined(_OPENMP)
  int team = 1;
  if (lines * length >= kParallelMinLogits)
    team = int(std::min<Index>(threads > 0 ? threads : omp_get_max_threads(), blocks));
  if (team > 1) {
#pragma omp parallel num_threads(team)
    {
      const FlushSubnormals no_subnormals(flush);
#pragma omp for schedule(static)
      for (Index k = 0; k < blocks; ++k) run(k);
    }
  } else
#else
  (void)threads;
#endif
  {
    const FlushSubnormals no_subnormals(flush);
    for (Index k = 0; k < blocks; ++k) run(k);
  }
  for (Index k = 0; k < blocks; ++k) sum += block_sums.data()[k];
  return {};
}

}  // namespace detail
}  // namespace lmf
