"""Argument checking for every public function and class of :mod:`dlkb`.

One signature everywhere: ``check(name, value, *, caller, ...)``. Each check
returns the value, normalised (``int``, ``float``, ``(h, w)``), so a function can
write ``k = _v.integer("k", k, caller="pca", minimum=1)``.

Conventions (pinned by ``tests/test_validate.py``):

* a value of the wrong *type* raises ``TypeError``; a value of the right type
  but outside its range, shape or set raises ``ValueError``;
* every message starts with ``"<caller>: <name> must ..."`` and ends with
  ``"; got <received>"``, so the reader sees the function, the argument, what
  was expected and what was received;
* ``bool`` is never accepted where a number is expected (``True`` is an ``int``
  in Python, but never what the caller meant); NumPy scalars are accepted;
* nothing broadcasts: shapes are compared exactly.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

__all__ = [
    "instance",
    "integer",
    "real",
    "boolean",
    "choice",
    "pair",
    "int_sequence",
    "tensor",
    "same_shape",
    "module",
    "shape_str",
]


def shape_str(shape: Sequence[int]) -> str:
    """``(2, 3)`` for a shape, as messages print it."""
    return str(tuple(int(s) for s in shape))


_ARTICLE_NAMES = {torch.Tensor: "a torch.Tensor", nn.Module: "an nn.Module", torch.Generator: "a torch.Generator",
                  np.ndarray: "a numpy.ndarray", torch.optim.Optimizer: "a torch.optim.Optimizer"}


def _type_names(types: type | tuple[type, ...]) -> str:
    types = (types,) if isinstance(types, type) else tuple(types)
    return " or ".join(_ARTICLE_NAMES.get(t, t.__name__) for t in types)


def instance(name: str, value: object, *, caller: str, types: type | tuple[type, ...]) -> object:
    """``value`` if it is an instance of ``types``, else ``TypeError``."""
    if not isinstance(value, types):
        raise TypeError(f"{caller}: {name} must be {_type_names(types)}; got {type(value).__name__}")
    return value


def _num(x: float) -> str:
    """A bound as people write it: ``0``, ``1``, ``0.5``, ``1e-05``."""
    return f"{x:g}" if isinstance(x, float) else str(x)


def _range_text(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{_num(low)}, {_num(high)}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {_num(low)}"
    return f"{'<' if high_open else '<='} {_num(high)}"


def _in_range(x: float, low: float | None, high: float | None, low_open: bool, high_open: bool) -> bool:
    if low is not None and not (x > low if low_open else x >= low):
        return False
    if high is not None and not (x < high if high_open else x <= high):
        return False
    return True


def integer(
    name: str,
    value: object,
    *,
    caller: str,
    minimum: int | None = None,
    maximum: int | None = None,
) -> int:
    """An ``int`` (or NumPy integer, never ``bool``) in ``[minimum, maximum]``; returns ``int``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{caller}: {name} must be an int; got {type(value).__name__} {value!r}")
    value = int(value)
    if not _in_range(value, minimum, maximum, False, False):
        raise ValueError(f"{caller}: {name} must be {_range_text(minimum, maximum, False, False)}; got {value}")
    return value


def real(
    name: str,
    value: object,
    *,
    caller: str,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    finite: bool = True,
    allow_nan: bool = False,
) -> float:
    """A real number (int, float or NumPy scalar, never ``bool``) in the given range; returns ``float``.

    ``low``/``high`` bound the value, closed unless ``low_open``/``high_open``.
    NaN is refused unless ``allow_nan``; infinities are refused unless ``finite=False``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{caller}: {name} must be a real number; got {type(value).__name__} {value!r}")
    x = float(value)
    if math.isnan(x):
        if allow_nan:
            return x
        raise ValueError(f"{caller}: {name} must be {'a finite number' if finite else 'a number, not NaN'}; got {x}")
    if finite and math.isinf(x):
        raise ValueError(f"{caller}: {name} must be a finite number; got {x}")
    if not _in_range(x, low, high, low_open, high_open):
        raise ValueError(f"{caller}: {name} must be {_range_text(low, high, low_open, high_open)}; got {value!r}")
    return x


def boolean(name: str, value: object, *, caller: str) -> bool:
    """A ``bool`` (or NumPy bool), else ``TypeError``; returns ``bool``."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{caller}: {name} must be a bool; got {type(value).__name__} {value!r}")
    return bool(value)


