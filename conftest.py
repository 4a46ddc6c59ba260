"""Root conftest: the kernel environment for nbval, however pytest is invoked.

Kernels that nbval starts inherit os.environ. They get the environment `make run`
saved the notebooks with (inline figures, one thread; see tools/nbtool.py), except the
hash seed, which differs on purpose so that an output depending on it fails every time.
Placed at the root so that `pytest chapters/NAME.ipynb` gets it too, not only `make test`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
for extra in (ROOT / "tools", ROOT / "_ext"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from nbtool import KERNEL_ENV, VALIDATE_HASHSEED  # noqa: E402

os.environ.update(KERNEL_ENV)
os.environ["PYTHONHASHSEED"] = VALIDATE_HASHSEED
