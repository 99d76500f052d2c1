"""lmf_torch: lmf's losses for class-imbalanced classification as torch.nn.Modules.

Each module computes the loss and its analytic gradient with respect to the logits in one fused
C++ pass (forward), and hands the gradient to autograd (backward multiplies it by the upstream
gradient). Logits: float32 or float64, (N, C) or (N, C, d1, ...), any strides, on the CPU, or
on a CUDA device (also float16 and bfloat16; when the extension was built with CUDA, see
cuda_built: lmf's CUDA kernels, on the current stream); labels: int64 or int32, (N, d1, ...), on
the logits' device. Bad input raises ValueError with lmf's message (an error
inside backward reaches Python as RuntimeError, autograd's type).

    import lmf_torch
    loss_fn = lmf_torch.LMFLoss(counts, gamma=2.0, class_weights=None, ignore_index=-100, reduction="mean")
    loss = loss_fn(logits, labels)
    loss.backward()

Build: `bash scripts/torch.sh` (prints the directory to put on PYTHONPATH).
"""
import torch

import lmf_torch_C as _C

__all__ = ["CrossEntropyLoss", "FocalLoss", "LDAMLoss", "LMFLoss", "LogitAdjustedLoss", "BalancedSoftmaxLoss",
           "VSLoss", "version", "simd_isa", "cpu_simd_isa", "cuda_built"]
version = _C.version
simd_isa = _C.simd_isa  # the CPU kernels' instruction set, chosen at run time: 'avx512', 'avx2', 'sse2'
cpu_simd_isa = _C.cpu_simd_isa
cuda_built = _C.cuda_built  # True if this build takes CUDA tensors (built where PyTorch and nvcc had CUDA)


def _values(v, cast):
    """A list from a list, tuple, NumPy array or tensor (None stays None)."""
    if v is None:
        return None
    if isinstance(v, torch.Tensor):
        v = v.detach().cpu().reshape(-1).tolist()
    elif hasattr(v, "reshape") and hasattr(v, "tolist"):  # NumPy
        v = v.reshape(-1).tolist()
    elif hasattr(v, "tolist"):
        v = v.tolist()
    if not hasattr(v, "__iter__"):
        raise ValueError(f"lmf: expected one value per class, got {v!r}")
    return [cast(x) for x in v]


class _Loss(torch.nn.Module):
    """Common part: the C++ loss by name, and forward."""

    def __init__(self, kind, counts=None, **options):
        super().__init__()
        if "class_weights" in options:
            options["class_weights"] = _values(options["class_weights"], float)
        self.kind = kind
        self._impl = _C.Loss(kind, _values(counts, int) or [], options)

    @classmethod
    def _preset(cls, kind, counts=None, **options):
        obj = cls.__new__(cls)
        _Loss.__init__(obj, kind, counts, **options)
        return obj

    def forward(self, logits, labels, totals=None):
        """The loss (differentiable in the logits). `totals`: this loss's totals summed over every
        shard of a data-parallel batch (see totals); the shards' values then add up to the whole
        batch's value."""
        if totals is None:
            return self._impl.forward(logits, labels)
        return self._impl.forward(logits, labels, totals)

    def set_class_weights(self, class_weights):
        """Replaces the class weights (e.g. each epoch, for LDAM-DRW's deferred re-weighting)."""
        self._impl.set_class_weights(_values(class_weights, float))

    def totals(self, logits, labels):
        """This shard's totals (a float64 tensor): what the reduction divides by, and the batch-mean
        terms' sums. All-reduce them (torch.distributed.all_reduce, sum), then pass them to forward.
        Each shard's value is then its share of the whole batch's loss, and its gradient its rows of
        the whole batch's gradient: with DistributedDataParallel, which averages gradients over the
        ranks, multiply the loss by the world size."""
        return self._impl.totals(logits, labels)

    def extra_repr(self):
        return self.kind


class CrossEntropyLoss(_Loss):
    """torch.nn.CrossEntropyLoss: class_weights, ignore_index, reduction, label_smoothing."""

    def __init__(self, **options):
        super().__init__("CrossEntropyLoss", None, **options)


class FocalLoss(_Loss):
    """Focal loss (Lin et al.): gamma (2), class_weights, ignore_index, reduction,
    mean_over ("target_weights" or "rows")."""

    def __init__(self, **options):
        super().__init__("FocalLoss", None, **options)

    @classmethod
    def repo_code(cls, alpha=None, gamma=2.0, reduction="mean", ignore_index=-100):
        """The focal-loss repositories' convention (alpha_y per row, mean over the counted rows);
        alpha is one value per class (a scalar alpha of binary focal code is not this loss)."""
        return cls._preset("FocalLoss.repo_code", None, class_weights=alpha, gamma=gamma, reduction=reduction,
                           ignore_index=ignore_index)

    @classmethod
    def ldam_drw_code(cls, class_weights=None, gamma=1.0, ignore_index=-100):
        """LDAM-DRW's focal loss (the class weight inside the modulation, mean over every row)."""
        return cls._preset("FocalLoss.ldam_drw_code", None, class_weights=class_weights, gamma=gamma,
                           ignore_index=ignore_index)


class LDAMLoss(_Loss):
    """LDAM (Cao et al.): counts; max_m (0.5), s (30), class_weights, ignore_index, reduction,
    label_smoothing."""

    def __init__(self, counts, **options):
        super().__init__("LDAMLoss", counts, **options)


class LMFLoss(_Loss):
    """LMF (arXiv 2212.12741) = ldam_weight * LDAM + focal_weight * Focal: counts; gamma (2),
    max_m (0.5), s (30), ldam_weight (1), focal_weight (1), class_weights, ignore_index,
    reduction."""

    def __init__(self, counts, **options):
        super().__init__("LMFLoss", counts, **options)

    @classmethod
    def official_code(cls, counts, ignore_index=-100):
        """The paper's code: 1.5 LDAM + 1.0 Focal (gamma 1.5), margins as class weights."""
        return cls._preset("LMFLoss.official_code", counts, ignore_index=ignore_index)

    @classmethod
    def seed_code(cls, counts, class_weights=None, ignore_index=-100):
        """The widely copied seed code: focal on the batch-mean cross entropy + LDAM."""
        return cls._preset("LMFLoss.seed_code", counts, class_weights=class_weights, ignore_index=ignore_index)

    @classmethod
    def seed_code_2024(cls, counts, class_weights=None, ignore_index=-100):
        """The seed code's 2024 revision: 0.2 Focal (batch mean) + 0.2 LDAM (s 5, max_m 0.8)."""
        return cls._preset("LMFLoss.seed_code_2024", counts, class_weights=class_weights, ignore_index=ignore_index)


class LogitAdjustedLoss(_Loss):
    """Logit adjustment (Menon et al.): counts; tau (1), class_weights, ignore_index, reduction,
    label_smoothing."""

    def __init__(self, counts, **options):
        super().__init__("LogitAdjustedLoss", counts, **options)


class BalancedSoftmaxLoss(_Loss):
    """Balanced softmax (Ren et al.): counts; class_weights, ignore_index, reduction, label_smoothing."""

    def __init__(self, counts, **options):
        super().__init__("BalancedSoftmaxLoss", counts, **options)


class VSLoss(_Loss):
    """Vector-scaling loss (Kini et al.): counts; gamma (0.3), tau (1), class_weights, ignore_index,
    reduction, label_smoothing."""

    def __init__(self, counts, **options):
        super().__init__("VSLoss", counts, **options)
