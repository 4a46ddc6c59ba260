r"""Benchmarks: each from-scratch ``dlkb`` op timed against the library op it re-implements.

Used by ``make bench`` (``tools/bench.py``, full sizes, one thread and all threads) and by the
appendix chapter *Performance: from scratch vs the library* (a reduced set). A :class:`Case` holds
two zero-argument callables on the same, pre-built inputs: ``ours`` (the ``dlkb`` function) and
``reference`` (torch, torchvision, scikit-image or imbalanced-learn). :func:`measure` times both
with ``torch.utils.benchmark`` (``Timer.timeit`` in alternating blocks, the median time per call),
so the ratio ``ours / reference`` compares like with like: same inputs, same thread count, the
same warm caches. :meth:`Case.check` asserts that the two callables give the same values, so a
benchmark never times two different computations.

Each case is either ``"vectorised"`` (a handful of whole-tensor operations: the target is to be
within 3× of the library) or ``"loop"`` (an inherently sequential Python loop: the recurrence of an
RNN over time steps, an optimizer's loop over parameter tensors), where a gap is expected and
explained in the appendix.

Shape letters as in the chapters: N batch, C channels, H, W height and width, L sequence length,
E embedding, K boxes. Detection ops (``box_iou``, ``nms``) join once ``dlkb`` has them.

Papers: the benchmarked methods are cited in their chapters; convolution as a matrix product
(im2col) is Chellapilla et al. 2006, the minimal-filtering (Winograd) convolution Lavin & Gray 2016.
"""

from __future__ import annotations

import json
import logging
import math
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
# torch.utils.benchmark imports torch.utils.cpp_extension, which logs a "No CUDA runtime is found"
# warning (with a time stamp) on CPU-only machines; silence that one logger during the import.
_cpp_log = logging.getLogger("torch.utils.cpp_extension")
_cpp_level = _cpp_log.level
_cpp_log.setLevel(logging.ERROR)
try:
    from torch.utils import benchmark
finally:
    _cpp_log.setLevel(_cpp_level)

from dlkb import _validate as _v
from dlkb import augment, classic, cnn, optim, pooling, rnn, transformer

__all__ = [
    "Case",
    "Result",
    "cases",
    "measure",
    "run",
    "ratio_class",
    "to_markdown",
    "to_json",
    "conv2d_bytes",
    "conv2d_fast",
    "avg_pool2d_fast",
    "RATIO_CLASSES",
    "roi_boxes",
]

#: Coarse classes of the ratio ours / library (upper bounds, exclusive), as the appendix prints them.
RATIO_CLASSES: tuple[tuple[float, str], ...] = ((1.5, "<1.5×"), (3.0, "1.5–3×"), (10.0, "3–10×"), (math.inf, ">10×"))


@dataclass
class Case:
    """One op at one size: the ``dlkb`` callable and the library callable, on shared inputs.

    Attributes:
        op: the ``dlkb`` function, e.g. ``"cnn.conv2d"``.
        library: the library op it is compared with, e.g. ``"F.conv2d"``.
        size: a readable description of the input size, e.g. ``"[32, 64, 32, 32], 3×3"``.
        scale: a number that grows with the input (elements of the input, sequence length...),
            the x axis of time-versus-size plots.
        ours: runs the ``dlkb`` op once.
        reference: runs the library op once.
        kind: ``"vectorised"`` or ``"loop"`` (see the module docstring).
        representative: the size the appendix names for the 3× target.
        pick: maps the result of either callable to what :meth:`check` compares.
        rtol, atol: tolerances of :meth:`check`.
        reset: for stateful cases (an optimizer step), restores both sides to their initial state.
    """

    op: str
    library: str
    size: str
    scale: float
    ours: Callable[[], object]
    reference: Callable[[], object]
    kind: str = "vectorised"
    representative: bool = False
    pick: Callable[[object], object] = field(default=lambda out: out)
    rtol: float | None = None
    atol: float | None = None
    reset: Callable[[], None] | None = None

    def check(self) -> None:
        """Assert that ``ours`` and ``reference`` compute the same values (``assert_close``)."""
        if self.reset is not None:
            self.reset()
        a, b = self.pick(self.ours()), self.pick(self.reference())
        a = torch.as_tensor(np.asarray(a)) if isinstance(a, np.ndarray) else a
        b = torch.as_tensor(np.asarray(b)) if isinstance(b, np.ndarray) else b
        torch.testing.assert_close(a, b, rtol=self.rtol, atol=self.atol, check_dtype=False)


