r"""Pooling: max and average pooling, spatial pyramid pooling, RoI pooling and RoI Align,
stochastic pooling and max unpooling, written from elementary tensor operations.

Shape letters: N batch, C channels, H and W the height and width of a feature map,
K the number of regions of interest (boxes), h and w the height and width of a
pooled output, k a window (kernel) size, s a stride, p a padding.

Every function takes ``x`` as Tensor[N, C, H, W] of floating point and equals a
library function, which the tests and the chapter check it against:

- ``max_pool2d``: ``torch.nn.functional.max_pool2d``;
- ``avg_pool2d``: ``torch.nn.functional.avg_pool2d`` (``count_include_pad=True``);
- ``spatial_pyramid_pool``: ``F.adaptive_max_pool2d`` / ``F.adaptive_avg_pool2d`` per level, concatenated;
- ``roi_pool``: ``torchvision.ops.roi_pool``;
- ``roi_align``: ``torchvision.ops.roi_align``;
- ``stochastic_pool2d``: no library version; the formulas of Zeiler & Fergus (2013);
- ``max_unpool2d``: ``torch.nn.functional.max_unpool2d``;
- ``gem_pool2d``: ``F.lp_pool2d`` over the whole map divided by :math:`(HW)^{1/p}`;
- ``blur_pool2d`` / ``max_blur_pool2d``: a depthwise ``F.conv2d`` with the binomial kernel
  (after ``F.max_pool2d`` with stride 1 for the latter).

Papers: LeCun et al. 1998 (subsampling layers); Krizhevsky et al. 2012 (overlapping
pooling, Sec. 3.4); Lin et al. 2014 (global average pooling, Sec. 3.2); He et al.
2014 (spatial pyramid pooling, Sec. 2.3); Girshick 2015 (RoI pooling, Sec. 2.1);
He et al. 2017 (RoI Align, Sec. 3); Zeiler & Fergus 2013 (stochastic pooling,
Eqs. (3)-(5)); Zeiler & Fergus 2014 and Badrinarayanan et al. 2017 (max unpooling
with switches / pooling indices); Radenović, Tolias & Chum 2019 (generalized-mean
pooling, GeM); Zhang 2019, "Making Convolutional Networks Shift-Invariant Again"
(anti-aliased, blur pooling).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dlkb import _validate as _v

__all__ = [
    "max_pool2d",
    "avg_pool2d",
    "spatial_pyramid_pool",
    "roi_pool",
    "roi_align",
    "stochastic_pool2d",
    "max_unpool2d",
    "gem_pool2d",
    "blur_pool2d",
    "max_blur_pool2d",
    "SpatialPyramidPooling",
    "StochasticPool2d",
]


# --------------------------------------------------------------------------- validation


def _check_input(x: object, caller: str, name: str = "x") -> None:
    """``x`` must be a floating-point Tensor[N, C, H, W]."""
    _v.instance(name, x, caller=caller, types=torch.Tensor)
    if x.ndim != 4:
        raise ValueError(f"{caller}: {name} must be a 4-D tensor (N, C, H, W); got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{caller}: {name} must have a floating-point dtype; got {x.dtype}")
    if x.shape[-2] == 0 or x.shape[-1] == 0:
        raise ValueError(f"{caller}: {name} must have H >= 1 and W >= 1; got shape {tuple(x.shape)}")


def _window_args(
    x: torch.Tensor, kernel_size: object, stride: object, padding: object, caller: str
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """Validated ``(kernel, stride, padding)`` pairs for a pooling window sliding over ``x``."""
    k = _v.pair("kernel_size", kernel_size, caller=caller, minimum=1)
    s = k if stride is None else _v.pair("stride", stride, caller=caller, minimum=1)
    p = _v.pair("padding", padding, caller=caller, minimum=0)
    if 2 * p[0] > k[0] or 2 * p[1] > k[1]:
        raise ValueError(f"{caller}: padding must be at most half of kernel_size {k}; got {p}")
    H, W = x.shape[-2:]
    if k[0] > H + 2 * p[0] or k[1] > W + 2 * p[1]:
        raise ValueError(
            f"{caller}: kernel_size {k} must fit in the padded input {(H + 2 * p[0], W + 2 * p[1])} "
            f"(input {(H, W)}, padding {p})"
        )
    return k, s, p


def _windows(x: torch.Tensor, k: tuple[int, int], s: tuple[int, int], p: tuple[int, int], fill: float):
    """All pooling windows of ``x`` padded with ``fill``: Tensor[N, C, H_out, W_out, k_h * k_w]."""
    if p != (0, 0):
        x = F.pad(x, (p[1], p[1], p[0], p[0]), value=fill)  # [N, C, H + 2p_h, W + 2p_w]
    win = x.unfold(2, k[0], s[0]).unfold(3, k[1], s[1])  # [N, C, H_out, W_out, k_h, k_w] (a view)
    return win.reshape(*win.shape[:4], k[0] * k[1])  # [N, C, H_out, W_out, k_h * k_w]


# --------------------------------------------------------------------------- max / average


def max_pool2d(
    x: torch.Tensor,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, int] = 0,
) -> torch.Tensor:
    r"""Max pooling: the largest value of each ``kernel_size`` window, windows ``stride`` apart.

    .. math::

        y_{n,c,i,j} = \max_{0 \le u < k_h,\ 0 \le v < k_w} x_{n,c,\,s_h i + u - p_h,\,s_w j + v - p_w},
        \qquad H_{out} = \left\lfloor \frac{H + 2p_h - k_h}{s_h} \right\rfloor + 1,

    with the padded positions equal to :math:`-\infty` so they never win (LeCun et al. 1998
    used subsampling; max pooling as used since Krizhevsky et al. 2012, Sec. 3.4).
    Equals ``F.max_pool2d(x, kernel_size, stride, padding)``; the gradient goes to one
    maximum of each window.

    Args:
        x (Tensor[N, C, H, W]): floating-point input.
        kernel_size: window size ``k`` or ``(k_h, k_w)``.
        stride: step between windows; ``None`` means ``kernel_size`` (non-overlapping).
        padding: implicit ``-inf`` border on each side, at most half the kernel.

    Returns:
        Tensor[N, C, H_out, W_out].

    Raises:
        TypeError: ``x`` not a floating-point tensor, or a size not an int / pair of ints.
        ValueError: ``x`` not 4-D, a size out of range, or the kernel larger than the padded input.
    """
    _check_input(x, "max_pool2d")
    k, s, p = _window_args(x, kernel_size, stride, padding, "max_pool2d")
    win = _windows(x, k, s, p, fill=-math.inf)  # [N, C, H_out, W_out, k_h * k_w]
    return win.max(dim=-1).values  # [N, C, H_out, W_out]


def avg_pool2d(
    x: torch.Tensor,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, int] = 0,
) -> torch.Tensor:
    r"""Average pooling: the mean of each window, zero padding counted in the mean.

    .. math::

        y_{n,c,i,j} = \frac{1}{k_h k_w} \sum_{u=0}^{k_h-1} \sum_{v=0}^{k_w-1}
        x_{n,c,\,s_h i + u - p_h,\,s_w j + v - p_w},

    with zeros outside the input, so a window that overlaps the padding is divided by
    :math:`k_h k_w` all the same. Equals ``F.avg_pool2d(x, kernel_size, stride, padding,
    count_include_pad=True)`` (PyTorch's default).

    Args:
        x (Tensor[N, C, H, W]): floating-point input.
        kernel_size: window size ``k`` or ``(k_h, k_w)``.
        stride: step between windows; ``None`` means ``kernel_size``.
        padding: implicit zero border on each side, at most half the kernel.

    Returns:
        Tensor[N, C, H_out, W_out], sizes as in :func:`max_pool2d`.

    Raises:
        TypeError: ``x`` not a floating-point tensor, or a size not an int / pair of ints.
        ValueError: ``x`` not 4-D, a size out of range, or the kernel larger than the padded input.
    """
    _check_input(x, "avg_pool2d")
    k, s, p = _window_args(x, kernel_size, stride, padding, "avg_pool2d")
    win = _windows(x, k, s, p, fill=0.0)  # [N, C, H_out, W_out, k_h * k_w]
    return win.mean(dim=-1)  # [N, C, H_out, W_out]


# --------------------------------------------------------------------------- spatial pyramid


def _max_over_bins(
    feats: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, empty: torch.Tensor | None = None
) -> torch.Tensor:
    """Maximum of ``feats`` (Tensor[B, C, H, W]) over rectangular bins, as the C++ kernels compute it.

    Bin ``(i, j)`` holds the rows where ``rows[b, i]`` (Tensor[B or 1, h, H], bool) and the columns
    where ``cols[b, j]`` (Tensor[B or 1, w, W], bool) are True. The maximum of a rectangle is the
    maximum over its columns of the column maxima, so one bin axis is expanded at a time
    ([B, C, h, H, W], then [B, C, h, w, W]) instead of a [B, C, h, w, H, W] mask. The
    output is gathered from the first maximum in row-major order, as the loops of
    ``F.adaptive_max_pool2d`` and ``torchvision.ops.roi_pool`` pick it, so that the gradient goes
    to the same position even when several values tie. Bins marked in ``empty`` (Tensor[B, h, w])
    give 0. Returns Tensor[B, C, h, w].
    """
    B, C, H, W = feats.shape
    neg_inf = torch.tensor(-math.inf, dtype=feats.dtype, device=feats.device)
    masked = torch.where(rows[:, None, :, :, None], feats[:, :, None], neg_inf)  # [B, C, h, H, W]
    col_max, col_row = masked.max(dim=3)  # [B, C, h, W]: max of each column in each row bin, first row
    in_bin = cols[:, None, None]  # [B or 1, 1, 1, w, W]
    cand = torch.where(in_bin, col_max[:, :, :, None], neg_inf)  # [B, C, h, w, W]
    best = cand.max(dim=4).values  # [B, C, h, w], the bin maxima
    ties = in_bin & ((cand == best[..., None]) | cand.isnan())  # [B, C, h, w, W], columns reaching the maximum
    row = torch.where(ties, col_row[:, :, :, None], H).min(dim=4).values  # [B, C, h, w], its first row
    col = (ties & (col_row[:, :, :, None] == row[..., None])).to(torch.uint8).argmax(dim=4)  # first column there
    flat = (row.clamp(max=H - 1) * W + col).flatten(2)  # [B, C, h * w], in range even for empty bins
    out = feats.reshape(B, C, H * W).gather(2, flat).reshape(best.shape)  # [B, C, h, w]
    if empty is not None:
        out = torch.where(empty[:, None], torch.zeros((), dtype=feats.dtype, device=feats.device), out)
    return out


def _adaptive_bins(size: int, n: int, device: torch.device) -> torch.Tensor:
    r"""Membership matrix Tensor[n, size] of adaptive bins: bin ``i`` covers
    :math:`[\lfloor i\,a/n \rfloor, \lceil (i+1)\,a/n \rceil)` of an axis of length ``a``."""
    i = torch.arange(n, device=device)
    start = (i * size) // n  # [n]
    end = ((i + 1) * size + n - 1) // n  # [n], integer ceil
    pos = torch.arange(size, device=device)  # [a]
    return (pos >= start[:, None]) & (pos < end[:, None])  # [n, a]


def _adaptive_pool2d(x: torch.Tensor, n: int, mode: str) -> torch.Tensor:
    """Adaptive max/avg pooling of ``x`` (Tensor[N, C, H, W]) to Tensor[N, C, n, n]."""
    H, W = x.shape[-2:]
    rows = _adaptive_bins(H, n, x.device)  # [n, H]
    cols = _adaptive_bins(W, n, x.device)  # [n, W]
    if mode == "avg":
        r = rows.to(x.dtype) / rows.sum(1, keepdim=True)  # [n, H], each row averages its bin
        c = cols.to(x.dtype) / cols.sum(1, keepdim=True)  # [n, W]
        return torch.einsum("ih,nchw,jw->ncij", r, x, c)  # [N, C, n, n]
    return _max_over_bins(x, rows[None], cols[None])  # [N, C, n, n]


def spatial_pyramid_pool(x: torch.Tensor, levels: Sequence[int] = (1, 2, 4), mode: str = "max") -> torch.Tensor:
    r"""Spatial pyramid pooling: a fixed-length vector from a feature map of any size.

    Level :math:`n` splits the map into :math:`n \times n` bins and pools each, so the output
    has :math:`C \sum_n n^2` entries whatever :math:`H, W` are (He et al. 2014, Sec. 2.3).
    Bin :math:`i` of an axis of length :math:`a` is
    :math:`[\lfloor i a/n \rfloor, \lceil (i+1) a/n \rceil)`, as in adaptive pooling.

    This deviates from the paper on purpose: its sliding window of size
    :math:`\lceil a/n \rceil` and stride :math:`\lfloor a/n \rfloor` gives the wrong number
    of bins for some sizes (``a = 6, n = 4`` gives 5) and a zero stride when ``a < n``;
    adaptive bins always give exactly ``n``.

    Equals ``torch.cat([F.adaptive_max_pool2d(x, n).flatten(1) for n in levels], 1)``
    (``adaptive_avg_pool2d`` for ``mode="avg"``).

    Args:
        x (Tensor[N, C, H, W]): floating-point feature map.
        levels: positive bin counts per side, one per pyramid level.
        mode: ``"max"`` or ``"avg"``.

    Returns:
        Tensor[N, C * sum(n * n for n in levels)], level by level, each flattened as (C, n, n).

    Raises:
        TypeError: ``x`` not a floating-point tensor, or ``levels`` not a sequence of ints.
        ValueError: ``x`` not 4-D or empty, ``levels`` empty or not positive, or an unknown ``mode``.
    """
    _check_input(x, "spatial_pyramid_pool")
    levels = _v.int_sequence("levels", levels, caller="spatial_pyramid_pool", minimum=1)
    _v.choice("mode", mode, caller="spatial_pyramid_pool", choices=("max", "avg"))
    return torch.cat([_adaptive_pool2d(x, n, mode).flatten(1) for n in levels], dim=1)  # [N, C * sum n^2]


# --------------------------------------------------------------------------- regions of interest


def _check_boxes(x: torch.Tensor, boxes: object, caller: str) -> None:
    """``boxes`` must be Tensor[K, 5] rows ``(batch_index, x1, y1, x2, y2)`` with x1 <= x2, y1 <= y2."""
    _v.instance("boxes", boxes, caller=caller, types=torch.Tensor)
    if boxes.ndim != 2 or boxes.shape[1] != 5:
        raise ValueError(
            f"{caller}: boxes must have shape (K, 5) with rows (batch_index, x1, y1, x2, y2); "
            f"got {tuple(boxes.shape)}"
        )
    if boxes.dtype != x.dtype or boxes.device != x.device:
        raise TypeError(
            f"{caller}: boxes must have the dtype and device of x ({x.dtype}, {x.device}); "
            f"got ({boxes.dtype}, {boxes.device})"
        )
    if boxes.shape[0] == 0:
        return
    b = boxes.detach()
    if not torch.isfinite(b).all():
        raise ValueError(f"{caller}: boxes must be finite; got non-finite values")
    index = b[:, 0]
    if ((index != index.round()) | (index < 0) | (index >= x.shape[0])).any():
        raise ValueError(
            f"{caller}: boxes[:, 0] must hold integer batch indices in [0, {x.shape[0]}); "
            f"got {index.tolist()}"
        )
    bad = (b[:, 3] < b[:, 1]) | (b[:, 4] < b[:, 2])
    if bad.any():
        raise ValueError(
            f"{caller}: boxes must have x1 <= x2 and y1 <= y2; got {b[bad][0].tolist()} (first bad row)"
        )


def _output_size(output_size: object, caller: str) -> tuple[int, int]:
    return _v.pair("output_size", output_size, caller=caller, minimum=1)


def _check_scale(spatial_scale: object, caller: str) -> float:
    return _v.real("spatial_scale", spatial_scale, caller=caller, low=0.0, low_open=True)


def _round_half_away(v: torch.Tensor) -> torch.Tensor:
    """C's ``round``: halves go away from zero (``torch.round`` rounds halves to even)."""
    return torch.sign(v) * torch.floor(v.abs() + 0.5)


def roi_pool(
    x: torch.Tensor,
    boxes: torch.Tensor,
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
) -> torch.Tensor:
    r"""RoI (max) pooling of Fast R-CNN (Girshick 2015, Sec. 2.1), with its two quantizations.

    1. The box, scaled to the feature map by ``spatial_scale``, is rounded to whole cells:
       :math:`x_1' = \operatorname{round}(s x_1)`, :math:`x_2' = \operatorname{round}(s x_2)`,
       width :math:`w = \max(x_2' - x_1' + 1, 1)` (the same for :math:`y`).
    2. Bin :math:`j` of :math:`w_{out}` covers cells
       :math:`[x_1' + \lfloor j w / w_{out} \rfloor,\ x_1' + \lceil (j+1) w / w_{out} \rceil)`,
       clipped to the map; each bin takes its maximum, and an empty bin gives 0.

    Rounding is C's (halves away from zero) and the arithmetic is in ``x``'s dtype, as in
    ``torchvision.ops.roi_pool``, which this equals. No gradient flows to ``boxes``.

    Args:
        x (Tensor[N, C, H, W]): floating-point feature map.
        boxes (Tensor[K, 5]): rows ``(batch_index, x1, y1, x2, y2)`` in input-image coordinates,
            same dtype and device as ``x``.
        output_size: ``(h, w)`` bins per box, or an int for both.
        spatial_scale: feature-map cells per input pixel (1/16 for a stride-16 backbone).

    Returns:
        Tensor[K, C, h, w].

    Raises:
        TypeError: wrong types, or ``boxes`` of another dtype or device than ``x``.
        ValueError: ``x`` not 4-D, malformed ``boxes``, bad ``output_size`` or ``spatial_scale``.
    """
    _check_input(x, "roi_pool")
    _check_boxes(x, boxes, "roi_pool")
    oh, ow = _output_size(output_size, "roi_pool")
    scale = _check_scale(spatial_scale, "roi_pool")
    H, W = x.shape[-2:]
    b = boxes.detach()
    x1, y1, x2, y2 = (_round_half_away(b[:, i] * scale) for i in range(1, 5))  # [K] each, whole cells
    roi_h = torch.clamp(y2 - y1 + 1, min=1)  # [K]
    roi_w = torch.clamp(x2 - x1 + 1, min=1)  # [K]

    def bins(start, length, n_bins, size):  # -> membership Tensor[K, n_bins, size], empty Tensor[K, n_bins]
        step = length / n_bins  # [K], bin size in cells, in x's dtype
        j = torch.arange(n_bins, device=x.device, dtype=x.dtype)  # [n_bins]
        lo = torch.floor(j * step[:, None]) + start[:, None]  # [K, n_bins]
        hi = torch.ceil((j + 1) * step[:, None]) + start[:, None]  # [K, n_bins]
        lo, hi = lo.clamp(0, size), hi.clamp(0, size)
        pos = torch.arange(size, device=x.device, dtype=x.dtype)  # [size]
        return (pos >= lo[..., None]) & (pos < hi[..., None]), hi <= lo

    rows, empty_r = bins(y1, roi_h, oh, H)  # [K, h, H], [K, h]
    cols, empty_c = bins(x1, roi_w, ow, W)  # [K, w, W], [K, w]
    feats = x[b[:, 0].long()]  # [K, C, H, W], the image each box belongs to
    return _max_over_bins(feats, rows, cols, empty_r[:, :, None] | empty_c[:, None, :])  # [K, C, h, w]


def _bilinear_weights(coord: torch.Tensor, valid: torch.Tensor, size: int) -> torch.Tensor:
    r"""Weights Tensor[..., size] that interpolate linearly at ``coord`` along an axis of
    ``size`` cells, following torchvision's ``bilinear_interpolate``: a sample beyond
    :math:`[-1, \text{size}]` is 0, one in :math:`[-1, 0]` is clamped to 0, one past the last
    cell takes the last cell; ``valid`` False zeroes the sample."""
    inside = (coord >= -1.0) & (coord <= size) & valid
    c = coord.clamp(min=0)
    low = torch.floor(c)  # c >= 0, so floor equals C's truncation
    at_end = low >= size - 1
    low = torch.where(at_end, torch.full_like(low, size - 1), low)
    high = torch.where(at_end, low, low + 1)
    frac = torch.where(at_end, torch.zeros_like(c), c - low)  # distance to the lower cell
    pos = torch.arange(size, device=coord.device, dtype=coord.dtype)
    w = (1 - frac)[..., None] * (pos == low[..., None]) + frac[..., None] * (pos == high[..., None])
    return w * inside[..., None]  # [..., size]


def roi_align(
    x: torch.Tensor,
    boxes: torch.Tensor,
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> torch.Tensor:
    r"""RoI Align of Mask R-CNN (He et al. 2017, Sec. 3): RoI pooling without quantization.

    The scaled box keeps real coordinates (minus half a cell when ``aligned``, so a pixel's
    centre sits at integer + 0.5). Each of the :math:`h \times w` bins averages
    :math:`g_h \times g_w` regularly spaced samples, each read from the map by bilinear
    interpolation:

    .. math::

        y_{k,c,i,j} = \frac{1}{g_h g_w} \sum_{a=0}^{g_h-1} \sum_{b=0}^{g_w-1}
        \operatorname{bilinear}\Bigl(x_{n_k,c},\ y_1 + (i + \tfrac{a + 0.5}{g_h}) \tfrac{h_k}{h},\
        x_1 + (j + \tfrac{b + 0.5}{g_w}) \tfrac{w_k}{w}\Bigr),

    with :math:`g = ` ``sampling_ratio`` if positive, else :math:`\lceil h_k / h \rceil` per box;
    without ``aligned`` a box is at least one cell wide. Bilinear interpolation is separable,
    so the sum is a product of per-axis weight matrices with the map (one ``einsum``).
    The paper averages or maxes 4 samples per bin; like torchvision, this averages.
    Equals ``torchvision.ops.roi_align``; no gradient flows to ``boxes``.

    Args:
        x (Tensor[N, C, H, W]): floating-point feature map.
        boxes (Tensor[K, 5]): rows ``(batch_index, x1, y1, x2, y2)``, same dtype and device as ``x``.
        output_size: ``(h, w)`` bins per box, or an int for both.
        spatial_scale: feature-map cells per input pixel.
        sampling_ratio: samples per bin along each axis; ``<= 0`` means adaptive.
        aligned: shift the box by -0.5 cell (the corrected convention of Detectron2).

    Returns:
        Tensor[K, C, h, w].

    Raises:
        TypeError: wrong types, or ``boxes`` of another dtype or device than ``x``.
        ValueError: ``x`` not 4-D, malformed ``boxes``, bad ``output_size`` or ``spatial_scale``.
    """
    _check_input(x, "roi_align")
    _check_boxes(x, boxes, "roi_align")
    oh, ow = _output_size(output_size, "roi_align")
    scale = _check_scale(spatial_scale, "roi_align")
    _v.integer("sampling_ratio", sampling_ratio, caller="roi_align")
    _v.boolean("aligned", aligned, caller="roi_align")
    H, W = x.shape[-2:]
    K = boxes.shape[0]
    b = boxes.detach()
    offset = 0.5 if aligned else 0.0
    x1, y1, x2, y2 = (b[:, i] * scale - offset for i in range(1, 5))  # [K] each, real coordinates
    roi_w, roi_h = x2 - x1, y2 - y1  # [K]
    if not aligned:
        roi_w, roi_h = roi_w.clamp(min=1.0), roi_h.clamp(min=1.0)

    def axis_weights(start, length, n_bins, size):  # -> (Tensor[K, n_bins, size], samples per bin Tensor[K])
        step = length / n_bins  # [K]
        if sampling_ratio > 0:
            grid = torch.full((K,), sampling_ratio, device=x.device, dtype=torch.long)
        else:
            grid = torch.ceil(length / n_bins).long()  # [K]
        g_max = max(int(grid.max()) if K else 0, 1)
        j = torch.arange(n_bins, device=x.device, dtype=x.dtype)[:, None]  # [n_bins, 1]
        a = torch.arange(g_max, device=x.device, dtype=x.dtype)  # [g_max]
        g = grid.to(x.dtype)[:, None, None]  # [K, 1, 1]
        g_safe = g.clamp(min=1)  # a grid of 0 (empty aligned box) has no valid sample; avoid 0/0
        coord = start[:, None, None] + j * step[:, None, None] + (a + 0.5) * step[:, None, None] / g_safe  # [K, n_bins, g]
        valid = (a < g).expand_as(coord)  # samples beyond a box's own grid do not count
        return _bilinear_weights(coord, valid, size).sum(dim=2), grid  # [K, n_bins, size], [K]

    wy, gy = axis_weights(y1, roi_h, oh, H)  # [K, h, H], [K]
    wx, gx = axis_weights(x1, roi_w, ow, W)  # [K, w, W], [K]
    count = (gy * gx).clamp(min=1).to(x.dtype)  # [K]
    feats = x[b[:, 0].long()]  # [K, C, H, W]
    out = torch.einsum("kih,kchw,kjw->kcij", wy, feats, wx)  # [K, C, h, w], sums of samples
    return out / count[:, None, None, None]


# --------------------------------------------------------------------------- stochastic pooling


def stochastic_pool2d(
    x: torch.Tensor,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    *,
    training: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Stochastic pooling (Zeiler & Fergus 2013, Eqs. (3)-(5)) of non-negative activations.

    In each window the activations :math:`a_i \ge 0` define probabilities
    :math:`p_i = a_i / \sum_k a_k` (Eq. (3)). Training samples one position
    :math:`l \sim p` and outputs :math:`a_l` (Eq. (4)); the gradient flows to that position.
    Testing outputs the probability-weighted average (Eq. (5))

    .. math::

        s = \sum_i p_i a_i = \frac{\sum_i a_i^2}{\sum_i a_i},

    which is the expectation of the training-time output. A window of zeros gives 0 in both.
    Sampling uses the inverse CDF: with :math:`u \sim U[0, 1)`, :math:`l` is the first index
    whose cumulative sum exceeds :math:`u \sum_k a_k`, so a zero activation is never picked.

    Args:
        x (Tensor[N, C, H, W]): non-negative floating-point input (e.g. after a ReLU).
        kernel_size: window size ``k`` or ``(k_h, k_w)``.
        stride: step between windows; ``None`` means ``kernel_size``.
        training: sample (True) or take the probability-weighted average (False).
        generator: random source for the samples, on ``x``'s device.

    Returns:
        Tensor[N, C, H_out, W_out], :math:`H_{out} = \lfloor (H - k_h)/s_h \rfloor + 1`.

    Raises:
        TypeError: ``x`` not a floating-point tensor, bad ``training`` or ``generator`` types.
        ValueError: ``x`` not 4-D or with a negative entry, bad sizes.
    """
    _check_input(x, "stochastic_pool2d")
    _v.boolean("training", training, caller="stochastic_pool2d")
    if generator is not None:
        _v.instance("generator", generator, caller="stochastic_pool2d", types=torch.Generator)
    k, s, p = _window_args(x, kernel_size, stride, 0, "stochastic_pool2d")
    if (x.detach() < 0).any():
        raise ValueError(
            f"stochastic_pool2d: x must be non-negative (e.g. after a ReLU); got minimum {x.detach().min().item():.4g}"
        )
    win = _windows(x, k, s, p, fill=0.0)  # [N, C, H_out, W_out, k_h * k_w]
    total = win.sum(dim=-1)  # [N, C, H_out, W_out]
    if not training:
        safe = torch.where(total > 0, total, torch.ones_like(total))
        return torch.where(total > 0, (win * win).sum(dim=-1) / safe, torch.zeros_like(total))
    cum = win.detach().cumsum(dim=-1)  # [N, C, H_out, W_out, k_h * k_w]
    u = torch.rand(total.shape, generator=generator, device=x.device, dtype=x.dtype)  # [N, C, H_out, W_out]
    threshold = u * cum[..., -1]  # [N, C, H_out, W_out], in [0, sum)
    index = (cum <= threshold[..., None]).sum(dim=-1, keepdim=True)  # [N, C, H_out, W_out, 1]
    index = index.clamp(max=k[0] * k[1] - 1)  # rounding guard; an all-zero window picks a zero anyway
    return win.gather(-1, index).squeeze(-1)  # [N, C, H_out, W_out]


# --------------------------------------------------------------------------- unpooling


def max_unpool2d(
    x: torch.Tensor,
    indices: torch.Tensor,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    output_size: Sequence[int] | None = None,
) -> torch.Tensor:
    r"""Max unpooling: put each pooled value back where its maximum came from, zeros elsewhere.

    ``indices`` are the flat positions :math:`h W_{out} + w` of the maxima in each
    (N, C) plane, as returned by ``F.max_pool2d(..., return_indices=True)`` (the "switches"
    of Zeiler & Fergus 2014, the "pooling indices" of SegNet). The output size defaults to
    :math:`H_{out} = (H - 1) s_h + k_h`; ``output_size`` may choose another within one stride
    of it. Equals ``F.max_unpool2d(x, indices, kernel_size, stride, output_size=output_size)``.

    Args:
        x (Tensor[N, C, H, W]): pooled values.
        indices (Tensor[N, C, H, W]): int64 flat positions in the output plane.
        kernel_size: the pooling window ``k`` or ``(k_h, k_w)``.
        stride: the pooling stride; ``None`` means ``kernel_size``.
        output_size: ``(H_out, W_out)`` or ``(N, C, H_out, W_out)``.

    Returns:
        Tensor[N, C, H_out, W_out].

    Raises:
        TypeError: ``x`` not floating point, ``indices`` not an int64 tensor, bad size types.
        ValueError: shapes that differ, indices out of range, an impossible ``output_size``.
    """
    _check_input(x, "max_unpool2d")
    _v.instance("indices", indices, caller="max_unpool2d", types=torch.Tensor)
    if indices.dtype != torch.int64:
        raise TypeError(f"max_unpool2d: indices must be an int64 tensor; got {indices.dtype}")
    if indices.shape != x.shape:
        raise ValueError(
            f"max_unpool2d: indices must have the shape of x {tuple(x.shape)}; got {tuple(indices.shape)}"
        )
    if indices.device != x.device:
        raise TypeError(f"max_unpool2d: indices must be on x's device {x.device}; got {indices.device}")
    k = _v.pair("kernel_size", kernel_size, caller="max_unpool2d", minimum=1)
    s = k if stride is None else _v.pair("stride", stride, caller="max_unpool2d", minimum=1)
    N, C, H, W = x.shape
    default = ((H - 1) * s[0] + k[0], (W - 1) * s[1] + k[1])
    if output_size is None:
        size = default
    else:
        output_size = _v.int_sequence("output_size", output_size, caller="max_unpool2d", minimum=0)
        if len(output_size) not in (2, 4):
            raise ValueError(
                f"max_unpool2d: output_size must be (H_out, W_out) or (N, C, H_out, W_out); got {output_size!r}"
            )
        size = output_size[-2:]
        for d in range(2):
            if not default[d] - s[d] < size[d] < default[d] + s[d]:
                raise ValueError(
                    f"max_unpool2d: output_size must lie strictly between {(default[0] - s[0], default[1] - s[1])} "
                    f"and {(default[0] + s[0], default[1] + s[1])}; got {tuple(output_size)}"
                )
    plane = size[0] * size[1]
    if indices.numel() and (indices.min() < 0 or indices.max() >= plane):
        raise ValueError(
            f"max_unpool2d: indices must lie in [0, {plane}) for output size {size}; "
            f"got values in [{indices.min().item()}, {indices.max().item()}]"
        )
    out = x.new_zeros(N, C, plane)  # [N, C, H_out * W_out]
    out = out.scatter(2, indices.reshape(N, C, H * W), x.reshape(N, C, H * W))
    return out.reshape(N, C, *size)  # [N, C, H_out, W_out]


# --------------------------------------------------------------------------- modules


# --------------------------------------------------------------------------- GeM and blur pooling


def gem_pool2d(x: torch.Tensor, p: float | torch.Tensor = 3.0, *, eps: float = 1e-6) -> torch.Tensor:
    r"""Generalized-mean (GeM) pooling over the whole map (Radenović et al. 2019).

    .. math::
        y_{n,c} = \Big(\frac{1}{HW}\sum_{a,b} \max(x_{n,c,a,b}, \epsilon)^p\Big)^{1/p}

    :math:`p = 1` is global average pooling and :math:`p \to \infty` approaches global
    max pooling; the paper learns :math:`p` (initialised at 3). The clamp at
    :math:`\epsilon` keeps the power defined for the non-negative inputs this is meant
    for (features after a ReLU). Equals ``F.lp_pool2d(x.clamp(min=eps), p, (H, W))``
    divided by :math:`(HW)^{1/p}`.

    Args:
        x (Tensor[N, C, H, W]): floating-point feature maps.
        p: the exponent, > 0: a number, or a floating-point tensor with one element
            (for example an ``nn.Parameter``, which then receives a gradient).
        eps: :math:`\epsilon > 0`.

    Returns:
        Tensor[N, C].
    """
    caller = "gem_pool2d"
    _check_input(x, caller)
    if isinstance(p, torch.Tensor):
        _v.tensor("p", p, caller=caller, dtype="floating")
        if p.numel() != 1:
            raise ValueError(f"{caller}: p must have exactly one element; got shape {tuple(p.shape)}")
        if not bool(p.detach() > 0):
            raise ValueError(f"{caller}: p must be > 0; got {p.item()}")
        p = p.reshape(())
    else:
        p = _v.real("p", p, caller=caller, low=0.0, low_open=True)
    eps = _v.real("eps", eps, caller=caller, low=0.0, low_open=True)
    return x.clamp(min=eps).pow(p).mean(dim=(2, 3)).pow(1.0 / p)


def _binomial(size: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Row ``size - 1`` of Pascal's triangle, normalised to sum 1: [1, 2, 1] / 4 for size 3."""
    row = torch.tensor([math.comb(size - 1, i) for i in range(size)], dtype=dtype, device=device)
    return row / row.sum()


def blur_pool2d(x: torch.Tensor, *, kernel_size: int = 3, stride: int = 2) -> torch.Tensor:
    r"""Blur, then subsample: the anti-aliased downsampling of Zhang (2019).

    Each channel is filtered with the separable binomial kernel :math:`b b^\top`
    (:math:`b = [1, 2, 1]/4` for ``kernel_size=3``), a low-pass filter, and then only
    every ``stride``-th row and column is kept. Filtering before subsampling removes the
    frequencies that subsampling would alias, so a one-pixel shift of the input changes
    the output less. The border is padded by reflection (by :math:`\lfloor (k-1)/2 \rfloor`
    before and :math:`\lceil (k-1)/2 \rceil` after), as in the paper's code. Written as a
    weighted sum of strided slices; equals a depthwise ``F.conv2d`` with that kernel.

    Args:
        x (Tensor[N, C, H, W]): floating-point feature maps, H and W larger than the padding.
        kernel_size: binomial filter size in [1, 7] (1 is plain subsampling).
        stride: subsampling factor, ≥ 1.

    Returns:
        Tensor[N, C, ⌈H/stride⌉, ⌈W/stride⌉].
    """
    caller = "blur_pool2d"
    _check_input(x, caller)
    k = _v.integer("kernel_size", kernel_size, caller=caller, minimum=1, maximum=7)
    s = _v.integer("stride", stride, caller=caller, minimum=1)
    before, after = (k - 1) // 2, k // 2  # floor / ceil of (k - 1) / 2
    if min(x.shape[2], x.shape[3]) <= max(before, after):
        raise ValueError(
            f"{caller}: H and W must exceed the reflection padding {max(before, after)}; got {tuple(x.shape[2:])}"
        )
    padded = F.pad(x, (before, after, before, after), mode="reflect") if k > 1 else x
    b = _binomial(k, x.dtype, x.device)
    h_out, w_out = -(-x.shape[2] // s), -(-x.shape[3] // s)
    rows = sum(b[i] * padded[:, :, i : i + s * (h_out - 1) + 1 : s, :] for i in range(k))  # [N, C, h_out, W + k - 1]
    return sum(b[j] * rows[:, :, :, j : j + s * (w_out - 1) + 1 : s] for j in range(k))  # [N, C, h_out, w_out]


def max_blur_pool2d(x: torch.Tensor, *, kernel_size: int = 2, blur_size: int = 3, stride: int = 2) -> torch.Tensor:
    r"""Anti-aliased max pooling, "MaxBlurPool" (Zhang 2019): max pooling with stride 1, then :func:`blur_pool2d`.

    Max pooling with stride :math:`s` is the same as dense max pooling (stride 1)
    followed by subsampling; MaxBlurPool keeps the dense max and blurs before it subsamples.

    Args:
        x (Tensor[N, C, H, W]): floating-point feature maps.
        kernel_size: window of the dense max pooling, ≥ 1.
        blur_size: binomial filter size of the blur, in [1, 7].
        stride: subsampling factor, ≥ 1.

    Returns:
        Tensor[N, C, ⌈(H - k + 1)/stride⌉, ⌈(W - k + 1)/stride⌉].
    """
    caller = "max_blur_pool2d"
    _check_input(x, caller)
    k = _v.integer("kernel_size", kernel_size, caller=caller, minimum=1)
    return blur_pool2d(max_pool2d(x, k, stride=1), kernel_size=blur_size, stride=stride)


class SpatialPyramidPooling(nn.Module):
    """Module form of :func:`spatial_pyramid_pool`: Tensor[N, C, H, W] -> Tensor[N, C * sum n^2]."""

    def __init__(self, levels: Sequence[int] = (1, 2, 4), mode: str = "max") -> None:
        super().__init__()
        self.levels = _v.int_sequence("levels", levels, caller="SpatialPyramidPooling", minimum=1)
        _v.choice("mode", mode, caller="SpatialPyramidPooling", choices=("max", "avg"))
        self.mode = mode

    def output_features(self, channels: int) -> int:
        """Length of the output vector for ``channels`` input channels."""
        return channels * sum(n * n for n in self.levels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return spatial_pyramid_pool(x, self.levels, self.mode)

    def extra_repr(self) -> str:
        return f"levels={self.levels}, mode={self.mode!r}"


class StochasticPool2d(nn.Module):
    """Module form of :func:`stochastic_pool2d`: samples in ``train()`` mode, averages in ``eval()``."""

    def __init__(
        self,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        caller = "StochasticPool2d"
        _v.pair("kernel_size", kernel_size, caller=caller, minimum=1)
        if stride is not None:
            _v.pair("stride", stride, caller=caller, minimum=1)
        if generator is not None:
            _v.instance("generator", generator, caller=caller, types=torch.Generator)
        self.kernel_size = kernel_size
        self.stride = stride
        self.generator = generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return stochastic_pool2d(
            x, self.kernel_size, self.stride, training=self.training, generator=self.generator
        )

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}"
