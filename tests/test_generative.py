import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy, wasserstein_distance
from torch import nn

from dlkb.generative import (
    VAE,
    EnsembleMLP,
    MaskedConv2d,
    PixelCNN,
    cycle_consistency_loss,
    gan_discriminator_loss,
    gan_generator_loss,
    gaussian_kl,
    gradient_penalty,
    js_divergence,
    kl_divergence,
    mode_coverage,
    mode_hit_rate,
    pixel_dependence,
    pixelcnn_sample,
    reparameterize,
    ring_of_gaussians,
    train_ring_gan,
    vae_loss,
    vae_loss_terms,
    wasserstein_1d,
    wgan_critic_loss,
    wgan_generator_loss,
)


def _dists(generator, shape=(5, 7), zeros=True):
    p = torch.rand(shape, generator=generator, dtype=torch.float64)
    if zeros:
        p[..., 0] = 0.0
    return p / p.sum(dim=-1, keepdim=True)


# ---------------------------------------------------------------- divergences


def test_kl_matches_scipy_with_zeros_and_batches(generator):
    p, q = _dists(generator), _dists(generator, zeros=False)
    ours = kl_divergence(p, q)
    assert ours.shape == (5,)
    reference = torch.tensor([entropy(a, b) for a, b in zip(p.numpy(), q.numpy())])
    torch.testing.assert_close(ours, reference)
    assert kl_divergence(p[0], p[0]).item() == pytest.approx(0.0, abs=1e-12)


def test_kl_is_infinite_where_q_misses_mass_and_asymmetric(generator):
    p = torch.tensor([0.5, 0.5, 0.0])
    q = torch.tensor([1.0, 0.0, 0.0])
    assert math.isinf(kl_divergence(p, q).item()) and math.isinf(entropy(p.numpy(), q.numpy()))
    assert kl_divergence(q, p).item() == pytest.approx(math.log(2))


def test_js_matches_scipy_and_is_log2_for_disjoint_supports(generator):
    p, q = _dists(generator), _dists(generator)
    reference = torch.tensor([jensenshannon(a, b) ** 2 for a, b in zip(p.numpy(), q.numpy())])
    torch.testing.assert_close(js_divergence(p, q), reference)
    torch.testing.assert_close(js_divergence(p, q), js_divergence(q, p))
    disjoint = js_divergence(torch.tensor([0.3, 0.7, 0.0, 0.0]), torch.tensor([0.0, 0.0, 0.9, 0.1]))
    assert disjoint.item() == pytest.approx(math.log(2))


def test_divergences_on_non_contiguous_inputs(generator):
    p = _dists(generator, (7, 5), zeros=False).t()  # a transposed view, renormalized along its last dim
    p = p / p.sum(dim=-1, keepdim=True)
    q = _dists(generator, (7, 5), zeros=False).t()
    q = q / q.sum(dim=-1, keepdim=True)
    assert not p.is_contiguous() and not q.is_contiguous()
    torch.testing.assert_close(kl_divergence(p, q), kl_divergence(p.contiguous(), q.contiguous()))
    torch.testing.assert_close(js_divergence(p, q), js_divergence(p.contiguous(), q.contiguous()))


@pytest.mark.parametrize("fn", [kl_divergence, js_divergence])
def test_divergence_validation(fn):
    name = fn.__name__
    good = torch.tensor([0.5, 0.5])
    with pytest.raises(ValueError, match=rf"{name}: p must sum to 1 over its last dimension; got a sum of 0.9"):
        fn(torch.tensor([0.4, 0.5]), good)
    with pytest.raises(ValueError, match=rf"{name}: q must have no negative entries; got minimum -0.5"):
        fn(good, torch.tensor([1.5, -0.5]))
    with pytest.raises(ValueError, match=rf"{name}: p and q must have the same shape; got \(2,\) and \(3,\)"):
        fn(good, torch.tensor([0.2, 0.3, 0.5]))
    with pytest.raises(TypeError, match=rf"{name}: p must be a floating-point tensor; got torch.int64"):
        fn(torch.tensor([1, 0]), good)
    with pytest.raises(TypeError, match=rf"{name}: q must be a torch.Tensor; got list"):
        fn(good, [0.5, 0.5])


def test_wasserstein_matches_scipy_for_unequal_sizes(generator):
    u = torch.randn(40, generator=generator, dtype=torch.float64)
    v = 2 + 0.5 * torch.randn(25, generator=generator, dtype=torch.float64)
    ours = wasserstein_1d(u, v)
    assert ours.item() == pytest.approx(wasserstein_distance(u.numpy(), v.numpy()), rel=1e-12)
    # Translating one sample by t moves the distance between identical samples by |t|.
    assert wasserstein_1d(u, u + 3.0).item() == pytest.approx(3.0)
    u_nc = torch.randn(80, generator=generator, dtype=torch.float64)[::2]
    assert wasserstein_1d(u_nc, v).item() == pytest.approx(wasserstein_distance(u_nc.numpy(), v.numpy()))


def test_wasserstein_gradient_and_validation(generator):
    u = torch.randn(10, generator=generator, dtype=torch.float64, requires_grad=True)
    v = torch.randn(10, generator=generator, dtype=torch.float64) + 5
    wasserstein_1d(u, v).backward()
    # Every u is left of every v: W = mean(v) - mean(u), so dW/du_i = -1/n.
    torch.testing.assert_close(u.grad, torch.full_like(u, -0.1))
    with pytest.raises(ValueError, match=r"wasserstein_1d: v_values must be a non-empty 1-D tensor; got shape \(2, 2\)"):
        wasserstein_1d(torch.zeros(3), torch.zeros(2, 2))
    with pytest.raises(TypeError, match="wasserstein_1d: u_values must be a floating-point tensor; got torch.int64"):
        wasserstein_1d(torch.arange(3), torch.zeros(2))