@dataclass
class Result:
    """Median seconds per call of both sides of a :class:`Case` at a thread count."""

    op: str
    library: str
    size: str
    scale: float
    kind: str
    representative: bool
    threads: int
    ours_s: float
    reference_s: float

    @property
    def ratio(self) -> float:
        """``ours / reference``: how many times slower the from-scratch op is (< 1: faster)."""
        return self.ours_s / self.reference_s


# ----------------------------------------------------------------------------------------
# A faster variant of conv2d, next to the readable one in dlkb.cnn
# ----------------------------------------------------------------------------------------


def conv2d_fast(x: torch.Tensor, weight: torch.Tensor, padding: int = 0) -> torch.Tensor:
    r""":func:`dlkb.cnn.conv2d` (stride 1, one group) as a sum of :math:`k_h k_w` shifted matrix products.

    .. math::
        y[n, :, i, j] = \sum_{u, v} W_{:, :, u, v}\; x_{\text{pad}}[n, :, i + u, j + v]

    Instead of copying every window into a column (im2col's Tensor[N, C·kh·kw, L], kh·kw times
    the input), each kernel tap :math:`(u, v)` multiplies the shifted input by the
    :math:`C \times O` matrix ``W[:, :, u, v]ᵀ`` and the kh·kw products are added into the output.
    The shift costs no copy: with the padded batch flattened pixel by pixel (channels last,
    Tensor[N·H'·W', C]), the pixel ``(i + u, j + v)`` sits ``u·W' + v`` rows after ``(i, j)``,
    so tap ``(u, v)`` is one matrix product of a contiguous slice. The output is computed for
    every padded position; the positions whose window wraps around into the next row (or the
    next image) are cropped at the end. The extra memory is about one output-sized buffer
    instead of the column matrix. Arguments are validated like :func:`dlkb.cnn.conv2d`'s.

    Args:
        x (Tensor[N, C, H, W]): input.
        weight (Tensor[O, C, kh, kw]): kernels.
        padding: zeros on each side.

    Returns:
        Tensor[N, O, Ho, Wo], equal to ``F.conv2d(x, weight, padding=padding)``.
    """
    caller = "conv2d_fast"
    _v.tensor("x", x, caller=caller, dtype="floating", ndim=4)
    _v.tensor("weight", weight, caller=caller, dtype="floating", shape=(None, x.shape[1], None, None))
    padding = _v.integer("padding", padding, caller=caller, minimum=0)
    o, c, kh, kw = weight.shape
    if x.shape[2] + 2 * padding < kh or x.shape[3] + 2 * padding < kw:
        raise ValueError(f"{caller}: the padded input {tuple(x.shape[2:])} + 2·{padding} is smaller than the kernel {(kh, kw)}")
    xp = F.pad(x, (padding,) * 4) if padding else x  # [N, C, H', W']
    n, _, hp, wp = xp.shape
    ho, wo = hp - kh + 1, wp - kw + 1
    rows = n * hp * wp  # one output row per padded position
    flat = xp.permute(0, 2, 3, 1).reshape(rows, c)  # [N·H'·W', C], pixel by pixel, channels last
    flat = F.pad(flat, (0, 0, 0, (kh - 1) * wp + kw - 1))  # the last taps read past the end
    w = weight.permute(2, 3, 1, 0)  # [kh, kw, C, O]
    y = torch.zeros(rows, o, dtype=x.dtype, device=x.device)  # [N·H'·W', O]
    for u in range(kh):
        for v in range(kw):
            start = u * wp + v  # the shift of tap (u, v) in the flattened batch
            y.addmm_(flat[start : start + rows], w[u, v])  # += [rows, C] @ [C, O]
    return y.reshape(n, hp, wp, o)[:, :ho, :wo].permute(0, 3, 1, 2)  # [N, O, Ho, Wo], wrapped positions cropped