def choice(name: str, value: object, *, caller: str, choices: Sequence) -> object:
    """``value`` if it is one of ``choices``; ``TypeError`` if its type matches none of them, else ``ValueError``."""
    choices = tuple(choices)
    if not any(isinstance(value, type(c)) for c in choices):
        expected = " or ".join(sorted({type(c).__name__ for c in choices}))
        raise TypeError(f"{caller}: {name} must be a {expected}, one of {choices}; got {type(value).__name__} {value!r}")
    if value not in choices:
        raise ValueError(f"{caller}: {name} must be one of {choices}; got {value!r}")
    return value


def pair(name: str, value: object, *, caller: str, minimum: int | None = None) -> tuple[int, int]:
    """An int or a pair (tuple/list) of ints, each at least ``minimum``, as ``(height, width)``."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{caller}: {name} must be an int or a pair of ints; got {value!r} (length {len(value)})")
        out = (integer(name, value[0], caller=caller), integer(name, value[1], caller=caller))
        if minimum is not None and min(out) < minimum:
            raise ValueError(f"{caller}: {name} must be >= {minimum}; got {tuple(value)!r}")
        return out
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{caller}: {name} must be an int or a pair of ints; got {type(value).__name__} {value!r}")
    v = integer(name, value, caller=caller, minimum=minimum)
    return (v, v)


def int_sequence(
    name: str, value: object, *, caller: str, minimum: int | None = None, nonempty: bool = True
) -> tuple[int, ...]:
    """A tuple or list of ints, each at least ``minimum`` (non-empty unless ``nonempty=False``); returns a tuple."""
    if not isinstance(value, (tuple, list)):
        raise TypeError(f"{caller}: {name} must be a tuple or list of ints; got {type(value).__name__} {value!r}")
    if nonempty and len(value) == 0:
        raise ValueError(f"{caller}: {name} must not be empty; got {value!r}")
    return tuple(integer(f"{name}[{i}]", v, caller=caller, minimum=minimum) for i, v in enumerate(value))


_INTEGER_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def tensor(
    name: str,
    value: object,
    *,
    caller: str,
    ndim: int | tuple[int, ...] | None = None,
    dtype: str | None = None,
    shape: Sequence[int | str | None] | None = None,
    nonempty: bool = False,
) -> torch.Tensor:
    """A ``torch.Tensor`` with the given properties.

    Args:
        dtype: ``"floating"``, ``"integer"`` (any signed/unsigned integer dtype), ``"bool"``,
            ``"real"`` (anything but complex) or ``None`` (any); a wrong dtype is a ``TypeError``.
        ndim: the number of dimensions, or a tuple of allowed numbers.
        shape: the exact shape; ``None`` or a letter (``"N"``) matches any size and is
            printed as ``*`` or the letter. Implies ``ndim``.
        nonempty: refuse a tensor with no elements.
    """
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{caller}: {name} must be a torch.Tensor; got {type(value).__name__}")
    if dtype is not None:
        ok = {
            "floating": value.is_floating_point(),
            "integer": value.dtype in _INTEGER_DTYPES,
            "bool": value.dtype == torch.bool,
            "real": not value.is_complex(),
        }
        if dtype not in ok:
            raise ValueError(f"_validate.tensor: dtype must be one of {tuple(ok)}; got {dtype!r}")
        if not ok[dtype]:
            what = {"floating": "a floating-point", "integer": "an integer", "bool": "a bool", "real": "a real"}[dtype]
            raise TypeError(f"{caller}: {name} must be {what} tensor; got dtype {value.dtype}")
    if shape is not None:
        shape = tuple(shape)
        fixed = [s if isinstance(s, int) else None for s in shape]
        if value.ndim != len(shape) or any(s is not None and s != v for s, v in zip(fixed, value.shape)):
            want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
            raise ValueError(f"{caller}: {name} must have shape {want}; got {shape_str(value.shape)}")
    elif ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if value.ndim not in allowed:
            want = " or ".join(f"{d}-D" for d in allowed)
            raise ValueError(f"{caller}: {name} must be {want}; got shape {shape_str(value.shape)}")
    if nonempty and value.numel() == 0:
        raise ValueError(f"{caller}: {name} must not be empty; got shape {shape_str(value.shape)}")
    return value


def same_shape(name: str, value: torch.Tensor, *, caller: str, like: torch.Tensor, like_name: str) -> torch.Tensor:
    """``value`` if its shape equals ``like``'s exactly (no broadcasting)."""
    if tuple(value.shape) != tuple(like.shape):
        raise ValueError(
            f"{caller}: {name} must have the same shape as {like_name} {shape_str(like.shape)}; "
            f"got {shape_str(value.shape)} (no broadcasting: reshape one of them explicitly)"
        )
    return value


def module(name: str, value: object, *, caller: str) -> nn.Module:
    """An ``nn.Module``, else ``TypeError``."""
    return instance(name, value, caller=caller, types=nn.Module)