# ---------------------------------------------------------------- ring and coverage


def test_ring_of_gaussians(generator):
    x, centers = ring_of_gaussians(4000, modes=6, radius=3.0, std=0.1, generator=generator)
    assert x.shape == (4000, 2) and centers.shape == (6, 2)
    torch.testing.assert_close(centers.norm(dim=1), torch.full((6,), 3.0))
    nearest = torch.cdist(x, centers).argmin(dim=1)
    residual = x - centers[nearest]
    assert residual.std().item() == pytest.approx(0.1, rel=0.05)
    counts = torch.bincount(nearest, minlength=6).float()
    assert counts.min() > 550
    again, _ = ring_of_gaussians(5, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(again, ring_of_gaussians(5, generator=torch.Generator().manual_seed(1))[0])
    with pytest.raises(ValueError, match=r"ring_of_gaussians: modes must be >= 1; got 0"):
        ring_of_gaussians(3, modes=0)
    with pytest.raises(ValueError, match=r"ring_of_gaussians: std must be > 0; got 0"):
        ring_of_gaussians(3, std=0)


def test_mode_coverage_counts_modes_and_quality():
    centers = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    samples = torch.tensor([[0.05, 0.0], [0.0, 0.29], [10.0, 0.31], [5.0, 5.0]])  # std 0.1: radius 0.3
    covered, quality = mode_coverage(samples, centers, std=0.1)
    assert covered == 1 and quality == pytest.approx(0.5)
    covered, quality = mode_coverage(samples, centers, std=0.2)
    assert covered == 2 and quality == pytest.approx(0.75)
    with pytest.raises(ValueError, match=r"mode_coverage: samples must be \(N, D\) and centers \(M, D\)"):
        mode_coverage(torch.zeros(3, 3), centers, std=0.1)
    with pytest.raises(ValueError, match=r"mode_coverage: std must be > 0; got -1"):
        mode_coverage(samples, centers, std=-1)


def test_mode_coverage_min_count_ignores_stray_samples():
    centers = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    samples = torch.cat([torch.zeros(50, 2), torch.tensor([[10.0, 0.05]]), torch.tensor([[5.0, 5.0]] * 10)])
    assert mode_coverage(samples, centers, std=0.1) == (2, pytest.approx(51 / 61))
    assert mode_coverage(samples, centers, std=0.1, min_count=2)[0] == 1  # the single stray sample no longer counts
    assert mode_coverage(samples, centers, std=0.1, min_count=50)[0] == 1
    assert mode_coverage(samples, centers, std=0.1, min_count=51)[0] == 0
    with pytest.raises(ValueError, match=r"mode_coverage: min_count must be >= 1; got 0"):
        mode_coverage(samples, centers, std=0.1, min_count=0)
    with pytest.raises(TypeError, match=r"mode_coverage: min_count must be an int; got float"):
        mode_coverage(samples, centers, std=0.1, min_count=2.0)


# ---------------------------------------------------------------- gradient penalty


def test_gradient_penalty_of_a_linear_critic_is_known():
    a = torch.tensor([3.0, 4.0])  # gradient a everywhere, norm 5
    critic = lambda x: x @ a  # noqa: E731
    real, fake = torch.randn(16, 2), torch.randn(16, 2)
    assert gradient_penalty(critic, real, fake).item() == pytest.approx(16.0)


def test_gradient_penalty_uses_one_epsilon_per_sample(generator):
    # critic(x) = ||x||^2 / 2 has gradient x_hat itself.
    critic = lambda x: 0.5 * x.pow(2).sum(dim=(1, 2, 3))  # noqa: E731
    real = torch.randn(6, 1, 3, 3, dtype=torch.float64)
    fake = torch.randn(6, 1, 3, 3, dtype=torch.float64)
    seed_state = generator.get_state()
    ours = gradient_penalty(critic, real, fake, generator=generator)
    generator.set_state(seed_state)
    eps = torch.rand(6, 1, 1, 1, generator=generator, dtype=torch.float64)
    x_hat = eps * real + (1 - eps) * fake
    expected = ((x_hat.reshape(6, -1).norm(dim=1) - 1) ** 2).mean()
    torch.testing.assert_close(ours, expected)


def test_gradient_penalty_is_differentiable_for_the_critic():
    torch.manual_seed(0)
    critic = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1)).double()
    real, fake = torch.randn(5, 2, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
    weight = critic[0].weight

    def penalty_of(w):
        with torch.no_grad():
            critic[0].weight.copy_(w)
        return gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(3))

    gp = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(3))
    (grad,) = torch.autograd.grad(gp, weight)
    # Finite differences on one weight entry.
    w0 = weight.detach().clone()
    h = 1e-6
    wp, wm = w0.clone(), w0.clone()
    wp[0, 0] += h
    wm[0, 0] -= h
    numeric = (penalty_of(wp) - penalty_of(wm)) / (2 * h)
    with torch.no_grad():
        critic[0].weight.copy_(w0)
    assert grad[0, 0].item() == pytest.approx(numeric.item(), rel=1e-5)


def test_gradient_penalty_validation():
    critic = lambda x: x.sum(dim=1)  # noqa: E731
    with pytest.raises(ValueError, match=r"gradient_penalty: fake must have the same shape as real \(4, 2\); got \(4, 3\)"):
        gradient_penalty(critic, torch.zeros(4, 2), torch.zeros(4, 3))
    with pytest.raises(TypeError, match="gradient_penalty: critic must be callable; got int"):
        gradient_penalty(3, torch.zeros(4, 2), torch.zeros(4, 2))
    with pytest.raises(ValueError, match=r"gradient_penalty: critic must return shape \(4,\) or \(4, 1\); got \(\)"):
        gradient_penalty(lambda x: x.sum(), torch.zeros(4, 2), torch.zeros(4, 2))
    with pytest.raises(ValueError, match=r"gradient_penalty: real must be \(N, ...\) with N > 0; got \(4,\)"):
        gradient_penalty(critic, torch.zeros(4), torch.zeros(4))