def avg_pool2d_fast(x: torch.Tensor, kernel_size: int, stride: int | None = None) -> torch.Tensor:
    r""":func:`dlkb.pooling.avg_pool2d` (no padding) as the mean of :math:`k^2` strided views.

    .. math::
        y[n, c, i, j] = \frac{1}{k^2} \sum_{u, v} x[n, c, s i + u, s j + v]

    Each tap ``(u, v)`` is the view ``x[:, :, u::s, v::s]`` cut to the output size, so the
    sum is :math:`k^2` element-wise additions of output-sized tensors; the readable version
    reduces a last dimension of only :math:`k^2` elements per output, which vectorises badly.
    Arguments are validated like :func:`dlkb.pooling.avg_pool2d`'s.

    Args:
        x (Tensor[N, C, H, W]): input.
        kernel_size: k.
        stride: s; ``None`` means ``kernel_size``.

    Returns:
        Tensor[N, C, Ho, Wo], equal to ``F.avg_pool2d(x, kernel_size, stride)``.
    """
    caller = "avg_pool2d_fast"
    _v.tensor("x", x, caller=caller, dtype="floating", ndim=4)
    k = _v.integer("kernel_size", kernel_size, caller=caller, minimum=1)
    s = k if stride is None else _v.integer("stride", stride, caller=caller, minimum=1)
    if k > min(x.shape[2], x.shape[3]):
        raise ValueError(f"avg_pool2d_fast: kernel_size {k} must fit in the input {tuple(x.shape[2:])}")
    ho, wo = (x.shape[2] - k) // s + 1, (x.shape[3] - k) // s + 1
    y = torch.zeros(*x.shape[:2], ho, wo, dtype=x.dtype, device=x.device)  # [N, C, Ho, Wo]
    for u in range(k):
        for v in range(k):
            y.add_(x[:, :, u : u + (ho - 1) * s + 1 : s, v : v + (wo - 1) * s + 1 : s])  # tap (u, v), a view
    return y.div_(k * k)


def conv2d_bytes(shape: Sequence[int], out_channels: int, kernel: int, padding: int, itemsize: int = 4) -> dict[str, int]:
    """Bytes of the tensors a stride-1 convolution of ``shape`` = [N, C, H, W] creates.

    Args:
        shape: input shape ``[N, C, H, W]``.
        out_channels: O.
        kernel: square kernel size k.
        padding: zeros on each side.
        itemsize: bytes per element (4 for float32).

    Returns:
        ``{"input", "output", "columns"}``: the input, the output, and im2col's column matrix
        ``[N, C·k·k, Ho·Wo]``, which :func:`dlkb.cnn.conv2d` materializes and a direct
        convolution kernel does not.
    """
    caller = "conv2d_bytes"
    shape = _v.int_sequence("shape", shape, caller=caller, minimum=1)
    if len(shape) != 4:
        raise ValueError(f"{caller}: shape must be [N, C, H, W]; got {list(shape)}")
    out_channels = _v.integer("out_channels", out_channels, caller=caller, minimum=1)
    kernel = _v.integer("kernel", kernel, caller=caller, minimum=1)
    padding = _v.integer("padding", padding, caller=caller, minimum=0)
    itemsize = _v.integer("itemsize", itemsize, caller=caller, minimum=1)
    n, c, h, w = shape
    ho, wo = h + 2 * padding - kernel + 1, w + 2 * padding - kernel + 1
    return {
        "input": n * c * h * w * itemsize,
        "output": n * out_channels * ho * wo * itemsize,
        "columns": n * c * kernel * kernel * ho * wo * itemsize,
    }


# ----------------------------------------------------------------------------------------
# The cases
# ----------------------------------------------------------------------------------------


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=_gen(seed))


def _conv_cases(sizes: Sequence[tuple[int, int]], rep: tuple[int, int]) -> list[Case]:
    out = []
    for n, s in sizes:
        x, w, b = _randn(n, 64, s, s), _randn(64, 64, 3, 3, seed=1) * 0.05, _randn(64, seed=2)
        label = f"[{n}, 64, {s}, {s}], 3×3, 64 out"
        out.append(Case("cnn.conv2d", "F.conv2d", label, x.numel(),
                        lambda x=x, w=w, b=b: cnn.conv2d(x, w, b, padding=1),
                        lambda x=x, w=w, b=b: F.conv2d(x, w, b, padding=1),
                        representative=(n, s) == rep, rtol=1e-4, atol=1e-4))
        out.append(Case("bench.conv2d_fast", "F.conv2d", label, x.numel(),
                        lambda x=x, w=w: conv2d_fast(x, w, padding=1),
                        lambda x=x, w=w: F.conv2d(x, w, padding=1),
                        representative=(n, s) == rep, rtol=1e-4, atol=1e-4))
    return out


def _conv_transpose_cases(sizes: Sequence[tuple[int, int]], rep: tuple[int, int]) -> list[Case]:
    out = []
    for n, s in sizes:
        x, w = _randn(n, 64, s, s), _randn(64, 32, 4, 4, seed=1) * 0.05
        out.append(Case("cnn.conv_transpose2d", "F.conv_transpose2d", f"[{n}, 64, {s}, {s}], 4×4 stride 2, 32 out",
                        x.numel(),
                        lambda x=x, w=w: cnn.conv_transpose2d(x, w, stride=2, padding=1),
                        lambda x=x, w=w: F.conv_transpose2d(x, w, stride=2, padding=1),
                        representative=(n, s) == rep, rtol=1e-4, atol=1e-4))
    return out


