"""lmf_torch against the published formulas written in torch ops (tests/make_golden.py, the same
functions that make the C++ suite's golden values), with autograd's gradients; gradcheck; (N, C,
H, W) inputs and strided logits; ignore_index; the upstream gradient; errors.

Run: PYTHONPATH=$(bash scripts/torch.sh | tail -1) python3 -m pytest -q python/tests
"""
import os
import sys

import numpy as np
import pytest
import torch

import lmf_torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tests"))
import make_golden as ref  # noqa: E402  (sets torch's default dtype to float64)

COUNTS = [2000, 700, 250, 90, 30, 12, 5]
C = len(COUNTS)


def batch(n=96, dtype=torch.float64, seed=0, ignore=-100):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(n, C, generator=g, dtype=torch.float64) * 2).to(dtype)
    y = torch.randint(0, C, (n,), generator=g)
    y[::9] = ignore
    x[1, y[1]] += 12  # a confident row
    return x, y


def weights():
    return torch.as_tensor(ref.class_balanced(COUNTS, 0.999))


def reference(kind, x, y, reduction="mean", ignore=-100):
    w = weights()
    m = ref.margins(COUNTS, 0.5)
    if kind == "ce":
        return torch.nn.functional.cross_entropy(x, y, weight=w, ignore_index=ignore, reduction=reduction)
    if kind == "ce_smooth":
        return torch.nn.functional.cross_entropy(x, y, ignore_index=ignore, reduction=reduction, label_smoothing=0.1)
    if kind == "focal":
        return ref.focal(x, y, 2.0, w, ignore, reduction)
    if kind == "ldam":
        return ref.ldam(x, y, m, 30.0, w, ignore, reduction)
    if kind == "lmf":
        return ref.ldam(x, y, m, 30.0, w, ignore, reduction) + ref.focal(x, y, 2.0, w, ignore, reduction)
    if kind == "lmf_official":
        mw = torch.as_tensor(m)
        return 1.5 * ref.ldam(x, y, m, 30.0, mw, ignore, "mean") + ref.focal(x, y, 1.5, mw, ignore, "mean", True)
    if kind == "lmf_seed":
        return ref.seed_focal(x, y, 2.0, w, ignore) + ref.ldam(x, y, m, 30.0, w, ignore, "mean")
    if kind == "la":
        return torch.nn.functional.cross_entropy(x + torch.log(ref.priors(COUNTS)), y, ignore_index=ignore,
                                                 reduction=reduction)
    if kind == "bs":
        z = x + torch.log(torch.as_tensor(np.asarray(COUNTS, dtype=np.float64)))
        return torch.nn.functional.cross_entropy(z, y, ignore_index=ignore, reduction=reduction)
    if kind == "vs":
        temp = (1.0 / np.asarray(COUNTS, dtype=np.float64)) ** 0.3
        z = x / torch.as_tensor(temp / np.min(temp)) + torch.log(ref.priors(COUNTS))
        return torch.nn.functional.cross_entropy(z, y, ignore_index=ignore, reduction=reduction)
    raise ValueError(kind)


def module(kind, reduction="mean", ignore=-100):
    w = weights()
    if kind == "ce":
        return lmf_torch.CrossEntropyLoss(class_weights=w, ignore_index=ignore, reduction=reduction)
    if kind == "ce_smooth":
        return lmf_torch.CrossEntropyLoss(label_smoothing=0.1, ignore_index=ignore, reduction=reduction)
    if kind == "focal":
        return lmf_torch.FocalLoss(gamma=2.0, class_weights=w, ignore_index=ignore, reduction=reduction)
    if kind == "ldam":
        return lmf_torch.LDAMLoss(COUNTS, class_weights=w, ignore_index=ignore, reduction=reduction)
    if kind == "lmf":
        return lmf_torch.LMFLoss(COUNTS, class_weights=w, ignore_index=ignore, reduction=reduction)
    if kind == "lmf_official":
        return lmf_torch.LMFLoss.official_code(COUNTS, ignore_index=ignore)
    if kind == "lmf_seed":
        return lmf_torch.LMFLoss.seed_code(np.asarray(COUNTS), class_weights=w.numpy(), ignore_index=ignore)
    if kind == "la":
        return lmf_torch.LogitAdjustedLoss(COUNTS, ignore_index=ignore, reduction=reduction)
    if kind == "bs":
        return lmf_torch.BalancedSoftmaxLoss(COUNTS, ignore_index=ignore, reduction=reduction)
    if kind == "vs":
        return lmf_torch.VSLoss(COUNTS, ignore_index=ignore, reduction=reduction)
    raise ValueError(kind)