# ---------------------------------------------------------------- VAE pieces


def test_reparameterize_formula_gradients_and_sampling(generator):
    mu = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    logvar = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    eps = torch.randn(3, 4, dtype=torch.float64)
    z = reparameterize(mu, logvar, eps)
    torch.testing.assert_close(z, mu + eps * torch.exp(0.5 * logvar))
    assert torch.autograd.gradcheck(lambda m, lv: reparameterize(m, lv, eps), (mu, logvar))
    big_mu, big_lv = torch.full((20000, 1), 2.0), torch.full((20000, 1), math.log(9.0))
    draws = reparameterize(big_mu, big_lv, generator=generator)
    assert draws.mean().item() == pytest.approx(2.0, abs=0.06) and draws.std().item() == pytest.approx(3.0, rel=0.03)
    a = reparameterize(big_mu[:5], big_lv[:5], generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(a, reparameterize(big_mu[:5], big_lv[:5], generator=torch.Generator().manual_seed(4)))
    with pytest.raises(ValueError, match=r"reparameterize: logvar must have the same shape as mu \(3, 4\); got \(3,\)"):
        reparameterize(mu, logvar[:, 0])
    with pytest.raises(ValueError, match=r"reparameterize: eps must have the same shape as mu \(3, 4\); got \(4,\) \(no broadcasting: reshape one of them explicitly\)"):
        reparameterize(mu, logvar, torch.zeros(4))


def test_gaussian_kl_matches_torch_distributions(generator):
    mu = torch.randn(6, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    logvar = torch.randn(6, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    torch.testing.assert_close(gaussian_kl(mu, logvar), torch.distributions.kl_divergence(q, p).sum(-1))
    assert torch.autograd.gradcheck(gaussian_kl, (mu, logvar))
    assert gaussian_kl(torch.zeros(2, 5), torch.zeros(2, 5)).abs().max() == 0
    with pytest.raises(ValueError, match=r"gaussian_kl: mu and logvar must have the same shape"):
        gaussian_kl(torch.zeros(2, 5), torch.zeros(2, 4))


def test_vae_loss_is_bce_plus_kl(generator):
    model = VAE(in_features=64, hidden=16, latent=2)
    x = torch.rand(4, 1, 8, 8, generator=generator)
    logits, mu, logvar = model(x, generator=generator)
    assert logits.shape == (4, 64) and mu.shape == (4, 2)
    expected = F.binary_cross_entropy_with_logits(logits, x.reshape(4, 64), reduction="sum") / 4 + gaussian_kl(mu, logvar).mean()
    torch.testing.assert_close(vae_loss(logits, x, mu, logvar), expected)
    with pytest.raises(ValueError, match=r"vae_loss: x must flatten to the shape of logits \(4, 64\); got \(4, 63\)"):
        vae_loss(logits, x.reshape(4, 64)[:, :63], mu, logvar)


def test_cycle_consistency_loss_is_l1(generator):
    x = torch.randn(2, 3, 4, 4, generator=generator)
    y = torch.randn(2, 3, 8, 4, generator=generator)[:, :, ::2]  # non-contiguous
    for reduction in ("none", "mean", "sum"):
        torch.testing.assert_close(cycle_consistency_loss(x, y, reduction=reduction), F.l1_loss(y, x, reduction=reduction))
    with pytest.raises(ValueError, match=r"cycle_consistency_loss: reduction must be one of \('none', 'mean', 'sum'\); got 'max'"):
        cycle_consistency_loss(x, y, reduction="max")
    with pytest.raises(ValueError, match=r"cycle_consistency_loss: x_reconstructed must have the same shape as x \(2, 3, 4, 4\); got \(2, 3, 4\)"):
        cycle_consistency_loss(x, y[..., 0])


# ---------------------------------------------------------------- masked convolutions


def _dependence(model, h=7, w=7, channels=1):
    return pixel_dependence(model, (h, w), channels=channels)


@pytest.mark.parametrize("mask_type", ["A", "B"])
def test_masked_conv_is_causal(mask_type):
    torch.manual_seed(0)
    conv = MaskedConv2d(2, 3, 5, mask_type).double()
    with torch.no_grad():
        conv.weight.add_(1.0)  # no accidental zero weights
    dep = _dependence(conv, channels=2)
    for i in range(7):
        for j in range(7):
            before = torch.zeros(7, 7, dtype=torch.bool)
            before.view(-1)[: i * 7 + j] = True
            allowed = before.clone()
            allowed[i, j] = mask_type == "B"
            assert not (dep[i, j] & ~allowed).any(), (i, j)
            # Within the 5x5 window every allowed pixel is used.
            window = torch.zeros(7, 7, dtype=torch.bool)
            window[max(0, i - 2) : i + 3, max(0, j - 2) : j + 3] = True
            assert torch.equal(dep[i, j], allowed & window), (i, j)


def test_masked_conv_equals_a_conv_with_masked_weights(generator):
    conv = MaskedConv2d(1, 4, (3, 5), "B")
    x = torch.randn(2, 1, 6, 6, generator=generator)
    reference = F.conv2d(x, conv.weight * conv.mask, conv.bias, padding=(1, 2))
    torch.testing.assert_close(conv(x), reference)
    assert conv.mask.tolist()[0][0] == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [0, 0, 0, 0, 0]]
    with pytest.raises(ValueError, match=r"MaskedConv2d: mask_type must be one of \('A', 'B'\); got 'C'"):
        MaskedConv2d(1, 1, 3, "C")
    with pytest.raises(ValueError, match=r"MaskedConv2d: kernel_size must be odd \(the mask needs a centre pixel\); got \(4, 4\)"):
        MaskedConv2d(1, 1, 4, "A")


def test_pixelcnn_stack_is_causal_and_sampler_fills_images():
    torch.manual_seed(0)
    model = PixelCNN(channels=4, layers=2).double()
    dep = _dependence(model, h=6, w=6)
    for i in range(6):
        for j in range(6):
            before = torch.zeros(6, 6, dtype=torch.bool)
            before.view(-1)[: i * 6 + j] = True
            assert not (dep[i, j] & ~before).any(), (i, j)
    samples = pixelcnn_sample(model.float(), 3, (4, 4), generator=torch.Generator().manual_seed(0))
    assert samples.shape == (3, 1, 4, 4) and set(samples.unique().tolist()) <= {0.0, 1.0}


class _FixedLogits(nn.Module):
    """Independent pixels: logit[i, j] whatever the input (a model with known conditionals)."""

    def __init__(self, logits):
        super().__init__()
        self.logits = nn.Parameter(logits, requires_grad=False)  # [H, W]

    def forward(self, x):
        return self.logits.expand(x.shape[0], 1, *self.logits.shape)


class _CopyPrevious(nn.Module):
    """P(x_1 = 1) = p_first; every later pixel copies the pixel before it in raster order."""

    def __init__(self, p_first):
        super().__init__()
        self.first = nn.Parameter(torch.tensor(math.log(p_first / (1 - p_first))), requires_grad=False)

    def forward(self, x):
        n, _, h, w = x.shape
        flat = x.reshape(n, h * w)
        logits = 40.0 * flat.roll(1, dims=1) - 20.0  # +20 after a 1, -20 after a 0
        logits[:, 0] = self.first
        return logits.reshape(n, 1, h, w)


def test_pixelcnn_sample_draws_from_the_model_conditionals():
    # Independent pixels: the frequency of ones matches sigmoid(logit) pixel by pixel.
    probs = torch.tensor([[0.1, 0.5, 0.9], [0.3, 0.7, 0.05]])
    n = 4000
    samples = pixelcnn_sample(_FixedLogits(torch.logit(probs)), n, (2, 3), generator=torch.Generator().manual_seed(1))
    freq = samples.mean(dim=0)[0]  # [2, 3]
    tolerance = 4 * torch.sqrt(probs * (1 - probs) / n)  # 4 standard errors
    assert ((freq - probs).abs() < tolerance).all(), (freq, probs)
    # Sequential conditioning: each pixel is drawn given the pixels already drawn, in raster order,
    # so a model that copies the previous pixel yields only constant images, all-ones with P = p_first.
    samples = pixelcnn_sample(_CopyPrevious(0.3), n, (3, 4), generator=torch.Generator().manual_seed(2))
    flat = samples.reshape(n, -1)
    assert torch.equal(flat.min(dim=1).values, flat.max(dim=1).values)  # every image constant
    ones = flat[:, 0].mean().item()
    assert abs(ones - 0.3) < 4 * math.sqrt(0.3 * 0.7 / n)


def test_pixelcnn_sample_restores_the_model_mode_and_validates():
    model = _FixedLogits(torch.zeros(2, 2)).train()
    pixelcnn_sample(model, 2, (2, 2))
    assert model.training
    with pytest.raises(ValueError, match=r"pixelcnn_sample: n must be >= 1; got 0"):
        pixelcnn_sample(model, 0, (2, 2))
    with pytest.raises(ValueError, match=r"pixelcnn_sample: size must be >= 1; got \(2, 0\)"):
        pixelcnn_sample(model, 1, (2, 0))


# ---------------------------------------------------------------- GAN and WGAN losses


def test_gan_losses_are_binary_cross_entropy(generator):
    real = torch.randn(3, 16, generator=generator, dtype=torch.float64, requires_grad=True)  # [runs, B] logits
    fake = torch.randn(3, 16, generator=generator, dtype=torch.float64, requires_grad=True)
    ours = gan_discriminator_loss(real, fake)
    ref = torch.stack([
        F.binary_cross_entropy_with_logits(real[s], torch.ones(16, dtype=torch.float64))
        + F.binary_cross_entropy_with_logits(fake[s], torch.zeros(16, dtype=torch.float64))
        for s in range(3)
    ])
    torch.testing.assert_close(ours, ref)
    g_ours = torch.autograd.grad(ours.sum(), (real, fake))
    g_ref = torch.autograd.grad(ref.sum(), (real, fake))
    torch.testing.assert_close(g_ours, g_ref)
    gen = gan_generator_loss(fake)
    torch.testing.assert_close(gen, F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake), reduction="none").mean(-1))
    # Finite for saturated logits (softplus, not log(sigmoid)).
    assert torch.isfinite(gan_discriminator_loss(torch.tensor([-200.0]), torch.tensor([200.0]))).all()
    assert torch.autograd.gradcheck(gan_discriminator_loss, (real[:, :4].detach().requires_grad_(), fake[:, :4].detach().requires_grad_()))