def _deform_cases(sizes: Sequence[tuple[int, int]], rep: tuple[int, int]) -> list[Case]:
    from torchvision.ops import deform_conv2d as tv_deform  # noqa: PLC0415 - torchvision only when used

    out = []
    for n, s in sizes:
        x, w = _randn(n, 32, s, s), _randn(32, 32, 3, 3, seed=1) * 0.05
        offset = _randn(n, 2 * 9, s, s, seed=2) * 0.5
        out.append(Case("cnn.deform_conv2d", "torchvision.ops.deform_conv2d", f"[{n}, 32, {s}, {s}], 3×3, 32 out",
                        x.numel(),
                        lambda x=x, o=offset, w=w: cnn.deform_conv2d(x, o, w, padding=1),
                        lambda x=x, o=offset, w=w: tv_deform(x, o, w, padding=(1, 1)),
                        representative=(n, s) == rep, rtol=1e-4, atol=1e-4))
    return out


def _norm_cases(sizes: Sequence[tuple[int, int]], rep: tuple[int, int]) -> list[Case]:
    out = []
    for n, s in sizes:
        x = _randn(n, 64, s, s)
        g, b = _randn(64, seed=1), _randn(64, seed=2)
        rm, rv, rm2, rv2 = torch.zeros(64), torch.ones(64), torch.zeros(64), torch.ones(64)
        label, is_rep = f"[{n}, 64, {s}, {s}]", (n, s) == rep
        ln_shape = (64, s, s)
        gl, bl = _randn(*ln_shape, seed=3), _randn(*ln_shape, seed=4)
        out += [
            Case("cnn.batch_norm", "F.batch_norm", label, x.numel(),
                 lambda x=x, g=g, b=b, rm=rm, rv=rv: cnn.batch_norm(x, rm, rv, g, b, training=True),
                 lambda x=x, g=g, b=b, rm=rm2, rv=rv2: F.batch_norm(x, rm, rv, g, b, training=True),
                 representative=is_rep, rtol=1e-4, atol=1e-4),
            Case("cnn.layer_norm", "F.layer_norm", label + ", over (C, H, W)", x.numel(),
                 lambda x=x, s=ln_shape, g=gl, b=bl: cnn.layer_norm(x, s, g, b),
                 lambda x=x, s=ln_shape, g=gl, b=bl: F.layer_norm(x, s, g, b),
                 representative=is_rep, rtol=1e-4, atol=1e-4),
            Case("cnn.instance_norm", "F.instance_norm", label, x.numel(),
                 lambda x=x: cnn.instance_norm(x),
                 lambda x=x: F.instance_norm(x),
                 representative=is_rep, rtol=1e-4, atol=1e-4),
            Case("cnn.group_norm", "F.group_norm", label + ", 8 groups", x.numel(),
                 lambda x=x, g=g, b=b: cnn.group_norm(x, 8, g, b),
                 lambda x=x, g=g, b=b: F.group_norm(x, 8, g, b),
                 representative=is_rep, rtol=1e-4, atol=1e-4),
        ]
    return out


def _pool_cases(sizes: Sequence[tuple[int, int]], rep: tuple[int, int]) -> list[Case]:
    out = []
    for n, s in sizes:
        x = _randn(n, 64, s, s)
        label, is_rep = f"[{n}, 64, {s}, {s}]", (n, s) == rep
        out += [
            Case("pooling.max_pool2d", "F.max_pool2d", label + ", 3×3 stride 2", x.numel(),
                 lambda x=x: pooling.max_pool2d(x, 3, 2, 1), lambda x=x: F.max_pool2d(x, 3, 2, 1),
                 representative=is_rep),
            Case("pooling.avg_pool2d", "F.avg_pool2d", label + ", 2×2 stride 2", x.numel(),
                 lambda x=x: pooling.avg_pool2d(x, 2), lambda x=x: F.avg_pool2d(x, 2),
                 representative=is_rep),
            Case("bench.avg_pool2d_fast", "F.avg_pool2d", label + ", 2×2 stride 2", x.numel(),
                 lambda x=x: avg_pool2d_fast(x, 2), lambda x=x: F.avg_pool2d(x, 2),
                 representative=is_rep),
            Case("pooling.spatial_pyramid_pool", "F.adaptive_max_pool2d ×3", label + ", levels (1, 2, 4)", x.numel(),
                 lambda x=x: pooling.spatial_pyramid_pool(x, (1, 2, 4)),
                 lambda x=x: torch.cat([F.adaptive_max_pool2d(x, k).flatten(1) for k in (1, 2, 4)], 1),
                 representative=is_rep),
        ]
    return out


