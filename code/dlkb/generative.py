r"""Generative models: divergences, PixelCNN, VAE, GAN, WGAN, WGAN-GP and CycleGAN pieces.

Shape letters: N batch, C channels, H, W image size, D data dimension, Z latent size,
K number of outcomes of a discrete distribution, M number of modes.

Papers: PixelRNN/PixelCNN (van den Oord et al. 2016a, 2016b), VAE (Kingma & Welling
2014), β-VAE (Higgins et al. 2017), GAN (Goodfellow et al. 2014) and its conditional
form (Mirza & Osindero 2014), the vanishing-gradient analysis of GANs (Arjovsky &
Bottou 2017), WGAN (Arjovsky et al. 2017), WGAN-GP (Gulrajani et al. 2017), the ring of
Gaussians benchmark (Metz et al. 2017) and its mode-coverage metric (Srivastava et al.
2017, VEEGAN), CycleGAN (Zhu et al. 2017), the forward process of denoising diffusion
(Ho et al. 2020, DDPM).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from dlkb import _validate as _v
from dlkb.losses import mae_loss
from dlkb.utils import eval_mode

__all__ = [
    "kl_divergence",
    "js_divergence",
    "wasserstein_1d",
    "ring_of_gaussians",
    "mode_coverage",
    "mode_hit_rate",
    "gradient_penalty",
    "reparameterize",
    "gaussian_kl",
    "cycle_consistency_loss",
    "MaskedConv2d",
    "PixelCNN",
    "pixelcnn_sample",
    "pixel_dependence",
    "VAE",
    "vae_loss",
    "vae_loss_terms",
    "EnsembleMLP",
    "gan_discriminator_loss",
    "gan_generator_loss",
    "wgan_critic_loss",
    "wgan_generator_loss",
    "RingGANResult",
    "train_ring_gan",
    "ddpm_schedule",
    "q_sample",
    "ddpm_sample",
    "RingDDPMResult",
    "train_ring_ddpm",
]

_REDUCTIONS = ("none", "mean", "sum")


# ---------------------------------------------------------------- divergences


def _check_distributions(p: torch.Tensor, q: torch.Tensor, caller: str) -> None:
    _v.instance("p", p, caller=caller, types=torch.Tensor)
    _v.instance("q", q, caller=caller, types=torch.Tensor)
    if p.shape != q.shape:
        raise ValueError(f"{caller}: p and q must have the same shape; got {tuple(p.shape)} and {tuple(q.shape)}")
    if p.ndim == 0 or p.shape[-1] == 0:
        raise ValueError(f"{caller}: p and q need a non-empty last dimension of outcomes; got shape {tuple(p.shape)}")
    for name, t in (("p", p), ("q", q)):
        if not t.is_floating_point():
            raise TypeError(f"{caller}: {name} must be a floating-point tensor; got {t.dtype}")
        if (t < 0).any():
            raise ValueError(f"{caller}: {name} must have no negative entries; got minimum {t.min().item():.4g}")
        sums = t.sum(dim=-1)
        tol = 1e-4 if t.dtype in (torch.float16, torch.bfloat16, torch.float32) else 1e-8
        if not torch.allclose(sums, torch.ones_like(sums), atol=tol, rtol=0):
            worst = sums[(sums - 1).abs().argmax()] if sums.ndim else sums
            raise ValueError(
                f"{caller}: {name} must sum to 1 over its last dimension; got a sum of {float(worst):.6g}"
            )


def _kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    # xlogy(0, .) = 0 gives 0·log 0 = 0; p > 0 where q = 0 gives +inf, as it should.
    return (torch.xlogy(p, p) - torch.xlogy(p, q)).sum(dim=-1)


def kl_divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    r"""Kullback–Leibler divergence :math:`\mathrm{KL}(p\,\|\,q)=\sum_k p_k \log(p_k/q_k)`, natural log.

    Args:
        p (Tensor[..., K]): probabilities, non-negative, summing to 1 over the last dim.
        q (Tensor[..., K]): same shape and constraints.

    Returns:
        Tensor[...]: the divergence per distribution; ``0·log 0 = 0``; ``inf`` where
        ``p > 0`` and ``q = 0``. Equals ``scipy.stats.entropy(p, q)``.
    """
    _check_distributions(p, q, "kl_divergence")
    return _kl(p, q)


def js_divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    r"""Jensen–Shannon divergence :math:`\tfrac12\mathrm{KL}(p\|m)+\tfrac12\mathrm{KL}(q\|m)`, :math:`m=\tfrac{p+q}{2}`.

    With the natural log it lies in :math:`[0, \log 2]` and equals ``log 2`` exactly when
    the supports of ``p`` and ``q`` are disjoint (Goodfellow et al. 2014, Theorem 1;
    Arjovsky & Bottou 2017). Equals ``scipy.spatial.distance.jensenshannon(p, q) ** 2``.

    Args:
        p (Tensor[..., K]): probabilities summing to 1 over the last dim.
        q (Tensor[..., K]): same shape.

    Returns:
        Tensor[...]: the divergence per distribution.
    """
    _check_distributions(p, q, "js_divergence")
    m = 0.5 * (p + q)
    return 0.5 * _kl(p, m) + 0.5 * _kl(q, m)


def wasserstein_1d(u_values: torch.Tensor, v_values: torch.Tensor) -> torch.Tensor:
    r"""Wasserstein-1 (earth mover's) distance between two 1-D samples with equal weights.

    :math:`W_1 = \int |F_u(x) - F_v(x)|\,dx` with :math:`F` the empirical CDFs, computed on
    the merged sorted sample (the algorithm of ``scipy.stats.wasserstein_distance``,
    which it equals). The sample sizes may differ.

    Args:
        u_values (Tensor[n]): first sample.
        v_values (Tensor[m]): second sample.

    Returns:
        Tensor[]: the distance (differentiable with respect to the values).
    """
    for name, t in (("u_values", u_values), ("v_values", v_values)):
        _v.instance(name, t, caller="wasserstein_1d", types=torch.Tensor)
        if t.ndim != 1 or t.numel() == 0:
            raise ValueError(f"wasserstein_1d: {name} must be a non-empty 1-D tensor; got shape {tuple(t.shape)}")
        if not t.is_floating_point():
            raise TypeError(f"wasserstein_1d: {name} must be a floating-point tensor; got {t.dtype}")
    u_sorted, v_sorted = torch.sort(u_values).values, torch.sort(v_values).values
    merged = torch.sort(torch.cat([u_values, v_values])).values  # [n + m]
    deltas = merged[1:] - merged[:-1]  # [n + m - 1]
    # Empirical CDFs at the left end of each interval, in the values' dtype.
    u_cdf = torch.searchsorted(u_sorted.detach(), merged[:-1].detach(), right=True).to(deltas.dtype) / u_values.numel()
    v_cdf = torch.searchsorted(v_sorted.detach(), merged[:-1].detach(), right=True).to(deltas.dtype) / v_values.numel()
    return ((u_cdf - v_cdf).abs() * deltas).sum()


# ---------------------------------------------------------------- ring of Gaussians


def ring_of_gaussians(
    n: int,
    *,
    modes: int = 8,
    radius: float = 2.0,
    std: float = 0.02,
    generator: torch.Generator | None = None,
    return_labels: bool = False,
) -> tuple[torch.Tensor, ...]:
    """Samples from ``modes`` equally weighted 2-D Gaussians on a circle (Metz et al. 2017).

    Args:
        n: number of samples.
        modes: number of Gaussians M, centred at angles 2πk/M on the circle.
        radius: radius of the circle.
        std: standard deviation of each Gaussian (isotropic).
        generator: optional random generator.
        return_labels: also return the index of the Gaussian each sample was drawn from
            (the condition of a conditional GAN). The random draws are the same either way.

    Returns:
        ``(samples, centers)``: Tensor[n, 2] and Tensor[M, 2]; with ``return_labels``,
        ``(samples, centers, labels)`` with labels a LongTensor[n] in ``[0, M)``.
    """
    caller = "ring_of_gaussians"
    n = _v.integer("n", n, caller=caller, minimum=1)
    modes = _v.integer("modes", modes, caller=caller, minimum=1)
    radius = _v.real("radius", radius, caller=caller, low=0.0, low_open=True)
    std = _v.real("std", std, caller=caller, low=0.0, low_open=True)
    if generator is not None:
        _v.instance("generator", generator, caller=caller, types=torch.Generator)
    return_labels = _v.boolean("return_labels", return_labels, caller=caller)
    angles = torch.arange(modes, dtype=torch.float32) * (2 * math.pi / modes)
    centers = radius * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)  # [M, 2]
    which = torch.randint(0, modes, (n,), generator=generator)  # [n] mode of each sample
    noise = torch.randn(n, 2, generator=generator) * std
    if return_labels:
        return centers[which] + noise, centers, which
    return centers[which] + noise, centers


def _check_samples_and_centers(samples: object, centers: object, caller: str) -> None:
    _v.instance("samples", samples, caller=caller, types=torch.Tensor)
    _v.instance("centers", centers, caller=caller, types=torch.Tensor)
    if samples.ndim != 2 or centers.ndim != 2 or samples.shape[1] != centers.shape[1] or samples.shape[0] == 0:
        raise ValueError(
            f"{caller}: samples must be (N, D) and centers (M, D) with the same D and N > 0; "
            f"got {tuple(samples.shape)} and {tuple(centers.shape)}"
        )


def _nearest_mode(samples: torch.Tensor, centers: torch.Tensor, std: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of the nearest centre (LongTensor[N]) and whether it is within 3 std (BoolTensor[N])."""
    distances = torch.cdist(samples.float(), centers.float())  # [N, M]
    nearest, index = distances.min(dim=1)
    return index, nearest <= 3 * std


def mode_coverage(
    samples: torch.Tensor, centers: torch.Tensor, *, std: float, min_count: int = 1
) -> tuple[int, float]:
    """How many modes a sample covers and how much of it is of high quality.

    A sample is of high quality when it lies within ``3 * std`` of its nearest centre; a
    mode is covered when at least ``min_count`` high-quality samples have it as nearest
    centre. The metric and its three-standard-deviation rule come from VEEGAN
    (Srivastava et al. 2017); Metz et al. 2017 introduced the ring but not this metric.
    With ``min_count = 1`` a diffuse cloud covers modes by chance, one stray sample each;
    a larger ``min_count`` (e.g. a tenth of the ``N / M`` samples a perfect generator puts
    in each mode) is stricter.

    Args:
        samples (Tensor[N, 2]): generated points.
        centers (Tensor[M, 2]): mode centres.
        std: standard deviation of the modes.
        min_count: high-quality samples a mode needs to count as covered (≥ 1).

    Returns:
        ``(modes covered, fraction of high-quality samples)``.
    """
    _check_samples_and_centers(samples, centers, "mode_coverage")
    std = _v.real("std", std, caller="mode_coverage", low=0.0, low_open=True)
    min_count = _v.integer("min_count", min_count, caller="mode_coverage", minimum=1)
    index, good = _nearest_mode(samples, centers, std)
    counts = torch.bincount(index[good], minlength=centers.shape[0])  # [M] high-quality samples per mode
    return int((counts >= min_count).sum()), float(good.float().mean())


def mode_hit_rate(samples: torch.Tensor, requested: torch.Tensor, centers: torch.Tensor, *, std: float) -> float:
    """How often a conditional generator lands in the mode it was asked for.

    A sample is a hit when its nearest centre is the requested one and it lies within
    ``3 * std`` of it (the high-quality rule of :func:`mode_coverage`). A generator that
    ignores its condition but covers all M modes evenly scores about ``quality / M``.

    Args:
        samples (Tensor[N, 2]): generated points.
        requested (LongTensor[N]): the mode index each sample was generated for.
        centers (Tensor[M, 2]): mode centres.
        std: standard deviation of the modes.

    Returns:
        The fraction of hits, in [0, 1].
    """
    caller = "mode_hit_rate"
    _check_samples_and_centers(samples, centers, caller)
    _v.tensor("requested", requested, caller=caller, dtype="integer", shape=(samples.shape[0],))
    if int(requested.min()) < 0 or int(requested.max()) >= centers.shape[0]:
        raise ValueError(f"{caller}: requested must hold mode indices in [0, {centers.shape[0] - 1}]; "
                         f"got values in [{int(requested.min())}, {int(requested.max())}]")
    std = _v.real("std", std, caller=caller, low=0.0, low_open=True)
    index, good = _nearest_mode(samples, centers, std)
    return float((good & (index == requested.to(index.device))).float().mean())


# ---------------------------------------------------------------- GAN, WGAN, WGAN-GP, VAE, CycleGAN losses


def _check_scores(name: str, value: object, caller: str) -> torch.Tensor:
    return _v.tensor(name, value, caller=caller, dtype="floating", ndim=tuple(range(1, 9)), nonempty=True)


def gan_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    r"""The discriminator's loss :math:`-\log D(x) - \log(1 - D(G(z)))` (Goodfellow et al. 2014, Eq. (1)).

    With :math:`D = \sigma(\text{logit})` this is binary cross-entropy with label 1 for real
    and 0 for generated samples, written with softplus so it stays finite for any logit:
    :math:`-\log\sigma(a) = \operatorname{softplus}(-a)`, :math:`-\log(1-\sigma(a)) = \operatorname{softplus}(a)`.

    Args:
        real_logits (Tensor[..., B]): discriminator logits of real samples.
        fake_logits (Tensor[..., B]): logits of generated samples, same shape.

    Returns:
        Tensor[...]: the loss averaged over the last (batch) dimension, so a stack of
        independent runs [S, B] gives one loss per run.
    """
    caller = "gan_discriminator_loss"
    _check_scores("real_logits", real_logits, caller)
    _check_scores("fake_logits", fake_logits, caller)
    _v.same_shape("fake_logits", fake_logits, caller=caller, like=real_logits, like_name="real_logits")
    return F.softplus(-real_logits).mean(dim=-1) + F.softplus(fake_logits).mean(dim=-1)


def gan_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    r"""The non-saturating generator loss :math:`-\log D(G(z))` (Goodfellow et al. 2014, Sec. 3).

    Binary cross-entropy of generated samples against the label 1, averaged over the last
    (batch) dimension; ``fake_logits`` is Tensor[..., B].
    """
    _check_scores("fake_logits", fake_logits, "gan_generator_loss")
    return F.softplus(-fake_logits).mean(dim=-1)


def wgan_critic_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    r"""The critic's loss :math:`\mathbb E[f(G(z))] - \mathbb E[f(x)]` (Arjovsky et al. 2017, Algorithm 1).

    Minimising it maximises the Kantorovich–Rubinstein estimate of the Wasserstein-1
    distance. Averages over the last (batch) dimension of Tensor[..., B] scores.
    """
    caller = "wgan_critic_loss"
    _check_scores("real_scores", real_scores, caller)
    _check_scores("fake_scores", fake_scores, caller)
    _v.same_shape("fake_scores", fake_scores, caller=caller, like=real_scores, like_name="real_scores")
    return fake_scores.mean(dim=-1) - real_scores.mean(dim=-1)


def wgan_generator_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    r"""The WGAN generator's loss :math:`-\mathbb E[f(G(z))]`, averaged over the last (batch) dimension."""
    _check_scores("fake_scores", fake_scores, "wgan_generator_loss")
    return -fake_scores.mean(dim=-1)


def gradient_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""WGAN-GP penalty :math:`\mathbb E[(\|\nabla_{\hat x} f(\hat x)\|_2 - 1)^2]` (Gulrajani et al. 2017, Eq. (3)).

    :math:`\hat x = \epsilon x + (1-\epsilon)\tilde x` with one :math:`\epsilon\sim U[0,1]`
    per sample. The gradient is taken with ``create_graph=True``, so the penalty can be
    added to the critic's loss and back-propagated.

    Args:
        critic: maps Tensor[N, ...] to Tensor[N] or Tensor[N, 1].
        real (Tensor[N, ...]): real samples.
        fake (Tensor[N, ...]): generated samples, same shape.
        generator: optional generator for :math:`\epsilon` (on the device of ``real``).

    Returns:
        Tensor[]: the mean penalty over the batch.
    """
    if not callable(critic):
        raise TypeError(f"gradient_penalty: critic must be callable; got {type(critic).__name__}")
    _v.instance("real", real, caller="gradient_penalty", types=torch.Tensor)
    _v.instance("fake", fake, caller="gradient_penalty", types=torch.Tensor)
    if real.shape != fake.shape:
        raise ValueError(
            f"gradient_penalty: fake must have the same shape as real {tuple(real.shape)}; got {tuple(fake.shape)}"
        )
    if real.ndim < 2 or real.shape[0] == 0:
        raise ValueError(f"gradient_penalty: real must be (N, ...) with N > 0; got {tuple(real.shape)}")
    n = real.shape[0]
    eps = torch.rand((n,) + (1,) * (real.ndim - 1), generator=generator, dtype=real.dtype,
                     device=generator.device if generator is not None else real.device).to(real.device)
    x_hat = eps * real + (1 - eps) * fake  # [N, ...]
    if not x_hat.requires_grad:
        x_hat.requires_grad_(True)
    scores = critic(x_hat)
    if scores.shape not in ((n,), (n, 1)):
        raise ValueError(f"gradient_penalty: critic must return shape ({n},) or ({n}, 1); got {tuple(scores.shape)}")
    (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)
    norms = grad.reshape(n, -1).norm(2, dim=1)  # [N]
    return ((norms - 1) ** 2).mean()


def reparameterize(
    mu: torch.Tensor,
    logvar: torch.Tensor,
    eps: torch.Tensor | None = None,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""The reparameterization trick :math:`z = \mu + \epsilon\,e^{\log\sigma^2/2}` (Kingma & Welling 2014, Eq. (10)).

    Args:
        mu (Tensor[N, Z]): means.
        logvar (Tensor[N, Z]): log-variances, same shape.
        eps (Tensor[N, Z], optional): standard normal noise; drawn when not given.
        generator: optional generator used when ``eps`` is drawn.

    Returns:
        Tensor[N, Z]: samples, differentiable with respect to ``mu`` and ``logvar``.
    """
    _v.instance("mu", mu, caller="reparameterize", types=torch.Tensor)
    _v.instance("logvar", logvar, caller="reparameterize", types=torch.Tensor)
    if logvar.shape != mu.shape:
        raise ValueError(f"reparameterize: logvar must have the same shape as mu {tuple(mu.shape)}; got {tuple(logvar.shape)}")
    if eps is None:
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype,
                          device=generator.device if generator is not None else mu.device).to(mu.device)
    else:
        _v.tensor("eps", eps, caller="reparameterize", dtype="floating")
        _v.same_shape("eps", eps, caller="reparameterize", like=mu, like_name="mu")
    return mu + eps * torch.exp(0.5 * logvar)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    r"""Per-sample :math:`\mathrm{KL}(\mathcal N(\mu,\sigma^2 I)\,\|\,\mathcal N(0,I)) = \tfrac12\sum(\sigma^2+\mu^2-1-\log\sigma^2)`.

    Kingma & Welling (2014), Appendix B. Summed over the last dimension.

    Args:
        mu (Tensor[..., Z]): means.
        logvar (Tensor[..., Z]): log-variances, same shape.

    Returns:
        Tensor[...]: the divergence per sample.
    """
    _v.instance("mu", mu, caller="gaussian_kl", types=torch.Tensor)
    _v.instance("logvar", logvar, caller="gaussian_kl", types=torch.Tensor)
    if logvar.shape != mu.shape or mu.ndim == 0:
        raise ValueError(
            f"gaussian_kl: mu and logvar must have the same shape with a last (latent) dim; "
            f"got {tuple(mu.shape)} and {tuple(logvar.shape)}"
        )
    return 0.5 * (logvar.exp() + mu.pow(2) - 1.0 - logvar).sum(dim=-1)