def test_wgan_losses(generator):
    real = torch.randn(2, 8, generator=generator)
    fake = torch.randn(2, 8, generator=generator)
    torch.testing.assert_close(wgan_critic_loss(real, fake), fake.mean(1) - real.mean(1))
    torch.testing.assert_close(wgan_generator_loss(fake), -fake.mean(1))
    with pytest.raises(ValueError, match=r"wgan_critic_loss: fake_scores must have the same shape as real_scores \(2, 8\); got \(2, 7\)"):
        wgan_critic_loss(real, fake[:, :7])
    with pytest.raises(TypeError, match=r"gan_generator_loss: fake_logits must be a floating-point tensor; got dtype torch.int64"):
        gan_generator_loss(torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"gan_discriminator_loss: real_logits must not be empty; got shape \(0,\)"):
        gan_discriminator_loss(torch.zeros(0), torch.zeros(0))


# ---------------------------------------------------------------- ring GAN trainer


def test_ensemble_members_are_independent_mlps(generator):
    net = EnsembleMLP(3, 2, 1, hidden=5, layers=2, generator=generator)
    x = torch.randn(3, 7, 2, generator=generator)
    out = net(x)
    assert out.shape == (3, 7, 1)
    for m in range(3):  # member m is the plain MLP with its own weights
        h = x[m]
        for i, (w, b) in enumerate(zip(net.weights, net.biases)):
            h = h @ w[m] + b[m]
            h = torch.relu(h) if i < 2 else h
        torch.testing.assert_close(out[m], h)
    out[0].sum().backward()
    assert all(w.grad[1:].abs().sum() == 0 for w in net.weights)