KINDS = ["ce", "ce_smooth", "focal", "ldam", "lmf", "lmf_official", "lmf_seed", "la", "bs", "vs"]
MEAN_ONLY = ("lmf_official", "lmf_seed")


def rel(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-300)).item()


def elementwise(a, b):
    return ((a - b).abs() / (b.abs() + 1e-6 * b.abs().max())).max().item()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_parity_with_published_formulas(kind, reduction, dtype):
    if kind in MEAN_ONLY and reduction != "mean":
        pytest.skip("the preset defines the mean only")
    x, y = batch()
    xr = x.clone().requires_grad_()
    r = reference(kind, xr, y, reduction)
    upstream = torch.linspace(0.5, 1.5, x.shape[0], dtype=torch.float64) if reduction == "none" else None
    (r * upstream).sum().backward() if upstream is not None else r.backward()
    xl = x.to(dtype).requires_grad_()
    v = module(kind, reduction)(xl, y)
    assert v.dtype == dtype
    (v * upstream.to(dtype)).sum().backward() if upstream is not None else v.backward()
    tol = 1e-10 if dtype == torch.float64 else 2e-5
    assert rel(v.double(), r.detach()) <= tol
    assert rel(xl.grad.double(), xr.grad) <= tol
    assert elementwise(xl.grad.double(), xr.grad) <= 100 * tol


@pytest.mark.parametrize("kind", ["lmf", "focal", "ce_smooth", "lmf_official", "vs"])
def test_gradcheck(kind):
    x, y = batch(n=12, seed=3)
    x = (x / 4).requires_grad_()
    f = module(kind)
    assert torch.autograd.gradcheck(lambda t: f(t, y), (x,))


def test_nchw_and_strided_logits():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(3, C, 4, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, C, (3, 4, 5), generator=g)
    y[0, 1, 2] = -100
    xr = x.clone().requires_grad_()
    r = torch.nn.functional.cross_entropy(xr, y, weight=weights())
    r.backward()
    for variant in ("contiguous", "channels_last", "sliced"):
        if variant == "contiguous":
            xv = x.clone()
        elif variant == "channels_last":
            xv = x.clone().to(memory_format=torch.channels_last)
        else:  # every other pixel of a wider tensor: not dense
            wide = torch.zeros(3, C, 4, 10, dtype=torch.float64)
            wide[..., ::2] = x
            xv = wide[..., ::2]
        xv.requires_grad_()
        v = lmf_torch.CrossEntropyLoss(class_weights=weights())(xv, y)
        v.backward()
        assert rel(v, r.detach()) <= 1e-12, variant
        assert rel(xv.grad, xr.grad) <= 1e-12, variant


def test_column_major_logits_and_int32_labels():
    x, y = batch(seed=7)
    xt = x.t().contiguous().t().requires_grad_()  # column-major (N, C)
    assert not xt.is_contiguous()
    v = module("lmf")(xt, y.to(torch.int32))
    v.backward()
    xr = x.clone().requires_grad_()
    reference("lmf", xr, y).backward()
    assert rel(xt.grad, xr.grad) <= 1e-10


