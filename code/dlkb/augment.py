r"""Data augmentation: a shift, sample-mixing methods and SMOTE, written from scratch.

Each function is the core of one method of the *Data augmentation* chapter and is
checked there (and in ``tests/test_augment.py``) against the library a practitioner
would use: ``torchvision.transforms.v2`` for :func:`translate`, :func:`mixup` and
:func:`cutmix`, ``imbalanced-learn`` for :func:`smote`. :func:`sample_pairing` has
no library version and is tested against the paper's definition.

Shape letters: N batch, C channels, H height, W width, K classes, D features.
Images are float tensors ``(C, H, W)`` or batches ``(N, C, H, W)`` with values in
[0, 1]; labels that get mixed are ``(N, K)`` one-hot or soft labels.

Papers:
    - Chawla et al. 2002, *SMOTE: Synthetic Minority Over-sampling Technique*.
    - Inoue 2018, *Data Augmentation by Pairing Samples for Images Classification*.
    - Zhang et al. 2018, *mixup: Beyond Empirical Risk Minimization*.
    - Yun et al. 2019, *CutMix: Regularization Strategy to Train Strong Classifiers
      with Localizable Features*.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from dlkb import _validate as _v

__all__ = ["translate", "mixup", "cutmix", "sample_pairing", "smote"]


# ----------------------------------------------------------------------------- helpers


def _check_lam(lam: object, *, caller: str) -> float:
    if isinstance(lam, torch.Tensor):  # e.g. a draw of torch.distributions.Beta
        if lam.numel() != 1:
            raise TypeError(f"{caller}: lam must be a real number or a one-element tensor; got shape {tuple(lam.shape)}")
        lam = lam.item()
    return _v.real("lam", lam, caller=caller, low=0.0, high=1.0)


def _check_batch(x: object, *, caller: str, ndim: int | None = None) -> torch.Tensor:
    _v.instance("x", x, caller=caller, types=torch.Tensor)
    if not x.is_floating_point():
        raise TypeError(f"{caller}: x must be a floating-point tensor; got dtype {x.dtype}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{caller}: x must be a batch of images (N, C, H, W); got shape {tuple(x.shape)}")
    if x.ndim < 2:
        raise ValueError(f"{caller}: x must be a batch (N, ...) with at least 2 dimensions; got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{caller}: x must hold at least one sample; got shape {tuple(x.shape)}")
    return x


def _check_soft_labels(y: object, n: int, *, caller: str, dtype: torch.dtype) -> torch.Tensor:
    _v.instance("y", y, caller=caller, types=torch.Tensor)
    if y.ndim != 2:
        raise ValueError(
            f"{caller}: y must be one-hot or soft labels of shape (N, K); got shape {tuple(y.shape)} "
            "(class indices can be converted with torch.nn.functional.one_hot(y, K))"
        )
    if y.shape[0] != n:
        raise ValueError(f"{caller}: y must have the batch size of x ({n}); got {y.shape[0]}")
    if y.is_complex():
        raise TypeError(f"{caller}: y must be a real tensor; got dtype {y.dtype}")
    # One-hot labels may come as integers or booleans; mixing needs fractions.
    return y if y.is_floating_point() else y.to(dtype)


def _check_index(index: object, n: int, device: torch.device, *, caller: str) -> torch.Tensor:
    _v.instance("index", index, caller=caller, types=torch.Tensor)
    if index.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise TypeError(f"{caller}: index must be an integer tensor; got dtype {index.dtype}")
    if index.shape != (n,):
        raise ValueError(f"{caller}: index must have shape ({n},) (one partner per sample); got {tuple(index.shape)}")
    if n and (int(index.min()) < 0 or int(index.max()) >= n):
        raise ValueError(
            f"{caller}: index values must be in [0, {n - 1}]; got min {int(index.min())} and max {int(index.max())}"
        )
    return index.to(device=device, dtype=torch.int64)


def _rolled_index(n: int, device: torch.device) -> torch.Tensor:
    """``[n-1, 0, 1, ..., n-2]``: sample i is paired with sample i-1, as ``x.roll(1, 0)`` does."""
    return torch.arange(n, device=device).roll(1, 0)


# ----------------------------------------------------------------------------- functions


def translate(img: torch.Tensor, dx: int, dy: int, fill: float = 0.0) -> torch.Tensor:
    r"""Shift an image by whole pixels; vacated pixels get ``fill``.

    Output pixel :math:`(u, v)` (column, row) takes the input pixel
    :math:`(u - d_x, v - d_y)`, so a positive ``dx`` moves the content to the right and a
    positive ``dy`` moves it down (image rows grow downwards). Pixels shifted past the
    border are lost. This equals ``torchvision.transforms.v2.functional.affine(img,
    angle=0, translate=[dx, dy], scale=1, shear=[0, 0], fill=fill)``, without any
    interpolation: it only copies pixels.

    Args:
        img (Tensor[C, H, W] or Tensor[N, C, H, W]): float image(s); more leading
            dimensions are allowed, as in torchvision.
        dx: horizontal shift in pixels (int; positive = right).
        dy: vertical shift in pixels (int; positive = down).
        fill: value of the pixels uncovered by the shift.

    Returns:
        Tensor of the same shape, dtype and device as ``img``.

    Raises:
        TypeError: ``img`` not a floating-point tensor, ``dx``/``dy`` not integers,
            ``fill`` not a real number.
        ValueError: ``img`` with fewer than 3 dimensions.
    """
    caller = "translate"
    _v.instance("img", img, caller=caller, types=torch.Tensor)
    if not img.is_floating_point():
        raise TypeError(f"{caller}: img must be a floating-point tensor; got dtype {img.dtype}")
    if img.ndim < 3:
        raise ValueError(f"{caller}: img must have shape (C, H, W) or (N, C, H, W); got shape {tuple(img.shape)}")
    dx = _v.integer("dx", dx, caller=caller)
    dy = _v.integer("dy", dy, caller=caller)
    fill = _v.real("fill", fill, caller=caller)

    H, W = img.shape[-2:]
    out = torch.full_like(img, fill, memory_format=torch.contiguous_format)  # [..., H, W]
    # Source rows/cols that stay inside the image after the shift, and where they land.
    src_x = slice(max(0, -dx), min(W, W - dx))
    dst_x = slice(max(0, dx), min(W, W + dx))
    src_y = slice(max(0, -dy), min(H, H - dy))
    dst_y = slice(max(0, dy), min(H, H + dy))
    if abs(dx) < W and abs(dy) < H:  # otherwise everything moved out: all fill
        out[..., dst_y, dst_x] = img[..., src_y, src_x]
    return out


def mixup(
    x: torch.Tensor, y: torch.Tensor, lam: float, index: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""mixup: blend every sample, and its label, with a partner sample.

    Zhang et al. 2018, Eq. (1):

    .. math::
        \tilde x = \lambda x_i + (1 - \lambda) x_j, \qquad
        \tilde y = \lambda y_i + (1 - \lambda) y_j,

    with :math:`j = \text{index}[i]` and, in training, :math:`\lambda \sim
    \mathrm{Beta}(\alpha, \alpha)` drawn by the caller (one value per batch, as in the
    paper's code and in torchvision).

    Args:
        x (Tensor[N, ...]): floating-point batch (images ``(N, C, H, W)`` or features).
        y (Tensor[N, K]): one-hot or soft labels (integer one-hot labels are converted
            to ``x.dtype``).
        lam: mixing weight :math:`\lambda \in [0, 1]` of the sample itself (a number or
            a one-element tensor; no gradient flows through it).
        index (Tensor[N], optional): partner of each sample. Default pairs sample
            ``i`` with ``i - 1`` (sample 0 with the last), exactly as
            ``torchvision.transforms.v2.MixUp`` (``x.roll(1, 0)``); pass
            ``torch.randperm(N)`` for the paper's random pairing.

    Returns:
        ``(mixed x, mixed y)`` with the shapes of ``x`` and ``y``.

    Raises:
        TypeError: wrong types (non-tensors, integer ``x``, non-integer ``index``, ``lam``
            not a real number).
        ValueError: ``lam`` outside [0, 1], ``y`` not ``(N, K)``, batch sizes that differ,
            ``index`` of the wrong shape or out of range.
    """
    caller = "mixup"
    x = _check_batch(x, caller=caller)
    n = x.shape[0]
    y = _check_soft_labels(y, n, caller=caller, dtype=x.dtype)
    lam = _check_lam(lam, caller=caller)
    index = _rolled_index(n, x.device) if index is None else _check_index(index, n, x.device, caller=caller)
    x_mixed = lam * x + (1.0 - lam) * x[index]  # [N, ...]
    y_mixed = lam * y + (1.0 - lam) * y[index.to(y.device)]  # [N, K]
    return x_mixed, y_mixed