def test_train_ring_gan_is_reproducible_and_validated():
    a = train_ring_gan("wgan-gp", runs=2, steps=3, batch_size=16, seed=5, snapshot_every=1)
    b = train_ring_gan("wgan-gp", runs=2, steps=3, batch_size=16, seed=5)
    torch.testing.assert_close(a.snapshots[3], b.snapshots[3])
    assert sorted(a.snapshots) == [1, 2, 3] and a.critic_losses.shape == (3, 2)
    assert not torch.equal(a.snapshots[3][0], a.snapshots[3][1])  # the runs differ
    for kind in ("gan", "wgan"):
        r = train_ring_gan(kind, runs=2, steps=2, batch_size=8, seed=0)
        assert r.snapshots[2].shape == (2, 512, 2) and torch.isfinite(r.critic_losses).all()
    wgan = train_ring_gan("wgan", runs=1, steps=2, batch_size=8)
    critic_max = max(p.abs().max().item() for p in wgan.critic.parameters())
    assert critic_max == pytest.approx(0.01)  # the critic is clipped to [-0.01, 0.01], and the clip is reached
    assert max(p.abs().max().item() for p in wgan.generator.parameters()) > 0.01  # ... and only the critic
    gan = train_ring_gan("gan", runs=1, steps=2, batch_size=8)
    assert max(p.abs().max().item() for p in gan.critic.parameters()) > 0.01  # no clipping without WGAN
    with pytest.raises(ValueError, match=r"train_ring_gan: kind must be one of \('gan', 'wgan', 'wgan-gp'\); got 'vae'"):
        train_ring_gan("vae")
    with pytest.raises(ValueError, match=r"train_ring_gan: runs must be >= 1; got 0"):
        train_ring_gan("gan", runs=0)
    with pytest.raises(ValueError, match=r"train_ring_gan: std must be > 0; got 0"):
        train_ring_gan("gan", std=0)
    # Same seed, different data std: after one update the generators differ.
    wide = train_ring_gan("gan", runs=1, steps=1, batch_size=8, std=0.5, seed=2)
    narrow = train_ring_gan("gan", runs=1, steps=1, batch_size=8, std=0.01, seed=2)
    assert not torch.equal(wide.snapshots[1], narrow.snapshots[1])  # the data std reaches training


# ---------------------------------------------------------------- DDPM forward process
def test_ddpm_schedule_is_linear_and_cumulative():
    import numpy as np

    from dlkb.generative import ddpm_schedule

    betas, abar = ddpm_schedule(1000)
    assert betas.shape == abar.shape == (1000,) and betas.dtype == abar.dtype == torch.float32
    ref_b = np.linspace(1e-4, 0.02, 1000)
    torch.testing.assert_close(betas, torch.from_numpy(ref_b).float())
    torch.testing.assert_close(abar, torch.from_numpy(np.cumprod(1 - ref_b)).float())
    assert betas[0].item() == pytest.approx(1e-4) and betas[-1].item() == pytest.approx(0.02)
    assert abar[-1].item() < 1e-4  # x_T is almost pure noise (Ho et al.: about 4e-5)
    b2, a2 = ddpm_schedule(5, beta_start=0.1, beta_end=0.5)
    torch.testing.assert_close(b2, torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5]))
    torch.testing.assert_close(a2, torch.tensor([0.9, 0.72, 0.504, 0.3024, 0.1512]))
    b1, _ = ddpm_schedule(1, beta_start=0.3, beta_end=0.3)
    torch.testing.assert_close(b1, torch.tensor([0.3]))


@pytest.mark.parametrize(
    ("args", "kwargs", "exc", "match"),
    [
        ((0,), {}, ValueError, r"ddpm_schedule: num_steps must be >= 1; got 0"),
        ((10.0,), {}, TypeError, r"ddpm_schedule: num_steps must be an int; got float"),
        ((10,), {"beta_start": 0.0}, ValueError, r"ddpm_schedule: beta_start must be in \(0, 1\); got 0.0"),
        ((10,), {"beta_end": 1.0}, ValueError, r"ddpm_schedule: beta_end must be in \(0, 1\); got 1.0"),
        ((10,), {"beta_start": 0.1, "beta_end": 0.01}, ValueError, r"ddpm_schedule: beta_end must be >= beta_start"),
        ((10,), {"beta_end": "0.02"}, TypeError, r"ddpm_schedule: beta_end must be a real number; got str"),
    ],
)
def test_ddpm_schedule_validation(args, kwargs, exc, match):
    from dlkb.generative import ddpm_schedule

    with pytest.raises(exc, match=match):
        ddpm_schedule(*args, **kwargs)


