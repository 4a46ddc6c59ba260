"""Shared test fixtures: repository paths and a seeded generator."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

# The kernel environment for nbval (os.environ) is set by the root conftest.py.
# The test processes themselves: two xdist workers on two cores, one thread each.
torch.set_num_threads(1)


@pytest.fixture
def root() -> Path:
    return ROOT


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(0)
