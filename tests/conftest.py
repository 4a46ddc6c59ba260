"""Shared test fixtures: repository paths and a seeded generator."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

sys.path.insert(0, str(ROOT / "tools"))
from nbtool import KERNEL_ENV, VALIDATE_HASHSEED  # noqa: E402

# Kernels that nbval starts inherit this: the same environment as when `make run`
# saved the notebook (inline figures, one thread), except the hash seed, which
# differs on purpose so that an output depending on it fails deterministically.
os.environ.update(KERNEL_ENV)
os.environ["PYTHONHASHSEED"] = VALIDATE_HASHSEED
# The test processes themselves: two xdist workers on two cores, one thread each.
torch.set_num_threads(1)
for extra in (ROOT / "tools", ROOT / "_ext"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))


@pytest.fixture
def root() -> Path:
    return ROOT


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(0)
