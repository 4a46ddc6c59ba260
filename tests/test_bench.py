"""Tests of dlkb.bench: the benchmark compares equal computations, and its fast variants are right."""

import json
import math

import pytest
import torch
from torch.nn import functional as F

from dlkb import bench


def test_every_reduced_case_computes_the_same_values_on_both_sides():
    cases = bench.cases("reduced")
    assert len(cases) > 20
    for case in cases:
        case.check()  # assert_close(ours, library) on the benchmark's own inputs


def test_every_op_has_one_representative_size():
    for scale in ("full", "reduced"):
        ops = {}
        for case in bench.cases(scale):
            ops.setdefault((case.op, case.library), []).append(case.representative)
        for key, flags in ops.items():
            assert sum(flags) == 1, (scale, key, flags)


def test_cases_rejects_an_unknown_scale():
    with pytest.raises(ValueError, match=r"cases: scale must be one of \('full', 'reduced'\); got 'big'"):
        bench.cases("big")


def test_a_check_fails_when_the_two_sides_differ():
    case = bench.Case("x", "y", "s", 1.0, lambda: torch.zeros(3), lambda: torch.ones(3))
    with pytest.raises(AssertionError):
        case.check()


@pytest.mark.parametrize(
    "shape, weight_shape, padding",
    [((2, 3, 7, 9), (4, 3, 3, 3), 1), ((1, 5, 6, 6), (2, 5, 2, 3), 0), ((3, 2, 5, 8), (3, 2, 1, 1), 0), ((1, 2, 4, 4), (2, 2, 3, 3), 2)],
)
def test_conv2d_fast_equals_F_conv2d(shape, weight_shape, padding):
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(shape, generator=g), torch.randn(weight_shape, generator=g)
    torch.testing.assert_close(bench.conv2d_fast(x, w, padding), F.conv2d(x, w, padding=padding), rtol=1e-5, atol=1e-5)
    xt = x.transpose(2, 3)  # non-contiguous input
    torch.testing.assert_close(bench.conv2d_fast(xt, w, padding), F.conv2d(xt, w, padding=padding), rtol=1e-5, atol=1e-5)


def test_conv2d_fast_gradients():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(4, 3, 3, 2, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w: bench.conv2d_fast(x, w, 1), (x, w))


@pytest.mark.parametrize("k, s, size", [(2, None, (8, 8)), (3, 2, (9, 7)), (3, 1, (5, 6)), (2, 3, (8, 11))])
def test_avg_pool2d_fast_equals_F_avg_pool2d(k, s, size):
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(bench.avg_pool2d_fast(x, k, s), F.avg_pool2d(x, k, s))
    xt = x.transpose(2, 3)
    torch.testing.assert_close(bench.avg_pool2d_fast(xt, k, s), F.avg_pool2d(xt, k, s))
    x64 = x.double().requires_grad_()
    assert torch.autograd.gradcheck(lambda t: bench.avg_pool2d_fast(t, k, s), (x64,))


def test_conv2d_bytes_counts_the_column_matrix():
    b = bench.conv2d_bytes([32, 64, 32, 32], 64, 3, 1)
    assert b["input"] == 32 * 64 * 32 * 32 * 4 == b["output"]
    assert b["columns"] == 9 * b["input"]  # every pixel copied once per kernel tap
    x = torch.zeros(2, 3, 6, 5)
    cols = F.unfold(x, (3, 3), padding=0)
    assert bench.conv2d_bytes(x.shape, 4, 3, 0)["columns"] == cols.numel() * 4


@pytest.mark.parametrize(
    "ratio, label", [(0.2, "<1.5×"), (1.49, "<1.5×"), (1.5, "1.5–3×"), (2.99, "1.5–3×"), (3.0, "3–10×"), (10.0, ">10×"), (1e4, ">10×")]
)
def test_ratio_class(ratio, label):
    assert bench.ratio_class(ratio) == label


def test_ratio_class_rejects_nan():
    with pytest.raises(ValueError, match=r"ratio_class: ratio must be a number, not NaN; got nan"):
        bench.ratio_class(math.nan)


def test_measure_and_reports():
    x = torch.randn(64, 64)
    case = bench.Case("op.a", "lib.b", "[64, 64]", x.numel(), lambda: x * 2, lambda: x + x, representative=True)
    results = bench.run([case], threads=(1,), min_run_time=0.01)
    (r,) = results
    assert r.threads == 1 and r.ours_s > 0 and r.reference_s > 0
    assert r.ratio == pytest.approx(r.ours_s / r.reference_s)
    md = bench.to_markdown(results)
    assert "## 1 thread" in md and "| **op.a** | lib.b | [64, 64] |" in md
    assert "| op.a | [64, 64] | 1 |" in md  # the 3× target table
    data = json.loads(bench.to_json(results))
    assert data["results"][0]["op"] == "op.a" and data["results"][0]["ratio"] == pytest.approx(r.ratio)


def test_measure_restores_the_thread_count():
    before = torch.get_num_threads()
    bench.measure(bench.Case("a", "b", "s", 1.0, lambda: None, lambda: None), threads=1, min_run_time=0.01)
    assert torch.get_num_threads() == before


def test_stateful_cases_check_again_after_timing():
    # an optimizer case is checked, timed (which steps both sides unequally often), then checked again
    case = next(c for c in bench.cases("reduced") if c.op.startswith("optim."))
    case.check()
    for _ in range(3):
        case.ours()
    case.check()  # reset restores both sides first