def roi_boxes(k: int, seed: int | None = None) -> torch.Tensor:
    """``k`` random boxes (Tensor[K, 5], rows ``(batch_index, x1, y1, x2, y2)``) on a 32×32 map of 2 images.

    Sides between 2 and 16 cells, as region proposals on a stride-16 feature map would be;
    ``seed`` defaults to ``k``.
    """
    k = _v.integer("k", k, caller="roi_boxes", minimum=0)
    if seed is not None:
        _v.integer("seed", seed, caller="roi_boxes", minimum=0)
    g = _gen(k if seed is None else seed)
    xy = torch.rand(k, 2, generator=g) * 24  # [K, 2], top-left corner
    wh = 2 + torch.rand(k, 2, generator=g) * 14  # [K, 2], width and height
    return torch.cat([torch.randint(0, 2, (k, 1), generator=g).float(), xy, (xy + wh).clamp(max=31)], 1)


def _roi_cases(counts: Sequence[int], rep: int) -> list[Case]:
    from torchvision import ops  # noqa: PLC0415

    out = []
    x = _randn(2, 64, 32, 32)
    for k in counts:
        boxes = roi_boxes(k)
        label = f"x [2, 64, 32, 32], {k} boxes, 7×7"
        out += [
            Case("pooling.roi_pool", "torchvision.ops.roi_pool", label, k,
                 lambda b=boxes: pooling.roi_pool(x, b, 7), lambda b=boxes: ops.roi_pool(x, b, 7),
                 representative=k == rep),
            Case("pooling.roi_align", "torchvision.ops.roi_align", label + ", 2×2 samples", k,
                 lambda b=boxes: pooling.roi_align(x, b, 7, sampling_ratio=2),
                 lambda b=boxes: ops.roi_align(x, b, 7, sampling_ratio=2),
                 representative=k == rep, rtol=1e-4, atol=1e-4),
        ]
    return out


def _attention_cases(lengths: Sequence[int], rep: int, batch: int = 8) -> list[Case]:
    out = []
    for length in lengths:
        q, k, v = (_randn(batch, 8, length, 64, seed=i) for i in range(3))
        out.append(Case("transformer.scaled_dot_product_attention", "F.scaled_dot_product_attention",
                        f"[{batch}, 8, {length}, 64]", length,
                        lambda q=q, k=k, v=v: transformer.scaled_dot_product_attention(q, k, v),
                        lambda q=q, k=k, v=v: F.scaled_dot_product_attention(q, k, v),
                        representative=length == rep, pick=lambda r: r[0] if isinstance(r, tuple) else r,
                        rtol=1e-4, atol=1e-4))
        torch.manual_seed(0)
        ours = transformer.MultiHeadAttention(256, 8).eval()
        ref = nn.MultiheadAttention(256, 8, batch_first=True).eval()
        with torch.no_grad():  # the same weights: in_proj is W^Q, W^K, W^V stacked
            ref.in_proj_weight.copy_(torch.cat([ours.w_q.weight, ours.w_k.weight, ours.w_v.weight]))
            ref.in_proj_bias.copy_(torch.cat([ours.w_q.bias, ours.w_k.bias, ours.w_v.bias]))
            ref.out_proj.weight.copy_(ours.w_o.weight)
            ref.out_proj.bias.copy_(ours.w_o.bias)
        e = _randn(batch, length, 256, seed=3)
        out.append(Case("transformer.MultiHeadAttention", "nn.MultiheadAttention", f"[{batch}, {length}, 256], 8 heads",
                        length,
                        lambda m=ours, e=e: m(e, e, e),
                        lambda m=ref, e=e: m(e, e, e, need_weights=False),
                        representative=length == rep, pick=lambda r: r[0], rtol=1e-4, atol=1e-4))
    return out


def _rnn_cases(lengths: Sequence[int], rep: int, batch: int = 32, hidden: int = 128) -> list[Case]:
    out = []
    for length in lengths:
        x = _randn(length, batch, hidden)
        for name, cell_cls, lib_cls in (("LSTMCell", rnn.LSTMCell, nn.LSTM), ("GRUCell", rnn.GRUCell, nn.GRU)):
            torch.manual_seed(0)
            cell, lib = cell_cls(hidden, hidden), lib_cls(hidden, hidden)
            with torch.no_grad():
                for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(lib, p + "_l0").copy_(getattr(cell, p))
            out.append(Case(f"rnn.unroll({name})", f"nn.{lib_cls.__name__}", f"L={length}, N={batch}, I=H={hidden}",
                            length,
                            lambda c=cell, x=x: rnn.unroll(c, x), lambda m=lib, x=x: m(x),
                            kind="loop", representative=length == rep, pick=lambda r: r[0], rtol=1e-4, atol=1e-4))
    return out


