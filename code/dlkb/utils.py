"""Reproducibility and device helpers used by every chapter.

Library code never seeds globally: a notebook calls :func:`set_seed` once in its
first cell, and functions that sample take a ``torch.Generator``.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch
from torch import nn

from dlkb import _validate as _v

__all__ = ["set_seed", "device", "count_parameters", "eval_mode"]


def set_seed(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and CUDA).

    Args:
        seed: a non-negative integer below 2**32.

    Raises:
        TypeError: if ``seed`` is not an ``int`` (``bool`` is refused too).
        ValueError: if ``seed`` is outside ``[0, 2**32)``.
    """
    seed = _v.integer("seed", seed, caller="set_seed", minimum=0, maximum=2**32 - 1)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    # Hash randomization only takes effect for new interpreters (kernels, workers).
    os.environ["PYTHONHASHSEED"] = str(seed)


def device() -> torch.device:
    """Return ``cuda`` when a GPU is available (Colab), else ``cpu``."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def count_parameters(model: nn.Module, *, trainable_only: bool = True) -> int:
    """Number of scalar parameters of ``model`` (only those with ``requires_grad`` by default)."""
    _v.module("model", model, caller="count_parameters")
    _v.boolean("trainable_only", trainable_only, caller="count_parameters")
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


class eval_mode:  # noqa: N801 - used like a function: ``with eval_mode(model):``
    """Put ``model`` in eval mode for a ``with`` block, then restore its previous mode.

    The previous mode comes back even when the block raises, so a failed call never
    leaves a model silently in eval mode (with dropout off and BatchNorm frozen).
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = _v.module("model", model, caller="eval_mode")

    def __enter__(self) -> nn.Module:
        self.was_training = self.model.training
        self.model.eval()
        return self.model

    def __exit__(self, *exc_info: object) -> None:
        self.model.train(self.was_training)