def cycle_consistency_loss(x: torch.Tensor, x_reconstructed: torch.Tensor, *, reduction: str = "mean") -> torch.Tensor:
    r"""CycleGAN's cycle loss :math:`\|F(G(x)) - x\|_1` (Zhu et al. 2017, Eq. (2)).

    Args:
        x (Tensor[N, ...]): inputs of one domain.
        x_reconstructed (Tensor[N, ...]): the same inputs after the round trip, same shape.
        reduction: ``"none"`` (element-wise), ``"mean"`` or ``"sum"``.
    """
    caller = "cycle_consistency_loss"
    _v.tensor("x", x, caller=caller, dtype="floating")
    _v.tensor("x_reconstructed", x_reconstructed, caller=caller, dtype="floating")
    _v.same_shape("x_reconstructed", x_reconstructed, caller=caller, like=x, like_name="x")
    _v.choice("reduction", reduction, caller=caller, choices=_REDUCTIONS)
    return mae_loss(x_reconstructed, x, reduction=reduction)  # the L1 loss of the losses chapter


# ---------------------------------------------------------------- PixelCNN


class MaskedConv2d(nn.Conv2d):
    """A 2-D convolution whose kernel sees only pixels before the centre in raster order.

    Mask ``"A"`` (first layer) also hides the centre pixel; mask ``"B"`` (later layers)
    lets it through, since there the centre holds features of earlier pixels only
    (van den Oord et al. 2016a, Sec. 3.4). The masking is spatial; the extra masking
    between the R, G and B channels of the paper is not needed for the one-channel
    images of this book and is not implemented. "Same" padding keeps H and W.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: an odd int (or a pair of odd ints).
        mask_type: ``"A"`` or ``"B"``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int], mask_type: str) -> None:
        caller = "MaskedConv2d"
        _v.integer("in_channels", in_channels, caller=caller, minimum=1)
        _v.integer("out_channels", out_channels, caller=caller, minimum=1)
        kh, kw = _v.pair("kernel_size", kernel_size, caller=caller, minimum=1)
        if kh % 2 == 0 or kw % 2 == 0:
            raise ValueError(f"{caller}: kernel_size must be odd (the mask needs a centre pixel); got {(kh, kw)}")
        _v.choice("mask_type", mask_type, caller=caller, choices=("A", "B"))
        super().__init__(in_channels, out_channels, (kh, kw), padding=(kh // 2, kw // 2))
        self.mask_type = mask_type
        mask = torch.ones(1, 1, kh, kw)
        mask[:, :, kh // 2, kw // 2 + (mask_type == "B") :] = 0  # centre row: right of centre (and centre for A)
        mask[:, :, kh // 2 + 1 :, :] = 0  # rows below the centre
        self.register_buffer("mask", mask)  # [1, 1, kh, kw]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, self.stride, self.padding, self.dilation, self.groups)


class PixelCNN(nn.Module):
    """A small PixelCNN for binary images: one mask-A layer, then mask-B layers with residuals.

    The output is one logit per pixel: ``sigmoid(logit[i, j])`` is the probability that
    pixel (i, j) is 1 given the pixels before it in raster order.
    """

    def __init__(self, channels: int = 32, layers: int = 4, kernel_size: int = 5) -> None:
        super().__init__()
        channels = _v.integer("channels", channels, caller="PixelCNN", minimum=1)
        layers = _v.integer("layers", layers, caller="PixelCNN", minimum=0)
        _v.integer("kernel_size", kernel_size, caller="PixelCNN", minimum=1)
        self.input = MaskedConv2d(1, channels, kernel_size, "A")
        self.blocks = nn.ModuleList(MaskedConv2d(channels, channels, 3, "B") for _ in range(layers))
        self.output = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, channels, 1), nn.ReLU(), nn.Conv2d(channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.input(x)  # [N, C, H, W]
        for block in self.blocks:
            h = h + block(torch.relu(h))
        return self.output(h)  # [N, 1, H, W] logits


@torch.no_grad()
def pixelcnn_sample(
    model: nn.Module, n: int, size: tuple[int, int], *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Draw ``n`` binary images pixel by pixel in raster order: H·W forward passes.

    Returns:
        Tensor[n, 1, H, W] of 0/1 floats, on the model's device.
    """
    caller = "pixelcnn_sample"
    _v.module("model", model, caller=caller)
    n = _v.integer("n", n, caller=caller, minimum=1)
    _v.instance("size", size, caller=caller, types=(tuple, list))
    h, w = _v.pair("size", size, caller=caller, minimum=1)
    if generator is not None:
        _v.instance("generator", generator, caller=caller, types=torch.Generator)
    device = next(model.parameters()).device
    x = torch.zeros(n, 1, h, w, device=device)
    with eval_mode(model):
        for i in range(h):
            for j in range(w):
                p = torch.sigmoid(model(x)[:, 0, i, j])  # [n]: P(x_ij = 1 | pixels before it)
                u = torch.rand(n, generator=generator, device=generator.device if generator is not None else device)
                x[:, 0, i, j] = (u.to(device) < p).float()
    return x


