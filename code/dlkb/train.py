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

from dlkb.utils import device as default_device

__all__ = ["History", "fit", "train_epoch", "evaluate", "predict", "accuracy", "format_seconds"]

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
        if metric not in ("loss", "acc"):
            raise ValueError(f"History.plot: metric must be 'loss' or 'acc'; got {metric!r}")
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
    if logits.ndim != 2 or target.ndim != 1 or logits.shape[0] != target.shape[0]:
        raise ValueError(
            "accuracy: expected logits of shape (N, K) and target of shape (N,); "
            f"got {tuple(logits.shape)} and {tuple(target.shape)}"
        )
    if logits.shape[0] == 0:
        raise ValueError("accuracy: got an empty batch (N = 0)")
    return (logits.argmax(dim=1) == target).float().mean().item()


def _check_common(model: nn.Module, loader: Iterable, caller: str) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"{caller}: model must be an nn.Module; got {type(model).__name__}")
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
            nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
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
    was_training = model.training
    model.eval()
    total, loss_sum, correct, classified = 0, 0.0, 0, True
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        output = model(x)
        n = y.shape[0]
        total += n
        loss_sum += loss_fn(output, y).item() * n
        classified = classified and _is_classification(output, y)
        if classified:
            correct += (output.argmax(dim=1) == y).sum().item()
    model.train(was_training)
    if total == 0:
        raise ValueError("evaluate: loader yielded no batches")
    return loss_sum / total, (correct / total if classified else math.nan)


@torch.no_grad()
def predict(
    model: nn.Module, x: torch.Tensor, *, batch_size: int = 512, device: torch.device | None = None
) -> torch.Tensor:
    """Outputs of ``model`` on ``x`` (Tensor[N, ...]) in eval mode, batched, returned on the CPU."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"predict: x must be a tensor; got {type(x).__name__}")
    _check_common(model, [], "predict")
    device = device or default_device()
    was_training = model.training
    model.eval()
    outputs = [model(x[i : i + batch_size].to(device)).cpu() for i in range(0, x.shape[0], batch_size)]
    model.train(was_training)
    return torch.cat(outputs)


def _fmt(value: float, as_percent: bool) -> str:
    return f"{100 * value:5.1f}%" if as_percent else f"{value:.4f}"


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
        clip_grad_norm: if set, clip the global gradient norm to this value.
        device: defaults to :func:`dlkb.utils.device` (CUDA when available).
        verbose: print progress lines.
        max_lines: at most this many progress lines, evenly spaced, always the last epoch.
    """
    _check_common(model, train_loader, "fit")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"fit: epochs must be a positive int; got {epochs!r}")
    if isinstance(max_lines, bool) or not isinstance(max_lines, int) or max_lines < 1:
        raise ValueError(f"fit: max_lines must be a positive int; got {max_lines!r}")
    if clip_grad_norm is not None and not clip_grad_norm > 0:
        raise ValueError(f"fit: clip_grad_norm must be positive or None; got {clip_grad_norm!r}")
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
            line = f"epoch {epoch:>{width}}/{epochs}  train loss {loss:.4f}"
            if not math.isnan(acc):
                line += f" acc {_fmt(acc, True)}"
            if val_loader is not None:
                line += f" | val loss {history.val_loss[-1]:.4f}"
                if not math.isnan(history.val_acc[-1]):
                    line += f" acc {_fmt(history.val_acc[-1], True)}"
            print(line)
    return history


def format_seconds(seconds: float) -> str:
    """Wall-clock time for display, such as ``"1.25 s (wall clock)"``.

    The ``s (wall clock)`` suffix tells the notebook validator (tests/nbval_sanitize.cfg)
    that this text changes from run to run; show timings only in this format so nothing
    else needs to be ignored.
    """
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds < 0:
        raise ValueError(f"format_seconds: seconds must be a non-negative number; got {seconds!r}")
    return f"{seconds:.2f} s (wall clock)"
