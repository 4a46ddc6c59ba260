"""Tests of dlkb.fewlabels against scikit-learn, torch.optim.swa_utils and the papers' formulas written out slowly."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import entropy
from sklearn.decomposition import PCA
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from dlkb import fewlabels as fl
from dlkb.models import LeNet

# ---------------------------------------------------------------------------- slow references


def slow_nt_xent(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> torch.Tensor:
    """Chen et al. 2020, Eq. (1) and Algorithm 1, one anchor and one candidate at a time."""
    z = torch.cat([z1, z2])
    n2 = z.shape[0]
    n = n2 // 2
    total = 0.0
    for i in range(n2):
        pair = i + n if i < n else i - n
        sims = []
        for j in range(n2):
            if j != i:
                cos = (z[i] @ z[j]) / (z[i].norm() * z[j].norm())
                sims.append((j, cos / tau))
        denominator = sum(torch.exp(s) for _, s in sims)
        positive = next(s for j, s in sims if j == pair)
        total = total - torch.log(torch.exp(positive) / denominator)
    return total / n2


def slow_simsiam(p1, p2, z1, z2, stop_gradient: bool) -> torch.Tensor:
    if stop_gradient:
        z1, z2 = z1.detach(), z2.detach()

    def d(p, z):  # Chen & He 2021, Eq. (1): negative cosine similarity, averaged over the batch
        return -sum((p[i] @ z[i]) / (p[i].norm() * z[i].norm()) for i in range(p.shape[0])) / p.shape[0]

    return 0.5 * d(p1, z2) + 0.5 * d(p2, z1)


def slow_fixmatch(weak: torch.Tensor, strong: torch.Tensor, tau: float) -> torch.Tensor:
    total = 0.0
    for b in range(weak.shape[0]):
        q = torch.exp(weak[b].detach()) / torch.exp(weak[b].detach()).sum()
        if q.max() >= tau:
            target = int(q.argmax())
            total = total - (strong[b, target] - torch.logsumexp(strong[b], dim=0))
    return total / weak.shape[0]


def reference_effective_rank(z: np.ndarray) -> float:
    s = np.linalg.svd(z, compute_uv=False)
    return float(np.exp(entropy(s / s.sum())))  # scipy normalizes again; 0 log 0 = 0


# ---------------------------------------------------------------------------- pca


@pytest.mark.parametrize("shape, k", [((50, 6), 3), ((20, 9), 9), ((5, 12), 4), ((30, 4), 1)])
def test_pca_matches_sklearn(shape, k, generator):
    x = torch.randn(*shape, generator=generator, dtype=torch.float64) @ torch.randn(
        shape[1], shape[1], generator=generator, dtype=torch.float64
    )
    ours = fl.pca(x, k)
    ref = PCA(n_components=k, svd_solver="full").fit(x.numpy())
    assert ours.components.shape == (k, shape[1]) and ours.explained_variance.shape == (k,)
    torch.testing.assert_close(ours.mean, torch.from_numpy(ref.mean_))
    torch.testing.assert_close(ours.explained_variance, torch.from_numpy(ref.explained_variance_))
    torch.testing.assert_close(ours.explained_variance_ratio, torch.from_numpy(ref.explained_variance_ratio_))
    ref_components = torch.from_numpy(ref.components_)
    signs = torch.sign((ours.components * ref_components).sum(dim=1, keepdim=True))  # up to the sign of each row
    torch.testing.assert_close(ours.components, signs * ref_components)
    torch.testing.assert_close(ours.transform(x), torch.from_numpy(ref.transform(x.numpy())) * signs.T)


def test_pca_sign_rule_and_digits_match_sklearn_exactly():
    from sklearn.datasets import load_digits

    x = torch.from_numpy(load_digits().data / 16.0)  # [1797, 64], float64
    ours = fl.pca(x, 10)
    ref = PCA(n_components=10, svd_solver="full").fit(x.numpy())
    torch.testing.assert_close(ours.components, torch.from_numpy(ref.components_))  # same sign rule
    rows = torch.arange(10)
    assert (ours.components[rows, ours.components.abs().argmax(dim=1)] > 0).all()
    torch.testing.assert_close(ours.components @ ours.components.T, torch.eye(10, dtype=torch.float64))


def test_pca_noncontiguous_float32_and_gradient(generator):
    x = torch.randn(8, 30, generator=generator).T  # [30, 8], a transposed view
    assert not x.is_contiguous()
    ours = fl.pca(x, 4)
    ref = PCA(n_components=4, svd_solver="full").fit(x.numpy())
    torch.testing.assert_close(ours.explained_variance, torch.from_numpy(ref.explained_variance_), rtol=1e-4, atol=1e-5)
    # The explained variances are eigenvalues of the covariance: differentiable while distinct.
    x64 = torch.randn(12, 5, generator=generator, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: fl.pca(v, 3).explained_variance, (x64,))


def test_pca_validation():
    x = torch.zeros(5, 3)
    with pytest.raises(ValueError, match=r"pca: k must be in \[1, 3\]; got 4"):
        fl.pca(x, 4)
    with pytest.raises(ValueError, match=r"pca: k must be in \[1, 3\]; got 0"):
        fl.pca(x, 0)
    with pytest.raises(TypeError, match=r"pca: k must be an int; got float 2.0"):
        fl.pca(x, 2.0)
    with pytest.raises(ValueError, match=r"pca: x must be 2-D; got shape \(5,\)"):
        fl.pca(torch.zeros(5), 1)
    with pytest.raises(ValueError, match=r"pca: x must have at least 2 rows and 1 column; got shape \(1, 3\)"):
        fl.pca(torch.zeros(1, 3), 1)
    with pytest.raises(TypeError, match=r"pca: x must be a floating-point tensor; got dtype torch.int64"):
        fl.pca(torch.zeros(5, 3, dtype=torch.int64), 1)
    with pytest.raises(TypeError, match=r"pca: x must be a torch.Tensor; got ndarray"):
        fl.pca(np.zeros((5, 3)), 1)
    with pytest.raises(ValueError, match=r"PCAResult.transform: x must have 3 features; got shape \(2, 4\)"):
        fl.pca(torch.randn(5, 3), 2).transform(torch.zeros(2, 4))


# ---------------------------------------------------------------------------- nt_xent


@pytest.mark.parametrize("tau", [0.1, 0.5, 2.0])
def test_nt_xent_matches_slow_formula_with_gradients(tau, generator):
    z1 = torch.randn(5, 4, generator=generator, dtype=torch.float64, requires_grad=True)
    z2 = torch.randn(5, 4, generator=generator, dtype=torch.float64, requires_grad=True)
    ours = fl.nt_xent_loss(z1, z2, temperature=tau)
    ref = slow_nt_xent(z1, z2, tau)
    torch.testing.assert_close(ours, ref)
    g_ours = torch.autograd.grad(ours, (z1, z2))
    g_ref = torch.autograd.grad(ref, (z1, z2))
    torch.testing.assert_close(g_ours, g_ref)
    assert torch.autograd.gradcheck(lambda a, b: fl.nt_xent_loss(a, b, temperature=tau), (z1, z2))


def test_nt_xent_properties(generator):
    z = torch.randn(6, 3, generator=generator, dtype=torch.float64)
    # Scale-invariant (cosine similarity), symmetric in the two views.
    torch.testing.assert_close(fl.nt_xent_loss(z, 3 * z[[1, 0, 2, 3, 4, 5]]), fl.nt_xent_loss(3 * z[[1, 0, 2, 3, 4, 5]], z))
    torch.testing.assert_close(fl.nt_xent_loss(z, z), fl.nt_xent_loss(2 * z, 0.5 * z))
    # One pair: the only candidate is the positive, the loss is zero.
    assert fl.nt_xent_loss(z[:1], z[1:2]).item() == pytest.approx(0.0, abs=1e-12)
    # Uninformative embeddings (all equal): log(2N - 1).
    same = torch.ones(4, 3, dtype=torch.float64)
    assert fl.nt_xent_loss(same, same).item() == pytest.approx(math.log(7))
    # Non-contiguous inputs.
    a = torch.randn(3, 6, generator=generator, dtype=torch.float64).T
    b = torch.randn(3, 6, generator=generator, dtype=torch.float64).T
    assert not a.is_contiguous()
    torch.testing.assert_close(fl.nt_xent_loss(a, b), slow_nt_xent(a, b, 0.5))


def test_nt_xent_validation():
    z = torch.zeros(4, 3)
    with pytest.raises(ValueError, match=r"nt_xent_loss: temperature must be > 0; got 0\.0"):
        fl.nt_xent_loss(z, z, temperature=0.0)
    with pytest.raises(ValueError, match=r"nt_xent_loss: temperature must be > 0; got -1\.0"):
        fl.nt_xent_loss(z, z, temperature=-1.0)
    with pytest.raises(TypeError, match=r"nt_xent_loss: temperature must be a real number; got str"):
        fl.nt_xent_loss(z, z, temperature="0.5")
    with pytest.raises(ValueError, match=r"nt_xent_loss: z2 must have the same shape as z1 \(4, 3\); got \(4, 2\)"):
        fl.nt_xent_loss(z, torch.zeros(4, 2))
    with pytest.raises(ValueError, match=r"nt_xent_loss: z1 must be 2-D; got shape \(4,\)"):
        fl.nt_xent_loss(torch.zeros(4), torch.zeros(4))
    with pytest.raises(ValueError, match=r"nt_xent_loss: z1 must not be empty; got shape \(0, 3\)"):
        fl.nt_xent_loss(torch.zeros(0, 3), torch.zeros(0, 3))
    with pytest.raises(TypeError, match=r"nt_xent_loss: z2 must be a floating-point tensor; got dtype torch.int64"):
        fl.nt_xent_loss(z, torch.zeros(4, 3, dtype=torch.int64))


# ---------------------------------------------------------------------------- simsiam


@pytest.mark.parametrize("stop_gradient", [True, False])
def test_simsiam_matches_slow_formula_and_cosine_similarity(stop_gradient, generator):
    tensors = [torch.randn(6, 5, generator=generator, dtype=torch.float64, requires_grad=True) for _ in range(4)]
    p1, p2, z1, z2 = tensors
    ours = fl.simsiam_loss(p1, p2, z1, z2, stop_gradient=stop_gradient)
    ref = slow_simsiam(p1, p2, z1, z2, stop_gradient)
    lib = -0.5 * (F.cosine_similarity(p1, (z2.detach() if stop_gradient else z2)).mean()
                  + F.cosine_similarity(p2, (z1.detach() if stop_gradient else z1)).mean())
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(ours, lib)
    g_ours = torch.autograd.grad(ours, tensors, allow_unused=True)
    g_ref = torch.autograd.grad(ref, tensors, allow_unused=True)
    for a, b in zip(g_ours, g_ref):
        if b is None:
            assert a is None or torch.count_nonzero(a) == 0
        else:
            torch.testing.assert_close(a, b)
    if stop_gradient:
        assert g_ours[2] is None and g_ours[3] is None  # no gradient into z: the stop-gradient
    else:
        assert g_ours[2] is not None and g_ours[2].abs().sum() > 0
    if stop_gradient:  # the value depends on z but its gradient is zero by design: check p only
        zs = (z1.detach(), z2.detach())
        assert torch.autograd.gradcheck(lambda a, b: fl.simsiam_loss(a, b, *zs, stop_gradient=True), (p1, p2))
    else:
        assert torch.autograd.gradcheck(lambda *t: fl.simsiam_loss(*t, stop_gradient=False), tuple(tensors))


def test_simsiam_range_and_noncontiguous(generator):
    z = torch.randn(4, 3, generator=generator, dtype=torch.float64)
    assert fl.simsiam_loss(z, z, 2 * z, z, stop_gradient=True).item() == pytest.approx(-1.0)
    assert fl.simsiam_loss(z, z, -z, -z).item() == pytest.approx(1.0)
    t = torch.randn(3, 4, generator=generator, dtype=torch.float64).T
    assert not t.is_contiguous()
    torch.testing.assert_close(fl.simsiam_loss(t, z, z, t), slow_simsiam(t, z, z, t, True))


def test_simsiam_validation():
    z = torch.zeros(4, 3)
    with pytest.raises(ValueError, match=r"simsiam_loss: z2 must have the same shape as p1 \(4, 3\); got \(3, 3\)"):
        fl.simsiam_loss(z, z, z, torch.zeros(3, 3))
    with pytest.raises(ValueError, match=r"simsiam_loss: p2 must have the same shape as p1 \(4, 3\); got \(4, 1\)"):
        fl.simsiam_loss(z, torch.zeros(4, 1), z, z)
    with pytest.raises(TypeError, match=r"simsiam_loss: stop_gradient must be a bool; got int 1"):
        fl.simsiam_loss(z, z, z, z, stop_gradient=1)
    with pytest.raises(TypeError, match=r"simsiam_loss: z1 must be a torch.Tensor; got list"):
        fl.simsiam_loss(z, z, [0.0], z)


# ---------------------------------------------------------------------------- effective rank


@pytest.mark.parametrize("shape", [(20, 5), (4, 9), (7, 7)])
def test_effective_rank_matches_numpy_scipy(shape, generator):
    z = torch.randn(*shape, generator=generator, dtype=torch.float64) + 2.0  # not centred
    torch.testing.assert_close(fl.effective_rank(z).item(), reference_effective_rank(z.numpy()))


def test_effective_rank_extremes_gradient_and_noncontiguous(generator):
    # Every row the same vector: one non-zero singular value, rank 1 (it would be 0 after centring).
    one = torch.ones(10, 1, dtype=torch.float64) @ torch.randn(1, 6, generator=generator, dtype=torch.float64)
    assert fl.effective_rank(one).item() == pytest.approx(1.0, abs=1e-6)
    # Orthogonal columns of equal norm: all singular values equal, rank = E.
    q, _ = torch.linalg.qr(torch.randn(12, 5, generator=generator, dtype=torch.float64))
    assert fl.effective_rank(q).item() == pytest.approx(5.0)
    z = torch.randn(9, 4, generator=generator, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fl.effective_rank, (z,))
    t = torch.randn(4, 9, generator=generator, dtype=torch.float64).T
    assert not t.is_contiguous()
    assert fl.effective_rank(t).item() == pytest.approx(reference_effective_rank(t.numpy()))
    # A rank-deficient input still has a finite gradient (0 log 0 = 0).
    low = torch.cat([one, torch.zeros(10, 0, dtype=torch.float64)], dim=1).requires_grad_(True)
    fl.effective_rank(low).backward()
    assert torch.isfinite(low.grad).all()


def test_effective_rank_validation():
    with pytest.raises(ValueError, match=r"effective_rank: z must be 2-D; got shape \(2, 3, 4\)"):
        fl.effective_rank(torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match=r"effective_rank: z must be 2-D; got shape \(5,\)"):
        fl.effective_rank(torch.ones(5))
    with pytest.raises(ValueError, match=r"effective_rank: z must not be empty; got shape \(0, 3\)"):
        fl.effective_rank(torch.zeros(0, 3))
    with pytest.raises(ValueError, match=r"effective_rank: z must not be all zeros; got shape \(2, 3\) of zeros"):
        fl.effective_rank(torch.zeros(2, 3))
    with pytest.raises(TypeError, match=r"effective_rank: z must be a floating-point tensor; got dtype torch.int64"):
        fl.effective_rank(torch.ones(2, 3, dtype=torch.int64))


# ---------------------------------------------------------------------------- fixmatch


@pytest.mark.parametrize("threshold", [0.0, 0.5, 0.95, 1.0])
def test_fixmatch_matches_slow_formula_and_cross_entropy(threshold, generator):
    weak = 3 * torch.randn(16, 4, generator=generator, dtype=torch.float64)
    weak[0] = torch.tensor([10.0, 0.0, 0.0, 0.0], dtype=torch.float64)  # surely above 0.95
    weak.requires_grad_(True)
    strong = torch.randn(16, 4, generator=generator, dtype=torch.float64, requires_grad=True)
    ours = fl.fixmatch_loss(weak, strong, threshold=threshold)
    ref = slow_fixmatch(weak, strong, threshold)
    probs = torch.softmax(weak.detach(), dim=1)
    mask = (probs.max(dim=1).values >= threshold).double()
    lib = (F.cross_entropy(strong, probs.argmax(dim=1), reduction="none") * mask).mean()
    torch.testing.assert_close(ours, torch.as_tensor(ref, dtype=torch.float64))
    torch.testing.assert_close(ours, lib)
    (g_strong,) = torch.autograd.grad(ours, strong)
    (g_lib,) = torch.autograd.grad(lib, strong)
    torch.testing.assert_close(g_strong, g_lib)
    if threshold < 1.0:
        assert ours.item() > 0
    assert torch.autograd.gradcheck(lambda s: fl.fixmatch_loss(weak, s, threshold=threshold), (strong,))


def test_fixmatch_no_gradient_into_weak_and_mean_over_all(generator):
    weak = torch.tensor([[8.0, 0.0], [0.0, 0.0]], dtype=torch.float64, requires_grad=True)  # confident, unsure
    strong = torch.tensor([[0.0, 1.0], [5.0, 0.0]], dtype=torch.float64, requires_grad=True)
    loss = fl.fixmatch_loss(weak, strong, threshold=0.95)
    # Only the first sample counts, and the mean divides by B = 2, not by the 1 confident sample.
    expected = F.cross_entropy(strong[:1], torch.tensor([0])) / 2
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert weak.grad is None
    t = torch.randn(4, 7, generator=generator, dtype=torch.float64).T
    assert not t.is_contiguous()
    torch.testing.assert_close(fl.fixmatch_loss(t, t.flip(0), threshold=0.3), torch.as_tensor(slow_fixmatch(t, t.flip(0), 0.3)))


def test_fixmatch_threshold_is_inclusive():
    # Softmax of (800, 0) is exactly 1.0 in float64: it passes threshold 1.0 (>=, not >).
    weak = torch.tensor([[800.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    strong = torch.tensor([[0.5, 1.0], [1.0, 0.0]], dtype=torch.float64)
    assert torch.softmax(weak, dim=1).max().item() == 1.0
    loss = fl.fixmatch_loss(weak, strong, threshold=1.0)
    torch.testing.assert_close(loss, F.cross_entropy(strong[:1], torch.tensor([0])) / 2)
    # Threshold 0.5 with a tie (0.5, 0.5): the maximum equals the threshold and counts.
    torch.testing.assert_close(
        fl.fixmatch_loss(weak, strong, threshold=0.5), F.cross_entropy(strong, torch.tensor([0, 0]), reduction="sum") / 2
    )


def test_fixmatch_validation():
    w = torch.zeros(3, 4)
    with pytest.raises(ValueError, match=r"fixmatch_loss: threshold must be in \[0, 1\]; got 1\.5"):
        fl.fixmatch_loss(w, w, threshold=1.5)
    with pytest.raises(ValueError, match=r"fixmatch_loss: threshold must be in \[0, 1\]; got -0\.1"):
        fl.fixmatch_loss(w, w, threshold=-0.1)
    with pytest.raises(ValueError, match=r"fixmatch_loss: logits_strong must have the same shape as logits_weak \(3, 4\); got \(3, 5\)"):
        fl.fixmatch_loss(w, torch.zeros(3, 5))
    with pytest.raises(ValueError, match=r"fixmatch_loss: logits_weak must be 2-D; got shape \(3,\)"):
        fl.fixmatch_loss(torch.zeros(3), torch.zeros(3))
    with pytest.raises(TypeError, match=r"fixmatch_loss: threshold must be a real number; got NoneType"):
        fl.fixmatch_loss(w, w, threshold=None)


# ---------------------------------------------------------------------------- ema


def test_ema_update_matches_averaged_model_and_formula():
    torch.manual_seed(0)
    online, target = LeNet(num_classes=4), LeNet(num_classes=4)
    reference = AveragedModel(target, multi_avg_fn=get_ema_multi_avg_fn(0.9))  # copies target
    reference.update_parameters(target)  # first call copies: now equal to target
    before = [p.clone() for p in target.parameters()]
    assert fl.ema_update(target, online, decay=0.9) is None
    reference.update_parameters(online)
    for t, r, b, o in zip(target.parameters(), reference.module.parameters(), before, online.parameters()):
        torch.testing.assert_close(t, r)
        torch.testing.assert_close(t, 0.9 * b + 0.1 * o)
        assert t.grad is None and t.grad_fn is None


def test_ema_update_extremes_no_autograd_and_validation():
    a, b = nn.Linear(3, 2), nn.Linear(3, 2)
    a_copy = copy.deepcopy(a)
    fl.ema_update(a, b, decay=1.0)
    torch.testing.assert_close(a.weight, a_copy.weight)
    fl.ema_update(a, b, decay=0.0)
    torch.testing.assert_close(a.weight, b.weight)
    assert a.weight.requires_grad and a.weight.grad_fn is None  # still a leaf parameter
    with pytest.raises(ValueError, match=r"ema_update: decay must be in \[0, 1\]; got 1\.01"):
        fl.ema_update(a, b, decay=1.01)
    with pytest.raises(ValueError, match=r"ema_update: decay must be in \[0, 1\]; got -0\.5"):
        fl.ema_update(a, b, decay=-0.5)
    with pytest.raises(TypeError, match=r"ema_update: decay must be a real number; got bool"):
        fl.ema_update(a, b, decay=True)
    with pytest.raises(ValueError, match=r"ema_update: online must have the same parameter shapes as target"):
        fl.ema_update(a, nn.Linear(3, 3), decay=0.5)
    with pytest.raises(TypeError, match=r"ema_update: online must be an nn\.Module; got Tensor"):
        fl.ema_update(a, torch.zeros(2), decay=0.5)


# ---------------------------------------------------------------------------- augmentations and helpers


def test_random_translate_uses_whole_pixel_shifts(generator):
    x = torch.rand(40, 1, 8, 8, generator=generator)
    out = fl.random_translate(x, 1, generator=torch.Generator().manual_seed(3))
    from dlkb.augment import translate

    for i in range(40):  # every output is one of the 9 shifts of its input
        assert any(torch.equal(out[i], translate(x[i], dx, dy)) for dx in (-1, 0, 1) for dy in (-1, 0, 1))
    assert torch.equal(fl.random_translate(x, 0), x)
    with pytest.raises(ValueError, match=r"random_translate: max_shift must be >= 0; got -1"):
        fl.random_translate(x, -1)


def test_cutout_and_strong_augment(generator):
    x = torch.ones(30, 1, 8, 8)
    out = fl.cutout(x, 4, generator=generator)
    zeros = (out == 0).sum(dim=(1, 2, 3))
    assert (zeros <= 16).all() and (zeros >= 4).all()  # a 4x4 square, clipped by at most half on each side
    assert torch.equal(fl.cutout(x, 0, generator=generator), x)
    s = fl.strong_augment(torch.rand(10, 1, 8, 8, generator=generator), generator=generator)
    assert s.shape == (10, 1, 8, 8) and s.min() >= 0 and s.max() <= 1


def test_sample_per_class(generator):
    y = torch.tensor([0, 1, 2] * 5)
    idx = fl.sample_per_class(y, 2, generator=generator)
    assert idx.shape == (6,) and torch.equal(y[idx], torch.tensor([0, 0, 1, 1, 2, 2]))
    assert torch.equal(fl.sample_per_class(y, None), torch.arange(15))
    with pytest.raises(ValueError, match=r"sample_per_class: k must be at most the size of the smallest class \(5\); got 6"):
        fl.sample_per_class(y, 6)


def test_training_helpers_run_and_learn(generator):
    torch.manual_seed(0)
    x = torch.rand(40, 1, 8, 8, generator=generator)
    y = (x.mean(dim=(1, 2, 3)) > x.mean()).long()
    model = LeNet(num_classes=2)
    losses = fl.train_supervised(model, x, y, steps=30, lr=1e-2, generator=generator)
    assert len(losses) == 30 and losses[-1] < losses[0]
    h = fl.train_fixmatch(model, x[:10], y[:10], x[10:], steps=3, batch_size=4, mu=2, generator=generator)
    assert len(h["loss"]) == 3 and all(0 <= r <= 1 for r in h["mask_rate"])
    assert len(fl.train_pseudo_label(model, x[:10], y[:10], x[10:], steps=4, generator=generator)) == 4
    enc, proj = LeNet(num_classes=8), fl.projection_mlp(8, 8, 4)
    assert len(fl.train_simclr(enc, proj, x, steps=2, batch_size=8, generator=generator)) == 2
    hist = fl.train_simsiam(enc, proj, fl.projection_mlp(4, 2, 4), x, steps=4, every=2, generator=generator)
    assert hist.steps == [0, 2, 4] and len(hist.rank_z) == 3 and len(hist.loss) == 4
    acc = fl.linear_probe(x.flatten(1), y, x.flatten(1), y)
    assert 0.5 <= acc <= 1.0