def cutmix(
    x: torch.Tensor,
    y: torch.Tensor,
    lam: float,
    index: torch.Tensor | None = None,
    *,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""CutMix: paste one box of each partner image into the image; weight labels by area.

    Yun et al. 2019, Eqs. (1)–(2): :math:`\tilde x = M \odot x_i + (1 - M) \odot x_j`
    where the binary mask :math:`M` is 0 inside a box of width :math:`W\sqrt{1-\lambda}`
    and height :math:`H\sqrt{1-\lambda}` centred at a uniformly drawn pixel
    :math:`(r_x, r_y)`. The box is clipped at the border, so the label weight is
    recomputed from the area really pasted,

    .. math::
        \lambda' = 1 - \frac{(x_2 - x_1)(y_2 - y_1)}{W H}, \qquad
        \tilde y = \lambda' y_i + (1 - \lambda') y_j .

    One box is drawn per call and used for the whole batch. The draws follow
    ``torchvision.transforms.v2.CutMix``: ``r_x = randint(W)``, then ``r_y = randint(H)``,
    half sizes ``int(0.5 sqrt(1 - lam) W)`` and ``int(0.5 sqrt(1 - lam) H)``; so with the
    same random state and the same :math:`\lambda` both give the same result.

    Args:
        x (Tensor[N, C, H, W]): floating-point images.
        y (Tensor[N, K]): one-hot or soft labels (integer one-hot labels are converted
            to ``x.dtype``).
        lam: :math:`\lambda \in [0, 1]`, the intended fraction of each image that is
            kept (in training drawn from :math:`\mathrm{Beta}(\alpha, \alpha)`); a number or
            a one-element tensor.
        index (Tensor[N], optional): partner of each sample; default ``i - 1``
            (``roll(1, 0)``) as in torchvision.
        generator: source of randomness for the box centre (default: torch's global one).

    Returns:
        ``(mixed x, mixed y)``: images with the box pasted, labels weighted by the pasted area.

    Raises:
        TypeError: wrong types.
        ValueError: ``x`` not 4-D, ``lam`` outside [0, 1], ``y`` not ``(N, K)``, batch sizes
            that differ, ``index`` of the wrong shape or out of range.
    """
    caller = "cutmix"
    x = _check_batch(x, caller=caller, ndim=4)
    n, _, H, W = x.shape
    y = _check_soft_labels(y, n, caller=caller, dtype=x.dtype)
    lam = _check_lam(lam, caller=caller)
    if generator is not None:
        _v.instance("generator", generator, caller=caller, types=torch.Generator)
    index = _rolled_index(n, x.device) if index is None else _check_index(index, n, x.device, caller=caller)

    gen_device = generator.device if generator is not None else torch.device("cpu")
    r_x = int(torch.randint(W, (1,), generator=generator, device=gen_device))  # box centre, column
    r_y = int(torch.randint(H, (1,), generator=generator, device=gen_device))  # box centre, row
    r = 0.5 * math.sqrt(1.0 - lam)
    half_w, half_h = int(r * W), int(r * H)
    x1, x2 = max(r_x - half_w, 0), min(r_x + half_w, W)
    y1, y2 = max(r_y - half_h, 0), min(r_y + half_h, H)

    x_mixed = x.clone(memory_format=torch.contiguous_format)  # [N, C, H, W]
    x_mixed[..., y1:y2, x1:x2] = x[index][..., y1:y2, x1:x2]
    lam_area = 1.0 - (x2 - x1) * (y2 - y1) / (W * H)  # fraction of each image kept
    y_mixed = lam_area * y + (1.0 - lam_area) * y[index.to(y.device)]  # [N, K]
    return x_mixed, y_mixed


def sample_pairing(
    x: torch.Tensor, y: torch.Tensor, index: torch.Tensor | None = None, *, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""SamplePairing: average each image with a partner; keep the first image's label.

    Inoue 2018, Sec. 2: the new image is :math:`(x_i + x_j) / 2` and its label is
    :math:`y_i`, whatever :math:`y_j` is. (The paper also switches the method on and
    off during training; that schedule belongs to the training loop, not here.)

    Args:
        x (Tensor[N, ...]): floating-point batch.
        y (Tensor[N] or Tensor[N, K]): labels, returned unchanged (class indices or
            one-hot labels).
        index (Tensor[N], optional): partner of each sample. Default: a random
            permutation drawn with ``generator`` (the paper picks the partner at random
            from the training set).
        generator: source of randomness for the default ``index``.

    Returns:
        ``((x + x[index]) / 2, y)``.

    Raises:
        TypeError: wrong types.
        ValueError: ``y`` whose first dimension is not N, ``index`` of the wrong shape
            or out of range.
    """
    caller = "sample_pairing"
    x = _check_batch(x, caller=caller)
    n = x.shape[0]
    _v.instance("y", y, caller=caller, types=torch.Tensor)
    if y.ndim not in (1, 2) or y.shape[0] != n:
        raise ValueError(
            f"{caller}: y must have shape (N,) or (N, K) with N = {n} (the batch size of x); got {tuple(y.shape)}"
        )
    if generator is not None:
        _v.instance("generator", generator, caller=caller, types=torch.Generator)
    if index is None:
        gen_device = generator.device if generator is not None else torch.device("cpu")
        index = torch.randperm(n, generator=generator, device=gen_device).to(x.device)
    else:
        index = _check_index(index, n, x.device, caller=caller)
    return 0.5 * (x + x[index]), y


def smote(
    X: np.ndarray, y: np.ndarray, *, k_neighbors: int = 5, random_state: int | np.random.RandomState | None = None
) -> tuple[np.ndarray, np.ndarray]:
    r"""SMOTE: oversample every class but the largest by interpolating between neighbours.

    Chawla et al. 2002, Sec. 4.2: for a minority sample :math:`x_i`, pick one of its
    ``k_neighbors`` nearest neighbours :math:`x_{nn}` *of the same class* (Euclidean
    distance) and a gap :math:`u \sim U[0, 1)`; the synthetic sample is

    .. math::
        x_{new} = x_i + u\,(x_{nn} - x_i),

    a point on the segment between them. Each class is grown to the size of the largest
    class (``imblearn``'s default strategy ``'auto'``); the (sample, neighbour) pairs are
    drawn uniformly with replacement. The random draws replicate
    ``imblearn.over_sampling.SMOTE`` (one ``check_random_state(random_state)`` per class,
    ``randint`` over sample-neighbour pairs, then ``uniform`` gaps), so for data without
    distance ties the output equals imblearn's for the same integer ``random_state``.

    Args:
        X (ndarray[M, D]): numeric features.
        y (ndarray[M]): class labels (any sortable type).
        k_neighbors: number of nearest same-class neighbours to choose from (≥ 1).
        random_state: ``None`` (NumPy's global generator), an ``int`` seed or a
            ``numpy.random.RandomState``.

    Returns:
        ``(X_resampled, y_resampled)``: the original rows first, unchanged, then the
        synthetic rows, class by class in sorted label order; ``X_resampled`` keeps the
        dtype of ``X`` (float64 for integer input).

    Raises:
        TypeError: ``X`` or ``y`` not NumPy arrays, ``X`` not numeric, ``k_neighbors`` not an int,
            a bad ``random_state``.
        ValueError: ``X`` not 2-D, ``y`` not 1-D of the same length, fewer than two
            classes, ``k_neighbors < 1``, or a class to oversample with at most
            ``k_neighbors`` samples.
    """
    caller = "smote"
    _v.instance("X", X, caller=caller, types=np.ndarray)
    _v.instance("y", y, caller=caller, types=np.ndarray)
    if X.ndim != 2:
        raise ValueError(f"{caller}: X must be 2-D (n_samples, n_features); got shape {X.shape}")
    if not (np.issubdtype(X.dtype, np.number) and not np.issubdtype(X.dtype, np.complexfloating)):
        raise TypeError(f"{caller}: X must hold real numbers; got dtype {X.dtype}")
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise ValueError(f"{caller}: y must be 1-D with one label per row of X ({X.shape[0]},); got shape {y.shape}")
    k = _v.integer("k_neighbors", k_neighbors, caller=caller, minimum=1)
    if not (random_state is None or isinstance(random_state, np.random.RandomState)):
        _v.integer("random_state", random_state, caller=caller)

    X = X if np.issubdtype(X.dtype, np.floating) else X.astype(np.float64)
    classes, counts = np.unique(y, return_counts=True)  # sorted labels
    if classes.size < 2:
        raise ValueError(f"{caller}: y must contain at least 2 classes; got {classes.size}")
    n_major = counts.max()
    to_make = {c: n_major - n for c, n in zip(classes, counts) if n < n_major}
    for c, _ in to_make.items():
        n_c = int(np.sum(y == c))
        if n_c <= k:
            raise ValueError(
                f"{caller}: class {c.item()!r} has {n_c} samples; SMOTE with k_neighbors={k} needs at least "
                f"{k + 1} (lower k_neighbors)"
            )

    from sklearn.utils import check_random_state  # noqa: PLC0415 - the same seeding rules as imblearn

    X_parts, y_parts = [X.copy()], [y.copy()]
    for c, n_new in to_make.items():
        X_c = X[y == c]  # [M_c, D]
        # k nearest same-class neighbours of each sample, itself excluded.
        d2 = ((X_c[:, None, :] - X_c[None, :, :]) ** 2).sum(axis=-1)  # [M_c, M_c] squared distances
        np.fill_diagonal(d2, np.inf)
        nn = np.argsort(d2, axis=1, kind="stable")[:, :k]  # [M_c, k]
        rng = check_random_state(random_state)
        pair = rng.randint(low=0, high=nn.size, size=n_new)  # one (sample, neighbour) pair per new row
        rows, cols = pair // k, pair % k
        gaps = rng.uniform(size=n_new)[:, None]  # u ~ U[0, 1), [n_new, 1]
        X_new = X_c[rows] + gaps * (X_c[nn[rows, cols]] - X_c[rows])  # [n_new, D]
        X_parts.append(X_new.astype(X.dtype))
        y_parts.append(np.full(n_new, c, dtype=y.dtype))
    return np.vstack(X_parts), np.concatenate(y_parts)