def test_ignore_index_inside_the_classes():
    x, y = batch(seed=9, ignore=2)
    xr = x.clone().requires_grad_()
    reference("lmf", xr, y, ignore=2).backward()
    xl = x.clone().requires_grad_()
    module("lmf", ignore=2)(xl, y).backward()
    assert rel(xl.grad, xr.grad) <= 1e-10
    assert (xl.grad[y == 2] == 0).all()


def test_upstream_gradient_scales():
    x, y = batch(seed=11)
    f = module("lmf")
    a = x.clone().requires_grad_()
    f(a, y).backward()
    b = x.clone().requires_grad_()
    (3.0 * f(b, y)).backward()
    assert torch.allclose(b.grad, 3.0 * a.grad, rtol=1e-14, atol=0)


def test_errors():
    x, y = batch()
    bad = y.clone()
    bad[5] = C
    with pytest.raises(ValueError, match=r"label 7 at row 5 is outside \[0, 7\)"):
        module("lmf")(x, bad)
    xn = x.clone()
    xn[2, 3] = float("nan")
    with pytest.raises(ValueError, match="row 2, class 3"):
        module("lmf")(xn.requires_grad_(), y)
    with pytest.raises(ValueError, match="unknown option 'gama'"):
        lmf_torch.LMFLoss(COUNTS, gama=2.0)
    with pytest.raises(ValueError, match="class 1 has count 0|count"):
        lmf_torch.LMFLoss([5, 0, 3])
    with pytest.raises(ValueError, match="labels have shape"):
        module("ce")(x, y[:-1])
    with pytest.raises(ValueError, match="float32 or float64"):
        module("ce")(x.half(), y)


def test_double_backward_is_an_error():
    x, y = batch(n=8)
    x.requires_grad_()
    v = module("lmf")(x, y)
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad(v, x, create_graph=True)


def test_no_grad_and_module_api():
    x, y = batch()
    f = lmf_torch.LMFLoss(torch.tensor(COUNTS), gamma=1.5, reduction="sum")
    assert isinstance(f, torch.nn.Module)
    with torch.no_grad():
        v = f(x.requires_grad_(), y)
    assert v.grad_fn is None and v.dim() == 0


def test_expanded_and_overlapping_logits():
    base = torch.randn(1, C, dtype=torch.float64, requires_grad=True)
    y = torch.arange(12) % C
    v = module("lmf")(base.expand(12, C), y)  # stride 0: read as is, the gradient from a copy
    v.backward()
    ref_base = base.detach().clone().requires_grad_()
    reference("lmf", ref_base.expand(12, C), y).backward()
    assert rel(base.grad, ref_base.grad) <= 1e-10


def test_retained_graph_gives_independent_gradients():
    x, y = batch(n=20)
    x.requires_grad_()
    v = module("lmf")(x, y)
    (g1,) = torch.autograd.grad(v, x, retain_graph=True)
    (g2,) = torch.autograd.grad(v, x)
    assert torch.equal(g1, g2) and g1.data_ptr() != g2.data_ptr()