def test_q_sample_values_gradients_and_statistics():
    from dlkb.generative import ddpm_schedule, q_sample

    _, abar = ddpm_schedule(100)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(4, 3, 2, generator=g)
    noise = torch.randn(4, 3, 2, generator=g)
    t = torch.tensor([0, 10, 50, 99])
    out = q_sample(x0, t, noise, abar)
    for i in range(4):  # written out per sample
        a = abar[t[i]]
        torch.testing.assert_close(out[i], a.sqrt() * x0[i] + (1 - a).sqrt() * noise[i])
    # non-contiguous input, float64 gradcheck in x0 and noise
    xt = torch.randn(2, 4, dtype=torch.float64).T.requires_grad_()
    nz = torch.randn(4, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: q_sample(a, torch.tensor([1, 5, 7, 99]), b, abar), (xt, nz))
    # q(x_t | x_0) has mean sqrt(abar) x0 and variance 1 - abar
    x0 = torch.full((20000, 1), 2.0)
    tt = torch.full((20000,), 30)
    s = q_sample(x0, tt, torch.randn(20000, 1, generator=g), abar)
    assert s.mean().item() == pytest.approx(2 * abar[30].sqrt().item(), abs=0.03)
    assert s.var().item() == pytest.approx(1 - abar[30].item(), abs=0.03)
    assert q_sample(torch.empty(0, 2), torch.empty(0, dtype=torch.long), torch.empty(0, 2), abar).shape == (0, 2)


def test_q_sample_validation():
    from dlkb.generative import q_sample

    abar = torch.linspace(0.99, 0.1, 10)
    x0, noise, t = torch.zeros(3, 2), torch.zeros(3, 2), torch.tensor([0, 1, 2])
    with pytest.raises(TypeError, match=r"q_sample: x0 must be a floating-point tensor"):
        q_sample(x0.long(), t, noise, abar)
    with pytest.raises(TypeError, match=r"q_sample: t must be an integer tensor; got dtype torch.float32"):
        q_sample(x0, t.float(), noise, abar)
    with pytest.raises(ValueError, match=r"q_sample: t must have shape \(3,\); got \(2,\)"):
        q_sample(x0, t[:2], noise, abar)
    with pytest.raises(ValueError, match=r"q_sample: noise must have the same shape as x0 \(3, 2\); got \(3, 1\)"):
        q_sample(x0, t, noise[:, :1], abar)
    with pytest.raises(ValueError, match=r"q_sample: alphas_cumprod must be 1-D; got shape \(10, 1\)"):
        q_sample(x0, t, noise, abar[:, None])
    with pytest.raises(ValueError, match=r"q_sample: t must be in \[0, 9\]; got values in \[0, 10\]"):
        q_sample(x0, torch.tensor([0, 1, 10]), noise, abar)
    with pytest.raises(ValueError, match=r"q_sample: t must be in \[0, 9\]; got values in \[-1, 1\]"):
        q_sample(x0, torch.tensor([-1, 0, 1]), noise, abar)
    with pytest.raises(ValueError, match=r"q_sample: x0 must have a batch dimension"):
        q_sample(torch.tensor(1.0), t, noise, abar)


def test_ddpm_sample_recovers_a_gaussian_with_the_exact_noise_predictor():
    # For data N(m, s^2 I) the optimal noise predictor is known in closed form; ancestral
    # sampling with it must return (approximately) N(m, s^2 I).
    from dlkb.generative import ddpm_sample, ddpm_schedule

    betas, abar = ddpm_schedule(1000)
    m, s = torch.tensor([1.5, -0.5]), 0.3

    def oracle(x, t):
        a = abar[t]
        return (x - a.sqrt() * m) * (1 - a).sqrt() / (a * s**2 + 1 - a)

    x = ddpm_sample(oracle, (20000, 2), betas, abar, generator=torch.Generator().manual_seed(0))
    assert x.shape == (20000, 2)
    torch.testing.assert_close(x.mean(0), m, atol=0.02, rtol=0)
    torch.testing.assert_close(x.std(0), torch.full((2,), s), atol=0.02, rtol=0)
    # a wrong predictor (no noise predicted) does not: the samples stay spread out like x_T
    y = ddpm_sample(lambda x, t: torch.zeros_like(x), (2000, 2), betas, abar, generator=torch.Generator().manual_seed(0))
    assert y.std() > 1.0


def test_ddpm_sample_validation():
    from dlkb.generative import ddpm_sample, ddpm_schedule

    betas, abar = ddpm_schedule(10)
    with pytest.raises(TypeError, match=r"ddpm_sample: denoiser must be callable; got int"):
        ddpm_sample(3, (2, 2), betas, abar)
    with pytest.raises(TypeError, match=r"ddpm_sample: shape must be a tuple or list of ints"):
        ddpm_sample(lambda x, t: x, 5, betas, abar)
    with pytest.raises(ValueError, match=r"ddpm_sample: alphas_cumprod must have the same shape as betas \(10,\)"):
        ddpm_sample(lambda x, t: x, (2, 2), betas, abar[:5])
    with pytest.raises(TypeError, match=r"ddpm_sample: generator must be a torch.Generator; got int"):
        ddpm_sample(lambda x, t: x, (2, 2), betas, abar, generator=0)


def test_train_ring_ddpm_is_seeded_and_learns():
    from dlkb.generative import train_ring_ddpm

    a = train_ring_ddpm(runs=2, steps=60, num_steps=20, beta_end=0.3, batch_size=32, samples=16, seed=3)
    b = train_ring_ddpm(runs=2, steps=60, num_steps=20, beta_end=0.3, batch_size=32, samples=16, seed=3)
    assert a.samples.shape == (2, 16, 2)
    assert torch.equal(a.samples, b.samples) and a.losses == b.losses
    assert sum(a.losses[-10:]) < sum(a.losses[:10])  # L_simple goes down
    with pytest.raises(ValueError, match=r"train_ring_ddpm: num_steps must be >= 2; got 1"):
        train_ring_ddpm(num_steps=1)
    with pytest.raises(TypeError, match=r"train_ring_ddpm: runs must be an int; got float"):
        train_ring_ddpm(runs=2.0)


