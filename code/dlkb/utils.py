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

__all__ = ["set_seed", "device", "count_parameters", "check_type", "check_choice"]


def set_seed(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and CUDA).

    Args:
        seed: a non-negative integer below 2**32.

    Raises:
        TypeError: if ``seed`` is not an ``int`` (``bool`` is refused too).
        ValueError: if ``seed`` is outside ``[0, 2**32)``.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"set_seed: seed must be an int; got {type(seed).__name__}")
    if not 0 <= seed < 2**32:
        raise ValueError(f"set_seed: seed must be in [0, 2**32); got {seed}")
    seed = int(seed)
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
    if not isinstance(model, nn.Module):
        raise TypeError(f"count_parameters: model must be an nn.Module; got {type(model).__name__}")
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def check_type(name: str, value: object, expected: type | tuple[type, ...], *, caller: str) -> None:
    """Raise ``TypeError`` naming ``caller`` and argument ``name`` unless ``value`` has type ``expected``."""
    if not isinstance(value, expected):
        names = expected.__name__ if isinstance(expected, type) else " or ".join(t.__name__ for t in expected)
        raise TypeError(f"{caller}: {name} must be {names}; got {type(value).__name__}")


def check_choice(name: str, value: object, choices: tuple, *, caller: str) -> None:
    """Raise ``ValueError`` naming ``caller`` and ``name`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{caller}: {name} must be one of {choices}; got {value!r}")