def pixel_dependence(model: nn.Module, size: int | tuple[int, int], *, channels: int = 1) -> torch.Tensor:
    """Which input pixels each output pixel depends on, found with autograd.

    ``dep[i, j]`` is a boolean Tensor[H, W] marking the input pixels whose gradient
    with respect to output (i, j) (summed over output channels) is non-zero. For a
    causal (autoregressive) model, ``dep[i, j]`` may only mark pixels before (i, j)
    in raster order. The model runs in float64 on a random input.

    Returns:
        Tensor[H, W, H, W] of bool.
    """
    caller = "pixel_dependence"
    _v.module("model", model, caller=caller)
    h, w = _v.pair("size", size, caller=caller, minimum=1)
    channels = _v.integer("channels", channels, caller=caller, minimum=1)
    x = torch.randn(1, channels, h, w, dtype=torch.float64, requires_grad=True)
    out = model(x)  # [1, C_out, H, W]
    dep = torch.zeros(h, w, h, w, dtype=torch.bool)
    for i in range(h):
        for j in range(w):
            (g,) = torch.autograd.grad(out[0, :, i, j].sum(), x, retain_graph=True)
            dep[i, j] = g[0].abs().sum(0) > 0
    return dep


# ---------------------------------------------------------------- VAE


class VAE(nn.Module):
    """A fully connected VAE with a Gaussian encoder and a Bernoulli decoder (Kingma & Welling 2014, App. C)."""

    def __init__(self, in_features: int = 64, hidden: int = 128, latent: int = 2) -> None:
        super().__init__()
        in_features = _v.integer("in_features", in_features, caller="VAE", minimum=1)
        hidden = _v.integer("hidden", hidden, caller="VAE", minimum=1)
        latent = _v.integer("latent", latent, caller="VAE", minimum=1)
        self.in_features, self.latent = in_features, latent
        self.encoder = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.mu = nn.Linear(hidden, latent)
        self.logvar = nn.Linear(hidden, latent)
        self.decoder = nn.Sequential(
            nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, in_features)
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x.reshape(x.shape[0], -1))  # [N, hidden]
        return self.mu(h), self.logvar(h)  # [N, Z], [N, Z]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)  # [N, D] logits

    def forward(self, x: torch.Tensor, *, generator: torch.Generator | None = None):
        mu, logvar = self.encode(x)
        z = reparameterize(mu, logvar, generator=generator)
        return self.decode(z), mu, logvar


