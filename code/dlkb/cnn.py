r"""Convolutional building blocks, from elementary tensor operations.

Convolution (as im2col with ``unfold`` and ``einsum``), transposed convolution (its
adjoint, with ``fold``), output sizes, receptive fields, depthwise separable and
deformable convolution, the four normalizations (batch, layer, instance, group) and
inverted dropout. Every function equals its PyTorch / torchvision reference; none
calls it, and none loops over pixels.

Shape letters: N batch, C input channels, O output channels, H, W input height and
width, Ho, Wo output height and width, kh, kw kernel height and width, K = kh·kw
kernel positions, L = Ho·Wo output positions, G groups.

Papers: LeCun et al. 1998 (convolutional networks); Dumoulin & Visin 2016 (convolution
arithmetic, transposed convolution); Araujo et al. 2019 (receptive-field arithmetic);
Luo et al. 2016 (effective receptive field);
Chollet 2017 and Howard et al. 2017 (depthwise separable convolution); Dai et al. 2017
and Zhu et al. 2019 (deformable convolution v1, v2); Ioffe & Szegedy 2015 (batch normalization); Ba et al. 2016
(layer normalization); Ulyanov et al. 2016 (instance normalization); Wu & He 2018
(group normalization); Srivastava et al. 2014 (dropout).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from dlkb import _validate as _v

__all__ = [
    "conv2d",
    "conv_transpose2d",
    "conv_output_size",
    "conv_transpose_output_size",
    "receptive_field",
    "measured_receptive_field",
    "deform_conv2d",
    "batch_norm",
    "layer_norm",
    "instance_norm",
    "group_norm",
    "dropout",
    "DepthwiseSeparableConv2d",
]

IntPair = int | tuple[int, int]


# ---------------------------------------------------------------------------
# Validation helpers (private)
# ---------------------------------------------------------------------------


def _tensor(name: str, value: object, *, caller: str, ndim: int | tuple[int, ...] | None = None) -> torch.Tensor:
    """A floating-point tensor, optionally of a given number of dimensions."""
    return _v.tensor(name, value, caller=caller, dtype="floating", ndim=ndim)


def _same_dtype(name: str, value: torch.Tensor, x: torch.Tensor, *, caller: str) -> None:
    if value.dtype != x.dtype:
        raise TypeError(f"{caller}: {name} must have the dtype of x ({x.dtype}); got {value.dtype}")


def _optional_shape(
    name: str, value: torch.Tensor | None, shape: tuple[int, ...], x: torch.Tensor, *, caller: str
) -> None:
    """``value`` is ``None`` or a floating tensor of exactly ``shape`` (no broadcasting)."""
    if value is None:
        return
    _tensor(name, value, caller=caller)
    if tuple(value.shape) != tuple(shape):
        raise ValueError(f"{caller}: {name} must have shape {tuple(shape)}; got {tuple(value.shape)}")
    _same_dtype(name, value, x, caller=caller)


def _out_size(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


# ---------------------------------------------------------------------------
# Sizes and receptive field
# ---------------------------------------------------------------------------


def conv_output_size(size: int, kernel_size: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    r"""Output length of a convolution along one spatial axis.

    .. math::
        o = \left\lfloor \frac{i + 2p - d(k - 1) - 1}{s} \right\rfloor + 1

    (Dumoulin & Visin 2016, relationship 15; the formula of ``nn.Conv2d``).
    With ``d = 1`` it is the familiar :math:`\lfloor (i + 2p - k)/s \rfloor + 1`.

    Args:
        size: input length :math:`i` (≥ 1).
        kernel_size: :math:`k` (≥ 1).
        stride: :math:`s` (≥ 1).
        padding: :math:`p` zeros added on each side (≥ 0).
        dilation: :math:`d`, spacing between kernel taps (≥ 1).

    Returns:
        The output length, an ``int`` ≥ 1.

    Raises:
        TypeError: if an argument is not an ``int``.
        ValueError: if an argument is out of range or the (padded) input is smaller
            than the dilated kernel.
    """
    caller = "conv_output_size"
    i = _v.integer("size", size, caller=caller, minimum=1)
    k = _v.integer("kernel_size", kernel_size, caller=caller, minimum=1)
    s = _v.integer("stride", stride, caller=caller, minimum=1)
    p = _v.integer("padding", padding, caller=caller, minimum=0)
    d = _v.integer("dilation", dilation, caller=caller, minimum=1)
    out = _out_size(i, k, s, p, d)
    if out < 1:
        raise ValueError(
            f"{caller}: padded input size {i + 2 * p} is smaller than the dilated kernel size {d * (k - 1) + 1}"
        )
    return out


def conv_transpose_output_size(
    size: int,
    kernel_size: int,
    stride: int = 1,
    padding: int = 0,
    output_padding: int = 0,
    dilation: int = 1,
) -> int:
    r"""Output length of a transposed convolution along one spatial axis.

    .. math::
        o = (i - 1)\,s - 2p + d(k - 1) + \text{output\_padding} + 1

    (Dumoulin & Visin 2016, relationship 14, with the dilation term of
    ``nn.ConvTranspose2d``).
    It inverts :func:`conv_output_size`: a convolution with the same ``k, s, p, d``
    maps ``o`` back to ``i``. Because that convolution floors, ``s`` different input
    lengths map to the same ``i``; ``output_padding`` (< ``max(s, d)``) picks one.

    Args:
        size: input length :math:`i` (≥ 1).
        kernel_size: :math:`k` (≥ 1).
        stride: :math:`s` (≥ 1).
        padding: :math:`p` (≥ 0), the padding of the convolution being transposed.
        output_padding: extra length added on one side (0 ≤ value < max(stride, dilation)).
        dilation: :math:`d` (≥ 1).

    Returns:
        The output length, an ``int`` ≥ 1.

    Raises:
        TypeError: if an argument is not an ``int``.
        ValueError: if an argument is out of range or the result is not positive.
    """
    caller = "conv_transpose_output_size"
    i = _v.integer("size", size, caller=caller, minimum=1)
    k = _v.integer("kernel_size", kernel_size, caller=caller, minimum=1)
    s = _v.integer("stride", stride, caller=caller, minimum=1)
    p = _v.integer("padding", padding, caller=caller, minimum=0)
    op = _v.integer("output_padding", output_padding, caller=caller, minimum=0)
    d = _v.integer("dilation", dilation, caller=caller, minimum=1)
    if op >= max(s, d):
        raise ValueError(f"{caller}: output_padding must be smaller than max(stride, dilation) = {max(s, d)}; got {op}")
    out = (i - 1) * s - 2 * p + d * (k - 1) + op + 1
    if out < 1:
        raise ValueError(f"{caller}: the output size would be {out}; padding {p} is too large")
    return out


def receptive_field(layers: Sequence[tuple[int, ...]]) -> int:
    r"""Receptive field, in input pixels, of one output unit of a stack of layers.

    Each layer is ``(kernel_size, stride)`` or ``(kernel_size, stride, dilation)``
    (convolutions and pooling alike; padding does not change the field's size).
    With :math:`j_l = \prod_{m<l} s_m` the distance in input pixels between two
    neighbouring units of layer :math:`l`'s input (its "jump"),

    .. math::
        r_0 = 1, \qquad r_l = r_{l-1} + d_l (k_l - 1)\, j_l

    (Araujo et al. 2019, "Computing receptive fields of convolutional neural
    networks", Distill; see Luo et al. 2016 for how unevenly the pixels inside the
    field matter). Two 3×3 layers give 5 and
    three give 7, the fields of one 5×5 or 7×7 layer (Simonyan & Zisserman 2015).

    Args:
        layers: a sequence of ``(kernel_size, stride)`` or ``(kernel_size, stride, dilation)``
            tuples of positive ints, first layer first. An empty sequence gives 1.

    Returns:
        The receptive field side length, an ``int``.

    Raises:
        TypeError: if ``layers`` or an entry is not a sequence of ints.
        ValueError: if an entry has the wrong length or a value below 1.
    """
    caller = "receptive_field"
    if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence):
        raise TypeError(f"{caller}: layers must be a sequence of (kernel_size, stride[, dilation]); got {type(layers).__name__}")
    field, jump = 1, 1
    for n, layer in enumerate(layers):
        if not isinstance(layer, (tuple, list)):
            raise TypeError(f"{caller}: layers[{n}] must be a tuple (kernel_size, stride[, dilation]); got {type(layer).__name__}")
        if len(layer) not in (2, 3):
            raise ValueError(f"{caller}: layers[{n}] must have 2 or 3 entries (kernel_size, stride[, dilation]); got {layer!r}")
        k = _v.integer(f"layers[{n}] kernel_size", layer[0], caller=caller, minimum=1)
        s = _v.integer(f"layers[{n}] stride", layer[1], caller=caller, minimum=1)
        d = _v.integer(f"layers[{n}] dilation", layer[2], caller=caller, minimum=1) if len(layer) == 3 else 1
        field += d * (k - 1) * jump
        jump *= s
    return field


def measured_receptive_field(
    model: nn.Module, size: int = 64, *, in_channels: int = 1, generator: torch.Generator | None = None
) -> tuple[int, int, torch.Tensor]:
    """Measure the receptive field of the centre output unit of ``model`` with autograd.

    Feeds a random Tensor[1, in_channels, size, size], back-propagates from the centre
    unit of the first output channel, and returns the height and width of the bounding
    box of input pixels with a non-zero gradient, and that gradient map (summed over
    input channels, Tensor[size, size]). A weight that happens to be zero can hide
    pixels, so give the model non-zero weights when comparing with
    :func:`receptive_field`.
    """
    caller = "measured_receptive_field"
    _v.module("model", model, caller=caller)
    size = _v.integer("size", size, caller=caller, minimum=1)
    in_channels = _v.integer("in_channels", in_channels, caller=caller, minimum=1)
    if generator is not None:
        _v.instance("generator", generator, caller=caller, types=torch.Generator)
    param = next(model.parameters(), None)
    dtype = param.dtype if param is not None else torch.float32
    x = torch.rand(1, in_channels, size, size, generator=generator, dtype=dtype)
    x = x.to(param.device if param is not None else "cpu").requires_grad_(True)
    y = model(x)  # [1, C_out, Ho, Wo]
    (grad,) = torch.autograd.grad(y[0, 0, y.shape[2] // 2, y.shape[3] // 2], x)
    grad_map = grad[0].abs().sum(0)  # [size, size]
    rows, cols = torch.nonzero(grad_map, as_tuple=True)
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1), grad_map
# ---------------------------------------------------------------------------
# Convolution and its transpose
# ---------------------------------------------------------------------------


def _check_conv_weight(x: torch.Tensor, weight: torch.Tensor, groups: int, caller: str) -> None:
    c, o = x.shape[1], weight.shape[0]
    if c % groups:
        raise ValueError(f"{caller}: in_channels {c} must be divisible by groups {groups}")
    if o % groups:
        raise ValueError(f"{caller}: out_channels (weight.shape[0] = {o}) must be divisible by groups {groups}")
    if weight.shape[1] != c // groups:
        raise ValueError(
            f"{caller}: weight must have shape (out_channels, in_channels / groups, kh, kw) = "
            f"({o}, {c // groups}, kh, kw) for input of {c} channels and groups {groups}; "
            f"got {tuple(weight.shape)}"
        )
    _same_dtype("weight", weight, x, caller=caller)


def conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: IntPair = 1,
    padding: IntPair | str = 0,
    dilation: IntPair = 1,
    groups: int = 1,
) -> torch.Tensor:
    r"""2-D convolution (a cross-correlation, as in every deep-learning library).

    .. math::
        y[n, o, i, j] = b[o] + \sum_{c \in \text{group}(o)} \sum_{u, v}
            w[o, c, u, v]\; x_{\text{pad}}[n, c,\; s_h i + d_h u,\; s_w j + d_w v]

    Implemented as im2col: ``F.unfold`` copies every receptive window into a column
    (Tensor[N, C·kh·kw, L]), then one ``einsum`` per group multiplies by the flattened
    weights (LeCun et al. 1998; grouped convolution as in Krizhevsky et al. 2012).

    Args:
        x (Tensor[N, C, H, W] or Tensor[C, H, W]): input.
        weight (Tensor[O, C / groups, kh, kw]): kernels.
        bias (Tensor[O], optional): added to every output position.
        stride: int or (sh, sw), ≥ 1.
        padding: int or (ph, pw) zeros on each side, or ``"valid"`` (no padding) or
            ``"same"`` (output size = input size; needs stride 1; an odd total padding
            puts the extra zero at the bottom/right, like PyTorch).
        dilation: int or (dh, dw), ≥ 1.
        groups: channels are split into ``groups`` blocks convolved separately.

    Returns:
        Tensor[N, O, Ho, Wo] (or Tensor[O, Ho, Wo] for an unbatched input), with
        ``Ho = conv_output_size(H, kh, sh, ph, dh)``.

    Raises:
        TypeError: for a non-tensor, a non-floating tensor or mismatched dtypes.
        ValueError: for bad shapes, channels not divisible by ``groups``, or an input
            smaller than the kernel.
    """
    caller = "conv2d"
    _tensor("x", x, caller=caller, ndim=(3, 4))
    _tensor("weight", weight, caller=caller, ndim=4)
    unbatched = x.ndim == 3
    if unbatched:
        x = x.unsqueeze(0)
    groups = _v.integer("groups", groups, caller=caller, minimum=1)
    _check_conv_weight(x, weight, groups, caller)
    o, cg, kh, kw = weight.shape
    _optional_shape("bias", bias, (o,), x, caller=caller)
    sh, sw = _v.pair("stride", stride, caller=caller, minimum=1)
    dh, dw = _v.pair("dilation", dilation, caller=caller, minimum=1)
    if isinstance(padding, str):
        _v.choice("padding", padding, caller=caller, choices=("valid", "same"))
        if padding == "same":
            if (sh, sw) != (1, 1):
                raise ValueError(f"{caller}: padding='same' needs stride 1; got stride {(sh, sw)}")
            th, tw = dh * (kh - 1), dw * (kw - 1)  # total padding per axis
            x = F.pad(x, (tw // 2, tw - tw // 2, th // 2, th - th // 2))
        padding = 0
    ph, pw = _v.pair("padding", padding, caller=caller, minimum=0)
    n, c, h, w = x.shape
    ho, wo = _out_size(h, kh, sh, ph, dh), _out_size(w, kw, sw, pw, dw)
    if ho < 1 or wo < 1:
        raise ValueError(
            f"{caller}: padded input {(h + 2 * ph, w + 2 * pw)} is smaller than the dilated kernel "
            f"{(dh * (kh - 1) + 1, dw * (kw - 1) + 1)}"
        )
    cols = F.unfold(x, (kh, kw), dilation=(dh, dw), padding=(ph, pw), stride=(sh, sw))  # [N, C*kh*kw, L]
    cols = cols.reshape(n, groups, cg * kh * kw, ho * wo)  # [N, G, C/G*kh*kw, L]
    w_mat = weight.reshape(groups, o // groups, cg * kh * kw)  # [G, O/G, C/G*kh*kw]
    y = torch.einsum("gok,ngkl->ngol", w_mat, cols).reshape(n, o, ho, wo)  # [N, O, Ho, Wo]
    if bias is not None:
        y = y + bias.reshape(1, o, 1, 1)
    return y[0] if unbatched else y


def conv_transpose2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: IntPair = 1,
    padding: IntPair = 0,
    output_padding: IntPair = 0,
) -> torch.Tensor:
    r"""2-D transposed convolution: the adjoint (transpose) of :func:`conv2d`.

    A convolution is ``y = W_mat @ unfold(x)``; its transpose is therefore
    ``fold(W_matᵀ @ x)``: each input pixel scatters a copy of the kernel, scaled by
    its value, into the output, ``stride`` pixels apart, and overlapping copies add
    (Dumoulin & Visin 2016, Sec. 4). The ``padding`` of the convolution being
    transposed is cropped from each side; ``output_padding`` adds rows/columns at the
    bottom/right. The output size is :func:`conv_transpose_output_size`.

    Args:
        x (Tensor[N, C, H, W] or Tensor[C, H, W]): input.
        weight (Tensor[C, O, kh, kw]): kernels; note the order (in, out), the transpose
            of a convolution weight.
        bias (Tensor[O], optional): added to every output position.
        stride: int or (sh, sw), ≥ 1.
        padding: int or (ph, pw), ≥ 0.
        output_padding: int or pair, each smaller than the stride on that axis.

    Returns:
        Tensor[N, O, Ho, Wo] with ``Ho = (H - 1)·sh - 2·ph + kh + oph``.

    Raises:
        TypeError: for a non-tensor, a non-floating tensor or mismatched dtypes.
        ValueError: for bad shapes, ``output_padding`` ≥ stride, or a non-positive output size.
    """
    caller = "conv_transpose2d"
    _tensor("x", x, caller=caller, ndim=(3, 4))
    _tensor("weight", weight, caller=caller, ndim=4)
    unbatched = x.ndim == 3
    if unbatched:
        x = x.unsqueeze(0)
    n, c, h, w = x.shape
    if weight.shape[0] != c:
        raise ValueError(
            f"{caller}: weight must have shape (in_channels, out_channels, kh, kw) with in_channels = {c}; "
            f"got {tuple(weight.shape)}"
        )
    _same_dtype("weight", weight, x, caller=caller)
    _, o, kh, kw = weight.shape
    _optional_shape("bias", bias, (o,), x, caller=caller)
    sh, sw = _v.pair("stride", stride, caller=caller, minimum=1)
    ph, pw = _v.pair("padding", padding, caller=caller, minimum=0)
    oph, opw = _v.pair("output_padding", output_padding, caller=caller, minimum=0)
    if oph >= sh or opw >= sw:
        raise ValueError(
            f"{caller}: output_padding must be smaller than stride {(sh, sw)} on each axis; got {(oph, opw)}"
        )
    ho, wo = (h - 1) * sh - 2 * ph + kh + oph, (w - 1) * sw - 2 * pw + kw + opw
    if ho < 1 or wo < 1:
        raise ValueError(f"{caller}: the output size would be {(ho, wo)}; padding {(ph, pw)} is too large")
    w_mat = weight.reshape(c, o * kh * kw)  # [C, O*kh*kw]
    cols = torch.einsum("ck,ncl->nkl", w_mat, x.reshape(n, c, h * w))  # [N, O*kh*kw, H*W]
    # Full (uncropped) size; output_padding < stride adds empty rows that no window reaches.
    full = ((h - 1) * sh + kh + oph, (w - 1) * sw + kw + opw)
    y = F.fold(cols, full, (kh, kw), stride=(sh, sw))  # [N, O, Hfull, Wfull], overlaps summed
    y = y[:, :, ph : ph + ho, pw : pw + wo]  # crop the convolution's padding
    if bias is not None:
        y = y + bias.reshape(1, o, 1, 1)
    return y[0] if unbatched else y


# ---------------------------------------------------------------------------
# Deformable convolution
# ---------------------------------------------------------------------------


def _bilinear_gather(x: torch.Tensor, py: torch.Tensor, px: torch.Tensor) -> torch.Tensor:
    """Sample ``x`` (Tensor[N, G, Cg, H, W]) at real positions ``py, px`` (Tensor[N, G, M]).

    Zero outside the image: a corner outside contributes nothing. Returns Tensor[N, G, Cg, M].
    """
    n, g, cg, h, w = x.shape
    flat = x.reshape(n, g, cg, h * w)
    y0, x0 = torch.floor(py), torch.floor(px)
    ly, lx = py - y0, px - x0  # fractional parts, differentiable in the offsets
    out = torch.zeros(n, g, cg, py.shape[-1], dtype=x.dtype, device=x.device)
    for dy, dx, weight in (  # the four corners of the unit square around (py, px)
        (0, 0, (1 - ly) * (1 - lx)),
        (0, 1, (1 - ly) * lx),
        (1, 0, ly * (1 - lx)),
        (1, 1, ly * lx),
    ):
        yy, xx = y0 + dy, x0 + dx
        inside = (yy >= 0) & (yy <= h - 1) & (xx >= 0) & (xx <= w - 1)
        index = (yy.clamp(0, h - 1) * w + xx.clamp(0, w - 1)).long()  # [N, G, M]
        values = torch.gather(flat, 3, index.unsqueeze(2).expand(n, g, cg, index.shape[-1]))  # [N, G, Cg, M]
        out = out + values * (weight * inside).unsqueeze(2)
    return out


def deform_conv2d(
    x: torch.Tensor,
    offset: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Deformable convolution v1, or v2 with a modulation ``mask``.

    Each kernel tap :math:`p_k` of output position :math:`p_0` is moved by a learned,
    real-valued offset :math:`\Delta p_k`, and ``x`` is read there by bilinear
    interpolation (zero outside the image):

    .. math::
        y(p_0) = \sum_{k=1}^{K} w_k \, m_k\, x(p_0 + p_k + \Delta p_k)

    (Dai et al. 2017, Eq. (2) and (3); :math:`m_k` is the modulation mask of
    Zhu et al. 2019, Eq. (1), taken as 1 when ``mask`` is ``None``). Same layout as ``torchvision.ops.deform_conv2d``: offset
    channels are ``(dy, dx)`` pairs for each kernel tap in row-major order, repeated
    for each of G offset groups (G = offset.shape[1] / (2·kh·kw)); the weight groups
    are ``C / weight.shape[1]``.

    Args:
        x (Tensor[N, C, H, W]): input.
        offset (Tensor[N, 2·G·kh·kw, Ho, Wo]): offsets in pixels.
        weight (Tensor[O, C / groups, kh, kw]): kernels.
        bias (Tensor[O], optional): added to every output position.
        stride, padding, dilation: int or pair, as in :func:`conv2d`.
        mask (Tensor[N, G·kh·kw, Ho, Wo], optional): modulation scalars.

    Returns:
        Tensor[N, O, Ho, Wo].

    Raises:
        TypeError: for a non-tensor, a non-floating tensor or mismatched dtypes.
        ValueError: for shapes that do not fit together.
    """
    caller = "deform_conv2d"
    _tensor("x", x, caller=caller, ndim=4)
    _tensor("offset", offset, caller=caller, ndim=4)
    _tensor("weight", weight, caller=caller, ndim=4)
    n, c, h, w = x.shape
    o, cg, kh, kw = weight.shape
    if cg < 1 or c % cg:
        raise ValueError(
            f"{caller}: in_channels {c} must be a multiple of weight.shape[1] (channels per group); "
            f"got weight of shape {tuple(weight.shape)}"
        )
    groups = c // cg
    if o % groups:
        raise ValueError(f"{caller}: out_channels {o} must be divisible by groups {groups} (= {c} / {cg})")
    _same_dtype("weight", weight, x, caller=caller)
    _optional_shape("bias", bias, (o,), x, caller=caller)
    sh, sw = _v.pair("stride", stride, caller=caller, minimum=1)
    ph, pw = _v.pair("padding", padding, caller=caller, minimum=0)
    dh, dw = _v.pair("dilation", dilation, caller=caller, minimum=1)
    ho, wo = _out_size(h, kh, sh, ph, dh), _out_size(w, kw, sw, pw, dw)
    if ho < 1 or wo < 1:
        raise ValueError(f"{caller}: padded input {(h + 2 * ph, w + 2 * pw)} is smaller than the dilated kernel")
    k = kh * kw
    og = offset.shape[1] // (2 * k) if offset.shape[1] % (2 * k) == 0 else 0
    if og < 1 or c % og or offset.shape[0] != n or tuple(offset.shape[2:]) != (ho, wo):
        raise ValueError(
            f"{caller}: offset must have shape (N, 2 * offset_groups * kh * kw, Ho, Wo) = "
            f"({n}, 2 * G * {k}, {ho}, {wo}) with G dividing {c}; got {tuple(offset.shape)}"
        )
    _same_dtype("offset", offset, x, caller=caller)
    if mask is not None:
        _tensor("mask", mask, caller=caller, ndim=4)
        if tuple(mask.shape) != (n, og * k, ho, wo):
            raise ValueError(f"{caller}: mask must have shape {(n, og * k, ho, wo)}; got {tuple(mask.shape)}")
        _same_dtype("mask", mask, x, caller=caller)

    # Regular sampling grid: tap (u, v) of output (i, j) reads row s*i - p + d*u, column s*j - p + d*v.
    dev, dt = x.device, x.dtype
    rows = (torch.arange(kh, device=dev, dtype=dt) * dh).reshape(kh, 1, 1, 1) + (
        torch.arange(ho, device=dev, dtype=dt) * sh - ph
    ).reshape(1, 1, ho, 1)  # [kh, 1, Ho, 1]
    cols = (torch.arange(kw, device=dev, dtype=dt) * dw).reshape(1, kw, 1, 1) + (
        torch.arange(wo, device=dev, dtype=dt) * sw - pw
    ).reshape(1, 1, 1, wo)  # [1, kw, 1, Wo]
    base_y = rows.expand(kh, kw, ho, wo).reshape(k, ho, wo)  # [K, Ho, Wo]
    base_x = cols.expand(kh, kw, ho, wo).reshape(k, ho, wo)
    off = offset.reshape(n, og, k, 2, ho, wo)  # [N, G, K, (dy, dx), Ho, Wo]
    py = (base_y + off[:, :, :, 0]).reshape(n, og, k * ho * wo)  # [N, G, K*L]
    px = (base_x + off[:, :, :, 1]).reshape(n, og, k * ho * wo)
    sampled = _bilinear_gather(x.reshape(n, og, c // og, h, w), py, px)  # [N, G, C/G, K*L]
    sampled = sampled.reshape(n, og, c // og, k, ho * wo)
    if mask is not None:
        sampled = sampled * mask.reshape(n, og, 1, k, ho * wo)
    # From here on it is an ordinary convolution on the sampled columns.
    cols_ = sampled.reshape(n, groups, cg * k, ho * wo)  # [N, groups, C/groups*K, L]
    w_mat = weight.reshape(groups, o // groups, cg * k)
    y = torch.einsum("gok,ngkl->ngol", w_mat, cols_).reshape(n, o, ho, wo)
    if bias is not None:
        y = y + bias.reshape(1, o, 1, 1)
    return y


# ---------------------------------------------------------------------------
# Normalization
# ---------------------------------------------------------------------------


def _eps(eps: object, caller: str) -> float:
    return _v.real("eps", eps, caller=caller, low=0.0, low_open=True)


def _standardize(x: torch.Tensor, dims: tuple[int, ...], eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""The step every normalization here shares: :math:`(x - \mu) / \sqrt{\sigma^2 + \epsilon}` over ``dims``.

    Mean and *biased* variance are taken over ``dims`` (kept, so they broadcast back).
    Batch, layer, instance and group normalization differ only in which dimensions
    these are (and, for groups, a reshape first). Returns ``(y, mean, var)``.
    """
    mean = x.mean(dim=dims, keepdim=True)
    var = (x - mean).square().mean(dim=dims, keepdim=True)  # biased; ~15x faster than x.var on the CPU
    return (x - mean) / torch.sqrt(var + eps), mean, var


def _group_standardize(x: torch.Tensor, groups: int, eps: float) -> torch.Tensor:
    """Standardize each of ``groups`` equal slices of the channels of each sample.

    ``groups = 1`` is layer normalization over (C, *spatial); ``groups = C`` is instance
    normalization: group normalization contains both.
    """
    n = x.shape[0]
    y, _, _ = _standardize(x.reshape(n, groups, -1), (2,), eps)  # [N, G, C/G * spatial]
    return y.reshape(x.shape)


def _affine(y: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, shape: tuple[int, ...]) -> torch.Tensor:
    if weight is not None:
        y = y * weight.reshape(shape)
    if bias is not None:
        y = y + bias.reshape(shape)
    return y


def batch_norm(
    x: torch.Tensor,
    running_mean: torch.Tensor | None,
    running_var: torch.Tensor | None,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    *,
    training: bool,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> torch.Tensor:
    r"""Batch normalization: per channel, over the batch and all spatial positions.

    .. math::
        \hat x = \frac{x - \mu_B}{\sqrt{\sigma_B^2 + \epsilon}}, \qquad y = \gamma \hat x + \beta

    (Ioffe & Szegedy 2015, Algorithm 1). In training, :math:`\mu_B, \sigma_B^2` are
    the mean and the *biased* variance over N·H·W values, and the running statistics
    are updated in place, ``r ← (1 − momentum)·r + momentum·stat``, with the
    *unbiased* variance (× m/(m − 1)), as in Algorithm 2 and PyTorch. In inference
    (``training=False``) the running statistics replace the batch ones.

    Args:
        x (Tensor[N, C, *]): input, any number of trailing (spatial) dimensions.
        running_mean (Tensor[C] or None): updated in place when training; required when not.
        running_var (Tensor[C] or None): likewise.
        weight (Tensor[C], optional): :math:`\gamma`.
        bias (Tensor[C], optional): :math:`\beta`.
        training: use batch statistics (and update the running ones) or not.
        momentum: weight of the new batch statistics in the running average, in [0, 1].
        eps: added to the variance.

    Returns:
        Tensor of the shape of ``x``.

    Raises:
        TypeError / ValueError: for bad types, shapes, ``momentum`` outside [0, 1], missing
            running statistics in inference, or one value per channel in training.
    """
    caller = "batch_norm"
    _tensor("x", x, caller=caller)
    if x.ndim < 2:
        raise ValueError(f"{caller}: x must have shape (N, C, *); got {tuple(x.shape)}")
    _v.boolean("training", training, caller=caller)
    momentum = _v.real("momentum", momentum, caller=caller, low=0.0, high=1.0)
    eps = _eps(eps, caller)
    c = x.shape[1]
    for name, value in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight), ("bias", bias)):
        _optional_shape(name, value, (c,), x, caller=caller)
    if (running_mean is None) != (running_var is None):
        raise ValueError(f"{caller}: give both running_mean and running_var, or neither")
    if not training and running_mean is None:
        raise ValueError(f"{caller}: running_mean and running_var are required when training=False")
    shape = (1, c) + (1,) * (x.ndim - 2)  # broadcast a [C] vector over [N, C, *]
    if training:
        dims = [0] + list(range(2, x.ndim))
        m = x.numel() // c  # values per channel: N * H * W
        if m < 2:
            raise ValueError(f"{caller}: training needs more than 1 value per channel; got input of shape {tuple(x.shape)}")
        y, mean, var = _standardize(x, tuple(dims), eps)  # mean, var: [1, C, 1, ...], biased var
        if running_mean is not None:
            with torch.no_grad():
                running_mean.mul_(1 - momentum).add_(momentum * mean.reshape(c))
                running_var.mul_(1 - momentum).add_(momentum * var.reshape(c) * m / (m - 1))  # unbiased
    else:
        y = (x - running_mean.reshape(shape)) / torch.sqrt(running_var.reshape(shape) + eps)
    return _affine(y, weight, bias, shape)


def layer_norm(
    x: torch.Tensor,
    normalized_shape: int | Sequence[int],
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    eps: float = 1e-5,
) -> torch.Tensor:
    r"""Layer normalization over the trailing ``normalized_shape`` dimensions of each sample.

    .. math::
        y = \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}} \odot \gamma + \beta

    with :math:`\mu, \sigma^2` the mean and biased variance over those dimensions
    (Ba et al. 2016, Eq. (4)). The same computation in training and inference, and
    independent of the batch size.

    Args:
        x (Tensor[*, D1, ..., Dk]): input.
        normalized_shape: ``(D1, ..., Dk)``, the trailing shape of ``x`` (an int means ``(D1,)``).
        weight (Tensor[D1, ..., Dk], optional): :math:`\gamma`, element-wise.
        bias (Tensor[D1, ..., Dk], optional): :math:`\beta`.
        eps: added to the variance.

    Returns:
        Tensor of the shape of ``x``.
    """
    caller = "layer_norm"
    _tensor("x", x, caller=caller)
    if isinstance(normalized_shape, (int, np.integer)) and not isinstance(normalized_shape, bool):
        normalized_shape = (normalized_shape,)
    shape = _v.int_sequence("normalized_shape", normalized_shape, caller=caller, minimum=1)
    if len(shape) == 0 or len(shape) > x.ndim or tuple(x.shape[x.ndim - len(shape) :]) != shape:
        raise ValueError(f"{caller}: normalized_shape {shape} must equal the trailing dimensions of x {tuple(x.shape)}")
    eps = _eps(eps, caller)
    _optional_shape("weight", weight, shape, x, caller=caller)
    _optional_shape("bias", bias, shape, x, caller=caller)
    y, _, _ = _standardize(x, tuple(range(x.ndim - len(shape), x.ndim)), eps)  # over the trailing dims
    return _affine(y, weight, bias, shape)


def instance_norm(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    r"""Instance normalization: each channel of each sample over its own spatial positions.

    .. math::
        y_{nc} = \frac{x_{nc} - \mu_{nc}}{\sqrt{\sigma_{nc}^2 + \epsilon}}

    (Ulyanov et al. 2016, Eq. (2)), with the mean and biased variance over H·W. It
    removes each image's contrast, which is why style transfer uses it. Equal to
    ``F.instance_norm(x, eps=eps)`` (no running statistics, no affine parameters).

    Args:
        x (Tensor[N, C, *]): input with at least one spatial dimension.
        eps: added to the variance.

    Returns:
        Tensor of the shape of ``x``.
    """
    caller = "instance_norm"
    _tensor("x", x, caller=caller)
    if x.ndim < 3:
        raise ValueError(f"{caller}: x must have shape (N, C, *spatial) with at least one spatial dimension; got {tuple(x.shape)}")
    eps = _eps(eps, caller)
    if math.prod(x.shape[2:]) == 1:  # as F.instance_norm: one value normalizes to 0
        raise ValueError(f"{caller}: needs more than 1 spatial element per channel; got input of shape {tuple(x.shape)}")
    return _group_standardize(x, x.shape[1], eps)  # one group per channel


def group_norm(
    x: torch.Tensor,
    num_groups: int,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    eps: float = 1e-5,
) -> torch.Tensor:
    r"""Group normalization: channels split into groups, each normalized per sample.

    .. math::
        \hat x_i = \frac{x_i - \mu_i}{\sqrt{\sigma_i^2 + \epsilon}}, \quad
        \mathcal S_i = \{k : k_N = i_N,\ \lfloor k_C / (C/G) \rfloor = \lfloor i_C / (C/G) \rfloor\}

    (Wu & He 2018, Eq. (1)–(7)); then a per-channel :math:`\gamma, \beta`. G = 1 is
    layer normalization over (C, H, W) with per-channel affine; G = C is instance
    normalization.

    Args:
        x (Tensor[N, C, *]): input.
        num_groups: G, a divisor of C.
        weight (Tensor[C], optional): :math:`\gamma`.
        bias (Tensor[C], optional): :math:`\beta`.
        eps: added to the variance.

    Returns:
        Tensor of the shape of ``x``.
    """
    caller = "group_norm"
    _tensor("x", x, caller=caller)
    if x.ndim < 2:
        raise ValueError(f"{caller}: x must have shape (N, C, *); got {tuple(x.shape)}")
    g = _v.integer("num_groups", num_groups, caller=caller, minimum=1)
    n, c = x.shape[:2]
    if c % g:
        raise ValueError(f"{caller}: channels {c} must be divisible by num_groups {g}")
    eps = _eps(eps, caller)
    if n * (c // g) * math.prod(x.shape[2:]) == 1:  # the same (narrow) rule as F.group_norm
        raise ValueError(f"{caller}: a single sample needs more than 1 value per group; got input of shape {tuple(x.shape)} with num_groups {g}")
    _optional_shape("weight", weight, (c,), x, caller=caller)
    _optional_shape("bias", bias, (c,), x, caller=caller)
    y = _group_standardize(x, g, eps)  # G = 1: layer norm over (C, *); G = C: instance norm
    return _affine(y, weight, bias, (1, c) + (1,) * (x.ndim - 2))


# ---------------------------------------------------------------------------
# Dropout
# ---------------------------------------------------------------------------


def dropout(
    x: torch.Tensor, p: float = 0.5, *, training: bool = True, generator: torch.Generator | None = None
) -> torch.Tensor:
    r"""Inverted dropout: zero each element with probability ``p``, scale survivors by 1/(1 − p).

    .. math::
        y_i = \frac{m_i}{1 - p}\, x_i, \qquad m_i \sim \text{Bernoulli}(1 - p)

    so :math:`\mathbb E[y_i] = x_i` and inference needs no rescaling (Srivastava et
    al. 2014 scale the weights by 1 − p at test time instead; the two are equivalent
    in expectation). ``p = 1`` returns zeros (no division by zero); when not
    training it returns ``x`` itself.

    Args:
        x (Tensor[*]): input.
        p: drop probability, in [0, 1].
        training: apply dropout (``True``) or the identity.
        generator: source of randomness, on the device of ``x``.

    Returns:
        Tensor of the shape of ``x``.
    """
    caller = "dropout"
    _tensor("x", x, caller=caller)
    p = _v.real("p", p, caller=caller, low=0.0, high=1.0)
    _v.boolean("training", training, caller=caller)
    if generator is not None:
        _v.instance("generator", generator, caller=caller, types=torch.Generator)
    if not training or p == 0:
        return x
    if p == 1:
        return x * torch.zeros_like(x)  # keeps the graph; gradient is zero too
    keep = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) >= p  # P(keep) = 1 - p
    return x * keep / (1.0 - p)


# ---------------------------------------------------------------------------
# Modules
# ---------------------------------------------------------------------------


class DepthwiseSeparableConv2d(nn.Module):
    r"""Depthwise convolution (one k×k filter per input channel) then a 1×1 convolution.

    Replaces a standard k×k convolution with C_in·k² + C_in·C_out parameters instead
    of C_in·C_out·k², a ratio of 1/C_out + 1/k² (Howard et al. 2017, Eq. (5);
    Chollet 2017). No biases, as in MobileNet (a BatchNorm usually follows each part).
    The two ``nn.Conv2d`` sub-modules only hold the weights (and their default
    initialization); :meth:`forward` runs them through :func:`conv2d`.

    Args:
        in_channels: C_in.
        out_channels: C_out.
        kernel_size: k (int or pair) of the depthwise part.
        stride, padding: of the depthwise part (the 1×1 part uses 1 and 0).

    Attributes:
        depthwise (nn.Conv2d): weight Tensor[C_in, 1, kh, kw], ``groups = C_in``.
        pointwise (nn.Conv2d): weight Tensor[C_out, C_in, 1, 1].

    Shape:
        Tensor[N, C_in, H, W] → Tensor[N, C_out, Ho, Wo].
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: IntPair, stride: IntPair = 1, padding: IntPair = 0
    ) -> None:
        super().__init__()
        caller = "DepthwiseSeparableConv2d"
        cin = _v.integer("in_channels", in_channels, caller=caller, minimum=1)
        cout = _v.integer("out_channels", out_channels, caller=caller, minimum=1)
        kernel_size = _v.pair("kernel_size", kernel_size, caller=caller, minimum=1)
        stride = _v.pair("stride", stride, caller=caller, minimum=1)
        padding = _v.pair("padding", padding, caller=caller, minimum=0)
        self.depthwise = nn.Conv2d(cin, cin, kernel_size, stride, padding, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dw = self.depthwise
        y = conv2d(x, dw.weight, stride=dw.stride, padding=dw.padding, groups=dw.groups)  # [N, C_in, Ho, Wo]
        return conv2d(y, self.pointwise.weight)  # [N, C_out, Ho, Wo]
