r"""Learning with few labels: PCA, transfer, pseudo-labelling, FixMatch, SimCLR, BYOL's EMA and SimSiam.

The six functions of the chapter's public API are checked in ``tests/test_fewlabels.py``
against scikit-learn (:func:`pca`) or the papers' formulas written out slowly; the
training helpers after them run the chapter's experiments on the 8×8 digits.

Shape letters: N samples, D input features, K classes or principal components,
B batch, E embedding size, C channels, H and W image size.

Papers:
    - Pearson 1901 and Hotelling 1933 (PCA); Roy & Vetterli 2007 (effective rank).
    - Yosinski et al. 2014, *How transferable are features in deep neural networks?*
    - Lee 2013, *Pseudo-Label: the simple and efficient semi-supervised learning method*.
    - Sohn et al. 2020, *FixMatch: simplifying semi-supervised learning with consistency
      and confidence*.
    - Chen et al. 2020, *A simple framework for contrastive learning of visual
      representations* (SimCLR, NT-Xent).
    - Grill et al. 2020, *Bootstrap your own latent* (BYOL, EMA target).
    - Chen & He 2021, *Exploring simple Siamese representation learning* (SimSiam).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from dlkb import _validate as _v
from dlkb.train import train_steps
from dlkb.augment import translate

__all__ = [
    "PCAResult",
    "pca",
    "nt_xent_loss",
    "simsiam_loss",
    "effective_rank",
    "fixmatch_loss",
    "ema_update",
    "random_translate",
    "cutout",
    "weak_augment",
    "strong_augment",
    "sample_per_class",
    "transfer_model",
    "mlp_encoder",
    "train_supervised",
    "train_pseudo_label",
    "train_fixmatch",
    "linear_probe",
    "projection_mlp",
    "train_simclr",
    "SimSiamHistory",
    "train_simsiam",
]


# ---------------------------------------------------------------------------- PCA


@dataclass(frozen=True)
class PCAResult:
    """What :func:`pca` returns, named as scikit-learn's ``PCA`` attributes without the underscore.

    Attributes:
        components (Tensor[K, D]): orthonormal principal directions, by decreasing variance.
        explained_variance (Tensor[K]): variance of the data along each direction
            (unbiased, divided by N − 1).
        explained_variance_ratio (Tensor[K]): the same divided by the total variance.
        mean (Tensor[D]): the per-feature mean that was subtracted.
    """

    components: torch.Tensor
    explained_variance: torch.Tensor
    explained_variance_ratio: torch.Tensor
    mean: torch.Tensor

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """Coordinates of ``x`` (Tensor[N, D]) along the components: Tensor[N, K]."""
        x = _v.tensor("x", x, caller="PCAResult.transform", ndim=2, dtype="floating")
        if x.shape[1] != self.mean.shape[0]:
            raise ValueError(
                f"PCAResult.transform: x must have {self.mean.shape[0]} features; got shape {_v.shape_str(x.shape)}"
            )
        return (x - self.mean) @ self.components.T


def pca(x: torch.Tensor, k: int) -> PCAResult:
    r"""Principal component analysis by the singular value decomposition of the centred data.

    With :math:`X_c = X - \bar x` and :math:`X_c = U \Sigma V^\top`, the first ``k``
    rows of :math:`V^\top` are the directions of largest variance, and the variance
    along row :math:`j` is :math:`\sigma_j^2 / (N - 1)` (Hotelling 1933). The sign of
    each direction is arbitrary; as scikit-learn (≥ 1.5), we make the entry of largest
    absolute value of each row positive.

    Args:
        x (Tensor[N, D]): floating-point data, one sample per row, N ≥ 2.
        k: number of components, ``1 ≤ k ≤ min(N, D)``.

    Returns:
        A :class:`PCAResult`; equals ``sklearn.decomposition.PCA(n_components=k,
        svd_solver="full")`` (``components_`` up to the sign of each row).
    """
    caller = "pca"
    x = _v.tensor("x", x, caller=caller, ndim=2, dtype="floating")
    if x.shape[0] < 2 or x.shape[1] < 1:
        raise ValueError(f"{caller}: x must have at least 2 rows and 1 column; got shape {_v.shape_str(x.shape)}")
    n, d = x.shape
    k = _v.integer("k", k, caller=caller, minimum=1, maximum=min(n, d))
    mean = x.mean(dim=0)  # [D]
    _, s, vh = torch.linalg.svd(x - mean, full_matrices=False)  # s: [min(N, D)], vh: [min(N, D), D]
    rows = torch.arange(vh.shape[0], device=x.device)
    signs = torch.sign(vh[rows, vh.abs().argmax(dim=1)])  # [min(N, D)]: largest entry positive
    components = vh * signs[:, None]
    variance = s**2 / (n - 1)  # [min(N, D)]
    return PCAResult(
        components=components[:k],
        explained_variance=variance[:k],
        explained_variance_ratio=variance[:k] / variance.sum(),
        mean=mean,
    )


# ---------------------------------------------------------------------------- losses


def _pair_of_rows(names: tuple[str, str], a: object, b: object, *, caller: str) -> tuple[torch.Tensor, torch.Tensor]:
    a = _v.tensor(names[0], a, caller=caller, ndim=2, dtype="floating", nonempty=True)
    b = _v.tensor(names[1], b, caller=caller, ndim=2, dtype="floating")
    _v.same_shape(names[1], b, caller=caller, like=a, like_name=names[0])
    return a, b


def nt_xent_loss(z1: torch.Tensor, z2: torch.Tensor, *, temperature: float = 0.5) -> torch.Tensor:
    r"""SimCLR's normalized temperature-scaled cross-entropy (Chen et al. 2020, Eq. (1)).

    The 2N rows of ``cat(z1, z2)`` are the embeddings of two augmented views of N
    images; row ``i`` of ``z1`` and row ``i`` of ``z2`` are a positive pair. With cosine
    similarities :math:`s_{ij} = z_i^\top z_j / (\|z_i\|\|z_j\|)`, each anchor ``i``
    pays

    .. math::
        \ell_i = -\log \frac{\exp(s_{i,p(i)}/\tau)}{\sum_{j \ne i} \exp(s_{ij}/\tau)},

    a cross-entropy over the other 2N − 1 rows with its pair :math:`p(i)` as the target;
    the loss is the mean over the 2N anchors (the paper's :math:`\frac{1}{2N}\sum_k
    [\ell(2k-1, 2k) + \ell(2k, 2k-1)]`). This is InfoNCE (van den Oord et al. 2018) with
    the other 2N − 2 images of the batch as negatives.

    Args:
        z1 (Tensor[N, E]): embeddings of the first views.
        z2 (Tensor[N, E]): embeddings of the second views, same shape.
        temperature: :math:`\tau > 0`.

    Returns:
        Scalar tensor.
    """
    caller = "nt_xent_loss"
    z1, z2 = _pair_of_rows(("z1", "z2"), z1, z2, caller=caller)
    tau = _v.real("temperature", temperature, caller=caller, low=0.0, low_open=True)
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)  # [2N, E], unit rows
    logits = z @ z.T / tau  # [2N, 2N] cosine similarities / τ
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))  # an anchor is not its own candidate
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)  # [2N]: index of the pair
    return F.cross_entropy(logits, targets)


def simsiam_loss(
    p1: torch.Tensor, p2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor, *, stop_gradient: bool = True
) -> torch.Tensor:
    r"""SimSiam's symmetrized negative cosine similarity (Chen & He 2021, Eqs. (1)–(4)).

    .. math::
        \mathcal L = -\tfrac12 \big[\operatorname{mean}\cos(p_1, \operatorname{sg}(z_2))
        + \operatorname{mean}\cos(p_2, \operatorname{sg}(z_1))\big],

    where :math:`p_i = h(z_i)` are the predictor's outputs, :math:`z_i` the projector's,
    and :math:`\operatorname{sg}` the stop-gradient (``detach``). With
    ``stop_gradient=False`` the gradient also flows into ``z1`` and ``z2``: the ablation
    of the paper's Fig. 2, which collapses.

    Args:
        p1, p2 (Tensor[N, E]): predictions for the two views.
        z1, z2 (Tensor[N, E]): projections of the two views.
        stop_gradient: detach ``z1`` and ``z2`` (the method) or not (the ablation).

    Returns:
        Scalar tensor in [−1, 1].
    """
    caller = "simsiam_loss"
    p1, p2 = _pair_of_rows(("p1", "p2"), p1, p2, caller=caller)
    z1 = _v.tensor("z1", z1, caller=caller, dtype="floating")
    z2 = _v.tensor("z2", z2, caller=caller, dtype="floating")
    _v.same_shape("z1", z1, caller=caller, like=p1, like_name="p1")
    _v.same_shape("z2", z2, caller=caller, like=p1, like_name="p1")
    stop_gradient = _v.boolean("stop_gradient", stop_gradient, caller=caller)
    if stop_gradient:
        z1, z2 = z1.detach(), z2.detach()

    def cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:  # [N]
        return (F.normalize(p, dim=1) * F.normalize(z, dim=1)).sum(dim=1)

    return -0.5 * (cosine(p1, z2).mean() + cosine(p2, z1).mean())


def effective_rank(z: torch.Tensor) -> torch.Tensor:
    r"""Effective rank of a matrix (Roy & Vetterli 2007): :math:`\exp H(\sigma / \|\sigma\|_1)`.

    With the singular values :math:`\sigma_1, \dots, \sigma_r` of ``z`` (not centred) and
    :math:`q_k = \sigma_k / \sum_j \sigma_j`, the effective rank is
    :math:`\exp(-\sum_k q_k \log q_k)` with :math:`0 \log 0 = 0`. It lies between 1 (one
    non-zero singular value, e.g. every row the same vector: complete collapse) and
    :math:`\min(N, E)` (all singular values equal). Because ``z`` is not centred, a
    constant embedding counts as rank 1, not 0.

    Args:
        z (Tensor[N, E]): embeddings, one row per sample, not all zero.

    Returns:
        Scalar tensor.
    """
    caller = "effective_rank"
    z = _v.tensor("z", z, caller=caller, ndim=2, dtype="floating", nonempty=True)
    s = torch.linalg.svdvals(z)  # [min(N, E)]
    total = s.sum()
    if total.item() == 0:
        raise ValueError(f"{caller}: z must not be all zeros; got shape {_v.shape_str(z.shape)} of zeros")
    q = s / total
    log_q = torch.log(torch.where(q > 0, q, torch.ones_like(q)))  # 0 log 0 = 0, with a finite gradient
    return torch.exp(-(q * log_q).sum())


def fixmatch_loss(
    logits_weak: torch.Tensor, logits_strong: torch.Tensor, *, threshold: float = 0.95
) -> torch.Tensor:
    r"""FixMatch's unlabelled loss :math:`\ell_u` (Sohn et al. 2020, Sec. 2.2).

    .. math::
        \ell_u = \frac{1}{B}\sum_{b=1}^{B} \mathbb 1[\max_k q_{bk} \ge \tau]\;
        \mathrm{CE}\big(\arg\max_k q_{bk},\ \text{logits\_strong}_b\big),
        \qquad q_b = \operatorname{softmax}(\text{logits\_weak}_b),

    the mean over *all* B unlabelled samples (those below the threshold count as
    zero). The pseudo-label comes from the weakly augmented view and is a constant:
    no gradient flows into ``logits_weak``.

    Args:
        logits_weak (Tensor[B, K]): logits of the weakly augmented images.
        logits_strong (Tensor[B, K]): logits of the strongly augmented versions.
        threshold: confidence threshold :math:`\tau \in [0, 1]` (the paper uses 0.95).

    Returns:
        Scalar tensor.
    """
    caller = "fixmatch_loss"
    logits_weak, logits_strong = _pair_of_rows(("logits_weak", "logits_strong"), logits_weak, logits_strong, caller=caller)
    threshold = _v.real("threshold", threshold, caller=caller, low=0.0, high=1.0)
    with torch.no_grad():
        confidence, pseudo = torch.softmax(logits_weak, dim=1).max(dim=1)  # [B], [B]
        mask = (confidence >= threshold).to(logits_strong.dtype)  # [B]
    return (F.cross_entropy(logits_strong, pseudo, reduction="none") * mask).mean()


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, *, decay: float) -> None:
    r"""Move ``target``'s parameters towards ``online``'s in place: :math:`\xi \leftarrow d\,\xi + (1 - d)\,\theta`.

    BYOL's target network (Grill et al. 2020, Eq. (1)) and the evaluation model of
    FixMatch and many others are such exponential moving averages. Buffers (e.g. batch
    norm statistics) are left alone; no autograd graph is recorded.

    Args:
        target: the averaged network, updated in place.
        online: the trained network, same architecture (same parameter shapes, in order).
        decay: :math:`d \in [0, 1]`; 1 keeps ``target``, 0 copies ``online``.
    """
    caller = "ema_update"
    _v.module("target", target, caller=caller)
    _v.module("online", online, caller=caller)
    decay = _v.real("decay", decay, caller=caller, low=0.0, high=1.0)
    t_params, o_params = list(target.parameters()), list(online.parameters())
    t_shapes = [tuple(p.shape) for p in t_params]
    o_shapes = [tuple(p.shape) for p in o_params]
    if t_shapes != o_shapes:
        raise ValueError(
            f"{caller}: online must have the same parameter shapes as target {t_shapes}; got {o_shapes}"
        )
    for t, o in zip(t_params, o_params):
        t.mul_(decay).add_(o, alpha=1.0 - decay)


# ---------------------------------------------------------------------------- augmentations


def random_translate(x: torch.Tensor, max_shift: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Shift each image of ``x`` (Tensor[N, C, H, W]) by its own random whole-pixel offset.

    Offsets ``dx, dy`` are drawn uniformly from ``-max_shift … max_shift``. The shift itself
    is :func:`dlkb.augment.translate` (zeros fill the border), in two passes, first along x
    then along y (zero-filled shifts compose exactly): each pass shifts the whole batch by
    every possible offset and picks, per image, the one it drew. That is ``2 (2 max_shift + 1)``
    calls on the whole batch, and no loop over images.
    """
    caller = "random_translate"
    x = _v.tensor("x", x, caller=caller, ndim=4, dtype="floating")
    m = _v.integer("max_shift", max_shift, caller=caller, minimum=0)
    offsets = torch.randint(-m, m + 1, (x.shape[0], 2), generator=generator).to(x.device)  # [N, 2]: (dx, dy)
    rows = torch.arange(x.shape[0], device=x.device)
    for axis in (0, 1):  # 0: horizontal (dx), 1: vertical (dy)
        shifted = torch.stack(
            [translate(x, s, 0) if axis == 0 else translate(x, 0, s) for s in range(-m, m + 1)]
        )  # [2m + 1, N, C, H, W]
        x = shifted[offsets[:, axis] + m, rows]  # [N, C, H, W]: each image with its own offset
    return x


def cutout(x: torch.Tensor, size: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero one ``size``×``size`` square per image at a random centre, clipped at the border (DeVries & Taylor 2017)."""
    caller = "cutout"
    x = _v.tensor("x", x, caller=caller, ndim=4, dtype="floating")
    size = _v.integer("size", size, caller=caller, minimum=0)
    n, _, h, w = x.shape
    cy = torch.randint(h, (n, 1), generator=generator).to(x.device)  # [N, 1] centre row
    cx = torch.randint(w, (n, 1), generator=generator).to(x.device)  # [N, 1] centre column
    rows = torch.arange(h, device=x.device)[None]  # [1, H]
    cols = torch.arange(w, device=x.device)[None]  # [1, W]
    in_rows = (rows >= cy - size // 2) & (rows < cy - size // 2 + size)  # [N, H]
    in_cols = (cols >= cx - size // 2) & (cols < cx - size // 2 + size)  # [N, W]
    hole = in_rows[:, :, None] & in_cols[:, None, :]  # [N, H, W]
    return x.masked_fill(hole[:, None], 0.0)


def weak_augment(x: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """FixMatch's weak augmentation for 8×8 digits: a random shift of at most 1 pixel (12.5%).

    The paper flips and shifts by up to 12.5% (Sohn et al. 2020, Sec. 2.3); a flip
    changes what a digit means, so only the shift is kept.
    """
    _v.tensor("x", x, caller="weak_augment", ndim=4, dtype="floating")
    return random_translate(x, 1, generator=generator)


def strong_augment(x: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """A strong augmentation for 8×8 digits: shift ≤ 2 pixels, a 4×4 cutout, random contrast.

    A small stand-in for FixMatch's RandAugment + Cutout and SimCLR's crop + colour
    distortion: each image is shifted, a quarter of it is blanked out, and its
    intensities are multiplied by a factor drawn from U[0.5, 1.5] and clipped to [0, 1].
    """
    _v.tensor("x", x, caller="strong_augment", ndim=4, dtype="floating")
    x = random_translate(x, 2, generator=generator)
    x = cutout(x, 4, generator=generator)
    gain = 0.5 + torch.rand(x.shape[0], 1, 1, 1, generator=generator).to(x.device)  # [N, 1, 1, 1]
    return (x * gain).clamp(0.0, 1.0)


# ---------------------------------------------------------------------------- training helpers


def sample_per_class(y: torch.Tensor, k: int | None, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Indices of ``k`` random samples of every class present in ``y`` (Tensor[N]), by class; all if ``k`` is None."""
    caller = "sample_per_class"
    y = _v.tensor("y", y, caller=caller, ndim=1, dtype="integer")
    if k is None:
        return torch.arange(y.shape[0])
    k = _v.integer("k", k, caller=caller, minimum=1)
    picked = []
    for c in y.unique().tolist():  # classes in increasing order
        members = (y == c).nonzero().squeeze(1).cpu()
        if members.numel() < k:
            raise ValueError(f"{caller}: k must be at most the size of the smallest class ({members.numel()}); got {k}")
        picked.append(members[torch.randperm(members.numel(), generator=generator)[:k]])
    return torch.cat(picked)


def transfer_model(
    pretrained: nn.Module, mode: str, *, num_classes: int
) -> tuple[nn.Module, list[nn.Parameter]]:
    """A :class:`dlkb.models.LeNet` for a new task, and the parameters to train, for one transfer ``mode``.

    - ``"feature extraction"``: the convolutional layers (``features``) copied from
      ``pretrained`` and frozen; a new, randomly initialized classifier is trained on top.
    - ``"fine-tuning"``: the same start, but every parameter is trained.
    - ``"scratch"``: a fresh network, every parameter trained.

    Only the convolutional trunk is transferred: the fully connected layers of the source
    network are specific to its classes (Yosinski et al. 2014 find that the last layers
    transfer worst).
    """
    from dlkb.models import LeNet  # noqa: PLC0415

    caller = "transfer_model"
    _v.instance("pretrained", pretrained, caller=caller, types=LeNet)
    mode = _v.choice("mode", mode, caller=caller, choices=("feature extraction", "fine-tuning", "scratch"))
    model = LeNet(num_classes=num_classes, in_channels=pretrained.in_channels).to(next(pretrained.parameters()).device)
    if mode == "scratch":
        return model, list(model.parameters())
    model.features.load_state_dict(pretrained.features.state_dict())
    if mode == "feature extraction":
        model.features.requires_grad_(False)
        return model, list(model.classifier.parameters())
    return model, list(model.parameters())


def mlp_encoder(out_features: int = 64, *, hidden: int = 256, in_features: int = 64) -> nn.Sequential:
    """Flatten → Linear → BN → ReLU → Linear → BN → ReLU: a tiny encoder for 8×8 digits (Tensor[N, 1, 8, 8] → [N, E])."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(in_features, hidden),
        nn.BatchNorm1d(hidden),
        nn.ReLU(),
        nn.Linear(hidden, out_features),
        nn.BatchNorm1d(out_features),
        nn.ReLU(),
    )


def _batches(n: int, batch_size: int, generator: torch.Generator | None) -> torch.Tensor:
    """A random batch of indices in ``range(n)``: all of them (shuffled) when ``batch_size ≥ n``."""
    return torch.randperm(n, generator=generator)[:batch_size]


def train_supervised(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    steps: int,
    lr: float = 1e-3,
    batch_size: int = 128,
    params: list[nn.Parameter] | None = None,
    augment: Callable[..., torch.Tensor] | None = None,
    generator: torch.Generator | None = None,
) -> list[float]:
    """Supervised training for a fixed number of Adam steps on ``(x, y)``; returns the loss of every step.

    A step budget, not an epoch budget, so that 5 labelled images and 2,500 get the
    same number of updates. ``params`` restricts training to some parameters (feature
    extraction trains only the new head); ``augment(x, generator=...)`` is applied to
    every batch.
    """
    caller = "train_supervised"
    _v.module("model", model, caller=caller)
    _v.tensor("x", x, caller=caller, dtype="floating", nonempty=True)
    _v.tensor("y", y, caller=caller, dtype="integer", shape=(x.shape[0],))
    steps = _v.integer("steps", steps, caller=caller, minimum=1)
    batch_size = _v.integer("batch_size", batch_size, caller=caller, minimum=1)
    device = next(model.parameters()).device
    x, y = x.to(device), y.to(device)
    optimizer = torch.optim.Adam(params if params is not None else model.parameters(), lr=lr)
    model.train()

    def batch_loss(step: int) -> torch.Tensor:  # a fresh random batch each step
        idx = _batches(x.shape[0], batch_size, generator).to(device)
        xb = x[idx] if augment is None else augment(x[idx], generator=generator)
        return F.cross_entropy(model(xb), y[idx])

    return train_steps(batch_loss, optimizer, steps=steps)


def train_pseudo_label(
    model: nn.Module,
    x_labeled: torch.Tensor,
    y_labeled: torch.Tensor,
    x_unlabeled: torch.Tensor,
    *,
    steps: int,
    lr: float = 1e-3,
    batch_size: int = 128,
    alpha_max: float = 3.0,
    ramp: tuple[int, int] | None = None,
    augment: Callable[..., torch.Tensor] | None = None,
    generator: torch.Generator | None = None,
) -> list[float]:
    r"""Pseudo-Label (Lee 2013): cross-entropy on the labels plus :math:`\alpha(t)` times
    cross-entropy on the unlabelled batch against the network's own current arg-max.

    The pseudo-labels are recomputed at every step without gradient; :math:`\alpha(t)`
    is 0 before step :math:`T_1`, grows linearly to ``alpha_max`` at :math:`T_2` and
    stays there (Lee 2013, with :math:`\alpha_f = 3`). ``ramp`` defaults to
    ``(steps // 5, 3 * steps // 5)``. Lee also uses dropout and a denoising auto-encoder
    pre-training, left out here. Returns the total loss of every step.
    """
    caller = "train_pseudo_label"
    _v.module("model", model, caller=caller)
    steps = _v.integer("steps", steps, caller=caller, minimum=1)
    t1, t2 = ramp if ramp is not None else (steps // 5, 3 * steps // 5)
    device = next(model.parameters()).device
    x_labeled, y_labeled, x_unlabeled = x_labeled.to(device), y_labeled.to(device), x_unlabeled.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    aug = augment if augment is not None else (lambda v, generator=None: v)
    model.train()

    def batch_loss(step: int) -> torch.Tensor:  # step counts from 1
        alpha = alpha_max * min(max((step - 1 - t1) / max(t2 - t1, 1), 0.0), 1.0)
        li = _batches(x_labeled.shape[0], batch_size, generator).to(device)
        ui = _batches(x_unlabeled.shape[0], batch_size, generator).to(device)
        loss = F.cross_entropy(model(aug(x_labeled[li], generator=generator)), y_labeled[li])
        if alpha > 0:
            xu = aug(x_unlabeled[ui], generator=generator)
            logits_u = model(xu)
            pseudo = logits_u.detach().argmax(dim=1)  # the network's own current guess
            loss = loss + alpha * F.cross_entropy(logits_u, pseudo)
        return loss

    return train_steps(batch_loss, optimizer, steps=steps)


def train_fixmatch(
    model: nn.Module,
    x_labeled: torch.Tensor,
    y_labeled: torch.Tensor,
    x_unlabeled: torch.Tensor,
    *,
    steps: int,
    lr: float = 1e-3,
    batch_size: int = 64,
    mu: int = 4,
    threshold: float = 0.95,
    lambda_u: float = 1.0,
    generator: torch.Generator | None = None,
) -> dict[str, list[float]]:
    r"""FixMatch (Sohn et al. 2020, Algorithm 1) with Adam instead of SGD with momentum.

    Each step draws ``batch_size`` labelled images (weakly augmented) and
    ``mu * batch_size`` unlabelled ones; the loss is
    :math:`\ell_s + \lambda_u \ell_u` with :math:`\ell_u` = :func:`fixmatch_loss` of the
    weak and strong views (:func:`weak_augment`, :func:`strong_augment`). Differences from
    the paper: Adam, a constant learning rate and no EMA of the weights (too few steps here
    for either to matter). Returns ``{"loss": ..., "mask_rate": ...}`` per step, the mask
    rate being the fraction of unlabelled images above the threshold.
    """
    caller = "train_fixmatch"
    _v.module("model", model, caller=caller)
    steps = _v.integer("steps", steps, caller=caller, minimum=1)
    mu = _v.integer("mu", mu, caller=caller, minimum=1)
    device = next(model.parameters()).device
    x_labeled, y_labeled, x_unlabeled = x_labeled.to(device), y_labeled.to(device), x_unlabeled.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    mask_rate: list[float] = []

    def batch_loss(step: int) -> torch.Tensor:
        li = _batches(x_labeled.shape[0], batch_size, generator).to(device)
        ui = _batches(x_unlabeled.shape[0], mu * batch_size, generator).to(device)
        xl = weak_augment(x_labeled[li], generator=generator)
        xu = x_unlabeled[ui]
        xw, xs = weak_augment(xu, generator=generator), strong_augment(xu, generator=generator)
        logits = model(torch.cat([xl, xw, xs]))  # one forward pass, as in the paper's code
        logits_l, logits_w, logits_s = logits.split([xl.shape[0], xw.shape[0], xs.shape[0]])
        mask_rate.append((torch.softmax(logits_w.detach(), 1).amax(1) >= threshold).float().mean().item())
        return F.cross_entropy(logits_l, y_labeled[li]) + lambda_u * fixmatch_loss(
            logits_w, logits_s, threshold=threshold
        )

    return {"loss": train_steps(batch_loss, optimizer, steps=steps), "mask_rate": mask_rate}


def linear_probe(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
) -> float:
    """Test accuracy of a logistic regression on frozen features (standardized, scikit-learn, C = 1)."""
    caller = "linear_probe"
    for name, feats, labels in (("train", train_features, train_labels), ("test", test_features, test_labels)):
        _v.tensor(f"{name}_features", feats, caller=caller, dtype="real", ndim=2, nonempty=True)
        _v.tensor(f"{name}_labels", labels, caller=caller, dtype="integer", shape=(feats.shape[0],))
    if test_features.shape[1] != train_features.shape[1]:
        raise ValueError(f"{caller}: test_features must have {train_features.shape[1]} columns like train_features; "
                         f"got {test_features.shape[1]}")
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415
    from sklearn.pipeline import make_pipeline  # noqa: PLC0415
    from sklearn.preprocessing import StandardScaler  # noqa: PLC0415

    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    clf.fit(train_features.detach().cpu().double().numpy(), train_labels.cpu().numpy())
    return float(clf.score(test_features.detach().cpu().double().numpy(), test_labels.cpu().numpy()))


def projection_mlp(in_features: int, hidden: int, out_features: int, *, last_bn: bool = False) -> nn.Sequential:
    """Linear → BN → ReLU → Linear (→ BN): the projection head of SimCLR and SimSiam, the predictor without ``last_bn``."""
    for name, value in (("in_features", in_features), ("hidden", hidden), ("out_features", out_features)):
        _v.integer(name, value, caller="projection_mlp", minimum=1)
    _v.boolean("last_bn", last_bn, caller="projection_mlp")
    layers: list[nn.Module] = [nn.Linear(in_features, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, out_features)]
    if last_bn:
        layers.append(nn.BatchNorm1d(out_features))
    return nn.Sequential(*layers)


def train_simclr(
    encoder: nn.Module,
    projector: nn.Module,
    x: torch.Tensor,
    *,
    steps: int,
    batch_size: int = 256,
    temperature: float = 0.5,
    lr: float = 1e-3,
    augment: Callable[..., torch.Tensor] = strong_augment,
    generator: torch.Generator | None = None,
) -> list[float]:
    """SimCLR (Chen et al. 2020, Algorithm 1) on unlabelled images ``x``; returns the NT-Xent loss per step.

    Two augmented views of each image go through ``encoder`` then ``projector``; the
    loss is :func:`nt_xent_loss`. Adam replaces the paper's LARS (small batches).
    """
    caller = "train_simclr"
    _v.module("encoder", encoder, caller=caller)
    _v.module("projector", projector, caller=caller)
    steps = _v.integer("steps", steps, caller=caller, minimum=1)
    device = next(encoder.parameters()).device
    x = x.to(device)
    optimizer = torch.optim.Adam([*encoder.parameters(), *projector.parameters()], lr=lr)
    encoder.train()
    projector.train()

    def batch_loss(step: int) -> torch.Tensor:
        xb = x[_batches(x.shape[0], batch_size, generator).to(device)]
        v1, v2 = augment(xb, generator=generator), augment(xb, generator=generator)
        z1, z2 = projector(encoder(torch.cat([v1, v2]))).chunk(2)  # [2B, E] -> two [B, E]
        return nt_xent_loss(z1, z2, temperature=temperature)

    return train_steps(batch_loss, optimizer, steps=steps)


@dataclass
class SimSiamHistory:
    """Per-step loss, and every ``every`` steps the effective rank of the encoder output and of z."""

    loss: list[float] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    rank_h: list[float] = field(default_factory=list)
    rank_z: list[float] = field(default_factory=list)


def train_simsiam(
    encoder: nn.Module,
    projector: nn.Module,
    predictor: nn.Module,
    x: torch.Tensor,
    *,
    steps: int,
    stop_gradient: bool = True,
    batch_size: int = 256,
    lr: float = 1e-3,
    augment: Callable[..., torch.Tensor] = strong_augment,
    monitor: torch.Tensor | None = None,
    every: int = 10,
    generator: torch.Generator | None = None,
) -> SimSiamHistory:
    """SimSiam (Chen & He 2021, Algorithm 1), with or without the stop-gradient.

    ``z = projector(encoder(view))``, ``p = predictor(z)``, loss :func:`simsiam_loss`.
    Every ``every`` steps (and before the first), the effective rank (:func:`effective_rank`)
    of the encoder outputs and of the projections of the un-augmented ``monitor`` images
    (default: all of ``x``) is recorded, in eval mode.
    """
    caller = "train_simsiam"
    for name, m in (("encoder", encoder), ("projector", projector), ("predictor", predictor)):
        _v.module(name, m, caller=caller)
    steps = _v.integer("steps", steps, caller=caller, minimum=1)
    every = _v.integer("every", every, caller=caller, minimum=1)
    device = next(encoder.parameters()).device
    x = x.to(device)
    monitor = x if monitor is None else monitor.to(device)
    modules = (encoder, projector, predictor)
    optimizer = torch.optim.Adam([p for m in modules for p in m.parameters()], lr=lr)
    history = SimSiamHistory()

    def record(step: int) -> None:
        for m in modules:
            m.eval()
        with torch.no_grad():
            h = encoder(monitor)
            history.rank_h.append(effective_rank(h).item())
            history.rank_z.append(effective_rank(projector(h)).item())
        history.steps.append(step)
        for m in modules:
            m.train()

    def batch_loss(step: int) -> torch.Tensor:
        xb = x[_batches(x.shape[0], batch_size, generator).to(device)]
        v1, v2 = augment(xb, generator=generator), augment(xb, generator=generator)
        z = projector(encoder(torch.cat([v1, v2])))  # [2B, E]
        p = predictor(z)
        z1, z2 = z.chunk(2)
        p1, p2 = p.chunk(2)
        return simsiam_loss(p1, p2, z1, z2, stop_gradient=stop_gradient)

    def after_step(step: int, loss: float) -> None:
        if step % every == 0:
            record(step)

    record(0)
    history.loss = train_steps(batch_loss, optimizer, steps=steps, callback=after_step)
    return history