def _classic_cases(counts: Sequence[int], rep: int) -> list[Case]:
    from skimage.feature import hog, local_binary_pattern  # noqa: PLC0415

    out = []
    rng = np.random.default_rng(0)
    for n in counts:
        images = rng.integers(0, 256, size=(n, 64, 64)).astype(np.float32)
        ints = images.astype(np.uint8)

        def sk_hog(images=images):
            return np.stack([hog(im, orientations=9, pixels_per_cell=(8, 8), cells_per_block=(2, 2)) for im in images])

        def sk_lbp(ints=ints):
            codes = [local_binary_pattern(im, 8, 1.0, method="uniform") for im in ints]
            return np.stack([np.bincount(c.astype(int).ravel(), minlength=10) / c.size for c in codes])

        out += [
            Case("classic.hog_features", "skimage.feature.hog (per image)", f"[{n}, 64, 64], 8×8 cells", n,
                 lambda im=images: classic.hog_features(im, pixels_per_cell=(8, 8)), sk_hog,
                 representative=n == rep, rtol=1e-5, atol=1e-5),
            Case("classic.lbp_histogram", "skimage.feature.local_binary_pattern (per image)", f"[{n}, 64, 64], P=8, R=1",
                 n, lambda im=ints: classic.lbp_histogram(im), sk_lbp, representative=n == rep),
        ]
    return out


def _smote_cases(counts: Sequence[int], rep: int) -> list[Case]:
    from imblearn.over_sampling import SMOTE  # noqa: PLC0415

    out = []
    for m in counts:
        rng = np.random.default_rng(m)
        minority = m // 10
        X = np.concatenate([rng.normal(size=(m - minority, 16)), rng.normal(2.0, 1.0, size=(minority, 16))])
        y = np.repeat([0, 1], [m - minority, minority])
        out.append(Case("augment.smote", "imblearn SMOTE", f"{m} rows, 16 features, {minority} minority", m,
                        lambda X=X, y=y: augment.smote(X, y, k_neighbors=5, random_state=0),
                        lambda X=X, y=y: SMOTE(k_neighbors=5, random_state=0).fit_resample(X, y),
                        representative=m == rep, pick=lambda r: r[0]))
    return out


