"""lmf_torch on CUDA tensors (lmf/torch_cuda.cuh: the CUDA header's kernels behind the same
modules): values and gradients against the published formulas in torch ops and against lmf's CPU
path, float64 / float32 / float16 / bfloat16, (N, C, H, W) and strided logits, int32 labels,
ignore_index, the upstream gradient, totals across shards, set_class_weights, a side stream,
gradcheck, and errors. Skipped (not passed) where there is no GPU or the extension was built
without CUDA.

Run: PYTHONPATH=$(bash scripts/torch.sh | tail -1) python3 -m pytest -q python/tests/test_cuda.py
"""
import pytest
import torch

import lmf_torch

if not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)
if not lmf_torch.cuda_built():
    pytest.skip("lmf_torch was built without CUDA (PyTorch without CUDA, or no nvcc)", allow_module_level=True)

from test_lmf_torch import C, KINDS, MEAN_ONLY, batch, module, reference  # noqa: E402

DEV = torch.device("cuda")


def rel(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-300)).item()


def elementwise(a, b):
    return ((a - b).abs() / (b.abs() + 1e-6 * b.abs().max())).max().item()


def run(f, x, y, upstream=None):
    """Value and gradient of f at x (a leaf copy), with the upstream gradient for reduction none."""
    x = x.detach().clone().requires_grad_()
    v = f(x, y)
    (v * upstream).sum().backward() if upstream is not None else v.backward()
    return v.detach(), x.grad


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_parity_with_published_formulas_and_the_cpu(kind, reduction, dtype):
    if kind in MEAN_ONLY and reduction != "mean":
        pytest.skip("the preset defines the mean only")
    x, y = batch(n=300)
    up = torch.linspace(0.5, 1.5, x.shape[0], dtype=torch.float64) if reduction == "none" else None
    r, rg = run(lambda t, l: reference(kind, t, l, reduction), x, y, up)
    f = module(kind, reduction)
    vc, gc = run(f, x.to(dtype), y, None if up is None else up.to(dtype))
    vd, gd = run(f, x.to(dtype).to(DEV), y.to(DEV), None if up is None else up.to(dtype).to(DEV))
    assert vd.device.type == "cuda" and gd.device.type == "cuda" and vd.dtype == dtype and gd.dtype == dtype
    vd, gd = vd.cpu().double(), gd.cpu().double()
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    assert rel(vd, r) <= tol and rel(gd, rg) <= tol
    assert elementwise(gd, rg) <= 100 * tol
    # against the CPU kernels, which the C++ suite holds to the scalar reference
    assert rel(vd, vc.double()) <= tol and elementwise(gd, gc.double()) <= 100 * tol


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_16_bit_logits(dtype):
    x, y = batch(n=500)
    f = module("lmf")
    x16 = x.to(dtype)
    r, rg = run(lambda t, l: reference("lmf", t, l), x16.double(), y)  # the same rounded logits
    v, g = run(f, x16.to(DEV), y.to(DEV))
    assert v.dtype == torch.float32 and g.dtype == dtype  # the value in float32, as under autocast
    eps = 2.0 ** -8 if dtype == torch.float16 else 2.0 ** -5  # the gradient's rounding to 16 bits
    assert rel(v.cpu().double(), r) <= eps
    assert rel(g.cpu().double(), rg) <= eps


def test_fp16_gradient_is_scaled_before_rounding():
    # a mean over 20000 rows puts most gradient entries below fp16's normal range; with a
    # GradScaler-like grad_output of 2^16 they must come out as round(2^16 g), not 2^16 round(g)
    x, y = batch(n=20000, seed=4)
    x16 = x.half()
    xr = x16.double().requires_grad_()
    reference("lmf", xr, y).backward()
    want = (xr.grad * 65536.0).half()
    xd = x16.to(DEV).requires_grad_()
    v = module("lmf")(xd, y.to(DEV))
    (v * 65536.0).backward()
    got = xd.grad.cpu()
    assert got.dtype == torch.float16 and torch.isfinite(got).all()
    ulp = (want.float().abs() * 2.0 ** -10).clamp_min(2.0 ** -24)
    assert ((got.float() - want.float()).abs() <= 2 * ulp).all()
    assert (got != 0).sum() >= 0.99 * (want != 0).sum()


def test_value_only_and_no_grad():
    x, y = batch(n=300)
    r, _ = run(lambda t, l: reference("lmf", t, l), x, y)
    f = module("lmf")
    v = f(x.to(DEV), y.to(DEV))  # logits without requires_grad: the kernel's value-only path
    assert v.grad_fn is None and rel(v.cpu(), r) <= 1e-12
    with torch.no_grad():
        w = f(x.to(DEV).requires_grad_(), y.to(DEV))
    assert w.grad_fn is None and torch.equal(v, w)


