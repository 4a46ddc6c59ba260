"""Shared test fixtures: repository paths and a seeded generator."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

# Kernels that nbval starts inherit this: figures are captured as outputs, exactly as
# when `make run` saved the notebook, whatever MPLBACKEND the caller's shell has.
os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
os.environ["PYTHONHASHSEED"] = "0"
for extra in (ROOT / "tools", ROOT / "_ext"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))


@pytest.fixture
def root() -> Path:
    return ROOT


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(0)