def _param_list(n_tensors: int, numel: int, seed: int) -> list[torch.Tensor]:
    """``n_tensors`` parameters of about ``numel`` elements in total, with fixed gradients."""
    g = _gen(seed)
    params = []
    for _ in range(n_tensors):
        p = torch.randn(max(numel // n_tensors, 1), generator=g).requires_grad_()
        p.grad = torch.randn(p.shape, generator=g)
        params.append(p)
    return params


def _optim_cases(
    numels: Sequence[int], rep: int, n_tensors: int = 40, optimizers: Sequence[str] = ("SGD", "Adam")
) -> list[Case]:
    out = []
    for numel in numels:
        for name, ours_cls, lib_cls, kw in (
            ("SGD", optim.SGD, torch.optim.SGD, {"lr": 0.01, "momentum": 0.9}),
            ("Adam", optim.Adam, torch.optim.Adam, {"lr": 1e-3}),
        ):
            if name not in optimizers:
                continue
            for foreach in (False, True):
                p_ours, p_ref = _param_list(n_tensors, numel, 0), _param_list(n_tensors, numel, 0)
                opt_ours, opt_ref = ours_cls(p_ours, **kw), lib_cls(p_ref, foreach=foreach, **kw)
                initial = [p.detach().clone() for p in p_ours]

                def step(opt, params):
                    opt.step()
                    return params

                def reset(opts=(opt_ours, opt_ref), params=(p_ours, p_ref), initial=initial):
                    with torch.no_grad():
                        for opt, ps in zip(opts, params):
                            opt.state.clear()  # no momentum, step 0
                            for p, p0 in zip(ps, initial):
                                p.copy_(p0)

                out.append(Case(f"optim.{name}.step", f"torch.optim.{name}(foreach={foreach})",
                                f"{n_tensors} tensors, {numel:,} values", numel,
                                lambda o=opt_ours, p=p_ours: step(o, p), lambda o=opt_ref, p=p_ref: step(o, p),
                                kind="loop", representative=numel == rep,
                                pick=lambda ps: torch.cat([p.detach() for p in ps]), rtol=1e-5, atol=1e-6, reset=reset))
    return out


def cases(scale: str = "full") -> list[Case]:
    """All benchmark cases; ``scale="reduced"`` gives the small set of the appendix (one size per op).

    Args:
        scale: ``"full"`` (several sizes per op, for ``make bench``) or ``"reduced"``.

    Returns:
        list of :class:`Case`; the representative size of each op is marked.
    """
    if scale not in ("full", "reduced"):
        raise ValueError(f"cases: scale must be one of ('full', 'reduced'); got {scale!r}")
    if scale == "full":
        return [
            *_conv_cases([(32, 8), (32, 16), (32, 32), (16, 64)], (32, 32)),
            *_conv_transpose_cases([(32, 8), (32, 16), (32, 32)], (32, 16)),
            *_deform_cases([(8, 16), (8, 32), (8, 64)], (8, 32)),
            *_norm_cases([(32, 8), (32, 16), (32, 32)], (32, 32)),
            *_pool_cases([(32, 16), (32, 32), (32, 64)], (32, 32)),
            *_roi_cases([8, 32, 64], 32),
            *_attention_cases([64, 128, 256, 512], 256),
            *_rnn_cases([16, 64, 256], 64),
            *_classic_cases([16, 64, 256], 64),
            *_smote_cases([500, 2000, 8000], 2000),
            *_optim_cases([10_000, 100_000, 1_000_000], 100_000),
        ]
    return [
        *_conv_cases([(4, 16)], (4, 16)),
        *_conv_transpose_cases([(4, 16)], (4, 16)),
        *_deform_cases([(4, 16)], (4, 16)),
        *_norm_cases([(8, 16)], (8, 16)),
        *_pool_cases([(4, 32)], (4, 32)),
        *_roi_cases([8], 8),
        *_attention_cases([128], 128, batch=4),
        *_rnn_cases([32], 32, batch=16),
        *_classic_cases([8], 8),
        *_smote_cases([1000], 1000),
        *_optim_cases([100_000], 100_000, optimizers=("Adam",)),
    ]


# ----------------------------------------------------------------------------------------
# Timing and reports
# ----------------------------------------------------------------------------------------


def measure(
    case: Case, threads: int = 1, min_run_time: float = 0.2, *, check: bool = True, rounds: int = 7
) -> Result:
    """Median seconds per call of ``case.ours`` and ``case.reference`` with ``threads`` threads.

    The warm-up call is :meth:`Case.check`, so a case whose two sides disagree is never timed.
    Then one timed call of each side sets the block size: ``number`` calls per block, so that a
    block lasts about ``min_run_time / rounds`` seconds. ``rounds`` blocks of each side are timed
    *alternately* (``torch.utils.benchmark.Timer.timeit``), ours, library, ours, library..., so
    that a burst of load from other programs on the machine slows down both sides rather than
    one; the result is the median time per call over the blocks of each side. An op slower than
    a block gets 3 blocks of one call (``Timer.timeit`` warms up twice before each block).

    Args:
        case: the case to time.
        threads: torch's intra-op threads during the measurement (restored afterwards).
        min_run_time: about the seconds spent timing each side.
        check: warm up with :meth:`Case.check`; ``False`` only calls both sides once (for timing
            a single function, with a trivial ``reference``).
        rounds: blocks per side.

    Returns:
        a :class:`Result`.
    """
    caller = "measure"
    _v.instance("case", case, caller=caller, types=Case)
    threads = _v.integer("threads", threads, caller=caller, minimum=1)
    min_run_time = _v.real("min_run_time", min_run_time, caller=caller, low=0.0, low_open=True)
    rounds = _v.integer("rounds", rounds, caller=caller, minimum=1)
    if check:
        case.check()  # warm-up (first-call allocations, lazy imports) that also proves both sides agree
    with torch.no_grad():
        if not check:
            case.ours(), case.reference()  # warm-up only
        timers = [benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=threads) for fn in (case.ours, case.reference)]
        once = []  # seconds of one call of each side, to size the blocks
        for fn in (case.ours, case.reference):
            start = time.perf_counter()
            fn()
            once.append(max(time.perf_counter() - start, 1e-9))
        block = min_run_time / rounds  # seconds per block
        numbers = [max(1, round(block / t)) for t in once]  # calls per block
        if min(numbers) == 1:  # a slow op: a few single-call blocks are enough
            rounds = min(rounds, 3)
        samples: list[list[float]] = [[], []]
        for _ in range(rounds):
            for timer, number, times in zip(timers, numbers, samples):
                times.append(timer.timeit(number).median)  # seconds per call in this block
    ours, ref = (statistics.median(times) for times in samples)
    return Result(case.op, case.library, case.size, case.scale, case.kind, case.representative, threads, ours, ref)


def run(
    all_cases: Sequence[Case],
    threads: Sequence[int] = (1,),
    min_run_time: float = 0.2,
    progress: Callable[[Result], None] | None = None,
    rounds: int = 7,
) -> list[Result]:
    """:func:`measure` every case at every thread count; ``progress`` is called after each result."""
    _v.instance("all_cases", all_cases, caller="run", types=(list, tuple))
    for i, case in enumerate(all_cases):
        _v.instance(f"all_cases[{i}]", case, caller="run", types=Case)
    threads = _v.int_sequence("threads", threads, caller="run", minimum=1)
    results = []
    before = torch.get_num_threads()
    try:
        for t in threads:
            torch.set_num_threads(t)  # for the whole pass: switching thread pools per block costs time
            for case in all_cases:
                results.append(measure(case, t, min_run_time, rounds=rounds))
                if progress is not None:
                    progress(results[-1])
    finally:
        torch.set_num_threads(before)
    return results


def _check_results(results: object, caller: str) -> None:
    _v.instance("results", results, caller=caller, types=(list, tuple))
    for i, r in enumerate(results):
        _v.instance(f"results[{i}]", r, caller=caller, types=Result)


def ratio_class(ratio: float) -> str:
    """The coarse class of a ratio: ``"<1.5×"``, ``"1.5–3×"``, ``"3–10×"`` or ``">10×"``."""
    ratio = _v.real("ratio", ratio, caller="ratio_class", low=0.0, low_open=True, finite=False)
    for bound, label in RATIO_CLASSES:
        if ratio < bound:
            return label
    raise ValueError(f"ratio_class: ratio must be a number; got {ratio!r}")


def _fmt_time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} µs"