def test_nchw_channels_last_sliced_and_column_major_logits():
    g = torch.Generator().manual_seed(5)
    f = module("lmf")
    x = torch.randn(6, C, 5, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, C, (6, 5, 4), generator=g)
    y[0, 0, 0] = -100
    # the reference on the pixels as rows: (N, C, H, W) -> (N H W, C)
    r, rg = run(lambda t, l: reference("lmf", t, l), x.permute(0, 2, 3, 1).reshape(-1, C), y.reshape(-1))
    rg = rg.reshape(6, 5, 4, C).permute(0, 3, 1, 2)
    for name, xd in (("contiguous", x.to(DEV)), ("channels_last", x.to(DEV).contiguous(memory_format=torch.channels_last))):
        v, gd = run(f, xd, y.to(DEV).int())
        assert gd.stride() == xd.stride(), name  # read in place: the gradient has the logits' strides
        assert rel(v.cpu(), r) <= 1e-12 and elementwise(gd.cpu(), rg) <= 1e-10, name
    wide = torch.zeros(6, C, 5, 8, dtype=torch.float64, device=DEV)  # every other pixel: not dense (copied once)
    wide[..., ::2] = x.to(DEV)
    wide.requires_grad_()
    v = f(wide[..., ::2], y.to(DEV))
    v.backward()
    assert rel(v.detach().cpu(), r) <= 1e-12 and elementwise(wide.grad[..., ::2].cpu(), rg) <= 1e-10
    assert torch.all(wide.grad[..., 1::2] == 0)
    xt = torch.randn(C, 200, generator=g, dtype=torch.float64)  # (N, C) column-major: a transposed view
    yt = torch.randint(0, C, (200,), generator=g)
    r, rg = run(lambda t, l: reference("lmf", t, l), xt.t(), yt)
    v, gd = run(f, xt.to(DEV).t(), yt.to(DEV))
    assert rel(v.cpu(), r) <= 1e-12 and elementwise(gd.cpu(), rg) <= 1e-10


def test_upstream_gradient_and_ignore_index():
    x, y = batch(n=64, ignore=3)
    f = module("lmf", ignore=3)
    a, ga = run(f, x.to(DEV), y.to(DEV))
    _, gb = run(lambda t, l: 3.0 * f(t, l), x.to(DEV), y.to(DEV))
    assert torch.allclose(gb, 3.0 * ga, rtol=1e-14, atol=0)
    r, rg = run(lambda t, l: reference("lmf", t, l, ignore=3), x, y)
    assert rel(a.cpu(), r) <= 1e-12 and rel(ga.cpu(), rg) <= 1e-12
    assert torch.all(ga[y.to(DEV) == 3] == 0)


def test_gradcheck_on_the_device():
    x, y = batch(n=12, seed=3)
    x = (x / 4).to(DEV).requires_grad_()
    f = module("lmf")
    assert torch.autograd.gradcheck(lambda t: f(t, y.to(DEV)), (x,))


def test_totals_across_shards():
    x, y = batch(n=200)
    for kind in ("lmf", "lmf_seed"):
        f = module(kind)
        xd, yd = x.to(DEV), y.to(DEV)
        whole, gw = run(f, xd, yd)
        parts = [(xd[:120], yd[:120]), (xd[120:], yd[120:])]
        t = sum(f.totals(a, b) for a, b in parts)
        assert t.device.type == "cuda" and t.dtype == torch.float64
        vals, grads = zip(*(run(lambda p, q: f(p, q, t), a, b) for a, b in parts))
        assert abs((vals[0] + vals[1] - whole).item()) <= 1e-12 * abs(whole.item())
        assert rel(torch.cat(grads), gw) <= 1e-13
        with pytest.raises(ValueError, match="on the logits' device"):
            f(xd, yd, t.cpu())


def test_set_class_weights_reaches_the_device():
    x, y = batch()
    f = lmf_torch.LDAMLoss([2000, 700, 250, 90, 30, 12, 5])
    before, _ = run(f, x.to(DEV), y.to(DEV))
    w = torch.linspace(0.5, 2.0, C)
    f.set_class_weights(w)
    after, g = run(f, x.to(DEV), y.to(DEV))
    fc = lmf_torch.LDAMLoss([2000, 700, 250, 90, 30, 12, 5], class_weights=w)
    ref_v, ref_g = run(fc, x, y)
    assert rel(after.cpu(), ref_v) <= 1e-12 and rel(g.cpu(), ref_g) <= 1e-12
    assert abs((after - before).item()) > 1e-3


def test_side_stream():
    x, y = batch(n=4000)
    ref_v, ref_g = run(module("lmf"), x.to(DEV), y.to(DEV))
    f = module("lmf")  # a new module: its per-class vectors are copied at its first call, on the side stream
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        xd, yd = x.to(DEV), y.to(DEV)
        v, g = run(f, xd, yd)
    s.synchronize()
    assert torch.equal(v, ref_v) and torch.equal(g, ref_g)  # deterministic, whatever the stream


def test_errors_leave_nothing_written():
    x, y = batch()
    f = module("lmf")
    bad = y.clone()
    bad[5] = C
    xd = x.to(DEV).requires_grad_()
    with pytest.raises(ValueError, match=r"label 7 at row 5 is outside \[0, 7\)"):
        f(xd, bad.to(DEV))
    assert xd.grad is None  # (the call raised: no graph, no gradient)
    xn = x.clone()
    xn[2, 3] = float("nan")
    with pytest.raises(ValueError, match="row 2, class 3"):
        f(xn.to(DEV).requires_grad_(), y.to(DEV))
    with pytest.raises(ValueError, match="labels are on cpu"):
        f(x.to(DEV), y)
    with pytest.raises(ValueError, match="int64 or int32"):
        f(x.to(DEV), y.to(DEV).float())
    with pytest.raises(ValueError, match="classes but the loss has"):
        f(torch.zeros(4, C + 1, device=DEV), torch.zeros(4, dtype=torch.long, device=DEV))
    # the module still works after the errors (the status record is reset per call)
    v, _ = run(f, x.to(DEV), y.to(DEV))
    r, _ = run(lambda t, l: reference("lmf", t, l), x, y)
    assert rel(v.cpu(), r) <= 1e-12


def test_double_backward_is_an_error():
    x, y = batch(n=8)
    x = x.to(DEV).requires_grad_()
    v = module("lmf")(x, y.to(DEV))
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad(v, x, create_graph=True)
