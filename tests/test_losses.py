"""Tests of dlkb.losses against torch.nn.functional / torchvision.ops and slow formulas."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import sigmoid_focal_loss as tv_sigmoid_focal_loss

from dlkb import losses as L

REDUCTIONS = ("none", "mean", "sum")


def _g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _leaf(*shape, g, scale=1.0, dtype=torch.float32):
    return (scale * torch.randn(*shape, generator=g, dtype=dtype)).requires_grad_()


def _compare(ours_fn, ref_fn, *leaves, atol=None, rtol=None):
    """Values and gradients (w.r.t. every leaf) of ours_fn(*leaves) and ref_fn(*leaves) agree."""
    a = [x.detach().clone().requires_grad_(x.requires_grad) for x in leaves]
    b = [x.detach().clone().requires_grad_(x.requires_grad) for x in leaves]
    ours, ref = ours_fn(*a), ref_fn(*b)
    assert ours.shape == ref.shape and ours.dtype == ref.dtype
    torch.testing.assert_close(ours, ref, atol=atol, rtol=rtol)
    if ours.requires_grad:
        w = torch.randn(ours.shape, generator=_g(99), dtype=ours.dtype)
        (ours * w).sum().backward()
        (ref * w).sum().backward()
        for x, y in zip(a, b):
            if x.requires_grad:
                assert torch.isfinite(x.grad).all()
                torch.testing.assert_close(x.grad, y.grad, atol=atol, rtol=rtol)


# ---------------------------------------------------------------- regression


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(
    "ours, ref, kw",
    [
        (L.mae_loss, F.l1_loss, {}),
        (L.mse_loss, F.mse_loss, {}),
        (L.smooth_l1_loss, F.smooth_l1_loss, {"beta": 1.0}),
        (L.smooth_l1_loss, F.smooth_l1_loss, {"beta": 0.3}),
        (L.smooth_l1_loss, F.smooth_l1_loss, {"beta": 0.0}),
        (L.huber_loss, F.huber_loss, {"delta": 1.0}),
        (L.huber_loss, F.huber_loss, {"delta": 2.5}),
    ],
)
def test_regression_losses_match_torch(ours, ref, kw, reduction):
    g = _g(1)
    x, y = _leaf(4, 3, 5, g=g, scale=3.0), _leaf(4, 3, 5, g=g)
    _compare(lambda a, b: ours(a, b, reduction=reduction, **kw), lambda a, b: ref(a, b, reduction=reduction, **kw), x, y)
    out = ours(x, y, reduction=reduction, **kw)
    assert out.shape == ((4, 3, 5) if reduction == "none" else ())


@pytest.mark.parametrize("fn", [L.mae_loss, L.mse_loss, L.smooth_l1_loss, L.huber_loss])
def test_regression_default_reduction_is_mean_and_non_contiguous(fn):
    g = _g(2)
    x = torch.randn(6, 5, generator=g).t()  # [5, 6], non-contiguous
    y = torch.randn(5, 6, generator=g)
    assert not x.is_contiguous()
    torch.testing.assert_close(fn(x, y), fn(x.contiguous(), y, reduction="none").mean())


@pytest.mark.parametrize("fn", [L.mae_loss, L.mse_loss, L.smooth_l1_loss, L.huber_loss])
def test_regression_gradcheck(fn):
    g = _g(3)
    x = _leaf(3, 4, g=g, scale=2.0, dtype=torch.float64)
    y = torch.randn(3, 4, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a: fn(a, y, reduction="sum"), (x,))


def test_smooth_l1_and_huber_relation():
    g = _g(4)
    x, y = torch.randn(50, generator=g) * 4, torch.randn(50, generator=g)
    for b in (0.5, 1.0, 3.0):
        torch.testing.assert_close(
            L.huber_loss(x, y, delta=b, reduction="none"), b * L.smooth_l1_loss(x, y, beta=b, reduction="none")
        )


def test_rmse_matches_sqrt_mse_and_has_finite_gradient_at_zero():
    g = _g(5)
    x, y = _leaf(7, 2, g=g), _leaf(7, 2, g=g)
    _compare(L.rmse_loss, lambda a, b: F.mse_loss(a, b).sqrt(), x, y)
    z = torch.randn(7, 2, generator=g).requires_grad_()
    r = L.rmse_loss(z, z.detach().clone())
    r.backward()
    assert r.item() == 0.0 and torch.isfinite(z.grad).all() and (z.grad == 0).all()
    # sqrt(F.mse_loss) itself gives NaN there: the case is real
    w = z.detach().clone().requires_grad_()
    F.mse_loss(w, z.detach()).sqrt().backward()
    assert torch.isnan(w.grad).all()
    x64 = _leaf(4, 3, g=g, dtype=torch.float64)
    y64 = torch.randn(4, 3, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a: L.rmse_loss(a, y64), (x64,))
    assert L.rmse_loss(x64, y64).shape == ()


def test_zero_one_loss():
    pred = torch.tensor([0, 1, 2, 2, 1])
    target = torch.tensor([0, 2, 2, 1, 1])
    wrong = torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0])
    assert L.zero_one_loss(pred, target).item() == pytest.approx(0.4)
    assert L.zero_one_loss(pred, target, reduction="sum").item() == 2.0
    torch.testing.assert_close(L.zero_one_loss(pred, target, reduction="none"), wrong)
    # non-contiguous 2-D labels and float labels
    p2 = torch.tensor([[0, 1], [1, 1], [2, 0]]).t()
    t2 = torch.tensor([[0, 1, 2], [0, 1, 1]])
    assert L.zero_one_loss(p2, t2).item() == pytest.approx(2 / 6)
    assert L.zero_one_loss(p2.double(), t2.double()).dtype == torch.float64


# ---------------------------------------------------------------- cross-entropy


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("use_weight", [False, True])
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_cross_entropy_matches_torch(reduction, use_weight, eps):
    g = _g(6)
    z = _leaf(8, 5, g=g, scale=2.0)
    y = torch.randint(0, 5, (8,), generator=g)
    w = torch.rand(5, generator=g) + 0.5 if use_weight else None
    _compare(
        lambda a: L.cross_entropy(a, y, weight=w, label_smoothing=eps, reduction=reduction),
        lambda a: F.cross_entropy(a, y, weight=w, label_smoothing=eps, reduction=reduction),
        z,
    )


def test_cross_entropy_spatial_and_non_contiguous():
    g = _g(7)
    z = torch.randn(2, 4, 3, 3, generator=g).transpose(2, 3)  # [N, K, H, W], non-contiguous
    y = torch.randint(0, 4, (2, 3, 3), generator=g)
    w = torch.tensor([1.0, 2.0, 0.5, 1.5])
    for kw in ({}, {"weight": w, "label_smoothing": 0.2}):
        torch.testing.assert_close(L.cross_entropy(z, y, **kw), F.cross_entropy(z, y, **kw))
        torch.testing.assert_close(
            L.cross_entropy(z, y, reduction="none", **kw), F.cross_entropy(z, y, reduction="none", **kw)
        )


def test_cross_entropy_gradient_is_p_minus_y_and_gradcheck():
    g = _g(8)
    z = _leaf(6, 4, g=g, dtype=torch.float64)
    y = torch.randint(0, 4, (6,), generator=g)
    L.cross_entropy(z, y, reduction="sum").backward()
    torch.testing.assert_close(z.grad, torch.softmax(z.detach(), 1) - F.one_hot(y, 4).double())
    w = torch.rand(4, generator=g, dtype=torch.float64) + 0.1
    assert torch.autograd.gradcheck(lambda a: L.cross_entropy(a, y, weight=w, label_smoothing=0.1), (z,))


def test_cross_entropy_slow_formula():
    g = _g(9)
    z = torch.randn(5, 3, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (5,), generator=g)
    w = torch.tensor([0.2, 1.0, 3.0], dtype=torch.float64)
    eps, total, norm = 0.3, 0.0, 0.0
    for i in range(5):
        logp = [z[i, k].item() - math.log(sum(math.exp(v) for v in z[i].tolist())) for k in range(3)]
        total += -(1 - eps) * w[y[i]].item() * logp[y[i]] - eps / 3 * sum(w[k].item() * logp[k] for k in range(3))
        norm += w[y[i]].item()
    assert L.cross_entropy(z, y, weight=w, label_smoothing=eps).item() == pytest.approx(total / norm, rel=1e-10)


# ---------------------------------------------------------------- binary cross-entropy


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("pos", [None, "vector", "full"])
def test_bce_with_logits_matches_torch(reduction, pos):
    g = _g(10)
    z = _leaf(6, 3, g=g, scale=3.0)
    t = torch.rand(6, 3, generator=g).requires_grad_()  # soft labels, gradient too
    pw = {None: None, "vector": torch.rand(3, generator=g) * 3, "full": torch.rand(6, 3, generator=g) * 3}[pos]
    _compare(
        lambda a, b: L.binary_cross_entropy_with_logits(a, b, pos_weight=pw, reduction=reduction),
        lambda a, b: F.binary_cross_entropy_with_logits(a, b, pos_weight=pw, reduction=reduction),
        z,
        t,
    )


def test_bce_gradcheck_non_contiguous_and_extreme_logits():
    g = _g(11)
    z = _leaf(3, 4, g=g, dtype=torch.float64)
    t = torch.rand(3, 4, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a: L.binary_cross_entropy_with_logits(a, t), (z,))
    zn = torch.randn(4, 3, generator=g).t()
    tn = (torch.rand(3, 4, generator=g) > 0.5).float()
    torch.testing.assert_close(L.binary_cross_entropy_with_logits(zn, tn), F.binary_cross_entropy_with_logits(zn, tn))
    big = torch.tensor([100.0, -100.0, 100.0, -100.0], requires_grad=True)
    tt = torch.tensor([0.0, 1.0, 1.0, 0.0])
    _compare(
        lambda a: L.binary_cross_entropy_with_logits(a, tt, reduction="none"),
        lambda a: F.binary_cross_entropy_with_logits(a, tt, reduction="none"),
        big,
    )
    assert L.binary_cross_entropy_with_logits(big, tt, reduction="none")[0].item() == pytest.approx(100.0)


# ---------------------------------------------------------------- focal losses


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("alpha, gamma", [(0.25, 2.0), (-1.0, 2.0), (0.5, 0.0), (0.75, 1.5)])
def test_sigmoid_focal_matches_torchvision(reduction, alpha, gamma):
    g = _g(12)
    z = _leaf(5, 7, g=g, scale=3.0)
    t = (torch.rand(5, 7, generator=g) > 0.7).float()
    _compare(
        lambda a: L.sigmoid_focal_loss(a, t, alpha=alpha, gamma=gamma, reduction=reduction),
        lambda a: tv_sigmoid_focal_loss(a, t, alpha=alpha, gamma=gamma, reduction=reduction),
        z,
    )


def test_sigmoid_focal_defaults_gradcheck_extremes_and_bce_limit():
    g = _g(13)
    z = _leaf(4, 3, g=g, dtype=torch.float64)
    t = torch.rand(4, 3, generator=g, dtype=torch.float64)  # soft targets
    torch.testing.assert_close(
        L.sigmoid_focal_loss(z, t), tv_sigmoid_focal_loss(z, t, reduction="mean")
    )
    assert torch.autograd.gradcheck(lambda a: L.sigmoid_focal_loss(a, t, reduction="sum"), (z,))
    torch.testing.assert_close(
        L.sigmoid_focal_loss(z, t, alpha=-1, gamma=0.0), F.binary_cross_entropy_with_logits(z, t)
    )
    big = torch.tensor([100.0, -100.0, 100.0, -100.0], requires_grad=True)
    tt = torch.tensor([0.0, 1.0, 1.0, 0.0])
    _compare(
        lambda a: L.sigmoid_focal_loss(a, tt, reduction="none"),
        lambda a: tv_sigmoid_focal_loss(a, tt, reduction="none"),
        big,
    )
    zn = torch.randn(3, 5, generator=g).t()
    tn = (torch.rand(5, 3, generator=g) > 0.5).float()
    torch.testing.assert_close(L.sigmoid_focal_loss(zn, tn), tv_sigmoid_focal_loss(zn, tn, reduction="mean"))


def _softmax_focal_slow(z, y, gamma, alpha):
    out = []
    for i in range(z.shape[0]):
        p = torch.softmax(z[i], 0)[y[i]].item()
        a = 1.0 if alpha is None else alpha[y[i]].item()
        out.append(-a * (1 - p) ** gamma * math.log(p))
    return torch.tensor(out, dtype=z.dtype)


@pytest.mark.parametrize("gamma", [0.0, 1.0, 2.0, 0.5])
@pytest.mark.parametrize("use_alpha", [False, True])
def test_softmax_focal_slow_formula(gamma, use_alpha):
    g = _g(14)
    z = torch.randn(6, 4, generator=g, dtype=torch.float64) * 2
    y = torch.randint(0, 4, (6,), generator=g)
    alpha = torch.rand(4, generator=g, dtype=torch.float64) if use_alpha else None
    slow = _softmax_focal_slow(z, y, gamma, alpha)
    torch.testing.assert_close(L.softmax_focal_loss(z, y, gamma=gamma, alpha=alpha, reduction="none"), slow)
    torch.testing.assert_close(L.softmax_focal_loss(z, y, gamma=gamma, alpha=alpha), slow.mean())
    torch.testing.assert_close(L.softmax_focal_loss(z, y, gamma=gamma, alpha=alpha, reduction="sum"), slow.sum())


def test_softmax_focal_equals_cross_entropy_at_gamma_zero_and_gradcheck():
    g = _g(15)
    z = _leaf(5, 3, 2, g=g)  # [N, K, L]
    y = torch.randint(0, 3, (5, 2), generator=g)
    for reduction in REDUCTIONS:
        _compare(
            lambda a: L.softmax_focal_loss(a, y, gamma=0.0, reduction=reduction),
            lambda a: F.cross_entropy(a, y, reduction=reduction),
            z,
        )
    z64 = _leaf(4, 3, g=g, dtype=torch.float64)
    y64 = torch.randint(0, 3, (4,), generator=g)
    alpha = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a: L.softmax_focal_loss(a, y64, alpha=alpha), (z64,))
    zn = torch.randn(3, 4, generator=g).t()  # [4, 3] non-contiguous
    torch.testing.assert_close(L.softmax_focal_loss(zn, y64), L.softmax_focal_loss(zn.contiguous(), y64))


def test_softmax_focal_and_cross_entropy_extreme_logits():
    z = torch.tensor([[100.0, -100.0, 0.0], [-100.0, 100.0, -100.0]], requires_grad=True)
    y = torch.tensor([1, 1])
    for fn, ref in ((L.cross_entropy, F.cross_entropy), (lambda a, b, reduction: L.softmax_focal_loss(a, b, gamma=0.0, reduction=reduction), F.cross_entropy)):
        _compare(lambda a: fn(a, y, reduction="none"), lambda a: ref(a, y, reduction="none"), z)
    out = L.softmax_focal_loss(z, y, reduction="none")
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(z.grad).all()
    assert out[0].item() == pytest.approx(200.0, rel=1e-4)


# ---------------------------------------------------------------- Dice and IoU


def _dice_slow(z, t, s):
    out = []
    for i in range(z.shape[0]):
        p = torch.sigmoid(z[i]).flatten().tolist()
        q = t[i].flatten().tolist()
        inter = sum(a * b for a, b in zip(p, q))
        out.append(1 - (2 * inter + s) / (sum(p) + sum(q) + s))
    return torch.tensor(out, dtype=z.dtype)


def _iou_slow(z, t, s):
    out = []
    for i in range(z.shape[0]):
        p = torch.sigmoid(z[i]).flatten().tolist()
        q = t[i].flatten().tolist()
        inter = sum(a * b for a, b in zip(p, q))
        out.append(1 - (inter + s) / (sum(p) + sum(q) - inter + s))
    return torch.tensor(out, dtype=z.dtype)


@pytest.mark.parametrize("fn, slow", [(L.dice_loss, _dice_slow), (L.iou_loss, _iou_slow)])
@pytest.mark.parametrize("smooth", [1.0, 0.0, 1e-3])
def test_overlap_losses_slow_formula(fn, slow, smooth):
    g = _g(16)
    z = torch.randn(3, 1, 4, 5, generator=g, dtype=torch.float64) * 2
    t = (torch.rand(3, 1, 4, 5, generator=g) > 0.6).double()
    ref = slow(z, t, smooth)
    torch.testing.assert_close(fn(z, t, smooth=smooth, reduction="none"), ref)
    torch.testing.assert_close(fn(z, t, smooth=smooth), ref.mean())
    torch.testing.assert_close(fn(z, t, smooth=smooth, reduction="sum"), ref.sum())
    zz = z.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda a: fn(a, t, smooth=smooth), (zz,))
    zn = z.transpose(2, 3)
    tn = t.transpose(2, 3)
    assert not zn.is_contiguous()
    torch.testing.assert_close(fn(zn, tn, smooth=smooth, reduction="none"), slow(zn, tn, smooth))


@pytest.mark.parametrize("fn", [L.dice_loss, L.iou_loss])
def test_overlap_losses_empty_masks_and_extremes(fn):
    empty = torch.zeros(2, 8, 8)
    z_bg = torch.full((2, 8, 8), -100.0, requires_grad=True)  # confidently predicts "nothing"
    out = fn(z_bg, empty, reduction="none")
    assert torch.allclose(out, torch.zeros(2), atol=1e-6)  # empty vs empty: perfect with smoothing
    out.sum().backward()
    assert torch.isfinite(z_bg.grad).all()
    z_fg = torch.full((2, 8, 8), 100.0)
    assert torch.allclose(fn(z_fg, torch.ones(2, 8, 8)), torch.tensor(0.0), atol=1e-6)
    assert fn(z_fg, empty).item() > 0.98  # everything predicted, nothing there
    assert torch.isnan(fn(z_bg.detach(), empty, smooth=0.0)).all()  # 0/0 without smoothing


def test_dice_iou_relation():
    # without smoothing and with hard masks, IoU = D / (2 - D)
    g = _g(17)
    z = torch.randn(4, 10, generator=g) * 50  # nearly binary predictions
    t = (torch.rand(4, 10, generator=g) > 0.5).float()
    d = 1 - L.dice_loss(z, t, smooth=0.0, reduction="none")
    j = 1 - L.iou_loss(z, t, smooth=0.0, reduction="none")
    torch.testing.assert_close(j, d / (2 - d))


# ---------------------------------------------------------------- perceptual loss


def _features():
    torch.manual_seed(0)  # tests only; library code never seeds
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(4, 6, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, padding=1),
    )


def test_perceptual_loss_matches_slow_formula_and_is_frozen():
    g = _g(18)
    net = _features()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    loss_fn = L.PerceptualLoss(net, layers=[0, 3, 5], weights=[1.0, 0.5, 2.0])
    x = torch.rand(2, 1, 8, 8, generator=g).requires_grad_()
    y = torch.rand(2, 1, 8, 8, generator=g)
    x_copy, y_copy = x.detach().clone(), y.clone()
    loss = loss_fn(x, y)
    # slow reference with an out-of-place copy of the same network
    ref_net = nn.Sequential(*[nn.ReLU() if isinstance(m, nn.ReLU) else m for m in net])
    def feats(v):
        out, h = {}, v
        for i, m in enumerate(ref_net):
            h = m(h)
            out[i] = h
        return out
    fx, fy = feats(x_copy), feats(y_copy)
    ref = (1.0 * F.mse_loss(fx[0], fy[0]) + 0.5 * F.mse_loss(fx[3], fy[3]) + 2.0 * F.mse_loss(fx[5], fy[5])) / 3
    torch.testing.assert_close(loss, ref)
    loss.backward()  # no in-place autograd error
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(not p.requires_grad and p.grad is None for p in net.parameters())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert torch.equal(x.detach(), x_copy) and torch.equal(y, y_copy)  # inputs not overwritten
    assert loss_fn(y, y).item() == 0.0
    loss_fn.train()
    assert not net.training


def test_perceptual_loss_first_layer_in_place_and_non_contiguous():
    net = nn.Sequential(nn.ReLU(inplace=True), nn.Conv2d(1, 2, 3))
    loss_fn = L.PerceptualLoss(net, layers=[1])
    x = torch.randn(2, 1, 6, 5, generator=_g(19)).transpose(2, 3)  # negative values, non-contiguous
    y = torch.zeros(2, 1, 5, 6)
    x_before = x.clone()
    loss_fn(x, y)
    assert torch.equal(x, x_before)


def test_perceptual_loss_validation():
    net = _features()
    with pytest.raises(TypeError, match="PerceptualLoss: features must be Sequential"):
        L.PerceptualLoss(nn.Linear(2, 2), layers=[0])
    with pytest.raises(ValueError, match=r"PerceptualLoss: layers must not be empty; got \[\]"):
        L.PerceptualLoss(net, layers=[])
    with pytest.raises(TypeError, match=r"PerceptualLoss: layers\[0\] must be an int; got float"):
        L.PerceptualLoss(net, layers=[1.0])
    with pytest.raises(ValueError, match=r"layers must be indices in \[0, 5\]; got 6"):
        L.PerceptualLoss(net, layers=[6])
    with pytest.raises(ValueError, match="layers must be distinct"):
        L.PerceptualLoss(net, layers=[1, 1])
    with pytest.raises(ValueError, match=r"weights must have one entry per layer \(2\); got 1"):
        L.PerceptualLoss(net, layers=[1, 3], weights=[1.0])
    with pytest.raises(ValueError, match=r"PerceptualLoss: weights must be >= 0; got -1\.0"):
        L.PerceptualLoss(net, layers=[1], weights=[-1.0])
    with pytest.raises(TypeError, match="weights must be a sequence"):
        L.PerceptualLoss(net, layers=[1], weights=2.0)
    loss_fn = L.PerceptualLoss(net, layers=[1])
    with pytest.raises(ValueError, match=r"target must have the same shape as input \(1, 1, 4, 4\); got \(1, 1, 4, 5\)"):
        loss_fn(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 5))
    with pytest.raises(TypeError, match="input must be a floating-point tensor"):
        loss_fn(torch.zeros(1, 1, 4, 4, dtype=torch.long), torch.zeros(1, 1, 4, 4))


# ---------------------------------------------------------------- validation


PAIR_FNS = [L.mae_loss, L.mse_loss, L.smooth_l1_loss, L.huber_loss, L.binary_cross_entropy_with_logits,
            L.sigmoid_focal_loss, L.dice_loss, L.iou_loss]


@pytest.mark.parametrize("fn", PAIR_FNS + [L.zero_one_loss])
def test_no_broadcasting_between_n1_and_n(fn):
    name = "pred_labels" if fn is L.zero_one_loss else ("input" if fn in PAIR_FNS[:4] else "logits")
    with pytest.raises(ValueError, match=rf"{fn.__name__}: target must have the same shape as {name} \(8, 1\); got \(8,\)"):
        fn(torch.zeros(8, 1), torch.zeros(8))


def test_rmse_validation():
    with pytest.raises(ValueError, match=r"rmse_loss: target must have the same shape as input \(8, 1\); got \(8,\)"):
        L.rmse_loss(torch.zeros(8, 1), torch.zeros(8))
    with pytest.raises(TypeError, match="rmse_loss: input must be a floating-point tensor; got dtype torch.int64"):
        L.rmse_loss(torch.zeros(3, dtype=torch.long), torch.zeros(3))
    with pytest.raises(TypeError, match=r"rmse_loss: target must be a torch\.Tensor; got list"):
        L.rmse_loss(torch.zeros(3), [0.0, 0.0, 0.0])


@pytest.mark.parametrize("fn", PAIR_FNS + [L.zero_one_loss, L.cross_entropy, L.softmax_focal_loss])
def test_unknown_reduction(fn):
    if fn in (L.cross_entropy, L.softmax_focal_loss):
        args = (torch.zeros(2, 3), torch.zeros(2, dtype=torch.long))
    else:
        args = (torch.zeros(2, 3), torch.zeros(2, 3))
    with pytest.raises(ValueError, match=rf"{fn.__name__}: reduction must be one of \('none', 'mean', 'sum'\); got 'elementwise_mean'"):
        fn(*args, reduction="elementwise_mean")
    with pytest.raises(TypeError, match=rf"{fn.__name__}: reduction must be a str, one of \('none', 'mean', 'sum'\); got bool True"):
        fn(*args, reduction=True)


@pytest.mark.parametrize("fn", PAIR_FNS)
def test_non_floating_input(fn):
    name = "input" if fn in PAIR_FNS[:4] else "logits"
    with pytest.raises(TypeError, match=rf"{fn.__name__}: {name} must be a floating-point tensor; got dtype torch.int64"):
        fn(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3))
    with pytest.raises(TypeError, match=rf"{fn.__name__}: {name} must be a torch.Tensor; got ndarray"):
        import numpy as np

        fn(np.zeros((2, 3)), torch.zeros(2, 3))


@pytest.mark.parametrize("fn", [L.binary_cross_entropy_with_logits, L.sigmoid_focal_loss, L.dice_loss, L.iou_loss])
def test_targets_outside_unit_interval(fn):
    with pytest.raises(ValueError, match=rf"{fn.__name__}: target values must be in \[0, 1\]; got min -1, max 0"):
        fn(torch.zeros(2, 3), torch.tensor([[0.0, -1.0, 0.0], [0.0, 0.0, 0.0]]))
    with pytest.raises(ValueError, match=r"target values must be in \[0, 1\]; got min 0, max 2"):
        fn(torch.zeros(2, 3), torch.tensor([[0.0, 2.0, 0.0], [0.0, 0.0, 0.0]]))


@pytest.mark.parametrize(
    "fn, kw, match, exc",
    [
        (L.smooth_l1_loss, {"beta": -1.0}, "smooth_l1_loss: beta must be >= 0; got -1.0", ValueError),
        (L.smooth_l1_loss, {"beta": "1"}, "smooth_l1_loss: beta must be a real number; got str", TypeError),
        (L.huber_loss, {"delta": -0.5}, "huber_loss: delta must be > 0; got -0.5", ValueError),
        (L.huber_loss, {"delta": 0.0}, "huber_loss: delta must be > 0; got 0.0", ValueError),
        (L.dice_loss, {"smooth": -1.0}, "dice_loss: smooth must be >= 0; got -1.0", ValueError),
        (L.iou_loss, {"smooth": -1e-3}, "iou_loss: smooth must be >= 0; got -0.001", ValueError),
        (L.sigmoid_focal_loss, {"gamma": -2.0}, "sigmoid_focal_loss: gamma must be >= 0; got -2.0", ValueError),
        (L.sigmoid_focal_loss, {"alpha": 1.5}, r"sigmoid_focal_loss: alpha must be in \[0, 1\]", ValueError),
        (L.sigmoid_focal_loss, {"alpha": None}, "sigmoid_focal_loss: alpha must be a real number; got NoneType", TypeError),
        (L.binary_cross_entropy_with_logits, {"pos_weight": torch.ones(4)},
         r"pos_weight must broadcast to the shape of logits \(2, 3\) without enlarging it .*; got \(4,\)", ValueError),
        (L.binary_cross_entropy_with_logits, {"pos_weight": torch.ones(5, 2, 3)},
         r"pos_weight must broadcast .*; got \(5, 2, 3\)", ValueError),
        (L.binary_cross_entropy_with_logits, {"pos_weight": torch.ones(3, dtype=torch.long)},
         "pos_weight must be a floating-point tensor", TypeError),
    ],
)
def test_bad_hyper_parameters(fn, kw, match, exc):
    with pytest.raises(exc, match=match):
        fn(torch.zeros(2, 3), torch.zeros(2, 3), **kw)


@pytest.mark.parametrize("fn", [L.cross_entropy, L.softmax_focal_loss])
def test_class_index_validation(fn):
    name = fn.__name__
    z = torch.zeros(4, 3)
    with pytest.raises(ValueError, match=rf"{name}: target class indices must be in \[0, 2\]; got 3"):
        fn(z, torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match=rf"{name}: target class indices must be in \[0, 2\]; got -1"):
        fn(z, torch.tensor([0, -1, 2, 1]))
    with pytest.raises(TypeError, match=rf"{name}: target must hold integer class indices .*; got dtype torch.float32"):
        fn(z, torch.zeros(4))
    with pytest.raises(ValueError, match=rf"{name}: target must have shape \(4,\) for logits of shape \(4, 3\); got \(4, 1\)"):
        fn(z, torch.zeros(4, 1, dtype=torch.long))
    with pytest.raises(ValueError, match=rf"{name}: logits must have shape \(N, K, \*\); got \(4,\)"):
        fn(torch.zeros(4), torch.zeros(4, dtype=torch.long))
    with pytest.raises(TypeError, match=rf"{name}: logits must be a floating-point tensor; got dtype torch.int64"):
        fn(torch.zeros(4, 3, dtype=torch.long), torch.zeros(4, dtype=torch.long))


def test_class_vector_and_smoothing_validation():
    z, y = torch.zeros(4, 3), torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match=r"cross_entropy: weight must have shape \(3,\); got \(4,\)"):
        L.cross_entropy(z, y, weight=torch.ones(4))
    with pytest.raises(TypeError, match=r"cross_entropy: weight must be a torch\.Tensor; got list"):
        L.cross_entropy(z, y, weight=[1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match=r"cross_entropy: label_smoothing must be in \[0, 1\]; got 1.5"):
        L.cross_entropy(z, y, label_smoothing=1.5)
    with pytest.raises(ValueError, match=r"cross_entropy: label_smoothing must be >= 0; got -0\.1"):
        L.cross_entropy(z, y, label_smoothing=-0.1)
    with pytest.raises(ValueError, match=r"softmax_focal_loss: alpha must have shape \(3,\); got \(2,\)"):
        L.softmax_focal_loss(z, y, alpha=torch.ones(2))
    with pytest.raises(ValueError, match=r"softmax_focal_loss: gamma must be >= 0; got -1\.0"):
        L.softmax_focal_loss(z, y, gamma=-1.0)


def test_overlap_losses_need_a_batch_dimension():
    with pytest.raises(ValueError, match=r"dice_loss: logits must have a batch dimension"):
        L.dice_loss(torch.tensor(0.0), torch.tensor(1.0))


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0])
def test_focal_losses_saturated_logits_have_finite_gradients(gamma):
    z0 = torch.tensor([100.0, -100.0, 100.0, -100.0, 30.0, 0.0])
    t = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 1.0])
    ours, ref = z0.clone().requires_grad_(), z0.clone().requires_grad_()
    loss = L.sigmoid_focal_loss(ours, t, gamma=gamma, reduction="none")
    reference = tv_sigmoid_focal_loss(ref, t, gamma=gamma, reduction="none")
    torch.testing.assert_close(loss, reference)
    loss.sum().backward()
    reference.sum().backward()
    assert torch.isfinite(ours.grad).all()  # torchvision itself gives NaN here for gamma < 1
    finite = torch.isfinite(ref.grad)
    torch.testing.assert_close(ours.grad[finite], ref.grad[finite])
    z = torch.tensor([[100.0, -100.0, 0.0], [-100.0, 100.0, -100.0], [100.0, -100.0, 0.0]], requires_grad=True)
    y = torch.tensor([0, 1, 1])
    out = L.softmax_focal_loss(z, y, gamma=gamma, reduction="none")
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(z.grad).all()
    assert out[2].item() == pytest.approx(200.0, rel=1e-5)  # confidently wrong: (1 - p_y)^gamma = 1


def test_empty_batches_follow_the_reference():
    e = torch.zeros(0, 3)
    assert torch.isnan(L.rmse_loss(e, e)) and torch.isnan(F.mse_loss(e, e).sqrt())
    assert torch.isnan(L.mse_loss(e, e)) and L.mse_loss(e, e, reduction="sum").item() == 0.0
    z, y = torch.zeros(0, 4), torch.zeros(0, dtype=torch.long)
    assert torch.isnan(L.cross_entropy(z, y)) and torch.isnan(F.cross_entropy(z, y))
    assert L.dice_loss(torch.zeros(0, 2, 2), torch.zeros(0, 2, 2), reduction="none").shape == (0,)
    assert L.iou_loss(torch.zeros(0, 2, 2), torch.zeros(0, 2, 2), reduction="sum").item() == 0.0
    torch.testing.assert_close(
        L.dice_loss(torch.tensor([3.0, -2.0]), torch.tensor([1.0, 0.0]), reduction="none"),
        torch.stack([1 - (2 * torch.sigmoid(torch.tensor(3.0)) + 1) / (torch.sigmoid(torch.tensor(3.0)) + 2),
                     1 - 1 / (torch.sigmoid(torch.tensor(-2.0)) + 1)]),
    )


# ---------------------------------------------------------------- distillation, triplet, multi-class hinge


def _kd_ref(s, t, temperature):
    return temperature**2 * F.kl_div(
        F.log_softmax(s / temperature, 1), F.softmax(t / temperature, 1), reduction="batchmean"
    )


@pytest.mark.parametrize("temperature", [1.0, 0.5, 4.0, 20.0])
def test_distillation_matches_torch_values_and_gradients(temperature):
    g = _g(40)
    s, t = _leaf(6, 5, g=g, scale=3.0), _leaf(6, 5, g=g, scale=3.0)
    _compare(
        lambda a, b: L.distillation_loss(a, b, temperature=temperature), lambda a, b: _kd_ref(a, b, temperature), s, t
    )


def test_distillation_gradient_gradcheck_non_contiguous_and_zero_at_teacher():
    g = _g(41)
    s = _leaf(4, 3, g=g, dtype=torch.float64)
    t = torch.randn(3, 4, generator=g, dtype=torch.float64).t()  # [4, 3], non-contiguous
    assert torch.autograd.gradcheck(lambda a: L.distillation_loss(a, t, temperature=2.0), (s,))
    torch.testing.assert_close(L.distillation_loss(s, t, temperature=2.0), _kd_ref(s, t.contiguous(), 2.0))
    # gradient w.r.t. the student is (T / N) (p - q); zero (and loss zero) when student == teacher
    T = 3.0
    x = t.clone().requires_grad_()
    loss = L.distillation_loss(x, t, temperature=T)
    loss.backward()
    torch.testing.assert_close(loss, torch.zeros((), dtype=torch.float64))
    torch.testing.assert_close(x.grad, torch.zeros_like(x))
    y = (t + 1.0 * torch.randn(4, 3, generator=g, dtype=torch.float64)).requires_grad_()
    L.distillation_loss(y, t, temperature=T).backward()
    expected = (T / 4) * (torch.softmax(y.detach() / T, 1) - torch.softmax(t / T, 1))
    torch.testing.assert_close(y.grad, expected)


def test_distillation_extreme_logits_are_finite():
    s = torch.tensor([[1000.0, -1000.0, 0.0]], requires_grad=True)
    t = torch.tensor([[-1000.0, 1000.0, 0.0]])
    loss = L.distillation_loss(s, t, temperature=1.0)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(s.grad).all()
    torch.testing.assert_close(loss, _kd_ref(s.detach(), t, 1.0))


@pytest.mark.parametrize(
    "kw, exc, match",
    [
        ({"temperature": 0.0}, ValueError, r"distillation_loss: temperature must be > 0; got 0.0"),
        ({"temperature": -1.0}, ValueError, r"distillation_loss: temperature must be > 0; got -1.0"),
        ({"temperature": "2"}, TypeError, r"distillation_loss: temperature must be a real number; got str"),
    ],
)
def test_distillation_bad_temperature(kw, exc, match):
    x = torch.zeros(2, 3)
    with pytest.raises(exc, match=match):
        L.distillation_loss(x, x, **kw)


def test_distillation_bad_tensors():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"distillation_loss: teacher_logits must have the same shape as student_logits \(2, 3\); got \(2, 4\)"):
        L.distillation_loss(x, torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"distillation_loss: student_logits must be 2-D; got shape \(3,\)"):
        L.distillation_loss(torch.zeros(3), torch.zeros(3))
    with pytest.raises(ValueError, match=r"distillation_loss: student_logits must not be empty; got shape \(0, 3\)"):
        L.distillation_loss(torch.zeros(0, 3), torch.zeros(0, 3))
    with pytest.raises(TypeError, match=r"distillation_loss: teacher_logits must be a floating-point tensor; got dtype torch.int64"):
        L.distillation_loss(x, torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(TypeError, match=r"distillation_loss: student_logits must be a torch.Tensor; got list"):
        L.distillation_loss([[0.0]], x)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(
    "kw",
    [{}, {"margin": 0.3}, {"p": 1.0}, {"p": 3.0}, {"swap": True}, {"eps": 0.0, "margin": 2.0}, {"p": 1.5, "swap": True}],
)
def test_triplet_matches_torch(reduction, kw):
    g = _g(42)
    a, pos = _leaf(7, 4, g=g), _leaf(7, 4, g=g)
    neg = (8.0 * torch.randn(7, 4, generator=g) * torch.tensor([0, 0, 0, 1, 1, 1, 1.0])[:, None]).requires_grad_()
    _compare(
        lambda x, y, z: L.triplet_margin_loss(x, y, z, reduction=reduction, **kw),
        lambda x, y, z: F.triplet_margin_loss(x, y, z, reduction=reduction, **kw),
        a,
        pos,
        neg,
    )
    per_sample = L.triplet_margin_loss(a, pos, neg, reduction="none", **kw)
    assert per_sample.shape == (7,) and bool((per_sample > 0).any()) and bool((per_sample == 0).any())


def test_triplet_unbatched_non_contiguous_gradcheck_and_coincident_points():
    g = _g(43)
    a = _leaf(5, g=g)
    _compare(
        lambda x: L.triplet_margin_loss(x, x.detach() + 0.1, -x.detach()),
        lambda x: F.triplet_margin_loss(x, x.detach() + 0.1, -x.detach()),
        a,
    )
    b = torch.randn(3, 6, generator=g).t()  # [6, 3], non-contiguous
    c, d = torch.randn(6, 3, generator=g), torch.randn(6, 3, generator=g)
    torch.testing.assert_close(L.triplet_margin_loss(b, c, d, swap=True), F.triplet_margin_loss(b.contiguous(), c, d, swap=True))
    x = _leaf(4, 3, g=g, dtype=torch.float64)
    y, z = torch.randn(4, 3, generator=g, dtype=torch.float64), torch.randn(4, 3, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda u: L.triplet_margin_loss(u, y, z, margin=5.0, p=1.5), (x,))
    # anchor == positive: eps keeps the gradient finite, like the reference
    e = torch.zeros(2, 3, requires_grad=True)
    out = L.triplet_margin_loss(e, e.detach().clone(), torch.ones(2, 3))
    out.backward()
    assert torch.isfinite(e.grad).all()


def test_triplet_validation():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"triplet_margin_loss: negative must have the same shape as anchor \(2, 3\); got \(2, 4\)"):
        L.triplet_margin_loss(x, x, torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"triplet_margin_loss: positive must have the same shape as anchor \(2, 3\); got \(1, 3\)"):
        L.triplet_margin_loss(x, torch.zeros(1, 3), x)
    with pytest.raises(ValueError, match=r"triplet_margin_loss: anchor must be 1-D or 2-D; got shape \(1, 2, 3\)"):
        L.triplet_margin_loss(torch.zeros(1, 2, 3), torch.zeros(1, 2, 3), torch.zeros(1, 2, 3))
    with pytest.raises(ValueError, match=r"triplet_margin_loss: margin must be > 0; got 0.0"):
        L.triplet_margin_loss(x, x, x, margin=0.0)
    with pytest.raises(ValueError, match=r"triplet_margin_loss: p must be > 0; got -1"):
        L.triplet_margin_loss(x, x, x, p=-1)
    with pytest.raises(ValueError, match=r"triplet_margin_loss: eps must be >= 0; got -0.1"):
        L.triplet_margin_loss(x, x, x, eps=-0.1)
    with pytest.raises(TypeError, match=r"triplet_margin_loss: swap must be a bool; got int 1"):
        L.triplet_margin_loss(x, x, x, swap=1)
    with pytest.raises(ValueError, match=r"triplet_margin_loss: reduction must be one of \('none', 'mean', 'sum'\); got 'batchmean'"):
        L.triplet_margin_loss(x, x, x, reduction="batchmean")
    with pytest.raises(TypeError, match=r"triplet_margin_loss: negative must be a floating-point tensor; got dtype torch.int64"):
        L.triplet_margin_loss(x, x, torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"triplet_margin_loss: anchor must not be empty; got shape \(0, 3\)"):
        L.triplet_margin_loss(x[:0], x[:0], x[:0])


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("margin", [1.0, 0.5, -0.2])
@pytest.mark.parametrize("use_weight", [False, True])
def test_multi_margin_matches_torch(reduction, p, margin, use_weight):
    g = _g(44)
    x = _leaf(8, 5, g=g, scale=1.5)
    y = torch.randint(0, 5, (8,), generator=g)
    w = torch.rand(5, generator=g) + 0.5 if use_weight else None
    kw = {"p": p, "margin": margin, "weight": w, "reduction": reduction}
    _compare(lambda a: L.multi_margin_loss(a, y, **kw), lambda a: F.multi_margin_loss(a, y, **kw), x)


def test_multi_margin_slow_formula_unbatched_non_contiguous_and_gradcheck():
    g = _g(45)
    x = torch.randn(4, 6, generator=g, dtype=torch.float64)
    xt = x.t()  # [6, 4], non-contiguous
    target = torch.tensor([0, 3, 3, 1, 2, 0])
    rows = []
    for i in range(6):
        terms = [torch.clamp(1.0 - xt[i, target[i]] + xt[i, j], min=0.0) for j in range(4) if j != int(target[i])]
        rows.append(torch.stack(terms).sum() / 4)
    torch.testing.assert_close(L.multi_margin_loss(xt, target, reduction="none"), torch.stack(rows))
    torch.testing.assert_close(L.multi_margin_loss(xt[2], target[2]), F.multi_margin_loss(xt[2], target[2]))
    leaf = xt.contiguous().requires_grad_()
    assert torch.autograd.gradcheck(lambda a: L.multi_margin_loss(a, target, p=2, margin=3.0), (leaf,))


def test_multi_margin_validation():
    x = torch.zeros(3, 4)
    y = torch.tensor([0, 1, 2])
    with pytest.raises(ValueError, match=r"multi_margin_loss: target class indices must be in \[0, 3\]; got 4"):
        L.multi_margin_loss(x, torch.tensor([0, 4, 1]))
    with pytest.raises(ValueError, match=r"multi_margin_loss: target class indices must be in \[0, 3\]; got -1"):
        L.multi_margin_loss(x, torch.tensor([0, -1, 1]))
    with pytest.raises(ValueError, match=r"multi_margin_loss: target must have shape \(3,\); got \(3, 1\)"):
        L.multi_margin_loss(x, y[:, None])
    with pytest.raises(TypeError, match=r"multi_margin_loss: target must be an integer tensor; got dtype torch.float32"):
        L.multi_margin_loss(x, y.float())
    with pytest.raises(ValueError, match=r"multi_margin_loss: p must be in \[1, 2\]; got 3"):
        L.multi_margin_loss(x, y, p=3)
    with pytest.raises(TypeError, match=r"multi_margin_loss: p must be an int; got float 1.0"):
        L.multi_margin_loss(x, y, p=1.0)
    with pytest.raises(ValueError, match=r"multi_margin_loss: weight must have shape \(4,\); got \(3,\)"):
        L.multi_margin_loss(x, y, weight=torch.ones(3))
    with pytest.raises(ValueError, match=r"multi_margin_loss: reduction must be one of \('none', 'mean', 'sum'\); got 'avg'"):
        L.multi_margin_loss(x, y, reduction="avg")
    with pytest.raises(ValueError, match=r"multi_margin_loss: logits must be 1-D or 2-D; got shape \(3, 4, 1\)"):
        L.multi_margin_loss(x[..., None], y)
    with pytest.raises(ValueError, match=r"multi_margin_loss: margin must be a finite number; got nan"):
        L.multi_margin_loss(x, y, margin=float("nan"))


# ---------------------------------------------------------------- logit-adjusted cross-entropy


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("tau", [0.0, 0.5, 1.0, 2.0])
def test_logit_adjusted_cross_entropy_matches_shifted_f_cross_entropy(reduction, tau):
    g = _g(31)
    z = _leaf(12, 5, g=g, scale=2.0)
    y = torch.randint(0, 5, (12,), generator=g)
    prior = torch.tensor([0.6, 0.25, 0.1, 0.04, 0.01])
    _compare(
        lambda a: L.logit_adjusted_cross_entropy(a, y, prior, tau=tau, reduction=reduction),
        lambda a: F.cross_entropy(a + tau * prior.log(), y, reduction=reduction),
        z,
    )


def test_logit_adjusted_cross_entropy_properties_gradcheck_and_layouts():
    g = _g(32)
    z = torch.randn(9, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (9,), generator=g)
    prior = torch.tensor([0.7, 0.2, 0.05, 0.05], dtype=torch.float64)
    # tau = 0 is the plain cross-entropy; a uniform prior changes nothing; the prior need not sum to 1
    torch.testing.assert_close(L.logit_adjusted_cross_entropy(z, y, prior, tau=0.0), F.cross_entropy(z, y))
    torch.testing.assert_close(L.logit_adjusted_cross_entropy(z, y, torch.full((4,), 0.25, dtype=torch.float64)),
                               F.cross_entropy(z, y))
    torch.testing.assert_close(L.logit_adjusted_cross_entropy(z, y, 10 * prior), L.logit_adjusted_cross_entropy(z, y, prior))
    # two classes: the binary cross-entropy of the logit difference shifted by tau * log(pi_1 / pi_0)
    z2 = torch.randn(7, 2, generator=g, dtype=torch.float64)
    y2 = torch.randint(0, 2, (7,), generator=g)
    p2 = torch.tensor([0.98, 0.02], dtype=torch.float64)
    torch.testing.assert_close(
        L.logit_adjusted_cross_entropy(z2, y2, p2),
        F.binary_cross_entropy_with_logits(z2[:, 1] - z2[:, 0] + math.log(0.02 / 0.98), y2.double()),
    )
    # gradient: softmax(z + tau log pi) - onehot, checked numerically in float64
    zz = z.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda a: L.logit_adjusted_cross_entropy(a, y, prior, tau=1.5), (zz,))
    # non-contiguous logits, float32 prior with float64 logits, int32 targets, empty batch, extreme logits
    zt = torch.randn(4, 9, generator=g, dtype=torch.float64).T  # [9, 4], not contiguous
    assert not zt.is_contiguous()
    torch.testing.assert_close(L.logit_adjusted_cross_entropy(zt, y, prior.float()),
                               L.logit_adjusted_cross_entropy(zt.contiguous(), y.int(), prior))
    empty = L.logit_adjusted_cross_entropy(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), prior.float(),
                                           reduction="sum")
    assert empty.item() == 0.0
    big = (torch.tensor([[100.0, -100.0], [-100.0, 100.0]])).requires_grad_()
    out = L.logit_adjusted_cross_entropy(big, torch.tensor([1, 0]), torch.tensor([0.5, 0.5]))
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(big.grad).all() and out.item() == pytest.approx(200.0)


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda z, y, p: L.logit_adjusted_cross_entropy(z.long(), y, p), TypeError,
         r"logit_adjusted_cross_entropy: logits must be a floating-point tensor"),
        (lambda z, y, p: L.logit_adjusted_cross_entropy(z[0], y, p), ValueError,
         r"logit_adjusted_cross_entropy: logits must be 2-D; got shape \(3,\)"),
        (lambda z, y, p: L.logit_adjusted_cross_entropy(z, y.float(), p), TypeError,
         r"logit_adjusted_cross_entropy: target must hold integer class indices"),
        (lambda z, y, p: L.logit_adjusted_cross_entropy(z, y[:2], p), ValueError,
         r"logit_adjusted_cross_entropy: target must have shape \(4,\) for logits of shape \(4, 3\); got \(2,\)"),
        (lambda z, y, p: L.logit_adjusted_cross_entropy(z, y + 3, p), ValueError,
         r"logit_adjusted_cross_entropy: target class indices must be in \[0, 2\]"),
        (lambda z, y, p: L.logit_adjusted_cross_entropy(z, y, p[:2]), ValueError,
         r"logit_adjusted_cross_entropy: class_prior must have shape \(3,\); got \(2,\)"),
        (lambda z, y, p: L.logit_adjusted_cross_entropy(z, y, [0.5, 0.3, 0.2]), TypeError,
         r"logit_adjusted_cross_entropy: class_prior must be a torch.Tensor; got list"),
        (lambda z, y, p: L.logit_adjusted_cross_entropy(z, y, torch.tensor([0.5, 0.5, 0.0])), ValueError,
         r"logit_adjusted_cross_entropy: class_prior must be positive and finite"),
        (lambda z, y, p: L.logit_adjusted_cross_entropy(z, y, p, tau=-1.0), ValueError,
         r"logit_adjusted_cross_entropy: tau must be >= 0; got -1.0"),
        (lambda z, y, p: L.logit_adjusted_cross_entropy(z, y, p, tau="1"), TypeError,
         r"logit_adjusted_cross_entropy: tau must be a real number"),
        (lambda z, y, p: L.logit_adjusted_cross_entropy(z, y, p, reduction="batchmean"), ValueError,
         r"logit_adjusted_cross_entropy: reduction must be one of"),
    ],
)
def test_logit_adjusted_cross_entropy_validation(call, exc, match):
    z = torch.randn(4, 3, generator=_g(33))
    y = torch.tensor([0, 2, 1, 0])
    p = torch.tensor([0.7, 0.2, 0.1])
    with pytest.raises(exc, match=match):
        call(z, y, p)