def to_markdown(results: Sequence[Result]) -> str:
    """A Markdown report: one table per thread count, plus the representative sizes against the 3× target."""
    _check_results(results, "to_markdown")
    lines = [
        "# Benchmark: from-scratch dlkb ops vs the library ops",
        "",
        f"torch {torch.__version__}, {platform.machine()}, {torch.get_num_threads()} threads available "
        f"(`torch.get_num_threads()`), {platform.processor() or platform.platform()}.",
        "Median time per call over blocks timed alternately, dlkb then library (`torch.utils.benchmark.Timer.timeit`).",
        "ratio = dlkb time / library time; **bold** rows are the representative sizes of the appendix.",
        "Kind `loop`: a sequential Python loop (time steps, parameter tensors), where a gap is expected.",
        "Tables with more than one thread are only meaningful on an otherwise idle machine: when other programs",
        "keep the cores busy, every parallel region waits for its slowest thread.",
        "",
    ]
    for t in sorted({r.threads for r in results}):
        lines += [f"## {t} thread{'s' if t > 1 else ''}", "",
                  "| op | library | size | dlkb | library | ratio | kind |",
                  "| --- | --- | --- | ---: | ---: | ---: | --- |"]
        for r in (r for r in results if r.threads == t):
            row = (f"| {r.op} | {r.library} | {r.size} | {_fmt_time(r.ours_s)} | {_fmt_time(r.reference_s)} | "
                   f"{r.ratio:.2f}× | {r.kind} |")
            lines.append(row.replace(f"| {r.op} |", f"| **{r.op}** |", 1) if r.representative else row)
        lines.append("")
    lines += ["## Representative sizes against the 3× target (vectorised ops)", "",
              "| op | size | threads | ratio | within 3× |", "| --- | --- | ---: | ---: | --- |"]
    for r in results:
        if r.representative and r.kind == "vectorised":
            lines.append(f"| {r.op} | {r.size} | {r.threads} | {r.ratio:.2f}× | {'yes' if r.ratio <= 3 else 'no'} |")
    return "\n".join(lines) + "\n"


def to_json(results: Sequence[Result]) -> str:
    """The results as JSON (a list of objects with the :class:`Result` fields and ``ratio``)."""
    _check_results(results, "to_json")
    rows = [{**asdict(r), "ratio": r.ratio} for r in results]
    meta = {"torch": torch.__version__, "machine": platform.machine(), "threads_available": torch.get_num_threads()}
    return json.dumps({"meta": meta, "results": rows}, indent=1, ensure_ascii=False)
