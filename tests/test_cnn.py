"""Tests of dlkb.cnn against torch.nn.functional, torch.nn and torchvision.ops."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn
from torch.nn import functional as F

from dlkb import cnn


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(*shape, seed=0, dtype=torch.float64, requires_grad=False):
    return torch.randn(*shape, generator=gen(seed), dtype=dtype).requires_grad_(requires_grad)


def noncontig(*shape, seed=0):
    """A float64 tensor of ``shape`` that is not contiguous (a transposed view)."""
    t = randn(*shape[:-2], shape[-1], shape[-2], seed=seed).transpose(-1, -2)
    assert not t.is_contiguous()
    return t


# ---------------------------------------------------------------------------
# conv2d
# ---------------------------------------------------------------------------

CONV_CASES = [
    # (N, C, H, W, O, kh, kw, stride, padding, dilation, groups)
    (2, 3, 7, 8, 4, 3, 3, 1, 0, 1, 1),
    (1, 4, 9, 6, 6, 2, 3, (2, 1), (1, 2), (1, 2), 2),
    (3, 6, 10, 11, 3, 3, 1, 3, 2, 2, 3),
    (2, 4, 5, 5, 8, 1, 1, 1, 0, 1, 4),  # depthwise-style, 1x1
    (1, 2, 8, 9, 2, 4, 2, 1, "same", 1, 1),  # even kernel: asymmetric padding
    (1, 2, 8, 9, 2, 3, 3, 1, "same", 2, 2),
    (1, 2, 8, 9, 2, 3, 3, 1, "valid", 1, 1),
]


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_matches_torch(case):
    n, c, h, w, o, kh, kw, s, p, d, g = case
    x, weight, bias = randn(n, c, h, w, seed=1), randn(o, c // g, kh, kw, seed=2), randn(o, seed=3)
    ours = cnn.conv2d(x, weight, bias, s, p, d, g)
    ref = F.conv2d(x, weight, bias, s, p, d, g)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(cnn.conv2d(x, weight, None, s, p, d, g), F.conv2d(x, weight, None, s, p, d, g))


def test_conv2d_shape_follows_conv_output_size_and_unbatched():
    x, weight = randn(2, 3, 11, 13), randn(5, 3, 3, 5)
    y = cnn.conv2d(x, weight, stride=2, padding=1, dilation=2)
    assert y.shape == (2, 5, cnn.conv_output_size(11, 3, 2, 1, 2), cnn.conv_output_size(13, 5, 2, 1, 2))
    torch.testing.assert_close(cnn.conv2d(x[0], weight, padding=1), F.conv2d(x[0], weight, padding=1))


def test_conv2d_noncontiguous_and_float32():
    x, weight = noncontig(2, 4, 7, 9, seed=4), noncontig(6, 2, 3, 3, seed=5)
    torch.testing.assert_close(cnn.conv2d(x, weight, groups=2, padding=1), F.conv2d(x, weight, groups=2, padding=1))
    x32, w32 = x.float(), weight.float()
    torch.testing.assert_close(cnn.conv2d(x32, w32, groups=2), F.conv2d(x32, w32, groups=2))


def test_conv2d_gradcheck():
    x, weight, bias = randn(1, 4, 5, 6, requires_grad=True), randn(4, 2, 2, 3, seed=1, requires_grad=True), randn(4, seed=2, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b, c: cnn.conv2d(a, b, c, 2, 1, 1, 2), (x, weight, bias))


def test_conv2d_errors():
    x, weight = randn(1, 4, 5, 5), randn(2, 4, 3, 3)
    with pytest.raises(TypeError, match=r"conv2d: x must be a torch\.Tensor; got list"):
        cnn.conv2d([[1.0]], weight)
    with pytest.raises(TypeError, match="conv2d: x must be a floating-point tensor"):
        cnn.conv2d(torch.ones(1, 4, 5, 5, dtype=torch.long), weight)
    with pytest.raises(ValueError, match=r"conv2d: x must be 3-D or 4-D; got shape \(4, 5\)"):
        cnn.conv2d(randn(4, 5), weight)
    with pytest.raises(ValueError, match=r"conv2d: weight must be 4-D; got shape \(2, 4, 3\)"):
        cnn.conv2d(x, randn(2, 4, 3))
    with pytest.raises(ValueError, match="conv2d: in_channels 4 must be divisible by groups 3"):
        cnn.conv2d(x, randn(3, 1, 3, 3), groups=3)
    with pytest.raises(ValueError, match=r"conv2d: out_channels \(weight.shape\[0\] = 3\) must be divisible by groups 2"):
        cnn.conv2d(x, randn(3, 2, 3, 3), groups=2)
    with pytest.raises(ValueError, match=r"conv2d: weight must have shape .* got \(2, 3, 3, 3\)"):
        cnn.conv2d(x, randn(2, 3, 3, 3))
    with pytest.raises(TypeError, match="conv2d: weight must have the dtype of x"):
        cnn.conv2d(x, weight.float())
    with pytest.raises(ValueError, match=r"conv2d: bias must have shape \(2,\); got \(1, 2\)"):
        cnn.conv2d(x, weight, randn(1, 2))
    with pytest.raises(ValueError, match="conv2d: stride must be >= 1; got 0"):
        cnn.conv2d(x, weight, stride=0)
    with pytest.raises(TypeError, match="conv2d: stride must be an int or a pair of ints; got float"):
        cnn.conv2d(x, weight, stride=1.0)
    with pytest.raises(ValueError, match=r"conv2d: dilation must be an int or a pair of ints; got \(1, 1, 1\)"):
        cnn.conv2d(x, weight, dilation=(1, 1, 1))
    with pytest.raises(ValueError, match="conv2d: padding must be >= 0; got -1"):
        cnn.conv2d(x, weight, padding=-1)
    with pytest.raises(ValueError, match=r"conv2d: padding must be one of \('valid', 'same'\); got 'full'"):
        cnn.conv2d(x, weight, padding="full")
    with pytest.raises(ValueError, match="conv2d: padding='same' needs stride 1"):
        cnn.conv2d(x, weight, padding="same", stride=2)
    with pytest.raises(ValueError, match="conv2d: groups must be >= 1; got 0"):
        cnn.conv2d(x, weight, groups=0)
    with pytest.raises(ValueError, match=r"conv2d: padded input \(5, 5\) is smaller than the dilated kernel \(7, 7\)"):
        cnn.conv2d(x, weight, dilation=3)


# ---------------------------------------------------------------------------
# conv_transpose2d
# ---------------------------------------------------------------------------

TCONV_CASES = [
    # (N, C, H, W, O, kh, kw, stride, padding, output_padding)
    (2, 3, 4, 5, 2, 3, 3, 1, 0, 0),
    (1, 2, 5, 4, 3, 4, 4, 2, 1, 0),
    (2, 4, 3, 6, 1, 3, 2, (3, 2), (1, 0), (2, 1)),
    (1, 1, 4, 4, 2, 1, 1, 2, 0, 1),
    (1, 3, 3, 3, 2, 5, 3, 2, 2, 1),
]


@pytest.mark.parametrize("case", TCONV_CASES)
def test_conv_transpose2d_matches_torch(case):
    n, c, h, w, o, kh, kw, s, p, op = case
    x, weight, bias = randn(n, c, h, w, seed=1), randn(c, o, kh, kw, seed=2), randn(o, seed=3)
    ours = cnn.conv_transpose2d(x, weight, bias, s, p, op)
    ref = F.conv_transpose2d(x, weight, bias, s, p, op)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref)
    sp = (s, s) if isinstance(s, int) else s
    pp = (p, p) if isinstance(p, int) else p
    opp = (op, op) if isinstance(op, int) else op
    assert ours.shape[2] == cnn.conv_transpose_output_size(h, kh, sp[0], pp[0], opp[0])
    assert ours.shape[3] == cnn.conv_transpose_output_size(w, kw, sp[1], pp[1], opp[1])


def test_conv_transpose2d_is_the_adjoint_of_conv2d():
    # <conv(x), y> = <x, conv_transpose(y)> for the same weight: the defining property.
    x, weight = randn(2, 3, 9, 8, seed=1), randn(4, 3, 3, 3, seed=2)
    y = randn(2, 4, 5, 4, seed=3)  # the shape of conv2d(x): (5, 4)
    lhs = (cnn.conv2d(x, weight, stride=2, padding=1) * y).sum()
    rhs = (x * cnn.conv_transpose2d(y, weight, stride=2, padding=1, output_padding=(0, 1))).sum()
    torch.testing.assert_close(lhs, rhs)


def test_conv_transpose2d_noncontiguous_unbatched_and_gradcheck():
    x, weight = noncontig(1, 3, 4, 5, seed=4), noncontig(3, 2, 3, 2, seed=5)
    torch.testing.assert_close(cnn.conv_transpose2d(x, weight, stride=2, padding=1), F.conv_transpose2d(x, weight, stride=2, padding=1))
    torch.testing.assert_close(cnn.conv_transpose2d(x[0], weight, stride=2), F.conv_transpose2d(x[0], weight, stride=2))
    xg, wg, bg = randn(1, 2, 3, 3, requires_grad=True), randn(2, 2, 3, 3, seed=1, requires_grad=True), randn(2, seed=2, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b, c: cnn.conv_transpose2d(a, b, c, 2, 1, 1), (xg, wg, bg))


def test_conv_transpose2d_errors():
    x, weight = randn(1, 3, 4, 4), randn(3, 2, 3, 3)
    with pytest.raises(ValueError, match=r"conv_transpose2d: weight must have shape \(in_channels, out_channels, kh, kw\) with in_channels = 3; got \(2, 3, 3, 3\)"):
        cnn.conv_transpose2d(x, randn(2, 3, 3, 3))
    with pytest.raises(ValueError, match=r"conv_transpose2d: output_padding must be smaller than stride \(2, 2\) on each axis; got \(2, 2\)"):
        cnn.conv_transpose2d(x, weight, stride=2, output_padding=2)
    with pytest.raises(ValueError, match=r"conv_transpose2d: output_padding must be smaller than stride \(1, 1\)"):
        cnn.conv_transpose2d(x, weight, output_padding=1)
    with pytest.raises(ValueError, match="conv_transpose2d: the output size would be"):
        cnn.conv_transpose2d(x, weight, padding=4)
    with pytest.raises(ValueError, match=r"conv_transpose2d: bias must have shape \(2,\); got \(3,\)"):
        cnn.conv_transpose2d(x, weight, randn(3))
    with pytest.raises(TypeError, match="conv_transpose2d: weight must have the dtype of x"):
        cnn.conv_transpose2d(x, weight.float())
    with pytest.raises(ValueError, match=r"conv_transpose2d: x must be 3-D or 4-D; got shape \(3,\)"):
        cnn.conv_transpose2d(randn(3), weight)
    with pytest.raises(ValueError, match="conv_transpose2d: padding must be >= 0"):
        cnn.conv_transpose2d(x, weight, padding=-1)


# ---------------------------------------------------------------------------
# output sizes and receptive field
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 5, 8, 13])
@pytest.mark.parametrize("k,s,p,d", [(1, 1, 0, 1), (3, 1, 1, 1), (3, 2, 1, 1), (4, 3, 2, 2), (5, 2, 0, 1)])
def test_output_sizes_match_modules(size, k, s, p, d):
    x = torch.zeros(1, 1, size, size)
    if size + 2 * p >= d * (k - 1) + 1:
        assert cnn.conv_output_size(size, k, s, p, d) == nn.Conv2d(1, 1, k, s, p, d)(x).shape[-1]
    else:
        with pytest.raises(ValueError, match="conv_output_size: padded input size"):
            cnn.conv_output_size(size, k, s, p, d)
    for op in range(max(s, d)):
        expected = (size - 1) * s - 2 * p + d * (k - 1) + op + 1
        if expected >= 1:
            got = nn.ConvTranspose2d(1, 1, k, s, p, op, dilation=d)(x).shape[-1]
            assert cnn.conv_transpose_output_size(size, k, s, p, op, d) == got


def test_output_size_errors():
    with pytest.raises(TypeError, match="conv_output_size: size must be an int; got float"):
        cnn.conv_output_size(5.0, 3)
    with pytest.raises(TypeError, match="conv_output_size: kernel_size must be an int; got bool"):
        cnn.conv_output_size(5, True)
    with pytest.raises(ValueError, match="conv_output_size: stride must be >= 1; got 0"):
        cnn.conv_output_size(5, 3, stride=0)
    with pytest.raises(ValueError, match="conv_output_size: padding must be >= 0; got -1"):
        cnn.conv_output_size(5, 3, padding=-1)
    with pytest.raises(ValueError, match="conv_output_size: dilation must be >= 1; got 0"):
        cnn.conv_output_size(5, 3, dilation=0)
    with pytest.raises(ValueError, match=r"conv_transpose_output_size: output_padding must be smaller than max\(stride, dilation\) = 2; got 2"):
        cnn.conv_transpose_output_size(5, 3, stride=2, output_padding=2)
    with pytest.raises(ValueError, match="conv_transpose_output_size: the output size would be -1"):
        cnn.conv_transpose_output_size(1, 1, padding=1)
    with pytest.raises(ValueError, match="conv_transpose_output_size: size must be >= 1; got 0"):
        cnn.conv_transpose_output_size(0, 3)


def measured_field(layers, size=64):
    """Receptive field of the centre output unit, measured with autograd on real layers."""
    mods = [nn.Conv2d(1, 1, layer[0], layer[1], dilation=layer[2] if len(layer) == 3 else 1, bias=False) for layer in layers]
    for m in mods:
        nn.init.constant_(m.weight, 1.0)
    h, w, grad_map = cnn.measured_receptive_field(nn.Sequential(*mods), size, generator=torch.Generator().manual_seed(0))
    assert h == w and grad_map.shape == (size, size)
    return h


@pytest.mark.parametrize(
    "layers,expected",
    [
        ([], 1),
        ([(3, 1)], 3),
        ([(3, 1), (3, 1)], 5),
        ([(3, 1)] * 3, 7),
        ([(3, 2), (3, 2), (3, 1)], 15),
        ([(7, 2), (3, 2), (3, 1), (3, 1)], 27),
        ([(3, 1, 1), (3, 1, 2), (3, 1, 4)], 15),
        ([(2, 2), (2, 2), (2, 2)], 8),
        ([(5, 1), (1, 1), [3, 3, 2]], 9),
    ],
)
def test_receptive_field(layers, expected):
    assert cnn.receptive_field(layers) == expected
    if layers:
        assert measured_field(layers) == expected


def test_receptive_field_errors():
    with pytest.raises(TypeError, match="receptive_field: layers must be a sequence"):
        cnn.receptive_field(3)
    with pytest.raises(TypeError, match=r"receptive_field: layers\[0\] must be a tuple"):
        cnn.receptive_field([3])
    with pytest.raises(ValueError, match=r"receptive_field: layers\[1\] must have 2 or 3 entries"):
        cnn.receptive_field([(3, 1), (3,)])
    with pytest.raises(ValueError, match=r"receptive_field: layers\[0\] stride must be >= 1; got 0"):
        cnn.receptive_field([(3, 0)])
    with pytest.raises(TypeError, match=r"receptive_field: layers\[0\] dilation must be an int; got float"):
        cnn.receptive_field([(3, 1, 1.5)])


# ---------------------------------------------------------------------------
# DepthwiseSeparableConv2d
# ---------------------------------------------------------------------------


def test_depthwise_separable_matches_two_torch_convs_and_counts_parameters():
    torch.manual_seed(0)
    m = cnn.DepthwiseSeparableConv2d(4, 6, 3, stride=2, padding=1).double()
    assert sum(p.numel() for p in m.parameters()) == 4 * 3 * 3 + 4 * 6
    assert sorted(m.state_dict()) == ["depthwise.weight", "pointwise.weight"]  # no biases
    assert m.depthwise.groups == 4 and m.pointwise.kernel_size == (1, 1)
    ref = nn.Sequential(
        nn.Conv2d(4, 4, 3, stride=2, padding=1, groups=4, bias=False), nn.Conv2d(4, 6, 1, bias=False)
    ).double()
    with torch.no_grad():
        ref[0].weight.copy_(m.depthwise.weight)
        ref[1].weight.copy_(m.pointwise.weight)
    x = noncontig(2, 4, 9, 7, seed=1)
    y = m(x)
    assert y.shape == (2, 6, 5, 4)
    torch.testing.assert_close(y, ref(x))
    m2 = cnn.DepthwiseSeparableConv2d(3, 5, (3, 1))
    assert sum(p.numel() for p in m2.parameters()) == 3 * 3 + 3 * 5
    assert m(x.requires_grad_()).sum().backward() is None and m.depthwise.weight.grad is not None


def test_depthwise_separable_errors():
    with pytest.raises(ValueError, match="DepthwiseSeparableConv2d: in_channels must be >= 1; got 0"):
        cnn.DepthwiseSeparableConv2d(0, 4, 3)
    with pytest.raises(TypeError, match="DepthwiseSeparableConv2d: out_channels must be an int; got float"):
        cnn.DepthwiseSeparableConv2d(2, 4.0, 3)
    with pytest.raises(ValueError, match="DepthwiseSeparableConv2d: kernel_size must be >= 1; got 0"):
        cnn.DepthwiseSeparableConv2d(2, 4, 0)
    with pytest.raises(ValueError, match="conv2d: in_channels 3 must be divisible by groups 2"):
        cnn.DepthwiseSeparableConv2d(2, 4, 3)(torch.zeros(1, 3, 5, 5))


# ---------------------------------------------------------------------------
# deform_conv2d
# ---------------------------------------------------------------------------

DEFORM_CASES = [
    # (N, C, H, W, O, kh, kw, stride, padding, dilation, groups, offset_groups, with_mask)
    (2, 3, 7, 8, 4, 3, 3, 1, 1, 1, 1, 1, False),
    (1, 4, 6, 9, 2, 3, 2, (2, 1), (0, 1), (1, 2), 2, 4, True),
    (2, 6, 8, 8, 3, 2, 2, 2, 1, 2, 3, 2, True),
    (1, 2, 5, 5, 2, 1, 1, 1, 0, 1, 1, 1, True),
]


def _deform_inputs(case, requires_grad=False, scale=2.0):
    n, c, h, w, o, kh, kw, s, p, d, g, og, with_mask = case
    s2, p2, d2 = [(v, v) if isinstance(v, int) else v for v in (s, p, d)]
    ho = cnn.conv_output_size(h, kh, s2[0], p2[0], d2[0])
    wo = cnn.conv_output_size(w, kw, s2[1], p2[1], d2[1])
    x = randn(n, c, h, w, seed=1, requires_grad=requires_grad)
    offset = (scale * randn(n, 2 * og * kh * kw, ho, wo, seed=2)).requires_grad_(requires_grad)
    weight = randn(o, c // g, kh, kw, seed=3, requires_grad=requires_grad)
    bias = randn(o, seed=4, requires_grad=requires_grad)
    mask = torch.rand(n, og * kh * kw, ho, wo, generator=gen(5), dtype=torch.float64).requires_grad_(requires_grad) if with_mask else None
    return x, offset, weight, bias, s, p, d, mask


@pytest.mark.parametrize("case", DEFORM_CASES)
def test_deform_conv2d_matches_torchvision(case):
    x, offset, weight, bias, s, p, d, mask = _deform_inputs(case)
    ours = cnn.deform_conv2d(x, offset, weight, bias, s, p, d, mask)
    ref = torchvision.ops.deform_conv2d(x, offset, weight, bias, s, p, d, mask)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref)


def test_deform_conv2d_zero_offset_is_conv2d_and_noncontiguous():
    x, weight = noncontig(2, 4, 6, 7, seed=1), randn(4, 2, 3, 3, seed=2)
    offset = torch.zeros(2, 18, 6, 7, dtype=torch.float64)
    torch.testing.assert_close(cnn.deform_conv2d(x, offset, weight, padding=1), F.conv2d(x, weight, padding=1, groups=2))
    off_nc = noncontig(2, 18, 6, 7, seed=3)
    torch.testing.assert_close(
        cnn.deform_conv2d(x, off_nc, weight, padding=1), torchvision.ops.deform_conv2d(x, off_nc, weight, padding=1)
    )


def test_deform_conv2d_gradients_match_torchvision():
    case = DEFORM_CASES[1]
    ours_in = _deform_inputs(case, requires_grad=True, scale=1.3)
    ref_in = _deform_inputs(case, requires_grad=True, scale=1.3)
    upstream = None
    outs = []
    for fn, args in ((cnn.deform_conv2d, ours_in), (torchvision.ops.deform_conv2d, ref_in)):
        y = fn(*args)
        upstream = randn(*y.shape, seed=9) if upstream is None else upstream
        (y * upstream).sum().backward()
        outs.append([a.grad for a in args if isinstance(a, torch.Tensor)])
    for g_ours, g_ref in zip(*outs):
        torch.testing.assert_close(g_ours, g_ref)


def test_deform_conv2d_gradcheck():
    x, offset, weight, bias, s, p, d, mask = _deform_inputs((1, 2, 3, 4, 2, 2, 2, 1, 0, 1, 1, 1, True), requires_grad=True, scale=0.7)
    assert torch.autograd.gradcheck(lambda *a: cnn.deform_conv2d(a[0], a[1], a[2], a[3], s, p, d, a[4]), (x, offset, weight, bias, mask), fast_mode=True)


def test_deform_conv2d_errors():
    x, weight = randn(1, 4, 5, 5), randn(2, 4, 3, 3)
    offset = torch.zeros(1, 18, 3, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"deform_conv2d: in_channels 4 must be a multiple of weight.shape\[1\]"):
        cnn.deform_conv2d(x, offset, randn(2, 3, 3, 3))
    with pytest.raises(ValueError, match=r"deform_conv2d: out_channels 3 must be divisible by groups 2"):
        cnn.deform_conv2d(x, offset, randn(3, 2, 3, 3))
    with pytest.raises(ValueError, match=r"deform_conv2d: offset must have shape \(N, 2 \* offset_groups \* kh \* kw, Ho, Wo\) = \(1, 2 \* G \* 9, 3, 3\)"):
        cnn.deform_conv2d(x, torch.zeros(1, 18, 5, 5, dtype=torch.float64), weight)
    with pytest.raises(ValueError, match="deform_conv2d: offset must have shape"):
        cnn.deform_conv2d(x, torch.zeros(1, 17, 3, 3, dtype=torch.float64), weight)
    with pytest.raises(ValueError, match="deform_conv2d: offset must have shape"):
        cnn.deform_conv2d(x, torch.zeros(1, 54, 3, 3, dtype=torch.float64), weight)  # 3 offset groups do not divide 4
    with pytest.raises(ValueError, match=r"deform_conv2d: mask must have shape \(1, 9, 3, 3\); got \(1, 18, 3, 3\)"):
        cnn.deform_conv2d(x, offset, weight, mask=offset)
    with pytest.raises(TypeError, match="deform_conv2d: offset must have the dtype of x"):
        cnn.deform_conv2d(x, offset.float(), weight)
    with pytest.raises(ValueError, match=r"deform_conv2d: x must be 4-D; got shape \(4, 5, 5\)"):
        cnn.deform_conv2d(x[0], offset, weight)
    with pytest.raises(ValueError, match="deform_conv2d: padded input"):
        cnn.deform_conv2d(x, offset, randn(2, 4, 7, 7))
    with pytest.raises(ValueError, match=r"deform_conv2d: bias must have shape \(2,\)"):
        cnn.deform_conv2d(x, offset, weight, randn(4))


# ---------------------------------------------------------------------------
# normalization
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 5), (3, 4, 5, 6), (1, 2, 3, 4, 2)])
@pytest.mark.parametrize("momentum", [0.1, 0.7])
def test_batch_norm_training_matches_torch_including_running_stats(shape, momentum):
    x = randn(*shape, seed=1) * 3 + 1
    c = shape[1]
    w, b = randn(c, seed=2), randn(c, seed=3)
    rm, rv = randn(c, seed=4), torch.rand(c, generator=gen(5), dtype=torch.float64) + 0.5
    rm_ref, rv_ref = rm.clone(), rv.clone()
    for _ in range(2):  # two steps: the update compounds
        ours = cnn.batch_norm(x, rm, rv, w, b, training=True, momentum=momentum)
        ref = F.batch_norm(x, rm_ref, rv_ref, w, b, training=True, momentum=momentum)
        torch.testing.assert_close(ours, ref)
        torch.testing.assert_close(rm, rm_ref)
        torch.testing.assert_close(rv, rv_ref)


def test_batch_norm_inference_uses_running_stats_and_noncontiguous():
    x = noncontig(3, 4, 5, 6, seed=1)
    rm, rv = randn(4, seed=2), torch.rand(4, generator=gen(3), dtype=torch.float64) + 0.5
    rm0, rv0 = rm.clone(), rv.clone()
    ours = cnn.batch_norm(x, rm, rv, training=False, eps=1e-3)
    torch.testing.assert_close(ours, F.batch_norm(x, rm, rv, training=False, eps=1e-3))
    assert torch.equal(rm, rm0) and torch.equal(rv, rv0)  # no update in inference
    torch.testing.assert_close(cnn.batch_norm(x, None, None, training=True), F.batch_norm(x, None, None, training=True))


def test_batch_norm_matches_module_and_gradcheck():
    bn = nn.BatchNorm2d(3).double()
    x = randn(4, 3, 2, 2, seed=1)
    rm, rv = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    torch.testing.assert_close(cnn.batch_norm(x, rm, rv, bn.weight, bn.bias, training=True), bn(x))
    torch.testing.assert_close(rm, bn.running_mean)
    torch.testing.assert_close(rv, bn.running_var)
    xg, wg, bg = randn(3, 2, 2, 2, requires_grad=True), randn(2, seed=1, requires_grad=True), randn(2, seed=2, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b, c: cnn.batch_norm(a, None, None, b, c, training=True), (xg, wg, bg))


def test_batch_norm_errors():
    x, rm, rv = randn(4, 3, 2), torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    with pytest.raises(TypeError, match=r"batch_norm: training must be a bool; got int 1"):
        cnn.batch_norm(x, rm, rv, training=1)
    with pytest.raises(ValueError, match=r"batch_norm: momentum must be in \[0, 1\]; got 1.5"):
        cnn.batch_norm(x, rm, rv, training=True, momentum=1.5)
    with pytest.raises(TypeError, match=r"batch_norm: momentum must be a real number; got NoneType None"):
        cnn.batch_norm(x, rm, rv, training=True, momentum=None)
    with pytest.raises(ValueError, match=r"batch_norm: eps must be > 0; got 0"):
        cnn.batch_norm(x, rm, rv, training=True, eps=0)
    with pytest.raises(ValueError, match=r"batch_norm: running_mean must have shape \(3,\); got \(4,\)"):
        cnn.batch_norm(x, torch.zeros(4, dtype=torch.float64), rv, training=True)
    with pytest.raises(ValueError, match=r"batch_norm: weight must have shape \(3,\); got \(1, 3, 1\)"):
        cnn.batch_norm(x, rm, rv, torch.ones(1, 3, 1, dtype=torch.float64), training=True)
    with pytest.raises(ValueError, match="batch_norm: give both running_mean and running_var, or neither"):
        cnn.batch_norm(x, rm, None, training=True)
    with pytest.raises(ValueError, match="batch_norm: running_mean and running_var are required when training=False"):
        cnn.batch_norm(x, None, None, training=False)
    with pytest.raises(ValueError, match="batch_norm: training needs more than 1 value per channel"):
        cnn.batch_norm(randn(1, 3), rm, rv, training=True)
    with pytest.raises(ValueError, match=r"batch_norm: x must have shape \(N, C, \*\)"):
        cnn.batch_norm(randn(3), rm, rv, training=True)


@pytest.mark.parametrize("shape,normalized", [((4, 6), 6), ((2, 3, 5), (5,)), ((2, 3, 4, 5), (3, 4, 5)), ((3, 4, 5), [4, 5])])
def test_layer_norm_matches_torch(shape, normalized):
    x = randn(*shape, seed=1) * 2 + 3
    ns = (normalized,) if isinstance(normalized, int) else tuple(normalized)
    w, b = randn(*ns, seed=2), randn(*ns, seed=3)
    torch.testing.assert_close(cnn.layer_norm(x, normalized, w, b), F.layer_norm(x, ns, w, b))
    torch.testing.assert_close(cnn.layer_norm(x, normalized, eps=0.1), F.layer_norm(x, ns, eps=0.1))


def test_layer_norm_noncontiguous_gradcheck_and_errors():
    x = noncontig(2, 3, 4, 5, seed=1)
    torch.testing.assert_close(cnn.layer_norm(x, (4, 5)), F.layer_norm(x, (4, 5)))
    xg, wg = randn(2, 3, 4, requires_grad=True), randn(3, 4, seed=1, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: cnn.layer_norm(a, (3, 4), b, None), (xg, wg))
    with pytest.raises(ValueError, match=r"layer_norm: normalized_shape \(3,\) must equal the trailing dimensions of x \(2, 3, 4, 5\)"):
        cnn.layer_norm(x, 3)
    with pytest.raises(TypeError, match=r"layer_norm: normalized_shape must be a tuple or list of ints; got str '5'"):
        cnn.layer_norm(x, "5")
    with pytest.raises(ValueError, match=r"layer_norm: weight must have shape \(4, 5\); got \(5,\)"):
        cnn.layer_norm(x, (4, 5), randn(5))
    with pytest.raises(TypeError, match=r"layer_norm: eps must be a real number; got str '1e-5'"):
        cnn.layer_norm(x, (4, 5), eps="1e-5")


@pytest.mark.parametrize("shape", [(2, 3, 7), (2, 3, 4, 5), (1, 2, 3, 4, 2)])
def test_instance_norm_matches_torch(shape):
    x = randn(*shape, seed=1) * 2 + 1
    torch.testing.assert_close(cnn.instance_norm(x), F.instance_norm(x))
    torch.testing.assert_close(cnn.instance_norm(x, eps=0.5), F.instance_norm(x, eps=0.5))


def test_instance_norm_noncontiguous_gradcheck_and_errors():
    x = noncontig(2, 3, 4, 5, seed=1)
    torch.testing.assert_close(cnn.instance_norm(x), F.instance_norm(x))
    assert torch.autograd.gradcheck(cnn.instance_norm, (randn(2, 2, 3, 3, requires_grad=True),))
    with pytest.raises(ValueError, match=r"instance_norm: x must have shape \(N, C, \*spatial\)"):
        cnn.instance_norm(randn(2, 3))
    with pytest.raises(ValueError, match=r"instance_norm: needs more than 1 spatial element per channel; got input of shape \(2, 3, 1, 1\)"):
        cnn.instance_norm(randn(2, 3, 1, 1))
    with pytest.raises(ValueError, match="Expected more than 1 spatial element"):
        F.instance_norm(randn(2, 3, 1, 1))  # the reference refuses it too
    with pytest.raises(TypeError, match=r"instance_norm: x must be a torch\.Tensor; got list"):
        cnn.instance_norm([1.0])


@pytest.mark.parametrize("shape,groups", [((2, 6, 4, 5), 3), ((2, 6, 4, 5), 1), ((2, 6, 4, 5), 6), ((3, 4, 7), 2), ((4, 8), 4)])
def test_group_norm_matches_torch(shape, groups):
    x = randn(*shape, seed=1) * 2 - 1
    c = shape[1]
    w, b = randn(c, seed=2), randn(c, seed=3)
    torch.testing.assert_close(cnn.group_norm(x, groups, w, b), F.group_norm(x, groups, w, b))
    torch.testing.assert_close(cnn.group_norm(x, groups, eps=0.1), F.group_norm(x, groups, eps=0.1))


def test_group_norm_special_cases_noncontiguous_gradcheck_and_errors():
    x = noncontig(2, 4, 3, 5, seed=1)
    torch.testing.assert_close(cnn.group_norm(x, 2), F.group_norm(x, 2))
    torch.testing.assert_close(cnn.group_norm(x, 4), cnn.instance_norm(x))  # G = C
    torch.testing.assert_close(cnn.group_norm(x, 1), cnn.layer_norm(x, (4, 3, 5)))  # G = 1
    xg, wg, bg = randn(2, 4, 2, 2, requires_grad=True), randn(4, seed=1, requires_grad=True), randn(4, seed=2, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b, c: cnn.group_norm(a, 2, b, c), (xg, wg, bg))
    with pytest.raises(ValueError, match="group_norm: channels 4 must be divisible by num_groups 3"):
        cnn.group_norm(x, 3)
    with pytest.raises(ValueError, match="group_norm: num_groups must be >= 1; got 0"):
        cnn.group_norm(x, 0)
    with pytest.raises(ValueError, match=r"group_norm: bias must have shape \(4,\); got \(2,\)"):
        cnn.group_norm(x, 2, None, randn(2))
    with pytest.raises(ValueError, match=r"group_norm: a single sample needs more than 1 value per group; got input of shape \(1, 4\) with num_groups 4"):
        cnn.group_norm(randn(1, 4), 4)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        F.group_norm(randn(1, 4), 4)  # the reference refuses it too
    torch.testing.assert_close(cnn.group_norm(randn(2, 4), 4), F.group_norm(randn(2, 4), 4))  # both allow N > 1
    with pytest.raises(ValueError, match=r"group_norm: x must have shape \(N, C, \*\)"):
        cnn.group_norm(randn(4), 2)


# ---------------------------------------------------------------------------
# dropout
# ---------------------------------------------------------------------------


def test_dropout_zeros_and_scales_with_probability_p():
    x = torch.rand(400, 500, generator=gen(1)) + 0.5
    for p in (0.1, 0.5, 0.8):
        y = cnn.dropout(x, p, generator=gen(2))
        assert y.shape == x.shape
        kept = y != 0
        torch.testing.assert_close(y[kept], x[kept] / (1 - p))  # survivors scaled by 1/(1-p)
        frac = 1 - kept.double().mean().item()
        assert abs(frac - p) < 0.005, (p, frac)  # 200,000 draws: std of the fraction < 0.0012
        assert abs((y.mean() / x.mean()).item() - 1) < 0.01  # expectation preserved
        mask = torch.rand(x.shape, generator=gen(2)) >= p  # same generator state, same mask
        torch.testing.assert_close(y, x * mask / (1 - p))


def test_dropout_generator_is_reproducible_and_independent_of_global_seed():
    x = torch.ones(50, 50)
    torch.manual_seed(0)
    a = cnn.dropout(x, 0.3, generator=gen(7))
    torch.manual_seed(1)
    b = cnn.dropout(x, 0.3, generator=gen(7))
    assert torch.equal(a, b)
    assert not torch.equal(a, cnn.dropout(x, 0.3, generator=gen(8)))


def test_dropout_edge_cases_gradient_and_noncontiguous():
    x = noncontig(6, 7, seed=1).requires_grad_()
    assert cnn.dropout(x, 0.5, training=False) is x
    assert torch.equal(cnn.dropout(x, 0.0, generator=gen(0)), x)
    z = cnn.dropout(x, 1.0)
    assert torch.equal(z, torch.zeros_like(x)) and not torch.isnan(z).any()
    y = cnn.dropout(x, 0.25, generator=gen(3))
    y.sum().backward()
    kept = (y != 0).double()
    torch.testing.assert_close(x.grad, kept / 0.75)
    # torch's F.dropout has the same semantics: zeros or x / (1 - p), identity in eval mode.
    ref = F.dropout(x.detach(), 0.25, training=True)
    assert torch.all((ref == 0) | torch.isclose(ref, x.detach() / 0.75))


def test_dropout_errors():
    x = torch.ones(3)
    with pytest.raises(ValueError, match=r"dropout: p must be in \[0, 1\]; got 1.5"):
        cnn.dropout(x, 1.5)
    with pytest.raises(ValueError, match=r"dropout: p must be in \[0, 1\]; got -0.1"):
        cnn.dropout(x, -0.1)
    with pytest.raises(TypeError, match=r"dropout: p must be a real number; got bool True"):
        cnn.dropout(x, True)
    with pytest.raises(TypeError, match=r"dropout: training must be a bool; got str 'yes'"):
        cnn.dropout(x, 0.5, training="yes")
    with pytest.raises(TypeError, match="dropout: generator must be a torch.Generator; got int"):
        cnn.dropout(x, 0.5, generator=0)
    with pytest.raises(TypeError, match="dropout: x must be a floating-point tensor"):
        cnn.dropout(torch.ones(3, dtype=torch.long), 0.5)


def test_public_api_is_the_issue_plus_the_measurement_helper():
    assert set(cnn.__all__) == {
        "conv2d", "conv_transpose2d", "conv_output_size", "conv_transpose_output_size", "receptive_field", "measured_receptive_field",
        "DepthwiseSeparableConv2d", "deform_conv2d", "batch_norm", "layer_norm", "instance_norm", "group_norm", "dropout",
    }


def test_measured_receptive_field_finds_a_known_window():
    conv = nn.Conv2d(2, 3, (3, 5), bias=False)
    nn.init.constant_(conv.weight, 1.0)
    h, w, grad_map = cnn.measured_receptive_field(conv, 9, in_channels=2)
    assert (h, w) == (3, 5) and int((grad_map > 0).sum()) == 15
    with pytest.raises(ValueError, match=r"measured_receptive_field: size must be >= 1; got 0"):
        cnn.measured_receptive_field(conv, 0)
    with pytest.raises(TypeError, match=r"measured_receptive_field: model must be an nn.Module; got str"):
        cnn.measured_receptive_field("conv")
