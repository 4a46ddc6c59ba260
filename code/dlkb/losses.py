r"""Loss functions, written from elementary torch operations.

Regression losses (0-1, L1/MAE, MSE, RMSE, smooth L1, Huber), classification losses
(cross-entropy with class weights and label smoothing, binary cross-entropy on logits,
sigmoid and softmax focal losses), overlap losses for segmentation (Dice, IoU) and a
feature-space (perceptual) loss. Each function is checked in ``tests/test_losses.py``
against the library version (``torch.nn.functional``, ``torchvision.ops``) in value and
gradient.

Shape letters: N batch, K classes, C channels, H and W height and width, ``*`` any
number of further dimensions.

Conventions shared by every function:

- ``reduction`` is one of ``"none"`` (per-element or per-sample values), ``"mean"``
  (the default) or ``"sum"``; anything else is an error.
- No silent broadcasting: ``target`` must have exactly the shape the loss expects
  (a ``(N, 1)`` prediction against a ``(N,)`` target is refused, not broadcast to
  ``(N, N)``).
- Classification losses take logits (unnormalized scores) and work in log space with
  ``log_softmax`` / ``logsigmoid``, so logits of ±100 give finite values and gradients.

Papers:
    Huber, "Robust Estimation of a Location Parameter", 1964 (Huber loss).
    Girshick, "Fast R-CNN", ICCV 2015, Eq. (3) (smooth L1).
    Szegedy et al., "Rethinking the Inception Architecture", CVPR 2016, Sec. 7 (label smoothing).
    Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017, Eqs. (1)-(5).
    Menon et al., "Long-tail learning via logit adjustment", ICLR 2021
    (logit-adjusted softmax cross-entropy).
    Milletari et al., "V-Net", 3DV 2016, Eq. (1) (Dice coefficient, maximised; squared denominator).
    Rahman & Wang, "Optimizing Intersection-over-Union", ISVC 2016 (IoU loss).
    Johnson et al., "Perceptual Losses for Real-Time Style Transfer and Super-Resolution",
    ECCV 2016, Sec. 3.2 (feature reconstruction loss).
    Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network", 2015, Sec. 2
    (distillation with temperature T and the T^2 factor).
    Weinberger & Saul, "Distance Metric Learning for Large Margin Nearest Neighbor
    Classification", JMLR 2009; Schroff et al., "FaceNet", CVPR 2015, Eq. (1) (triplet loss).
    Weston & Watkins, "Support Vector Machines for Multi-Class Pattern Recognition",
    ESANN 1999; Crammer & Singer, JMLR 2001 (multi-class hinge loss).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from dlkb import _validate as _v

__all__ = [
    "zero_one_loss",
    "mae_loss",
    "mse_loss",
    "rmse_loss",
    "smooth_l1_loss",
    "huber_loss",
    "cross_entropy",
    "binary_cross_entropy_with_logits",
    "sigmoid_focal_loss",
    "softmax_focal_loss",
    "logit_adjusted_cross_entropy",
    "dice_loss",
    "iou_loss",
    "distillation_loss",
    "triplet_margin_loss",
    "multi_margin_loss",
    "PerceptualLoss",
]

_REDUCTIONS = ("none", "mean", "sum")


# ----------------------------------------------------------------------------------------
# Validation helpers (private; each message names the caller and the argument).
# ----------------------------------------------------------------------------------------


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _check_reduction(reduction: object, caller: str) -> None:
    _v.choice("reduction", reduction, caller=caller, choices=_REDUCTIONS)


def _check_floating(name: str, x: object, caller: str) -> None:
    _v.tensor(name, x, caller=caller, dtype="floating")


def _check_real_tensor(name: str, x: object, caller: str) -> None:
    _v.tensor(name, x, caller=caller, dtype="real")


def _check_same_shape(caller: str, input_name: str, input: torch.Tensor, target: torch.Tensor) -> None:
    _v.same_shape("target", target, caller=caller, like=input, like_name=input_name)


def _check_number(name: str, value: object, caller: str, *, positive: bool = False) -> float:
    """A finite real number, ``>= 0`` (``> 0`` when ``positive``)."""
    return _v.real(name, value, caller=caller, low=0.0, low_open=positive)


def _check_unit_interval(name: str, x: torch.Tensor, caller: str) -> None:
    if x.numel() and (bool((x < 0).any()) or bool((x > 1).any()) or bool(torch.isnan(x).any())):
        raise ValueError(
            f"{caller}: {name} values must be in [0, 1]; got min {x.min().item():.4g}, max {x.max().item():.4g}"
        )


def _check_class_target(caller: str, logits: torch.Tensor, target: object) -> int:
    """Check (N, K, *) logits against (N, *) class indices; return K."""
    _check_floating("logits", logits, caller)
    _v.instance("target", target, caller=caller, types=torch.Tensor)
    if logits.ndim < 2:
        raise ValueError(f"{caller}: logits must have shape (N, K, *); got {tuple(logits.shape)}")
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise TypeError(f"{caller}: target must hold integer class indices (e.g. int64); got dtype {target.dtype}")
    expected = (logits.shape[0], *logits.shape[2:])
    if tuple(target.shape) != expected:
        raise ValueError(
            f"{caller}: target must have shape {expected} for logits of shape {tuple(logits.shape)}; "
            f"got {tuple(target.shape)}"
        )
    num_classes = logits.shape[1]
    if target.numel():
        lo, hi = int(target.min()), int(target.max())
        if lo < 0 or hi >= num_classes:
            bad = lo if lo < 0 else hi
            raise ValueError(f"{caller}: target class indices must be in [0, {num_classes - 1}]; got {bad}")
    return num_classes


def _check_class_vector(name: str, value: object, num_classes: int, caller: str) -> None:
    _check_floating(name, value, caller)
    if tuple(value.shape) != (num_classes,):
        raise ValueError(f"{caller}: {name} must have shape ({num_classes},); got {tuple(value.shape)}")


def _check_input_target(caller: str, input_name: str, input: object, target: object, reduction: object) -> None:
    _check_floating(input_name, input, caller)
    _check_real_tensor("target", target, caller)
    _check_same_shape(caller, input_name, input, target)
    _check_reduction(reduction, caller)


def _class_dim_last(x: torch.Tensor) -> torch.Tensor:
    """(N, K, *) -> (N, *, K), so the class dimension is last."""
    return x.movedim(1, -1)


# ----------------------------------------------------------------------------------------
# Regression losses
# ----------------------------------------------------------------------------------------


def zero_one_loss(pred_labels: torch.Tensor, target: torch.Tensor, *, reduction: str = "mean") -> torch.Tensor:
    r"""0-1 loss: :math:`\ell = \mathbb 1[\hat y \ne y]`, the error rate under ``"mean"``.

    Piecewise constant, so its gradient is zero almost everywhere: it is a metric to
    report, not a loss to train with (the result carries no gradient).

    Args:
        pred_labels (Tensor[N, *]): predicted labels (e.g. ``logits.argmax(dim=1)``), any real dtype.
        target (Tensor[N, *]): true labels, same shape.
        reduction: ``"none"`` (0/1 per element), ``"mean"`` (fraction wrong) or ``"sum"`` (count wrong).

    Returns:
        Float tensor (of ``pred_labels``' dtype if floating, else the default dtype).
    """
    caller = "zero_one_loss"
    _check_real_tensor("pred_labels", pred_labels, caller)
    _check_real_tensor("target", target, caller)
    _check_same_shape(caller, "pred_labels", pred_labels, target)
    _check_reduction(reduction, caller)
    dtype = pred_labels.dtype if pred_labels.is_floating_point() else torch.get_default_dtype()
    wrong = (pred_labels.detach() != target.detach()).to(dtype)  # [N, *] of 0.0 / 1.0
    return _reduce(wrong, reduction)


def mae_loss(input: torch.Tensor, target: torch.Tensor, *, reduction: str = "mean") -> torch.Tensor:
    r"""Absolute (L1) loss :math:`|x - y|`; its mean is the mean absolute error (MAE).

    The gradient is :math:`\operatorname{sign}(x - y)` (0 at the kink, as in PyTorch).
    Same as ``torch.nn.functional.l1_loss``.

    Args:
        input (Tensor[*]): predictions, floating point.
        target (Tensor[*]): targets of the same shape.
        reduction: ``"none"``, ``"mean"`` or ``"sum"``.
    """
    _check_input_target("mae_loss", "input", input, target, reduction)
    return _reduce((input - target).abs(), reduction)


def mse_loss(input: torch.Tensor, target: torch.Tensor, *, reduction: str = "mean") -> torch.Tensor:
    r"""Squared loss :math:`(x - y)^2`; its mean is the mean squared error (MSE).

    Minimizing it is maximum likelihood under Gaussian noise. Same as
    ``torch.nn.functional.mse_loss`` (no factor 1/2).

    Args:
        input (Tensor[*]): predictions, floating point.
        target (Tensor[*]): targets of the same shape.
        reduction: ``"none"``, ``"mean"`` or ``"sum"``.
    """
    _check_input_target("mse_loss", "input", input, target, reduction)
    diff = input - target
    return _reduce(diff * diff, reduction)


def rmse_loss(input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    r"""Root mean squared error :math:`\sqrt{\tfrac1n\sum_i (x_i - y_i)^2}` (a scalar).

    :math:`\sqrt{\cdot}` has an infinite derivative at 0, so ``sqrt(mse)`` gives a NaN
    gradient when ``input == target``. Here the square root is only evaluated where the
    MSE is positive (the "double ``where``" trick), and the gradient at a perfect fit
    is 0, a valid subgradient of this norm. RMSE has no ``reduction``: it is the root of
    a mean by definition.

    Args:
        input (Tensor[*]): predictions, floating point.
        target (Tensor[*]): targets of the same shape.
    """
    _check_input_target("rmse_loss", "input", input, target, "mean")
    mse = mse_loss(input, target)
    positive = mse > 0
    safe = torch.where(positive, mse, torch.ones_like(mse))  # never sqrt(0) on the graph
    return torch.where(positive, safe.sqrt(), mse)  # mse is 0 there (NaN stays NaN)


def smooth_l1_loss(
    input: torch.Tensor, target: torch.Tensor, *, beta: float = 1.0, reduction: str = "mean"
) -> torch.Tensor:
    r"""Smooth L1 loss (Girshick 2015, Eq. (3), with a threshold :math:`\beta`).

    .. math::
        \ell(d) = \begin{cases} 0.5\, d^2 / \beta & |d| < \beta \\
                                |d| - 0.5\,\beta & \text{otherwise} \end{cases}

    Quadratic near 0, linear beyond :math:`\beta`, so :math:`|\ell'(d)| \le 1`. The paper
    uses :math:`\beta = 1`; :math:`\beta = 0` is the L1 loss. Same as
    ``torch.nn.functional.smooth_l1_loss``; ``huber_loss(delta=b) == b * smooth_l1_loss(beta=b)``.

    Args:
        input (Tensor[*]): predictions, floating point.
        target (Tensor[*]): targets of the same shape.
        beta: threshold between the two pieces, ≥ 0.
        reduction: ``"none"``, ``"mean"`` or ``"sum"``.
    """
    caller = "smooth_l1_loss"
    _check_input_target(caller, "input", input, target, reduction)
    beta = _check_number("beta", beta, caller)
    n = (input - target).abs()
    if beta == 0.0:
        return _reduce(n, reduction)
    loss = torch.where(n < beta, 0.5 * n * n / beta, n - 0.5 * beta)
    return _reduce(loss, reduction)


def huber_loss(
    input: torch.Tensor, target: torch.Tensor, *, delta: float = 1.0, reduction: str = "mean"
) -> torch.Tensor:
    r"""Huber loss (Huber 1964): quadratic for small errors, linear for large ones.

    .. math::
        \ell(d) = \begin{cases} 0.5\, d^2 & |d| < \delta \\
                                \delta\,(|d| - 0.5\,\delta) & \text{otherwise} \end{cases}

    so :math:`|\ell'(d)| \le \delta` and :math:`\ell_\delta = \delta\cdot\text{smooth-L1}_{\beta=\delta}`.
    Same as ``torch.nn.functional.huber_loss``.

    Args:
        input (Tensor[*]): predictions, floating point.
        target (Tensor[*]): targets of the same shape.
        delta: threshold, > 0.
        reduction: ``"none"``, ``"mean"`` or ``"sum"``.
    """
    caller = "huber_loss"
    _check_input_target(caller, "input", input, target, reduction)
    delta = _check_number("delta", delta, caller, positive=True)
    n = (input - target).abs()
    loss = torch.where(n < delta, 0.5 * n * n, delta * (n - 0.5 * delta))
    return _reduce(loss, reduction)


# ----------------------------------------------------------------------------------------
# Classification losses
# ----------------------------------------------------------------------------------------


def cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    weight: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Softmax cross-entropy on logits, with class weights and label smoothing.

    With :math:`\log p = \operatorname{log\_softmax}(z)`, class weights :math:`w`
    (all 1 by default) and smoothing :math:`\varepsilon` (Szegedy et al. 2016, Sec. 7),
    the loss of a sample of class :math:`y` among :math:`K` is

    .. math::
        \ell = -(1-\varepsilon)\, w_y \log p_y - \frac{\varepsilon}{K}\sum_{k} w_k \log p_k .

    ``"mean"`` divides the sum by :math:`\sum_i w_{y_i}` (by N when ``weight`` is None),
    as ``torch.nn.functional.cross_entropy`` does. Its gradient with respect to the
    logits is :math:`p - q` for the (smoothed) one-hot target :math:`q` (unweighted case).

    Args:
        logits (Tensor[N, K, *]): unnormalized class scores.
        target (Tensor[N, *]): integer class indices in ``[0, K)``.
        weight (Tensor[K] | None): a weight per class.
        label_smoothing: :math:`\varepsilon \in [0, 1]`.
        reduction: ``"none"`` (Tensor[N, *]), ``"mean"`` or ``"sum"``.
    """
    caller = "cross_entropy"
    num_classes = _check_class_target(caller, logits, target)
    if weight is not None:
        _check_class_vector("weight", weight, num_classes, caller)
    eps = _check_number("label_smoothing", label_smoothing, caller)
    if eps > 1:
        raise ValueError(f"{caller}: label_smoothing must be in [0, 1]; got {eps}")
    _check_reduction(reduction, caller)

    log_p = torch.log_softmax(_class_dim_last(logits), dim=-1)  # [N, *, K]
    index = target.long().unsqueeze(-1)  # [N, *, 1]
    nll = -log_p.gather(-1, index).squeeze(-1)  # [N, *]
    if weight is not None:
        w = weight.to(log_p.dtype)
        w_y = w[target.long()]  # [N, *]
        nll = w_y * nll
        smooth = -(log_p * w).sum(dim=-1)  # [N, *]
    else:
        smooth = -log_p.sum(dim=-1)  # [N, *]
    loss = (1.0 - eps) * nll + (eps / num_classes) * smooth if eps > 0 else nll
    if reduction == "mean" and weight is not None:
        return loss.sum() / w_y.sum()
    return _reduce(loss, reduction)


def binary_cross_entropy_with_logits(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    pos_weight: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Binary cross-entropy on logits, computed stably with ``logsigmoid``.

    .. math::
        \ell = -\big[\,w_+\, y \log\sigma(z) + (1 - y)\log(1 - \sigma(z))\,\big],
        \qquad \log(1-\sigma(z)) = \log\sigma(-z),

    so no probability is ever rounded to 0 or 1 before its logarithm is taken.
    Same as ``torch.nn.functional.binary_cross_entropy_with_logits``.

    Args:
        logits (Tensor[*]): unnormalized scores.
        target (Tensor[*]): same shape, values in [0, 1] (soft labels allowed).
        pos_weight (Tensor | None): weight :math:`w_+` of the positive term, broadcast
            along the trailing dimensions as in PyTorch (typically Tensor[C] for logits
            Tensor[N, C]); it may not enlarge the shape of ``logits``.
        reduction: ``"none"``, ``"mean"`` or ``"sum"``.
    """
    caller = "binary_cross_entropy_with_logits"
    _check_input_target(caller, "logits", logits, target, reduction)
    _check_unit_interval("target", target, caller)
    y = target.to(logits.dtype)
    log_p = torch.nn.functional.logsigmoid(logits)  # log σ(z)
    log_not_p = torch.nn.functional.logsigmoid(-logits)  # log(1 − σ(z))
    positive = y * log_p
    if pos_weight is not None:
        _check_floating("pos_weight", pos_weight, caller)
        try:
            shape = torch.broadcast_shapes(pos_weight.shape, logits.shape)
        except RuntimeError:
            shape = None
        if shape != logits.shape:
            raise ValueError(
                f"{caller}: pos_weight must broadcast to the shape of logits {tuple(logits.shape)} "
                f"without enlarging it (e.g. shape ({logits.shape[-1] if logits.ndim else 1},)); "
                f"got {tuple(pos_weight.shape)}"
            )
        positive = pos_weight.to(logits.dtype) * positive
    return _reduce(-(positive + (1.0 - y) * log_not_p), reduction)


def sigmoid_focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Binary (sigmoid) focal loss, Lin et al. 2017, Eq. (5).

    With :math:`p = \sigma(z)`, :math:`p_t = p` for a positive and :math:`1-p` for a negative,

    .. math::
        \mathrm{FL}(p_t) = -\alpha_t (1 - p_t)^\gamma \log p_t ,

    where :math:`\alpha_t = \alpha` for positives and :math:`1-\alpha` for negatives.
    :math:`\gamma = 0` and ``alpha < 0`` give plain binary cross-entropy. Same as
    ``torchvision.ops.sigmoid_focal_loss`` (whose default reduction is ``"none"``; ours
    is ``"mean"``). The factor :math:`1 - p_t` is computed as
    :math:`\sigma(z)(1-y) + \sigma(-z)\,y`, without the cancellation of ``1 - p_t``.

    Args:
        logits (Tensor[*]): unnormalized scores.
        target (Tensor[*]): same shape, values in [0, 1].
        alpha: weight of the positive class in [0, 1]; negative disables α-balancing.
        gamma: focusing parameter, ≥ 0.
        reduction: ``"none"``, ``"mean"`` or ``"sum"``.
    """
    caller = "sigmoid_focal_loss"
    _check_input_target(caller, "logits", logits, target, reduction)
    _check_unit_interval("target", target, caller)
    alpha = _v.real("alpha", alpha, caller=caller)
    if not alpha <= 1:
        raise ValueError(f"{caller}: alpha must be in [0, 1], or negative to disable it; got {alpha}")
    gamma = _check_number("gamma", gamma, caller)
    y = target.to(logits.dtype)
    ce = -(y * torch.nn.functional.logsigmoid(logits) + (1.0 - y) * torch.nn.functional.logsigmoid(-logits))
    one_minus_p_t = torch.sigmoid(logits) * (1.0 - y) + torch.sigmoid(-logits) * y  # 1 − p_t
    # Floor at the smallest normal float: (1 − p_t)^γ then has a finite derivative even
    # when 1 − p_t rounds to 0 (saturated logits, γ < 1); the value changes by < tiny^γ·ce.
    one_minus_p_t = one_minus_p_t.clamp_min(torch.finfo(one_minus_p_t.dtype).tiny)
    loss = ce * one_minus_p_t**gamma
    if alpha >= 0:
        loss = (alpha * y + (1.0 - alpha) * (1.0 - y)) * loss  # α_t
    return _reduce(loss, reduction)


def softmax_focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    gamma: float = 2.0,
    alpha: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Multi-class (softmax) focal loss, Lin et al. 2017, Eq. (5) with :math:`p_t = p_y`.

    .. math::
        \ell = -\alpha_y (1 - p_y)^\gamma \log p_y, \qquad \log p = \operatorname{log\_softmax}(z).

    :math:`1 - p_y` is computed as ``-expm1(log p_y)``. With :math:`\gamma = 0` and
    ``alpha=None`` this is :func:`cross_entropy`. ``"mean"`` is the plain mean over
    samples, also with ``alpha`` (unlike the weighted mean of :func:`cross_entropy`).

    Args:
        logits (Tensor[N, K, *]): unnormalized class scores.
        target (Tensor[N, *]): integer class indices in ``[0, K)``.
        gamma: focusing parameter, ≥ 0.
        alpha (Tensor[K] | None): a weight per class.
        reduction: ``"none"`` (Tensor[N, *]), ``"mean"`` or ``"sum"``.
    """
    caller = "softmax_focal_loss"
    num_classes = _check_class_target(caller, logits, target)
    gamma = _check_number("gamma", gamma, caller)
    if alpha is not None:
        _check_class_vector("alpha", alpha, num_classes, caller)
    _check_reduction(reduction, caller)
    log_p = torch.log_softmax(_class_dim_last(logits), dim=-1)  # [N, *, K]
    log_p_y = log_p.gather(-1, target.long().unsqueeze(-1)).squeeze(-1)  # [N, *]
    if gamma == 0:
        loss = -log_p_y
    else:
        # 1 − p_y without cancellation, floored at the smallest normal float so that the
        # derivative of (1 − p_y)^γ stays finite when p_y rounds to 1 (as in sigmoid_focal_loss).
        one_minus_p_y = (-torch.expm1(log_p_y)).clamp_min(torch.finfo(log_p_y.dtype).tiny)
        loss = -(one_minus_p_y**gamma) * log_p_y
    if alpha is not None:
        loss = alpha.to(log_p.dtype)[target.long()] * loss
    return _reduce(loss, reduction)


def logit_adjusted_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    class_prior: torch.Tensor,
    *,
    tau: float = 1.0,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Logit-adjusted softmax cross-entropy (Menon et al. 2021).

    With class priors :math:`\pi_k` (the label frequencies of the training set),

    .. math::
        \ell(z, y) = -\log \frac{e^{z_y + \tau \log \pi_y}}{\sum_{k} e^{z_k + \tau \log \pi_k}},

    the ordinary cross-entropy of the logits shifted by :math:`\tau\log\pi`. The shift is
    applied only inside the loss: at test time one predicts :math:`\arg\max_k z_k`, and
    the model has learned logits that already carry the larger margin the rare classes
    need. For :math:`\tau = 1` the minimiser is consistent for the balanced error (the mean
    of the per-class error rates). The post-hoc variant instead trains with the plain
    cross-entropy and predicts :math:`\arg\max_k (z_k - \tau\log\pi_k)`.
    Equals ``F.cross_entropy(logits + tau * class_prior.log(), target)``.

    Args:
        logits (Tensor[N, K]): unnormalized class scores.
        target (Tensor[N]): integer class indices in ``[0, K)``.
        class_prior (Tensor[K]): positive class frequencies (they need not sum to 1: a
            common factor shifts every logit equally and cancels).
        tau: :math:`\tau \ge 0`; 0 is the plain cross-entropy.
        reduction: ``"none"`` (Tensor[N]), ``"mean"`` or ``"sum"``.
    """
    caller = "logit_adjusted_cross_entropy"
    _v.tensor("logits", logits, caller=caller, dtype="floating", ndim=2)
    num_classes = _check_class_target(caller, logits, target)
    _check_class_vector("class_prior", class_prior, num_classes, caller)
    if class_prior.numel() and not bool((class_prior > 0).all() & torch.isfinite(class_prior).all()):
        raise ValueError(f"{caller}: class_prior must be positive and finite; got {class_prior.tolist()}")
    tau = _check_number("tau", tau, caller)
    _check_reduction(reduction, caller)
    shift = tau * class_prior.to(logits.dtype).log()  # [K]: τ log π_k
    log_p = torch.log_softmax(logits + shift, dim=1)  # [N, K]
    nll = -log_p.gather(1, target.long().unsqueeze(1)).squeeze(1)  # [N]
    return _reduce(nll, reduction)


# ----------------------------------------------------------------------------------------
# Overlap losses for segmentation
# ----------------------------------------------------------------------------------------


def _overlap_sums(caller: str, logits: object, target: object, smooth: object, reduction: object):
    _check_input_target(caller, "logits", logits, target, reduction)
    if logits.ndim < 1:
        raise ValueError(f"{caller}: logits must have a batch dimension, shape (N, *); got shape ()")
    _check_unit_interval("target", target, caller)
    smooth = _check_number("smooth", smooth, caller)
    p = torch.sigmoid(logits)
    t = target.to(logits.dtype)
    p, t = (p.flatten(1), t.flatten(1)) if p.ndim > 1 else (p[:, None], t[:, None])  # [N, D]
    return (p * t).sum(dim=1), p.sum(dim=1), t.sum(dim=1), smooth  # each [N]


def dice_loss(logits: torch.Tensor, target: torch.Tensor, *, smooth: float = 1.0, reduction: str = "mean") -> torch.Tensor:
    r"""Soft Dice loss per sample (Milletari et al. 2016, Eq. (1), without squares).

    .. math::
        \ell = 1 - \frac{2\sum_j p_j t_j + s}{\sum_j p_j + \sum_j t_j + s}, \qquad p = \sigma(z),

    summing over every non-batch dimension. The smoothing term :math:`s` keeps the ratio
    defined for an empty mask and an empty prediction (the loss is then 0). V-Net squares
    :math:`p` and :math:`t` in the denominator and maximises the coefficient; we use the
    plain sums (the common form, equal for hard masks) and minimise one minus it.

    Args:
        logits (Tensor[N, *]): unnormalized foreground scores.
        target (Tensor[N, *]): same shape, values in [0, 1].
        smooth: :math:`s \ge 0`.
        reduction: ``"none"`` (Tensor[N]), ``"mean"`` or ``"sum"``.
    """
    inter, p_sum, t_sum, s = _overlap_sums("dice_loss", logits, target, smooth, reduction)
    return _reduce(1.0 - (2.0 * inter + s) / (p_sum + t_sum + s), reduction)


def iou_loss(logits: torch.Tensor, target: torch.Tensor, *, smooth: float = 1.0, reduction: str = "mean") -> torch.Tensor:
    r"""Soft IoU (Jaccard) loss per sample (Rahman & Wang 2016).

    .. math::
        \ell = 1 - \frac{\sum_j p_j t_j + s}{\sum_j p_j + \sum_j t_j - \sum_j p_j t_j + s},
        \qquad p = \sigma(z),

    summing over every non-batch dimension; :math:`s` smooths the ratio as in :func:`dice_loss`.

    Args:
        logits (Tensor[N, *]): unnormalized foreground scores.
        target (Tensor[N, *]): same shape, values in [0, 1].
        smooth: :math:`s \ge 0`.
        reduction: ``"none"`` (Tensor[N]), ``"mean"`` or ``"sum"``.
    """
    inter, p_sum, t_sum, s = _overlap_sums("iou_loss", logits, target, smooth, reduction)
    return _reduce(1.0 - (inter + s) / (p_sum + t_sum - inter + s), reduction)


# ----------------------------------------------------------------------------------------
# Distillation, metric learning and multi-class hinge
# ----------------------------------------------------------------------------------------


def distillation_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, *, temperature: float = 1.0
) -> torch.Tensor:
    r"""Knowledge-distillation loss (Hinton et al. 2015, Sec. 2): soft targets at temperature T.

    With :math:`q = \operatorname{softmax}(t / T)` (teacher) and
    :math:`\log p = \operatorname{log\_softmax}(s / T)` (student),

    .. math::
        \ell = \frac{T^2}{N} \sum_{i=1}^{N} \sum_{k} q_{ik} \,(\log q_{ik} - \log p_{ik})
             = \frac{T^2}{N} \sum_i \mathrm{KL}(q_i \,\|\, p_i).

    The KL divergence differs from the cross-entropy :math:`-\sum_k q_k \log p_k` only by
    the teacher's entropy, so both have the same gradient for the student,
    :math:`\tfrac{T}{N}(p - q)` per logit. The factor :math:`T^2` keeps that gradient's scale
    roughly independent of T, as the paper recommends when the soft loss is mixed with the
    ordinary cross-entropy on hard labels (which is left to the caller). Equals
    ``T**2 * F.kl_div(F.log_softmax(s / T, 1), F.softmax(t / T, 1), reduction="batchmean")``.

    Args:
        student_logits (Tensor[N, K]): the student's unnormalized class scores.
        teacher_logits (Tensor[N, K]): the teacher's scores, same shape (detach them to
            keep the teacher fixed; gradients flow to both otherwise, as in the reference).
        temperature: :math:`T > 0`.

    Returns:
        A scalar tensor (sum over the batch divided by N).
    """
    caller = "distillation_loss"
    _v.tensor("student_logits", student_logits, caller=caller, dtype="floating", ndim=2, nonempty=True)
    _v.tensor("teacher_logits", teacher_logits, caller=caller, dtype="floating")
    _v.same_shape("teacher_logits", teacher_logits, caller=caller, like=student_logits, like_name="student_logits")
    t = _v.real("temperature", temperature, caller=caller, low=0.0, low_open=True)
    log_p = torch.log_softmax(student_logits / t, dim=1)  # [N, K]
    log_q = torch.log_softmax(teacher_logits / t, dim=1)  # [N, K]
    kl = (log_q.exp() * (log_q - log_p)).sum()  # log_softmax of finite logits is finite, so no 0 * inf
    return (t * t) * kl / student_logits.shape[0]


def _p_distance(x: torch.Tensor, y: torch.Tensor, p: float, eps: float) -> torch.Tensor:
    r""":math:`\lVert x - y + \epsilon\rVert_p` along the last dimension (as ``F.pairwise_distance``)."""
    d = (x - y + eps).abs()
    if p == 2.0:
        return (d * d).sum(dim=-1).sqrt()
    return d.pow(p).sum(dim=-1).pow(1.0 / p)


def triplet_margin_loss(
    anchor: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor,
    *,
    margin: float = 1.0,
    p: float = 2.0,
    eps: float = 1e-6,
    swap: bool = False,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Triplet margin loss (Weinberger & Saul 2009; Schroff et al. 2015, Eq. (1)).

    .. math::
        \ell = \max\big(0,\; d(a, p) - d(a, n) + m\big),
        \qquad d(x, y) = \lVert x - y + \epsilon \rVert_p ,

    zero once the negative is at least the margin :math:`m` farther from the anchor than
    the positive. With ``swap=True`` the negative's distance is
    :math:`\min(d(a, n), d(p, n))`, the "distance swap" of Balntas et al. 2016. The
    :math:`\epsilon` inside the norm (as in PyTorch) keeps the gradient of the norm finite
    when two embeddings coincide. Same as ``torch.nn.functional.triplet_margin_loss``.

    Args:
        anchor (Tensor[N, D] or Tensor[D]): anchor embeddings, floating point.
        positive (Tensor[N, D] or Tensor[D]): same shape, same identity as the anchor.
        negative (Tensor[N, D] or Tensor[D]): same shape, another identity.
        margin: :math:`m > 0`.
        p: norm degree, > 0.
        eps: :math:`\epsilon \ge 0` added to the difference.
        swap: use the distance swap.
        reduction: ``"none"`` (Tensor[N]), ``"mean"`` or ``"sum"``.
    """
    caller = "triplet_margin_loss"
    _v.tensor("anchor", anchor, caller=caller, dtype="floating", ndim=(1, 2), nonempty=True)
    for name, x in (("positive", positive), ("negative", negative)):
        _v.tensor(name, x, caller=caller, dtype="floating")
        _v.same_shape(name, x, caller=caller, like=anchor, like_name="anchor")
    margin = _v.real("margin", margin, caller=caller, low=0.0, low_open=True)
    p = _v.real("p", p, caller=caller, low=0.0, low_open=True)
    eps = _v.real("eps", eps, caller=caller, low=0.0)
    swap = _v.boolean("swap", swap, caller=caller)
    _check_reduction(reduction, caller)
    d_ap = _p_distance(anchor, positive, p, eps)  # [N] (or [])
    d_an = _p_distance(anchor, negative, p, eps)
    if swap:
        d_an = torch.minimum(d_an, _p_distance(positive, negative, p, eps))
    return _reduce((margin + d_ap - d_an).clamp_min(0.0), reduction)


def multi_margin_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    p: int = 1,
    margin: float = 1.0,
    weight: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Multi-class hinge loss (Weston & Watkins 1999), as in ``torch.nn.functional.multi_margin_loss``.

    For a sample of class :math:`y` with scores :math:`x \in \mathbb R^K`,

    .. math::
        \ell = \frac{w_y}{K} \sum_{j \ne y} \max\big(0,\; m - x_y + x_j\big)^p ,

    zero once the true class beats every other class by the margin :math:`m`. Every
    violating class contributes (Weston & Watkins); Crammer & Singer's variant keeps only
    the largest violation. ``"mean"`` is the plain mean over samples, also with ``weight``.

    Args:
        logits (Tensor[N, K] or Tensor[K]): class scores.
        target (Tensor[N] or Tensor[]): integer class indices in ``[0, K)``.
        p: 1 (hinge) or 2 (squared hinge).
        margin: :math:`m` (any real number, as in PyTorch).
        weight (Tensor[K] | None): a weight per class, applied as :math:`w_y`.
        reduction: ``"none"`` (Tensor[N]), ``"mean"`` or ``"sum"``.
    """
    caller = "multi_margin_loss"
    _v.tensor("logits", logits, caller=caller, dtype="floating", ndim=(1, 2), nonempty=True)
    _v.tensor("target", target, caller=caller, dtype="integer", shape=tuple(logits.shape[:-1]))
    p = _v.integer("p", p, caller=caller, minimum=1, maximum=2)
    margin = _v.real("margin", margin, caller=caller)
    num_classes = logits.shape[-1]
    if weight is not None:
        _check_class_vector("weight", weight, num_classes, caller)
    _check_reduction(reduction, caller)
    lo, hi = int(target.min()), int(target.max())
    if lo < 0 or hi >= num_classes:
        raise ValueError(f"{caller}: target class indices must be in [0, {num_classes - 1}]; got {lo if lo < 0 else hi}")
    y = target.long().unsqueeze(-1)  # [N, 1]
    x_y = logits.gather(-1, y)  # [N, 1]
    hinge = (margin - x_y + logits).clamp_min(0.0)  # [N, K]; the j = y term is max(0, m), removed below
    if p == 2:
        hinge = hinge * hinge
    others = torch.ones_like(hinge).scatter(-1, y, 0.0)  # 0 at the true class
    loss = (hinge * others).sum(dim=-1) / num_classes  # [N]
    if weight is not None:
        loss = weight.to(logits.dtype)[target.long()] * loss
    return _reduce(loss, reduction)


# ----------------------------------------------------------------------------------------
# Module
# ----------------------------------------------------------------------------------------


class PerceptualLoss(nn.Module):
    r"""Feature-space (perceptual) loss, Johnson et al. 2016, Sec. 3.2.

    Both images go through the same frozen feature network; the loss compares the
    outputs of chosen layers instead of pixels:

    .. math::
        \ell(x, y) = \frac{1}{L}\sum_{l=1}^{L} w_l\, \operatorname{MSE}\big(\phi_l(x), \phi_l(y)\big),

    where :math:`\phi_l` is the output of ``features[layers[l]]``. Johnson et al. use
    VGG-16's relu2_2 for this feature (content) reconstruction loss; their style loss
    (Gram matrices, not implemented here) uses relu1_2, relu2_2, relu3_3 and relu4_3,
    indices 3, 8, 15 and 22 of ``torchvision.models.vgg16().features``.

    The network's parameters are frozen (``requires_grad=False``) and it stays in eval
    mode; gradients still flow to ``input`` (and ``target`` if it requires them). The
    network is not modified: a tensor that is compared, or the caller's input, is cloned
    before an in-place module (``nn.ReLU(inplace=True)``) would overwrite it.

    Args:
        features: the feature extractor, an ``nn.Sequential``.
        layers: indices into ``features`` whose outputs are compared (distinct, in range).
        weights: one non-negative weight per layer (all 1 by default).
    """

    def __init__(self, features: nn.Sequential, layers: Sequence[int], weights: Sequence[float] | None = None) -> None:
        super().__init__()
        caller = "PerceptualLoss"
        _v.instance("features", features, caller=caller, types=nn.Sequential)
        layers = _v.int_sequence("layers", layers, caller=caller)
        for i in layers:
            if not 0 <= i < len(features):
                raise ValueError(f"{caller}: layers must be indices in [0, {len(features) - 1}]; got {i}")
        if len(set(layers)) != len(layers):
            raise ValueError(f"{caller}: layers must be distinct; got {list(layers)}")
        if weights is None:
            weights = [1.0] * len(layers)
        if isinstance(weights, (str, bytes)) or not isinstance(weights, Sequence):
            raise TypeError(f"{caller}: weights must be a sequence of numbers or None; got {type(weights).__name__}")
        if len(weights) != len(layers):
            raise ValueError(f"{caller}: weights must have one entry per layer ({len(layers)}); got {len(weights)}")
        self.weights = [_check_number("weights", w, caller) for w in weights]
        self.layers = [int(i) for i in layers]
        self.features = features.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> PerceptualLoss:
        """Switch the loss module's mode; the feature network always stays in eval mode."""
        super().train(mode)
        self.features.eval()
        return self

    def _extract(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        wanted, last = set(self.layers), max(self.layers)
        out: dict[int, torch.Tensor] = {}
        protected = True  # x is the caller's tensor: never overwrite it
        for i, module in enumerate(self.features):
            if protected and getattr(module, "inplace", False):
                x = x.clone()
            x = module(x)
            protected = i in wanted  # a compared tensor must survive later in-place modules
            if protected:
                out[i] = x
            if i == last:
                break
        return out

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss between ``input`` and ``target`` (Tensor[N, C, H, W], same shape): a scalar."""
        caller = "PerceptualLoss"
        _check_floating("input", input, caller)
        _check_floating("target", target, caller)
        _check_same_shape(caller, "input", input, target)
        fx, fy = self._extract(input), self._extract(target)
        total = sum(w * mse_loss(fx[i], fy[i]) for i, w in zip(self.layers, self.weights))
        return total / len(self.layers)

    def extra_repr(self) -> str:
        return f"layers={self.layers}, weights={self.weights}"