def vae_loss_terms(
    logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The two terms of the negative ELBO, each averaged over the batch.

    Returns ``(reconstruction, kl)``: the Bernoulli negative log-likelihood
    :math:`-\log p(x\mid z)` summed over the D pixels (binary cross-entropy with logits)
    and :math:`\mathrm{KL}(q(z\mid x)\,\|\,\mathcal N(0, I))` summed over the Z latent
    dimensions. :func:`vae_loss` is ``reconstruction + beta * kl``.

    Args:
        logits (Tensor[N, D]): decoder logits.
        x (Tensor[N, ...]): targets in [0, 1], flattening to [N, D].
        mu, logvar (Tensor[N, Z]): the encoder's Gaussian.
    """
    return _vae_terms(logits, x, mu, logvar, "vae_loss_terms")


def _vae_terms(
    logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, caller: str
) -> tuple[torch.Tensor, torch.Tensor]:
    _v.tensor("logits", logits, caller=caller, dtype="floating", ndim=2, nonempty=True)
    _v.tensor("x", x, caller=caller, dtype="floating")
    _v.tensor("mu", mu, caller=caller, dtype="floating", ndim=2)
    _v.tensor("logvar", logvar, caller=caller, dtype="floating", ndim=2)
    if x.ndim == 0 or x.shape[0] != logits.shape[0]:
        raise ValueError(f"{caller}: x must have the batch size of logits ({logits.shape[0]}); got shape {tuple(x.shape)}")
    target = x.reshape(x.shape[0], -1)
    if target.shape != logits.shape:
        raise ValueError(f"{caller}: x must flatten to the shape of logits {tuple(logits.shape)}; got {tuple(target.shape)}")
    if mu.shape[0] != logits.shape[0]:
        raise ValueError(f"{caller}: mu must have the batch size of logits ({logits.shape[0]}); got shape {tuple(mu.shape)}")
    reconstruction = F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(dim=1)  # [N]
    return reconstruction.mean(), gaussian_kl(mu, logvar).mean()


def vae_loss(
    logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, *, beta: float = 1.0
) -> torch.Tensor:
    r"""Negative ELBO per sample, averaged: Bernoulli reconstruction term plus ``beta`` × Gaussian KL.

    :math:`-\mathrm{ELBO} = -\mathbb E_q[\log p(x\mid z)] + \mathrm{KL}(q(z\mid x)\,\|\,p(z))`
    (Kingma & Welling 2014, Eq. (3)), the expectation estimated with one sample of z.
    ``x`` holds targets in [0, 1] (Bernoulli means), flattened to match ``logits``.
    ``beta = 1`` is the ELBO; ``beta > 1`` is the β-VAE objective of Higgins et al. (2017,
    Eq. (4)), which presses the posterior towards the prior harder than the ELBO does.
    The two terms separately: :func:`vae_loss_terms`.
    """
    beta = _v.real("beta", beta, caller="vae_loss", low=0.0)
    reconstruction, kl = _vae_terms(logits, x, mu, logvar, "vae_loss")
    return reconstruction + beta * kl


# ---------------------------------------------------------------- GANs on the ring


class EnsembleMLP(nn.Module):
    """``members`` independent ReLU MLPs evaluated in one batched computation.

    Member m has its own weights ``weights[l][m]``; input Tensor[M, B, in] gives
    Tensor[M, B, out] with no interaction between members (``baddbmm`` per layer), so
    several seeded runs train side by side at the cost of one. Adam, RMSProp and weight
    clipping act element-wise, hence per member as well.
    """

    def __init__(self, members: int, in_features: int, out_features: int, hidden: int = 64, layers: int = 2,
                 *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        caller = "EnsembleMLP"
        members = _v.integer("members", members, caller=caller, minimum=1)
        in_features = _v.integer("in_features", in_features, caller=caller, minimum=1)
        out_features = _v.integer("out_features", out_features, caller=caller, minimum=1)
        hidden = _v.integer("hidden", hidden, caller=caller, minimum=1)
        layers = _v.integer("layers", layers, caller=caller, minimum=0)
        if generator is not None:
            _v.instance("generator", generator, caller=caller, types=torch.Generator)
        sizes = [in_features] + [hidden] * layers + [out_features]
        self.weights, self.biases = nn.ParameterList(), nn.ParameterList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            # PyTorch's default nn.Linear initialization, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), per member.
            bound = 1 / math.sqrt(fan_in)
            w = (torch.rand(members, fan_in, fan_out, generator=generator) * 2 - 1) * bound
            b = (torch.rand(members, 1, fan_out, generator=generator) * 2 - 1) * bound
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(b))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x  # [M, B, in]
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b, h, w)  # [M, B, out_i]
            if i < last:
                h = torch.relu(h)
        return h


@dataclass
class RingGANResult:
    """What :func:`train_ring_gan` returns: the generators and snapshots of their samples.

    Attributes:
        generator: an :class:`EnsembleMLP` holding one generator per seed.
        critic: the :class:`EnsembleMLP` of the discriminators (GAN) or critics (WGAN).
        snapshots: step -> Tensor[S, 512, 2], samples of each run from fixed noise.
        critic_losses: Tensor[steps, S] of the last critic (discriminator) loss per step,
            without the gradient penalty for ``"wgan-gp"``.
        snapshot_labels: for a conditional model, LongTensor[512], the mode each snapshot
            sample was generated for (``k % 8`` for sample k); ``None`` otherwise.
    """

    generator: nn.Module
    critic: nn.Module | None = None
    snapshots: dict[int, torch.Tensor] = field(default_factory=dict)
    critic_losses: torch.Tensor | None = None
    snapshot_labels: torch.Tensor | None = None


def train_ring_gan(
    kind: str,
    *,
    runs: int = 3,
    steps: int = 1000,
    batch_size: int = 128,
    latent: int = 2,
    std: float = 0.02,
    seed: int = 0,
    snapshot_every: int | None = None,
    d_steps: int | None = None,
    conditional: bool = False,
    device: torch.device | None = None,
) -> RingGANResult:
    r"""Train ``runs`` independent GANs, WGANs or WGAN-GPs on the 8-Gaussian ring at once.

    - ``"gan"``: the non-saturating GAN (Goodfellow et al. 2014, Sec. 3): the discriminator
      minimises :math:`-\log D(x) - \log(1 - D(G(z)))`, the generator :math:`-\log D(G(z))`;
      Adam(β=(0.5, 0.999)), by default one discriminator step per generator step (the
      paper's Algorithm 1 with k = 1, the value its experiments used); the learning rate is
      1e-3 (DCGAN's usual 2e-4 needs more steps than this book can afford).
    - ``"wgan"``: weight clipping at ±0.01, RMSProp, five critic steps per generator step
      (Arjovsky et al. 2017, Algorithm 1). The paper's learning rate 5e-5 needs far more
      steps than this book can afford; 1e-3 is used here.
    - ``"wgan-gp"``: gradient penalty λ = 10 and five critic steps as in Gulrajani et al.
      2017, Algorithm 1, whose Adam has lr 1e-4 and β = (0, 0.9); here lr 1e-3 (the larger
      rate for the same reason) and β = (0.5, 0.9).

    ``d_steps`` (k of Goodfellow et al.'s Algorithm 1, :math:`n_\text{critic}` of the WGAN
    papers) overrides the number of discriminator/critic updates per generator update;
    ``steps`` always counts generator updates. With ``conditional=True`` both networks also
    receive the one-hot index of the mode (Mirza & Osindero 2014): real samples come with
    the mode they were drawn from, fakes are generated for the labels of the real batch
    in the discriminator step and for uniformly drawn labels in the generator step.

    Both networks are ReLU MLPs with two hidden layers of 64 units (:class:`EnsembleMLP`).
    The real data are :func:`ring_of_gaussians` with standard deviation ``std`` (Metz et
    al. 2017 use 0.02). Each run has its own initialization and its own data and noise;
    everything random comes from one ``torch.Generator`` seeded with ``seed``.

    Returns:
        A :class:`RingGANResult`.
    """
    caller = "train_ring_gan"
    _v.choice("kind", kind, caller=caller, choices=("gan", "wgan", "wgan-gp"))
    runs = _v.integer("runs", runs, caller=caller, minimum=1)
    steps = _v.integer("steps", steps, caller=caller, minimum=1)
    batch_size = _v.integer("batch_size", batch_size, caller=caller, minimum=1)
    latent = _v.integer("latent", latent, caller=caller, minimum=1)
    std = _v.real("std", std, caller=caller, low=0.0, low_open=True)
    seed = _v.integer("seed", seed, caller=caller, minimum=0)
    if snapshot_every is not None:
        snapshot_every = _v.integer("snapshot_every", snapshot_every, caller=caller, minimum=1)
    if d_steps is not None:
        d_steps = _v.integer("d_steps", d_steps, caller=caller, minimum=1)
    conditional = _v.boolean("conditional", conditional, caller=caller)
    device = device or torch.device("cpu")
    modes = 8
    extra = modes if conditional else 0  # one-hot condition appended to both inputs
    rng = torch.Generator().manual_seed(seed)
    G = EnsembleMLP(runs, latent + extra, 2, generator=rng).to(device)
    D = EnsembleMLP(runs, 2 + extra, 1, generator=rng).to(device)
    if kind == "gan":
        opt_g = torch.optim.Adam(G.parameters(), lr=1e-3, betas=(0.5, 0.999))
        opt_d = torch.optim.Adam(D.parameters(), lr=1e-3, betas=(0.5, 0.999))
        n_critic = 1
    elif kind == "wgan":
        opt_g = torch.optim.RMSprop(G.parameters(), lr=1e-3)
        opt_d = torch.optim.RMSprop(D.parameters(), lr=1e-3)
        n_critic = 5
    else:
        opt_g = torch.optim.Adam(G.parameters(), lr=1e-3, betas=(0.5, 0.9))
        opt_d = torch.optim.Adam(D.parameters(), lr=1e-3, betas=(0.5, 0.9))
        n_critic = 5
    if d_steps is not None:
        n_critic = d_steps

    def real_batch() -> tuple[torch.Tensor, torch.Tensor]:  # [S, B, 2] points and [S, B] mode indices
        x, _, y = ring_of_gaussians(runs * batch_size, std=std, generator=rng, return_labels=True)
        return x.reshape(runs, batch_size, 2).to(device), y.reshape(runs, batch_size).to(device)

    def noise(n: int) -> torch.Tensor:
        return torch.randn(runs, n, latent, generator=rng).to(device)

    def with_condition(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # [S, B, F] -> [S, B, F + extra]
        return torch.cat([x, F.one_hot(y, modes).to(x.dtype)], dim=-1) if conditional else x

    result = RingGANResult(generator=G, critic=D)
    fixed_z = noise(512)
    fixed_y = (torch.arange(512) % modes).to(device)  # [512]: 64 samples asked of each mode
    if conditional:
        result.snapshot_labels = fixed_y.cpu()
    fixed_input = with_condition(fixed_z, fixed_y.expand(runs, 512))
    losses = torch.zeros(steps, runs)
    for step in range(1, steps + 1):
        for _ in range(n_critic):
            real, labels = real_batch()
            fake = G(with_condition(noise(batch_size), labels)).detach()  # [S, B, 2]
            # [S, B] logits (GAN) or scores (WGAN)
            d_real, d_fake = D(with_condition(real, labels)).squeeze(2), D(with_condition(fake, labels)).squeeze(2)
            critic_loss = gan_discriminator_loss if kind == "gan" else wgan_critic_loss
            per_run = critic_loss(d_real, d_fake)  # [S]
            d_loss = per_run.sum()  # runs do not interact: the sum trains each on its own loss

            if kind == "wgan-gp":
                def critic(x: torch.Tensor, labels: torch.Tensor = labels) -> torch.Tensor:  # [S * B, 2] -> [S * B]
                    return D(with_condition(x.reshape(runs, -1, 2), labels)).reshape(-1)

                # Penalty per run: mean over that run's batch, then summed over runs.
                d_loss = d_loss + 10.0 * runs * gradient_penalty(
                    critic, real.reshape(-1, 2), fake.reshape(-1, 2), generator=rng
                )
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            if kind == "wgan":
                with torch.no_grad():
                    for p in D.parameters():
                        p.clamp_(-0.01, 0.01)
        z = noise(batch_size)
        y = torch.randint(0, modes, (runs, batch_size), generator=rng).to(device) if conditional else None
        d_fake = D(with_condition(G(with_condition(z, y)), y)).squeeze(2)  # [S, B]
        g_loss = (gan_generator_loss if kind == "gan" else wgan_generator_loss)(d_fake).sum()
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        losses[step - 1] = per_run.detach().cpu()
        if snapshot_every and (step % snapshot_every == 0 or step == steps):
            with torch.no_grad():
                result.snapshots[step] = G(fixed_input).cpu()
    if steps not in result.snapshots:
        with torch.no_grad():
            result.snapshots[steps] = G(fixed_input).cpu()
    result.critic_losses = losses
    return result


# ---------------------------------------------------------------- diffusion (DDPM)
def ddpm_schedule(
    num_steps: int, *, beta_start: float = 1e-4, beta_end: float = 0.02
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The linear noise schedule of DDPM (Ho et al. 2020, Sec. 4).

    .. math::
        \beta_t = \beta_{start} + \frac{t-1}{T-1}(\beta_{end} - \beta_{start}),\quad t = 1..T, \qquad
        \bar\alpha_t = \prod_{s=1}^{t} (1 - \beta_s).

    The paper uses :math:`T = 1000`, :math:`\beta_1 = 10^{-4}`, :math:`\beta_T = 0.02`.
    Computed in float64 and returned as float32.

    Args:
        num_steps: T ≥ 1 (with T = 1 the single β is ``beta_start``).
        beta_start, beta_end: :math:`0 < \beta_1 \le \beta_T < 1`.

    Returns:
        ``(betas, alphas_cumprod)``, each Tensor[T]; index ``t - 1`` holds step t.
    """
    caller = "ddpm_schedule"
    num_steps = _v.integer("num_steps", num_steps, caller=caller, minimum=1)
    beta_start = _v.real("beta_start", beta_start, caller=caller, low=0.0, high=1.0, low_open=True, high_open=True)
    beta_end = _v.real("beta_end", beta_end, caller=caller, low=0.0, high=1.0, low_open=True, high_open=True)
    if beta_end < beta_start:
        raise ValueError(f"{caller}: beta_end must be >= beta_start ({beta_start:g}); got {beta_end:g}")
    betas = torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64)  # [T]
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)  # [T]
    return betas.float(), alphas_cumprod.float()


def q_sample(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    r"""Sample :math:`x_t \sim q(x_t \mid x_0)` in closed form (Ho et al. 2020, Eq. (4)).

    .. math::
        x_t = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1 - \bar\alpha_t}\,\epsilon, \qquad \epsilon \sim \mathcal N(0, I).

    Args:
        x0 (Tensor[N, ...]): clean data, floating point.
        t (Tensor[N], integer): 0-based index into ``alphas_cumprod`` for each sample.
        noise (Tensor[N, ...]): :math:`\epsilon`, the shape of ``x0`` exactly.
        alphas_cumprod (Tensor[T]): :math:`\bar\alpha`, e.g. from :func:`ddpm_schedule`.

    Returns:
        Tensor[N, ...], :math:`x_t`, differentiable in ``x0`` and ``noise``.
    """
    caller = "q_sample"
    _v.tensor("x0", x0, caller=caller, dtype="floating", nonempty=False)
    if x0.ndim < 1:
        raise ValueError(f"{caller}: x0 must have a batch dimension; got shape {tuple(x0.shape)}")
    _v.tensor("t", t, caller=caller, dtype="integer", shape=(x0.shape[0],))
    _v.tensor("noise", noise, caller=caller, dtype="floating")
    _v.same_shape("noise", noise, caller=caller, like=x0, like_name="x0")
    _v.tensor("alphas_cumprod", alphas_cumprod, caller=caller, dtype="floating", ndim=1, nonempty=True)
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= alphas_cumprod.shape[0]):
        raise ValueError(f"{caller}: t must be in [0, {alphas_cumprod.shape[0] - 1}]; "
                         f"got values in [{int(t.min())}, {int(t.max())}]")
    a = alphas_cumprod.to(x0.dtype)[t.long()].reshape(-1, *([1] * (x0.ndim - 1)))  # [N, 1, ...]
    return a.sqrt() * x0 + (1.0 - a).sqrt() * noise



def ddpm_sample(
    denoiser: Callable[[torch.Tensor, int], torch.Tensor],
    shape: tuple[int, ...],
    betas: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    callback: Callable[[int, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    r"""Ancestral sampling of DDPM (Ho et al. 2020, Algorithm 2), with :math:`\sigma_t^2 = \beta_t`.

    .. math::
        x_T \sim \mathcal N(0, I), \qquad
        x_{t-1} = \frac{1}{\sqrt{\alpha_t}}\Big(x_t - \frac{\beta_t}{\sqrt{1-\bar\alpha_t}}\,
        \epsilon_\theta(x_t, t)\Big) + \sigma_t z, \quad z \sim \mathcal N(0, I) \text{ for } t > 1,\ z = 0 \text{ at } t = 1.

    Args:
        denoiser: ``denoiser(x_t, t)`` → the predicted noise, the shape of ``x_t``; ``t`` is the
            0-based step index (``T - 1`` down to 0), one int for the whole batch.
        shape: the shape of the samples, e.g. ``(N, 2)``.
        betas, alphas_cumprod (Tensor[T]): from :func:`ddpm_schedule`.
        generator: for :math:`x_T` and every :math:`z`.
        device: where to sample.
        callback: if given, ``callback(t, x_t)`` is called with the 1-based time ``t = T``
            for the initial noise and ``t = T - 1, ..., 0`` after each step (``x_0`` is the
            returned sample), e.g. to record the reverse trajectory. It draws nothing from
            ``generator``, so the samples are the same with or without it.

    Returns:
        Tensor[shape], :math:`x_0`. No gradient is recorded.
    """
    caller = "ddpm_sample"
    if not callable(denoiser):
        raise TypeError(f"{caller}: denoiser must be callable; got {type(denoiser).__name__}")
    shape = _v.int_sequence("shape", shape, caller=caller, minimum=0)
    _v.tensor("betas", betas, caller=caller, dtype="floating", ndim=1, nonempty=True)
    _v.tensor("alphas_cumprod", alphas_cumprod, caller=caller, dtype="floating", ndim=1)
    _v.same_shape("alphas_cumprod", alphas_cumprod, caller=caller, like=betas, like_name="betas")
    if generator is not None:
        _v.instance("generator", generator, caller=caller, types=torch.Generator)
    if callback is not None and not callable(callback):
        raise TypeError(f"{caller}: callback must be callable; got {type(callback).__name__}")
    betas, alphas_cumprod = betas.to(device), alphas_cumprod.to(device)
    with torch.no_grad():
        x = torch.randn(shape, generator=generator).to(device)  # x_T
        if callback is not None:
            callback(betas.shape[0], x)
        for t in range(betas.shape[0] - 1, -1, -1):  # 0-based index t: from x_{t+1} to x_t (1-based times)
            eps = denoiser(x, t)
            x = (x - betas[t] / (1 - alphas_cumprod[t]).sqrt() * eps) / (1 - betas[t]).sqrt()  # the mean
            if t > 0:
                x = x + betas[t].sqrt() * torch.randn(shape, generator=generator).to(device)
            if callback is not None:
                callback(t, x)
    return x


def _time_features(t: torch.Tensor, num_steps: int, dim: int = 16) -> torch.Tensor:
    """Sinusoidal features of t / num_steps, Tensor[..., dim] (frequencies 1 … 1000, geometric)."""
    freqs = torch.exp(torch.linspace(0.0, math.log(1000.0), dim // 2, device=t.device))  # [dim/2]
    angle = (t.float() / num_steps)[..., None] * freqs
    return torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1)


@dataclass
class RingDDPMResult:
    """What :func:`train_ring_ddpm` returns: ``samples`` Tensor[R, n, 2] on the CPU, the mean training
    loss over the runs at every step, the schedule used, and ``trajectory``: time t -> x_t,
    Tensor[R, n, 2], for the times asked for with ``record_times`` (x_T is noise, x_0 the samples)."""

    samples: torch.Tensor
    losses: list[float] = field(default_factory=list)
    betas: torch.Tensor | None = None
    alphas_cumprod: torch.Tensor | None = None
    trajectory: dict[int, torch.Tensor] = field(default_factory=dict)


def train_ring_ddpm(
    *,
    runs: int = 4,
    steps: int = 2000,
    num_steps: int = 200,
    beta_end: float = 0.05,
    batch_size: int = 256,
    std: float = 0.05,
    lr: float = 2e-3,
    samples: int = 512,
    seed: int = 0,
    record_times: tuple[int, ...] = (),
    device: torch.device | str | None = None,
) -> RingDDPMResult:
    r"""Train ``runs`` independent DDPM noise predictors on the ring of Gaussians, side by side, and sample.

    The denoiser :math:`\epsilon_\theta(x_t, t)` is a ReLU MLP (three hidden layers of 128)
    on :math:`x_t` and sinusoidal features of :math:`t/T`; all runs share one batched
    computation (:class:`EnsembleMLP`), each with its own weights, data and noise. Loss:
    Ho et al.'s :math:`L_\text{simple} = \lVert \epsilon - \epsilon_\theta(x_t, t)\rVert^2`
    with :math:`t` uniform. Deviations from the paper (chosen for a few seconds of CPU):
    :math:`T` = ``num_steps`` = 200 instead of 1000 with :math:`\beta_T` = ``beta_end`` = 0.05
    instead of 0.02 (so that :math:`\bar\alpha_T` is still small), an MLP instead of a
    U-Net, Adam with learning rate ``lr`` and cosine decay.

    ``record_times`` (1-based times in ``[0, num_steps]``) keeps :math:`x_t` of the reverse
    process at those times in ``trajectory``; recording changes no sample.

    Returns:
        :class:`RingDDPMResult` with ``samples`` samples per run drawn by :func:`ddpm_sample`.
    """
    caller = "train_ring_ddpm"
    runs = _v.integer("runs", runs, caller=caller, minimum=1)
    steps = _v.integer("steps", steps, caller=caller, minimum=1)
    num_steps = _v.integer("num_steps", num_steps, caller=caller, minimum=2)
    batch_size = _v.integer("batch_size", batch_size, caller=caller, minimum=1)
    samples = _v.integer("samples", samples, caller=caller, minimum=1)
    seed = _v.integer("seed", seed, caller=caller)
    std = _v.real("std", std, caller=caller, low=0.0, low_open=True)
    lr = _v.real("lr", lr, caller=caller, low=0.0, low_open=True)
    record_times = _v.int_sequence("record_times", record_times, caller=caller, minimum=0, nonempty=False)
    if any(t > num_steps for t in record_times):
        raise ValueError(f"{caller}: record_times must lie in [0, num_steps={num_steps}]; got {tuple(record_times)}")
    betas, alphas_cumprod = ddpm_schedule(num_steps, beta_end=beta_end)
    betas, alphas_cumprod = betas.to(device), alphas_cumprod.to(device)
    g = torch.Generator().manual_seed(seed)
    model = EnsembleMLP(runs, 2 + 16, 2, hidden=128, layers=3, generator=g).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)

    def predict(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # x [R, B, 2], t [R, B]
        return model(torch.cat([x, _time_features(t, num_steps)], dim=-1))

    losses = []
    for _ in range(steps):
        x0, _ = ring_of_gaussians(runs * batch_size, std=std, generator=g)
        x0 = x0.reshape(runs, batch_size, 2).to(device)
        t = torch.randint(0, num_steps, (runs, batch_size), generator=g).to(device)
        eps = torch.randn(runs, batch_size, 2, generator=g).to(device)
        x_t = q_sample(x0.reshape(-1, 2), t.reshape(-1), eps.reshape(-1, 2), alphas_cumprod).reshape(runs, batch_size, 2)
        loss = (predict(x_t, t) - eps).square().mean()  # mean over runs: each run's gradient is its own
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
    trajectory: dict[int, torch.Tensor] = {}

    def record(t: int, x: torch.Tensor) -> None:
        if t in record_times:
            trajectory[t] = x.cpu().clone()

    with eval_mode(model):
        out = ddpm_sample(
            lambda x, t: predict(x, torch.full(x.shape[:2], t, device=x.device)),
            (runs, samples, 2), betas, alphas_cumprod, generator=g, device=device, callback=record,
        )
    return RingDDPMResult(samples=out.cpu(), losses=losses, betas=betas.cpu(), alphas_cumprod=alphas_cumprod.cpu(),
                          trajectory=trajectory)
