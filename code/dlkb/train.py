"""One small, reusable training and evaluation loop for the whole book.

Chapters call :func:`fit` instead of writing their own loop. It moves the model
and every batch to a device (CUDA when present, else CPU), records a
:class:`History`, and prints at most ``max_lines`` progress lines however many
epochs run, so notebook outputs stay short. Printed numbers are rounded and carry
no wall-clock time, so a seeded run prints the same text every time; times are in
``History.seconds`` and, when shown, are formatted by :func:`format_seconds`
(whose ``s (wall clock)`` suffix is what the notebook validator treats as volatile).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from dlkb import _validate as _v
from dlkb.optim import clip_grad_norm as _clip_grad_norm
from dlkb.utils import device as default_device
from dlkb.utils import eval_mode

__all__ = [
    "History",
    "fit",
    "train_epoch",
    "train_steps",
    "evaluate",
    "predict",
    "accuracy",
    "format_loss",
    "format_percent",
    "format_seconds",
]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class History:
    """Per-epoch record of a :func:`fit` run (``val_*`` stay empty without a validation loader)."""

    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    @property
    def epochs(self) -> int:
        """Number of epochs recorded."""
        return len(self.train_loss)

    @property
    def total_seconds(self) -> float:
        """Wall-clock training time, summed over epochs."""
        return float(sum(self.seconds))

    def plot(self, ax=None, *, metric: str = "loss"):
        """Draw train (and validation) curves of ``metric`` (``"loss"`` or ``"acc"``) on ``ax``."""
        _v.choice("metric", metric, caller="History.plot", choices=("loss", "acc"))
        import matplotlib.pyplot as plt  # noqa: PLC0415

        from dlkb.plot import bilingual  # noqa: PLC0415

        ax = ax if ax is not None else plt.gca()
        x = range(1, self.epochs + 1)
        train, val = getattr(self, f"train_{metric}"), getattr(self, f"val_{metric}")
        ax.plot(x, train, label=bilingual("训练", "train"))
        if val:
            ax.plot(x, val, label=bilingual("验证", "validation"))
        ax.set_xlabel(bilingual("轮次", "epoch"))
        ax.set_ylabel(bilingual("损失", "loss") if metric == "loss" else bilingual("准确率", "accuracy"))
        ax.legend()
        return ax


def accuracy(logits: torch.Tensor, target: torch.Tensor) -> float:
    """Fraction of rows of ``logits`` (Tensor[N, K]) whose arg-max equals ``target`` (Tensor[N])."""
    _v.tensor("logits", logits, caller="accuracy", ndim=2, nonempty=True)
    _v.tensor("target", target, caller="accuracy", dtype="integer", shape=(logits.shape[0],))
    return (logits.argmax(dim=1) == target).float().mean().item()


def _check_common(model: nn.Module, loader: Iterable, caller: str) -> None:
    _v.module("model", model, caller=caller)
    if not isinstance(loader, Iterable):
        raise TypeError(f"{caller}: loader must be an iterable of (x, y) batches; got {type(loader).__name__}")


def _is_classification(output, y: torch.Tensor) -> bool:
    # Models may return tuples (a VAE returns logits, mu, logvar): no accuracy then.
    return isinstance(output, torch.Tensor) and output.ndim == 2 and y.ndim == 1 and not y.is_floating_point()


def train_epoch(
    model: nn.Module,
    loader: Iterable,
    optimizer: torch.optim.Optimizer,
    *,
    loss_fn: LossFn,
    device: torch.device | None = None,
    clip_grad_norm: float | None = None,
) -> tuple[float, float]:
    """One pass over ``loader`` updating ``model``.

    Returns:
        ``(mean loss, accuracy)`` weighted by batch size; accuracy is ``nan`` when the
        outputs are not ``(N, K)`` class scores for ``(N,)`` integer labels.
    """
    _check_common(model, loader, "train_epoch")
    device = device or default_device()
    model.train()
    total, loss_sum, correct, classified = 0, 0.0, 0, True
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        output = model(x)
        loss = loss_fn(output, y)
        if loss.ndim != 0:
            raise ValueError(f"train_epoch: loss_fn must return a scalar; got shape {tuple(loss.shape)}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip_grad_norm is not None:
            _clip_grad_norm(model.parameters(), clip_grad_norm)  # = nn.utils.clip_grad_norm_
        optimizer.step()
        n = y.shape[0]
        total += n
        loss_sum += loss.item() * n
        classified = classified and _is_classification(output, y)
        if classified:
            correct += (output.argmax(dim=1) == y).sum().item()
    if total == 0:
        raise ValueError("train_epoch: loader yielded no batches")
    return loss_sum / total, (correct / total if classified else math.nan)


def train_steps(
    loss_fn: Callable[[int], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    *,
    steps: int,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    clip_grad_norm: float | None = None,
    callback: Callable[[int, float], bool | None] | None = None,
) -> list[float]:
    """The plain optimization loop, for experiments that are not epochs over a loader.

    Each of ``steps`` steps calls ``loss_fn(step)`` (``step`` counts from 1; it computes
    the loss on the full batch, or draws its own batch), back-propagates, optionally
    clips the global gradient norm of the optimizer's parameters
    (:func:`dlkb.optim.clip_grad_norm`), and steps the
    optimizer (and ``scheduler``, once per step). ``callback(step, loss)`` runs after
    each step; returning ``True`` stops early.

    Returns:
        The loss of every step taken, as floats.
    """
    caller = "train_steps"
    if not callable(loss_fn):
        raise TypeError(f"{caller}: loss_fn must be callable (step -> scalar loss); got {type(loss_fn).__name__}")
    _v.instance("optimizer", optimizer, caller=caller, types=torch.optim.Optimizer)
    steps = _v.integer("steps", steps, caller=caller, minimum=1)
    if clip_grad_norm is not None:
        clip_grad_norm = _v.real("clip_grad_norm", clip_grad_norm, caller=caller, low=0.0, low_open=True)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    losses = []
    for step in range(1, steps + 1):
        loss = loss_fn(step)
        if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
            got = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
            raise ValueError(f"{caller}: loss_fn must return a scalar tensor; got {got}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip_grad_norm is not None:
            _clip_grad_norm(params, clip_grad_norm)  # = nn.utils.clip_grad_norm_
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        losses.append(loss.item())
        if callback is not None and callback(step, losses[-1]):
            break
    return losses


@torch.no_grad()
def evaluate(
    model: nn.Module, loader: Iterable, *, loss_fn: LossFn | None = None, device: torch.device | None = None
) -> tuple[float, float]:
    """``(mean loss, accuracy)`` of ``model`` on ``loader`` in eval mode, without gradients.

    ``loss_fn`` defaults to cross-entropy; accuracy is ``nan`` for non-classification outputs.
    """
    _check_common(model, loader, "evaluate")
    device = device or default_device()
    loss_fn = loss_fn or nn.functional.cross_entropy
    total, loss_sum, correct, classified = 0, 0.0, 0, True
    with eval_mode(model):
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            output = model(x)
            n = y.shape[0]
            total += n
            loss_sum += loss_fn(output, y).item() * n
            classified = classified and _is_classification(output, y)
            if classified:
                correct += (output.argmax(dim=1) == y).sum().item()
    if total == 0:
        raise ValueError("evaluate: loader yielded no batches")
    return loss_sum / total, (correct / total if classified else math.nan)


@torch.no_grad()
def predict(
    model: nn.Module, x: torch.Tensor, *, batch_size: int = 512, device: torch.device | None = None
) -> torch.Tensor:
    """Outputs of ``model`` on ``x`` (Tensor[N, ...]) in eval mode, batched, returned on the CPU."""
    _v.tensor("x", x, caller="predict", ndim=tuple(range(1, 9)), nonempty=True)
    _check_common(model, [], "predict")
    batch_size = _v.integer("batch_size", batch_size, caller="predict", minimum=1)
    device = device or default_device()
    with eval_mode(model):
        outputs = [model(x[i : i + batch_size].to(device)).cpu() for i in range(0, x.shape[0], batch_size)]
    return torch.cat(outputs)


def format_loss(value: float) -> str:
    """A loss for printing: 3 significant digits (``0.0123``, ``1.23``, ``123``).

    Printed logs carry only the precision an experiment supports, so that another CPU
    (other vector instructions, other summation order) prints the same text.
    """
    value = _v.real("value", value, caller="format_loss", finite=False, allow_nan=True)
    return f"{value:#.3g}".rstrip(".") if math.isfinite(value) else str(value)


def format_percent(value: float) -> str:
    """A fraction in [0, 1] printed as a percentage with one decimal: ``0.9312`` → ``" 93.1%"``."""
    value = _v.real("value", value, caller="format_percent")
    return f"{100 * value:5.1f}%"


def fit(
    model: nn.Module,
    train_loader: Iterable,
    *,
    epochs: int,
    optimizer: torch.optim.Optimizer | None = None,
    loss_fn: LossFn | None = None,
    val_loader: Iterable | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    clip_grad_norm: float | None = None,
    device: torch.device | None = None,
    verbose: bool = True,
    max_lines: int = 5,
) -> History:
    """Train ``model`` for ``epochs`` epochs and return its :class:`History`.

    Args:
        model: the network; moved to ``device``.
        train_loader: iterable of ``(x, y)`` batches.
        epochs: number of passes over ``train_loader`` (≥ 1).
        optimizer: defaults to Adam with learning rate 1e-3 (Kingma & Ba 2015).
        loss_fn: ``loss_fn(output, y)`` returning a scalar; defaults to cross-entropy.
            ``output`` is whatever the model returns (a tensor, or a tuple for models
            such as a VAE); accuracy is recorded only for ``(N, K)`` scores and ``(N,)`` labels.
        val_loader: optional loader evaluated after each epoch.
        scheduler: optional learning-rate scheduler, stepped once per epoch.
        clip_grad_norm: if set, clip the global gradient norm to this value
            (:func:`dlkb.optim.clip_grad_norm`, equal to ``torch.nn.utils.clip_grad_norm_``).
        device: defaults to :func:`dlkb.utils.device` (CUDA when available).
        verbose: print progress lines.
        max_lines: at most this many progress lines, evenly spaced, always the last epoch.
    """
    _check_common(model, train_loader, "fit")
    epochs = _v.integer("epochs", epochs, caller="fit", minimum=1)
    max_lines = _v.integer("max_lines", max_lines, caller="fit", minimum=1)
    _v.boolean("verbose", verbose, caller="fit")
    if clip_grad_norm is not None:
        _v.real("clip_grad_norm", clip_grad_norm, caller="fit", low=0.0, low_open=True)
    device = device or default_device()
    model.to(device)
    optimizer = optimizer or torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = loss_fn or nn.functional.cross_entropy
    history = History()
    step = math.ceil(epochs / max_lines)
    width = len(str(epochs))
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        loss, acc = train_epoch(
            model, train_loader, optimizer, loss_fn=loss_fn, device=device, clip_grad_norm=clip_grad_norm
        )
        history.train_loss.append(loss)
        history.train_acc.append(acc)
        if scheduler is not None:
            scheduler.step()
        if val_loader is not None:
            v_loss, v_acc = evaluate(model, val_loader, loss_fn=loss_fn, device=device)
            history.val_loss.append(v_loss)
            history.val_acc.append(v_acc)
        history.seconds.append(time.perf_counter() - start)
        if verbose and (epoch % step == 0 or epoch == epochs):
            line = f"epoch {epoch:>{width}}/{epochs}  train loss {format_loss(loss)}"
            if not math.isnan(acc):
                line += f" acc {format_percent(acc)}"
            if val_loader is not None:
                line += f" | val loss {format_loss(history.val_loss[-1])}"
                if not math.isnan(history.val_acc[-1]):
                    line += f" acc {format_percent(history.val_acc[-1])}"
            print(line)
    return history


def format_seconds(seconds: float) -> str:
    """Wall-clock time for display, such as ``"1.25 s (wall clock)"``.

    The ``s (wall clock)`` suffix tells the notebook validator (tests/nbval_sanitize.cfg)
    that this text changes from run to run; show timings only in this format so nothing
    else needs to be ignored.
    """
    seconds = _v.real("seconds", seconds, caller="format_seconds", low=0.0)
    return f"{seconds:.2f} s (wall clock)"