def test_retained_graph_with_scaled_grad_outputs():
    # the first backward scales the saved gradient in place; later ones rescale it
    x, y = batch(n=20)
    x.requires_grad_()
    v = module("lmf")(x, y)
    (g1,) = torch.autograd.grad(v, x, grad_outputs=torch.tensor(0.5, dtype=v.dtype), retain_graph=True)
    (g2,) = torch.autograd.grad(v, x, grad_outputs=torch.tensor(2.0, dtype=v.dtype), retain_graph=True)
    (g3,) = torch.autograd.grad(v, x, grad_outputs=torch.tensor(0.5, dtype=v.dtype))
    assert torch.allclose(g2, 4.0 * g1, rtol=1e-15, atol=0)
    assert torch.equal(g3, g1) and g3.data_ptr() != g1.data_ptr()
    xr = x.detach().clone().requires_grad_()
    reference("lmf", xr, y).backward(torch.tensor(2.0, dtype=v.dtype))
    assert rel(g2, xr.grad) <= 1e-10
    # after a first grad_output of 0, the saved gradient is gone: a clear error
    v = module("lmf")(x, y)
    torch.autograd.grad(v, x, grad_outputs=torch.tensor(0.0, dtype=v.dtype), retain_graph=True)
    with pytest.raises(RuntimeError, match="second backward through an lmf loss after a first grad_output of 0"):
        torch.autograd.grad(v, x)
    # the first gradient clipped in place, then a second backward: autograd's error, not the
    # clipped values (torch.autograd.grad hands out the saved tensor itself)
    v = module("lmf")(x, y)
    (g,) = torch.autograd.grad(v, x, grad_outputs=torch.tensor(0.5, dtype=v.dtype), retain_graph=True)
    g.mul_(0.1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        torch.autograd.grad(v, x)
    # .backward(retain_graph=True) accumulates a copy into x.grad: clipping it changes nothing saved
    x.grad = None
    v = module("lmf")(x, y)
    v.backward(retain_graph=True)
    first = x.grad.clone()
    x.grad.mul_(0.1)
    (again,) = torch.autograd.grad(v, x)
    assert torch.equal(again, first)


def test_saved_tensor_hooks_that_copy():
    # hooks that unpack a new copy each time (as save_on_cpu may): nothing is scaled in place,
    # so a retained graph's second backward is still exact
    x, y = batch(n=20)
    x.requires_grad_()
    with torch.autograd.graph.saved_tensors_hooks(lambda t: t.clone(), lambda t: t.clone()):
        v = module("lmf")(x, y)
    (g1,) = torch.autograd.grad(v, x, grad_outputs=torch.tensor(0.5, dtype=v.dtype), retain_graph=True)
    (g2,) = torch.autograd.grad(v, x, grad_outputs=torch.tensor(2.0, dtype=v.dtype))
    xr = x.detach().clone().requires_grad_()
    reference("lmf", xr, y).backward()
    assert rel(g1, 0.5 * xr.grad) <= 1e-10
    assert rel(g2, 2.0 * xr.grad) <= 1e-10


def test_set_class_weights_and_totals_checks():
    x, y = batch()
    f = lmf_torch.LDAMLoss(COUNTS)
    w = weights()
    f.set_class_weights(w)
    xr = x.clone().requires_grad_()
    ref.ldam(xr, y, ref.margins(COUNTS, 0.5), 30.0, w, -100, "mean").backward()
    xl = x.clone().requires_grad_()
    f(xl, y).backward()
    assert rel(xl.grad, xr.grad) <= 1e-10
    with pytest.raises(ValueError, match="entries but the loss has"):
        f.set_class_weights([1.0, 2.0])
    xl2 = x.clone().requires_grad_()
    f(xl2, y).backward()  # unchanged by the refused call
    assert torch.equal(xl2.grad, xl.grad)
    with pytest.raises(ValueError, match="labels have shape"):
        f.totals(x, y.view(-1, 1))
    with pytest.raises(ValueError, match="wrong type"):
        lmf_torch.LMFLoss(COUNTS, gamma="2")


def test_simd_isa_is_chosen_at_run_time():
    # built by scripts/torch.sh without -march: the kernels still run the CPU's widest set
    assert lmf_torch.cpu_simd_isa() in ("avx512", "avx2", "sse2", "generic128")
    if "LMF_SIMD_ISA" not in os.environ:
        assert lmf_torch.simd_isa() == lmf_torch.cpu_simd_isa()


def test_forward_mode_ad_is_an_error():
    # lmf computes the gradient in forward, not a jvp: a dual tensor must not lose its tangent silently
    import torch.autograd.forward_ad as fwAD

    x, y = batch(n=8)
    with fwAD.dual_level():
        dual = fwAD.make_dual(x, torch.ones_like(x))
        with pytest.raises(ValueError, match="forward-mode AD"):
            module("lmf")(dual, y)
