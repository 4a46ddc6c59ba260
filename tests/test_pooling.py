"""Tests of dlkb.pooling against torch.nn.functional, torchvision.ops and the paper formulas."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torchvision import ops

from dlkb import pooling as P

# (kernel_size, stride, padding) on a non-square map; overlapping, non-divisible, pairs, 1x1.
WINDOWS = [
    (2, None, 0),
    (3, 2, 1),
    ((3, 2), (2, 1), (1, 0)),
    ((2, 4), (1, 3), (1, 2)),
    (1, 1, 0),
    ((7, 5), None, 0),
]

# Boxes crossing the border, degenerate (a point, a line), tiny, large, fractional.
BOXES = [
    [0, 0.0, 0.0, 8.0, 6.0],
    [1, -3.2, 2.5, 20.0, 7.5],
    [0, 3.5, 4.5, 3.5, 4.5],
    [1, 5.1, 1.2, 9.9, 8.7],
    [0, 7.7, 5.6, 15.0, 12.0],
    [1, 0.5, 0.5, 1.5, 2.5],
    [0, 2.5, -1.5, 2.5, 11.0],
]


def _randn(*shape: int, generator: torch.Generator, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=generator, dtype=dtype)


def _noncontiguous(x: torch.Tensor) -> torch.Tensor:
    y = x.transpose(2, 3).contiguous().transpose(2, 3)  # same values, transposed strides
    assert not y.is_contiguous() and torch.equal(x, y)
    return y


# --------------------------------------------------------------------------- max / avg


@pytest.mark.parametrize("kernel_size, stride, padding", WINDOWS)
@pytest.mark.parametrize("name", ["max_pool2d", "avg_pool2d"])
def test_pool2d_matches_torch(name, kernel_size, stride, padding, generator):
    x = _randn(2, 3, 7, 5, generator=generator)
    ours = getattr(P, name)(x, kernel_size, stride, padding)
    ref = getattr(F, name)(x, kernel_size, stride, padding)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref)


@pytest.mark.parametrize("name", ["max_pool2d", "avg_pool2d"])
def test_pool2d_noncontiguous_and_gradient_match_torch(name, generator):
    x = _noncontiguous(_randn(2, 3, 9, 6, generator=generator))
    ours_in, ref_in = x.clone().requires_grad_(), x.clone().requires_grad_()
    weight = _randn(2, 3, 5, 3, generator=generator)
    (getattr(P, name)(ours_in, 3, 2, 1) * weight).sum().backward()
    (getattr(F, name)(ref_in, 3, 2, 1) * weight).sum().backward()
    torch.testing.assert_close(ours_in.grad, ref_in.grad)


@pytest.mark.parametrize("name", ["max_pool2d", "avg_pool2d"])
def test_pool2d_gradcheck(name, generator):
    x = _randn(1, 2, 5, 4, generator=generator, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: getattr(P, name)(t, (2, 3), (2, 1), (1, 1)), (x,))


def test_max_pool2d_padding_is_minus_infinity_not_zero():
    x = -torch.ones(1, 1, 2, 2)
    assert torch.equal(P.max_pool2d(x, 2, 1, 1), -torch.ones(1, 1, 3, 3))


def test_avg_pool2d_counts_padding():
    x = torch.ones(1, 1, 2, 2)
    corner = P.avg_pool2d(x, 2, 1, 1)[0, 0, 0, 0]
    assert corner.item() == pytest.approx(0.25)  # one real pixel of four


@pytest.mark.parametrize("name", ["max_pool2d", "avg_pool2d"])
def test_pool2d_bad_inputs(name):
    fn = getattr(P, name)
    x = torch.zeros(1, 1, 4, 4)
    with pytest.raises(TypeError, match=rf"{name}: x must be a torch.Tensor; got list"):
        fn([[1.0]], 2)
    with pytest.raises(ValueError, match=rf"{name}: x must be a 4-D tensor \(N, C, H, W\); got shape \(4, 4\)"):
        fn(torch.zeros(4, 4), 2)
    with pytest.raises(TypeError, match=rf"{name}: x must have a floating-point dtype; got torch.int64"):
        fn(torch.zeros(1, 1, 4, 4, dtype=torch.long), 2)
    with pytest.raises(TypeError, match=rf"{name}: kernel_size must be an int or a pair of ints; got float 2.0"):
        fn(x, 2.0)
    with pytest.raises(ValueError, match=rf"{name}: x must have H >= 1 and W >= 1; got shape \(1, 1, 0, 4\)"):
        fn(torch.zeros(1, 1, 0, 4), 1)
    with pytest.raises(ValueError, match=rf"{name}: kernel_size must be >= 1; got \(0, 2\)"):
        fn(x, (0, 2))
    with pytest.raises(ValueError, match=rf"{name}: stride must be >= 1; got 0"):
        fn(x, 2, 0)
    with pytest.raises(ValueError, match=rf"{name}: padding must be >= 0; got -1"):
        fn(x, 2, 1, -1)
    with pytest.raises(ValueError, match=rf"{name}: padding must be at most half of kernel_size \(3, 3\); got \(2, 2\)"):
        fn(x, 3, 1, 2)
    with pytest.raises(ValueError, match=rf"{name}: kernel_size \(5, 5\) must fit in the padded input \(4, 4\)"):
        fn(x, 5)


# --------------------------------------------------------------------------- spatial pyramid


def _spp_reference(x: torch.Tensor, levels, mode: str) -> torch.Tensor:
    pool = F.adaptive_max_pool2d if mode == "max" else F.adaptive_avg_pool2d
    return torch.cat([pool(x, n).flatten(1) for n in levels], 1)


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("size", [(1, 1), (6, 6), (7, 5), (3, 2), (13, 9)])
def test_spatial_pyramid_pool_matches_adaptive_pooling(mode, size, generator):
    x = _randn(2, 3, *size, generator=generator)
    levels = (1, 2, 3, 4, 6)
    ours = P.spatial_pyramid_pool(x, levels, mode)
    assert ours.shape == (2, 3 * sum(n * n for n in levels))
    torch.testing.assert_close(ours, _spp_reference(x, levels, mode))


def test_spatial_pyramid_pool_default_levels_fixed_length(generator):
    for size in [(5, 5), (8, 12), (17, 4)]:
        x = _randn(2, 4, *size, generator=generator)
        out = P.spatial_pyramid_pool(x)
        assert out.shape == (2, 4 * 21)
        torch.testing.assert_close(out, _spp_reference(x, (1, 2, 4), "max"))


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_spatial_pyramid_pool_gradients(mode, generator):
    x = _noncontiguous(_randn(2, 2, 7, 6, generator=generator))
    ours_in, ref_in = x.clone().requires_grad_(), x.clone().requires_grad_()
    weight = _randn(2, 2 * 14, generator=generator)
    (P.spatial_pyramid_pool(ours_in, (1, 2, 3), mode) * weight).sum().backward()
    (_spp_reference(ref_in, (1, 2, 3), mode) * weight).sum().backward()
    torch.testing.assert_close(ours_in.grad, ref_in.grad)
    x64 = _randn(1, 2, 5, 4, generator=generator, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: P.spatial_pyramid_pool(t, (1, 2, 3), mode), (x64,))


def test_spatial_pyramid_pool_bad_inputs():
    x = torch.zeros(1, 1, 4, 4)
    with pytest.raises(ValueError, match=r"spatial_pyramid_pool: x must be a 4-D tensor"):
        P.spatial_pyramid_pool(torch.zeros(1, 4, 4))
    with pytest.raises(ValueError, match=r"spatial_pyramid_pool: x must have H >= 1 and W >= 1; got shape \(1, 1, 0, 4\)"):
        P.spatial_pyramid_pool(torch.zeros(1, 1, 0, 4))
    with pytest.raises(TypeError, match=r"spatial_pyramid_pool: levels must be a tuple or list of ints; got int 4"):
        P.spatial_pyramid_pool(x, 4)
    with pytest.raises(ValueError, match=r"spatial_pyramid_pool: levels\[1\] must be >= 1; got 0"):
        P.spatial_pyramid_pool(x, (1, 0))
    with pytest.raises(ValueError, match=r"spatial_pyramid_pool: levels must not be empty; got \(\)"):
        P.spatial_pyramid_pool(x, ())
    with pytest.raises(ValueError, match=r"spatial_pyramid_pool: mode must be one of \('max', 'avg'\); got 'mean'"):
        P.spatial_pyramid_pool(x, mode="mean")


def test_spatial_pyramid_pooling_module(generator):
    spp = P.SpatialPyramidPooling((1, 2), mode="avg")
    x = _randn(3, 5, 6, 7, generator=generator)
    assert spp.output_features(5) == 25
    torch.testing.assert_close(spp(x), _spp_reference(x, (1, 2), "avg"))
    with pytest.raises(ValueError, match=r"SpatialPyramidPooling: mode must be one of"):
        P.SpatialPyramidPooling(mode="sum")


# --------------------------------------------------------------------------- RoI pool / align


def _boxes(dtype=torch.float32) -> torch.Tensor:
    return torch.tensor(BOXES, dtype=dtype)


@pytest.mark.parametrize("output_size", [1, (2, 3), (7, 7)])
@pytest.mark.parametrize("spatial_scale", [1.0, 0.5, 0.75, 1 / 16])
def test_roi_pool_matches_torchvision(output_size, spatial_scale, generator):
    x = _randn(2, 3, 9, 12, generator=generator)
    boxes = _boxes()
    if spatial_scale == 1 / 16:
        boxes[:, 1:] *= 16
    ours = P.roi_pool(x, boxes, output_size, spatial_scale)
    ref = ops.roi_pool(x, boxes, output_size, spatial_scale)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref)


def test_roi_pool_rounds_halves_away_from_zero(generator):
    # 2.5 -> 3 in C (torch.round would give 2); the box then starts one cell later.
    x = torch.arange(20.0).reshape(1, 1, 4, 5)
    boxes = torch.tensor([[0, 2.5, 0.0, 2.5, 0.0]])
    assert P.roi_pool(x, boxes, 1).item() == ops.roi_pool(x, boxes, 1).item() == 3.0


def test_roi_pool_gradient_and_noncontiguous(generator):
    x = _noncontiguous(_randn(2, 3, 9, 12, generator=generator))
    ours_in, ref_in = x.clone().requires_grad_(), x.clone().requires_grad_()
    boxes = _boxes()
    weight = _randn(len(BOXES), 3, 2, 3, generator=generator)
    (P.roi_pool(ours_in, boxes, (2, 3)) * weight).sum().backward()
    (ops.roi_pool(ref_in, boxes, (2, 3)) * weight).sum().backward()
    torch.testing.assert_close(ours_in.grad, ref_in.grad)
    x64 = _randn(2, 1, 5, 6, generator=generator, dtype=torch.float64).requires_grad_()
    b64 = torch.tensor([[0, 0.4, 1.0, 5.0, 4.6], [1, -1.0, 2.0, 9.0, 9.0]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: P.roi_pool(t, b64, (2, 2)), (x64,))


def test_roi_pool_no_boxes(generator):
    x = _randn(1, 3, 4, 4, generator=generator)
    assert P.roi_pool(x, torch.zeros(0, 5), (2, 2)).shape == (0, 3, 2, 2)
    assert P.roi_align(x, torch.zeros(0, 5), (2, 2)).shape == (0, 3, 2, 2)


@pytest.mark.parametrize("output_size", [1, (2, 3), (5, 4)])
@pytest.mark.parametrize("spatial_scale", [1.0, 0.5, 0.25])
@pytest.mark.parametrize("sampling_ratio", [-1, 0, 1, 2, 3])
@pytest.mark.parametrize("aligned", [False, True])
def test_roi_align_matches_torchvision(output_size, spatial_scale, sampling_ratio, aligned, generator):
    x = _randn(2, 3, 9, 12, generator=generator, dtype=torch.float64)
    boxes = _boxes(torch.float64)
    ours = P.roi_align(x, boxes, output_size, spatial_scale, sampling_ratio, aligned)
    ref = ops.roi_align(x, boxes, output_size, spatial_scale, sampling_ratio, aligned)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref)


def test_roi_align_float32_noncontiguous_and_gradient(generator):
    x = _noncontiguous(_randn(2, 3, 9, 12, generator=generator))
    ours_in, ref_in = x.clone().requires_grad_(), x.clone().requires_grad_()
    boxes = _boxes()
    weight = _randn(len(BOXES), 3, 3, 2, generator=generator)
    ours = P.roi_align(ours_in, boxes, (3, 2), 0.5, -1, True)
    ref = ops.roi_align(ref_in, boxes, (3, 2), 0.5, -1, True)
    torch.testing.assert_close(ours, ref)
    (ours * weight).sum().backward()
    (ref * weight).sum().backward()
    torch.testing.assert_close(ours_in.grad, ref_in.grad)
    x64 = _randn(2, 2, 6, 7, generator=generator, dtype=torch.float64).requires_grad_()
    b64 = torch.tensor([[0, 0.4, 1.0, 5.0, 4.6], [1, -1.0, 2.0, 9.0, 9.0]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: P.roi_align(t, b64, (2, 2), 1.0, 2, False), (x64,))


def test_roi_align_is_exact_on_a_linear_ramp():
    # Bilinear interpolation reproduces a linear function, so each bin is its centre's x.
    x = torch.arange(16.0, dtype=torch.float64).expand(1, 1, 16, 16)  # value = column index
    boxes = torch.tensor([[0, 2.3, 3.1, 10.7, 9.9]], dtype=torch.float64)
    out = P.roi_align(x, boxes, (1, 4), aligned=False)
    centres = 2.3 + (torch.arange(4, dtype=torch.float64) + 0.5) * (10.7 - 2.3) / 4
    torch.testing.assert_close(out[0, 0, 0], centres)


@pytest.mark.parametrize("name", ["roi_pool", "roi_align"])
def test_roi_bad_inputs(name):
    fn = getattr(P, name)
    x = torch.zeros(2, 1, 4, 4)
    good = torch.tensor([[0, 0.0, 0.0, 2.0, 2.0]])
    with pytest.raises(ValueError, match=rf"{name}: x must be a 4-D tensor"):
        fn(torch.zeros(1, 4, 4), good, 2)
    with pytest.raises(TypeError, match=rf"{name}: boxes must be a torch.Tensor; got list"):
        fn(x, [[0, 0, 0, 2, 2]], 2)
    with pytest.raises(ValueError, match=rf"{name}: boxes must have shape \(K, 5\) .*; got \(1, 4\)"):
        fn(x, torch.zeros(1, 4), 2)
    with pytest.raises(TypeError, match=rf"{name}: boxes must have the dtype and device of x \(torch.float32, cpu\); got \(torch.float64, cpu\)"):
        fn(x, good.double(), 2)
    with pytest.raises(ValueError, match=rf"{name}: boxes must be finite"):
        fn(x, torch.tensor([[0, 0.0, 0.0, float("nan"), 2.0]]), 2)
    with pytest.raises(ValueError, match=rf"{name}: boxes\[:, 0\] must hold integer batch indices in \[0, 2\); got \[2.0\]"):
        fn(x, torch.tensor([[2, 0.0, 0.0, 2.0, 2.0]]), 2)
    with pytest.raises(ValueError, match=rf"{name}: boxes\[:, 0\] must hold integer batch indices in \[0, 2\); got \[0.5\]"):
        fn(x, torch.tensor([[0.5, 0.0, 0.0, 2.0, 2.0]]), 2)
    with pytest.raises(ValueError, match=rf"{name}: boxes must have x1 <= x2 and y1 <= y2; got \[0.0, 3.0, 0.0, 2.0, 2.0\]"):
        fn(x, torch.tensor([[0, 3.0, 0.0, 2.0, 2.0]]), 2)
    with pytest.raises(ValueError, match=rf"{name}: boxes must have x1 <= x2 and y1 <= y2; got \[0.0, 0.0, 3.0, 2.0, 2.0\]"):
        fn(x, torch.tensor([[0, 0.0, 3.0, 2.0, 2.0]]), 2)
    with pytest.raises(ValueError, match=rf"{name}: output_size must be >= 1; got \(0, 2\)"):
        fn(x, good, (0, 2))
    with pytest.raises(ValueError, match=rf"{name}: output_size must be an int or a pair of ints; got \(2, 2, 2\) \(length 3\)"):
        fn(x, good, (2, 2, 2))
    with pytest.raises(TypeError, match=rf"{name}: spatial_scale must be a real number; got str"):
        fn(x, good, 2, "1")
    with pytest.raises(ValueError, match=rf"{name}: spatial_scale must be > 0; got 0.0"):
        fn(x, good, 2, 0.0)
    with pytest.raises(ValueError, match=rf"{name}: spatial_scale must be a finite number; got inf"):
        fn(x, good, 2, float("inf"))


def test_roi_align_bad_options():
    x = torch.zeros(1, 1, 4, 4)
    good = torch.tensor([[0, 0.0, 0.0, 2.0, 2.0]])
    with pytest.raises(TypeError, match=r"roi_align: sampling_ratio must be an int; got float 2\.0"):
        P.roi_align(x, good, 2, sampling_ratio=2.0)
    with pytest.raises(TypeError, match=r"roi_align: aligned must be a bool; got int 1"):
        P.roi_align(x, good, 2, aligned=1)


# --------------------------------------------------------------------------- stochastic pooling


def test_stochastic_pool2d_eval_is_probability_weighted_average(generator):
    x = torch.rand(2, 3, 6, 9, generator=generator)
    x[0, 0, :3, :3] = 0.0  # an all-zero window
    out = P.stochastic_pool2d(x, 3, training=False)
    assert out.shape == (2, 3, 2, 3)
    # sum a^2 / sum a, written with library average pooling (the 1/k^2 factors cancel).
    ref = F.avg_pool2d(x * x, 3) / F.avg_pool2d(x, 3)
    ref[0, 0, 0, 0] = 0.0
    torch.testing.assert_close(out, ref)
    assert out[0, 0, 0, 0].item() == 0.0


def test_stochastic_pool2d_training_picks_a_member_of_its_window(generator):
    x = torch.rand(2, 3, 7, 6, generator=generator)
    out = P.stochastic_pool2d(x, (3, 2), (2, 2), generator=generator)
    assert out.shape == (2, 3, 3, 3)
    windows = x.unfold(2, 3, 2).unfold(3, 2, 2).reshape(2, 3, 3, 3, 6)
    assert (windows == out[..., None]).any(-1).all()


def test_stochastic_pool2d_distribution_matches_probabilities():
    a = torch.tensor([0.0, 1.0, 2.0, 5.0])  # one 2x2 window, p = a / 8
    x = a.reshape(1, 1, 2, 2).expand(20000, 1, 2, 2)  # 20,000 independent draws
    out = P.stochastic_pool2d(x, 2, generator=torch.Generator().manual_seed(1)).flatten()
    freq = torch.stack([(out == v).float().mean() for v in a])
    p = a / a.sum()
    assert freq[0].item() == 0.0  # a zero activation is never picked
    se = (p * (1 - p) / out.numel()).sqrt()
    assert ((freq - p).abs() <= 5 * se + 1e-12).all(), (freq, p)


def test_stochastic_pool2d_expectation_is_eval_output(generator):
    x = torch.relu(torch.randn(1, 2, 6, 6, generator=generator, dtype=torch.float64))
    draws = x.expand(4000, 2, 6, 6)
    mean = P.stochastic_pool2d(draws, 2, generator=generator).mean(0)
    expected = P.stochastic_pool2d(x, 2, training=False)[0]
    # Monte Carlo error: each window's output has standard deviation at most max(a) ~ 3.
    torch.testing.assert_close(mean, expected, atol=0.15, rtol=0.0)


def test_stochastic_pool2d_generator_reproducible_and_noncontiguous(generator):
    x = _noncontiguous(torch.rand(2, 2, 6, 4, generator=generator))
    a = P.stochastic_pool2d(x, 2, generator=torch.Generator().manual_seed(5))
    b = P.stochastic_pool2d(x.contiguous(), 2, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_stochastic_pool2d_gradients(generator):
    x = torch.rand(1, 2, 4, 4, generator=generator).requires_grad_()
    P.stochastic_pool2d(x, 2, generator=generator).sum().backward()
    grad = x.grad.unfold(2, 2, 2).unfold(3, 2, 2).reshape(1, 2, 2, 2, 4)
    assert torch.equal(grad.sum(-1), torch.ones(1, 2, 2, 2))  # one chosen position per window
    assert torch.equal((grad == 1).sum(-1), torch.ones(1, 2, 2, 2, dtype=torch.long))
    x64 = (torch.rand(1, 2, 4, 6, generator=generator, dtype=torch.float64) + 0.1).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: P.stochastic_pool2d(t, (2, 3), 1, training=False), (x64,))


def test_stochastic_pool2d_module_follows_train_and_eval(generator):
    x = torch.rand(1, 1, 4, 4, generator=generator)
    pool = P.StochasticPool2d(2, generator=torch.Generator().manual_seed(0))
    assert (x.unfold(2, 2, 2).unfold(3, 2, 2).reshape(1, 1, 2, 2, 4) == pool(x)[..., None]).any(-1).all()
    pool.eval()
    torch.testing.assert_close(pool(x), F.avg_pool2d(x * x, 2) / F.avg_pool2d(x, 2))


def test_stochastic_pool2d_bad_inputs():
    x = torch.rand(1, 1, 4, 4)
    with pytest.raises(ValueError, match=r"stochastic_pool2d: x must be non-negative \(e.g. after a ReLU\); got minimum -1"):
        P.stochastic_pool2d(-x - 1, 2)
    with pytest.raises(TypeError, match=r"stochastic_pool2d: training must be a bool; got int 1"):
        P.stochastic_pool2d(x, 2, training=1)
    with pytest.raises(TypeError, match=r"stochastic_pool2d: generator must be a torch\.Generator; got int"):
        P.stochastic_pool2d(x, 2, generator=0)
    with pytest.raises(ValueError, match=r"stochastic_pool2d: x must be a 4-D tensor"):
        P.stochastic_pool2d(torch.rand(4, 4), 2)
    with pytest.raises(ValueError, match=r"stochastic_pool2d: kernel_size \(5, 5\) must fit"):
        P.stochastic_pool2d(x, 5)


# --------------------------------------------------------------------------- unpooling


@pytest.mark.parametrize("size, kernel_size, stride", [((8, 6), 2, None), ((9, 7), 3, 2), ((6, 9), (2, 3), (2, 3)), ((1, 1), 1, 1)])
def test_max_unpool2d_matches_torch(size, kernel_size, stride, generator):
    x = _randn(2, 3, *size, generator=generator)
    y, idx = F.max_pool2d(x, kernel_size, stride, return_indices=True)
    ours = P.max_unpool2d(y, idx, kernel_size, stride, output_size=size)
    ref = F.max_unpool2d(y, idx, kernel_size, stride, output_size=size)
    assert ours.shape == ref.shape == (2, 3, *size)
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(
        P.max_unpool2d(y, idx, kernel_size, stride, output_size=x.shape),
        F.max_unpool2d(y, idx, kernel_size, stride, output_size=x.shape),
    )


def test_max_unpool2d_default_size_gradient_and_noncontiguous(generator):
    x = _randn(2, 3, 8, 6, generator=generator)
    y, idx = F.max_pool2d(x, 2, return_indices=True)
    y = _noncontiguous(y)
    ours_in, ref_in = y.clone().requires_grad_(), y.clone().requires_grad_()
    ours = P.max_unpool2d(ours_in, idx, 2)
    ref = F.max_unpool2d(ref_in, idx, 2)
    assert ours.shape == (2, 3, 8, 6)
    torch.testing.assert_close(ours, ref)
    weight = _randn(2, 3, 8, 6, generator=generator)
    (ours * weight).sum().backward()
    (ref * weight).sum().backward()
    torch.testing.assert_close(ours_in.grad, ref_in.grad)
    y64 = y.double().requires_grad_()
    assert torch.autograd.gradcheck(lambda t: P.max_unpool2d(t, idx, 2), (y64,))


def test_max_unpool2d_bad_inputs(generator):
    x = _randn(1, 1, 4, 4, generator=generator)
    y, idx = F.max_pool2d(x, 2, return_indices=True)
    with pytest.raises(TypeError, match=r"max_unpool2d: indices must be a torch\.Tensor; got list"):
        P.max_unpool2d(y, [0], 2)
    with pytest.raises(TypeError, match=r"max_unpool2d: indices must be an int64 tensor; got torch.int32"):
        P.max_unpool2d(y, idx.int(), 2)
    with pytest.raises(ValueError, match=r"max_unpool2d: indices must have the shape of x \(1, 1, 2, 2\); got \(1, 1, 4\)"):
        P.max_unpool2d(y, idx.reshape(1, 1, 4), 2)
    with pytest.raises(ValueError, match=r"max_unpool2d: indices must lie in \[0, 16\) for output size \(4, 4\); got values in \[0, 16\]"):
        P.max_unpool2d(y, torch.tensor([[[[0, 1], [2, 16]]]]), 2)
    with pytest.raises(ValueError, match=r"max_unpool2d: output_size must lie strictly between \(2, 2\) and \(6, 6\); got \(6, 4\)"):
        P.max_unpool2d(y, idx, 2, output_size=(6, 4))
    with pytest.raises(ValueError, match=r"max_unpool2d: output_size must be \(H_out, W_out\) or \(N, C, H_out, W_out\); got \(4,\)"):
        P.max_unpool2d(y, idx, 2, output_size=(4,))
    with pytest.raises(ValueError, match=r"max_unpool2d: kernel_size must be >= 1; got 0"):
        P.max_unpool2d(y, idx, 0)


# --------------------------------------------------------------------------- ties


def test_gradients_follow_the_reference_when_values_tie(generator):
    # Integer-valued maps (like ReLU outputs or quantized images) have many equal maxima;
    # the gradient must go to the same one as the library's (first in row-major order).
    x = torch.randint(0, 3, (2, 3, 9, 7), generator=generator).float()
    boxes = torch.tensor([[0, 0.0, 0.0, 6.0, 8.0], [1, -1.5, 1.2, 4.4, 7.9], [1, 2.0, 3.0, 9.0, 4.0]])
    cases = [
        (lambda t: P.max_pool2d(t, 3, 2, 1), lambda t: F.max_pool2d(t, 3, 2, 1)),
        (lambda t: P.spatial_pyramid_pool(t, (1, 2, 3, 5)), lambda t: _spp_reference(t, (1, 2, 3, 5), "max")),
        (lambda t: P.roi_pool(t, boxes, (3, 2)), lambda t: ops.roi_pool(t, boxes, (3, 2))),
    ]
    for ours_fn, ref_fn in cases:
        ours_in, ref_in = x.clone().requires_grad_(), x.clone().requires_grad_()
        ours, ref = ours_fn(ours_in), ref_fn(ref_in)
        torch.testing.assert_close(ours, ref)
        weight = torch.randn(ours.shape, generator=generator)
        (ours * weight).sum().backward()
        (ref * weight).sum().backward()
        torch.testing.assert_close(ours_in.grad, ref_in.grad)


def test_max_over_bins_propagates_nan():
    x = torch.tensor([[[[1.0, float("nan")], [0.0, 2.0]]]])
    assert P.spatial_pyramid_pool(x, (1,)).isnan().all()
    assert F.adaptive_max_pool2d(x, 1).isnan().all()


# ---- GeM and blur pooling ---------------------------------------------------------------------


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0, 7.5])
def test_gem_matches_lp_pool_values_and_gradients(p):
    g = torch.Generator().manual_seed(30)
    x = torch.rand(2, 3, 5, 4, generator=g, dtype=torch.float64) + 0.01
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours = P.gem_pool2d(a, p)
    ref = F.lp_pool2d(b.clamp(min=1e-6), p, (5, 4)).flatten(1) / (5 * 4) ** (1 / p)
    torch.testing.assert_close(ours, ref)
    w = torch.randn(ours.shape, generator=g, dtype=torch.float64)
    (ours * w).sum().backward()
    (ref * w).sum().backward()
    torch.testing.assert_close(a.grad, b.grad)


def test_gem_limits_learnable_p_gradcheck_and_non_contiguous():
    g = torch.Generator().manual_seed(31)
    x = torch.rand(2, 3, 4, 4, generator=g, dtype=torch.float64) + 0.1
    torch.testing.assert_close(P.gem_pool2d(x, 1.0), x.mean(dim=(2, 3)))
    torch.testing.assert_close(P.gem_pool2d(x, 200.0), x.amax(dim=(2, 3)), rtol=0.02, atol=0.0)
    p = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t, q: P.gem_pool2d(t, q), (x.clone().requires_grad_(), p))
    xt = x.transpose(2, 3)
    assert not xt.is_contiguous()
    torch.testing.assert_close(P.gem_pool2d(xt, 3.0), P.gem_pool2d(xt.contiguous(), 3.0))


def _blur_reference(x, k, s):
    row = torch.tensor([math.comb(k - 1, i) for i in range(k)], dtype=x.dtype)
    kernel = torch.outer(row, row) / row.sum() ** 2
    before, after = (k - 1) // 2, k // 2
    padded = F.pad(x, (before, after, before, after), mode="reflect") if k > 1 else x
    return F.conv2d(padded, kernel.expand(x.shape[1], 1, k, k), stride=s, groups=x.shape[1])


@pytest.mark.parametrize("k, s, size", [(3, 2, (8, 7)), (2, 2, (6, 6)), (5, 2, (9, 10)), (4, 3, (7, 8)), (1, 2, (5, 5)), (3, 1, (4, 6))])
def test_blur_pool_matches_depthwise_conv(k, s, size):
    g = torch.Generator().manual_seed(32)
    x = torch.randn(2, 3, *size, generator=g, dtype=torch.float64)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours, ref = P.blur_pool2d(a, kernel_size=k, stride=s), _blur_reference(b, k, s)
    assert ours.shape == ref.shape == (2, 3, -(-size[0] // s), -(-size[1] // s))
    torch.testing.assert_close(ours, ref)
    w = torch.randn(ours.shape, generator=g, dtype=torch.float64)
    (ours * w).sum().backward()
    (ref * w).sum().backward()
    torch.testing.assert_close(a.grad, b.grad)


def test_max_blur_pool_is_dense_max_then_blur_and_keeps_constants():
    g = torch.Generator().manual_seed(33)
    x = torch.randn(1, 2, 8, 8, generator=g)
    ref = _blur_reference(F.max_pool2d(x, 2, stride=1), 3, 2)
    torch.testing.assert_close(P.max_blur_pool2d(x), ref)
    const = torch.full((1, 1, 6, 6), 2.5)
    torch.testing.assert_close(P.blur_pool2d(const), torch.full((1, 1, 3, 3), 2.5))


def test_gem_and_blur_validation():
    x = torch.rand(1, 2, 4, 4)
    with pytest.raises(ValueError, match=r"gem_pool2d: p must be > 0; got 0.0"):
        P.gem_pool2d(x, 0.0)
    with pytest.raises(ValueError, match=r"gem_pool2d: p must be > 0; got -1.0"):
        P.gem_pool2d(x, torch.tensor(-1.0))
    with pytest.raises(ValueError, match=r"gem_pool2d: p must have exactly one element; got shape \(2,\)"):
        P.gem_pool2d(x, torch.ones(2))
    with pytest.raises(TypeError, match=r"gem_pool2d: p must be a real number; got str"):
        P.gem_pool2d(x, "3")
    with pytest.raises(ValueError, match=r"gem_pool2d: eps must be > 0; got 0.0"):
        P.gem_pool2d(x, 3.0, eps=0.0)
    with pytest.raises(ValueError, match=r"blur_pool2d: kernel_size must be in \[1, 7\]; got 8"):
        P.blur_pool2d(x, kernel_size=8)
    with pytest.raises(ValueError, match=r"blur_pool2d: stride must be >= 1; got 0"):
        P.blur_pool2d(x, stride=0)
    with pytest.raises(ValueError, match=r"blur_pool2d: H and W must exceed the reflection padding 2; got \(2, 4\)"):
        P.blur_pool2d(torch.rand(1, 1, 2, 4), kernel_size=5)
    with pytest.raises(ValueError, match=r"max_blur_pool2d: x must be a 4-D tensor"):
        P.max_blur_pool2d(torch.rand(2, 4, 4))