# ---------------------------------------------------------------- conditional GAN, k discriminator steps


def test_ring_labels_are_the_modes_and_do_not_change_the_draws():
    x, centers, labels = ring_of_gaussians(500, std=0.05, generator=torch.Generator().manual_seed(3), return_labels=True)
    plain, _ = ring_of_gaussians(500, std=0.05, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(x, plain)  # the same random draws with or without labels
    assert labels.dtype == torch.long and labels.shape == (500,)
    torch.testing.assert_close(torch.cdist(x, centers).argmin(dim=1), labels)  # each point sits on its label's mode
    assert set(labels.tolist()) == set(range(8))
    with pytest.raises(TypeError, match=r"ring_of_gaussians: return_labels must be a bool; got int 1"):
        ring_of_gaussians(3, return_labels=1)


def test_mode_hit_rate_counts_samples_in_the_requested_mode():
    centers = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    samples = torch.tensor([[0.05, 0.0], [10.0, 0.1], [0.0, 10.0], [5.0, 5.0]])  # std 0.1: radius 0.3
    assert mode_hit_rate(samples, torch.tensor([0, 1, 1, 2]), centers, std=0.1) == pytest.approx(0.5)
    assert mode_hit_rate(samples, torch.tensor([0, 1, 2, 2]), centers, std=0.1) == pytest.approx(0.75)
    assert mode_hit_rate(samples, torch.tensor([1, 2, 0, 0]), centers, std=0.1) == 0.0
    # A generator that ignores its condition but covers the modes evenly scores about 1/M.
    g = torch.Generator().manual_seed(0)
    x, ring_centers, labels = ring_of_gaussians(4000, std=0.05, generator=g, return_labels=True)
    assert mode_hit_rate(x, labels, ring_centers, std=0.05) > 0.98
    shuffled = labels[torch.randperm(4000, generator=g)]
    assert mode_hit_rate(x, shuffled, ring_centers, std=0.05) == pytest.approx(1 / 8, abs=0.02)
    with pytest.raises(ValueError, match=r"mode_hit_rate: requested must have shape \(4,\); got \(3,\)"):
        mode_hit_rate(samples, torch.tensor([0, 1, 2]), centers, std=0.1)
    with pytest.raises(TypeError, match=r"mode_hit_rate: requested must be an integer tensor; got dtype torch.float32"):
        mode_hit_rate(samples, torch.zeros(4), centers, std=0.1)
    with pytest.raises(ValueError, match=r"mode_hit_rate: requested must hold mode indices in \[0, 2\]; got values in \[0, 3\]"):
        mode_hit_rate(samples, torch.tensor([0, 1, 3, 2]), centers, std=0.1)
    with pytest.raises(ValueError, match=r"mode_hit_rate: samples must be \(N, D\) and centers \(M, D\)"):
        mode_hit_rate(samples[:, :1], torch.tensor([0, 1, 2, 2]), centers, std=0.1)
    with pytest.raises(ValueError, match=r"mode_hit_rate: std must be > 0; got 0"):
        mode_hit_rate(samples, torch.tensor([0, 1, 2, 2]), centers, std=0)


def test_d_steps_is_the_number_of_discriminator_updates_per_generator_update():
    default = train_ring_gan("gan", runs=2, steps=3, batch_size=8, seed=1)
    k1 = train_ring_gan("gan", runs=2, steps=3, batch_size=8, seed=1, d_steps=1)
    k3 = train_ring_gan("gan", runs=2, steps=3, batch_size=8, seed=1, d_steps=3)
    torch.testing.assert_close(default.snapshots[3], k1.snapshots[3])  # k = 1 is the GAN default
    assert not torch.equal(k1.snapshots[3], k3.snapshots[3])
    wgan5 = train_ring_gan("wgan", runs=1, steps=2, batch_size=8, seed=1)
    torch.testing.assert_close(wgan5.snapshots[2], train_ring_gan("wgan", runs=1, steps=2, batch_size=8, seed=1, d_steps=5).snapshots[2])
    # Each discriminator update is a real Adam step: k updates advance the optimizer state k times per
    # generator step, so after 1 generator step D has moved further from its initialization with k = 4.
    init = EnsembleMLP(1, 2, 1, generator=_seeded_init(4))
    moved = {k: sum((a - b).abs().sum().item() for a, b in zip(
        train_ring_gan("gan", runs=1, steps=1, batch_size=8, seed=4, d_steps=k).critic.parameters(), init.parameters()))
        for k in (1, 4)}
    assert moved[4] > 2 * moved[1]
    with pytest.raises(ValueError, match=r"train_ring_gan: d_steps must be >= 1; got 0"):
        train_ring_gan("gan", d_steps=0)
    with pytest.raises(TypeError, match=r"train_ring_gan: d_steps must be an int; got float"):
        train_ring_gan("gan", d_steps=2.0)


def _seeded_init(seed):
    """The generator state train_ring_gan has when it builds D: after G's initialization."""
    rng = torch.Generator().manual_seed(seed)
    EnsembleMLP(1, 2, 2, generator=rng)  # G, latent 2
    return rng


def test_conditional_gan_feeds_the_condition_to_both_networks_and_learns_it():
    r = train_ring_gan("gan", runs=1, steps=2, batch_size=8, seed=0, conditional=True)
    assert r.generator.weights[0].shape == (1, 2 + 8, 64) and r.critic.weights[0].shape == (1, 2 + 8, 64)
    torch.testing.assert_close(r.snapshot_labels, torch.arange(512) % 8)
    assert train_ring_gan("gan", runs=1, steps=2, batch_size=8).snapshot_labels is None
    z = torch.zeros(1, 8, 2)
    with torch.no_grad():
        out = r.generator(torch.cat([z, torch.eye(8)[None]], dim=-1))  # same noise, 8 different conditions
    assert out[0].unique(dim=0).shape[0] == 8  # the condition reaches the generator's output
    # A short training run learns to put samples where they are asked for, far above chance (1/8).
    trained = train_ring_gan("gan", runs=1, steps=400, batch_size=64, std=0.05, seed=0, conditional=True)
    _, centers = ring_of_gaussians(8)
    hit = mode_hit_rate(trained.snapshots[400][0], trained.snapshot_labels, centers, std=0.05)
    assert hit > 0.3
    for kind in ("wgan", "wgan-gp"):
        c = train_ring_gan(kind, runs=2, steps=2, batch_size=8, conditional=True, d_steps=2)
        assert c.snapshots[2].shape == (2, 512, 2) and torch.isfinite(c.critic_losses).all()
    with pytest.raises(TypeError, match=r"train_ring_gan: conditional must be a bool; got str 'yes'"):
        train_ring_gan("gan", conditional="yes")


# ---------------------------------------------------------------- beta-VAE terms


def test_vae_loss_terms_and_beta_against_bce_and_torch_distributions(generator):
    logits = torch.randn(5, 64, generator=generator, dtype=torch.float64, requires_grad=True)
    x = torch.rand(5, 1, 8, 8, generator=generator, dtype=torch.float64)
    mu = torch.randn(5, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    logvar = torch.randn(5, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    reconstruction, kl = vae_loss_terms(logits, x, mu, logvar)
    ref_rec = F.binary_cross_entropy_with_logits(logits, x.reshape(5, 64), reduction="sum") / 5
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    ref_kl = torch.distributions.kl_divergence(q, p).sum() / 5
    torch.testing.assert_close(reconstruction, ref_rec)
    torch.testing.assert_close(kl, ref_kl)
    for beta in (0.0, 0.5, 1.0, 4.0):
        ours = vae_loss(logits, x, mu, logvar, beta=beta)
        q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))  # a fresh graph for each gradient
        ref = (F.binary_cross_entropy_with_logits(logits, x.reshape(5, 64), reduction="sum")
               + beta * torch.distributions.kl_divergence(q, p).sum()) / 5
        torch.testing.assert_close(ours, ref)
        torch.testing.assert_close(torch.autograd.grad(ours, (logits, mu, logvar)), torch.autograd.grad(ref, (logits, mu, logvar)))
    assert torch.autograd.gradcheck(lambda a, m, v: vae_loss(a, x, m, v, beta=4.0), (logits, mu, logvar))
    with pytest.raises(ValueError, match=r"vae_loss: beta must be >= 0; got -1"):
        vae_loss(logits, x, mu, logvar, beta=-1)
    with pytest.raises(TypeError, match=r"vae_loss: beta must be a real number; got str"):
        vae_loss(logits, x, mu, logvar, beta="4")
    with pytest.raises(ValueError, match=r"vae_loss_terms: x must flatten to the shape of logits \(5, 64\); got \(5, 63\)"):
        vae_loss_terms(logits, x.reshape(5, 64)[:, :63], mu, logvar)
    with pytest.raises(ValueError, match=r"vae_loss_terms: mu must have the batch size of logits \(5\); got shape \(4, 3\)"):
        vae_loss_terms(logits, x, mu[:4], logvar[:4])
    with pytest.raises(TypeError, match=r"vae_loss_terms: logits must be a floating-point tensor"):
        vae_loss_terms(logits.long(), x, mu, logvar)


def test_ddpm_sample_callback_sees_the_reverse_trajectory_without_changing_it():
    from dlkb.generative import ddpm_sample, ddpm_schedule

    betas, abar = ddpm_schedule(5, beta_start=0.1, beta_end=0.5)
    seen = []
    denoiser = lambda x, t: 0.1 * x  # noqa: E731
    with_cb = ddpm_sample(denoiser, (3, 2), betas, abar, generator=torch.Generator().manual_seed(0),
                          callback=lambda t, x: seen.append((t, x.clone())))
    plain = ddpm_sample(denoiser, (3, 2), betas, abar, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(with_cb, plain)
    assert [t for t, _ in seen] == [5, 4, 3, 2, 1, 0]
    torch.testing.assert_close(seen[0][1], torch.randn(3, 2, generator=torch.Generator().manual_seed(0)))  # x_T
    torch.testing.assert_close(seen[-1][1], plain)  # x_0 is the sample
    # The last step adds no noise: x_0 is the posterior mean computed from x_1.
    x1 = seen[-2][1]
    torch.testing.assert_close(seen[-1][1], (x1 - betas[0] / (1 - abar[0]).sqrt() * denoiser(x1, 0)) / (1 - betas[0]).sqrt())
    with pytest.raises(TypeError, match=r"ddpm_sample: callback must be callable; got int"):
        ddpm_sample(denoiser, (3, 2), betas, abar, callback=1)


def test_train_ring_ddpm_records_the_asked_times_only():
    from dlkb.generative import train_ring_ddpm

    kw = dict(runs=2, steps=5, num_steps=10, beta_end=0.3, batch_size=8, samples=6, seed=1)
    a = train_ring_ddpm(**kw, record_times=(10, 4, 0))
    b = train_ring_ddpm(**kw)
    assert torch.equal(a.samples, b.samples) and b.trajectory == {}
    assert sorted(a.trajectory) == [0, 4, 10] and a.trajectory[4].shape == (2, 6, 2)
    torch.testing.assert_close(a.trajectory[0], a.samples)
    with pytest.raises(ValueError, match=r"train_ring_ddpm: record_times must lie in \[0, num_steps=10\]; got \(11,\)"):
        train_ring_ddpm(**kw, record_times=(11,))
    with pytest.raises(ValueError, match=r"train_ring_ddpm: record_times\[0\] must be >= 0; got -1"):
        train_ring_ddpm(**kw, record_times=(-1,))
