"""Tests of dlkb.rnn: cells against torch's cells, unroll against nn.RNN/LSTM/GRU, clipping against torch."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dlkb import rnn

PAIRS = [
    (rnn.RNNCell, nn.RNNCell, nn.RNN, {"nonlinearity": "tanh"}),
    (rnn.RNNCell, nn.RNNCell, nn.RNN, {"nonlinearity": "relu"}),
    (rnn.LSTMCell, nn.LSTMCell, nn.LSTM, {}),
    (rnn.GRUCell, nn.GRUCell, nn.GRU, {}),
]
IDS = ["rnn-tanh", "rnn-relu", "lstm", "gru"]


def make_pair(ours_cls, ref_cls, kwargs, input_size=3, hidden_size=5, dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    ref = ref_cls(input_size, hidden_size, **kwargs).to(dtype)
    ours = ours_cls(input_size, hidden_size, **kwargs).to(dtype)
    ours.load_state_dict(ref.state_dict())
    return ours, ref


def random_state(cell, n, generator, dtype=torch.float32):
    shape = (cell.hidden_size,) if n is None else (n, cell.hidden_size)
    h = torch.randn(shape, generator=generator, dtype=dtype)
    if isinstance(cell, (rnn.LSTMCell, nn.LSTMCell)):
        return h, torch.randn(shape, generator=generator, dtype=dtype)
    return h


# ---------------------------------------------------------------- cells


@pytest.mark.parametrize(("ours_cls", "ref_cls", "seq_cls", "kwargs"), PAIRS, ids=IDS)
def test_cell_parameters_match_torch_names_and_shapes(ours_cls, ref_cls, seq_cls, kwargs):
    ours, ref = ours_cls(3, 5, **kwargs), ref_cls(3, 5, **kwargs)
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == {
        k: tuple(v.shape) for k, v in ref.state_dict().items()
    }
    bound = 1 / math.sqrt(5)
    assert all(p.abs().max() <= bound for p in ours.parameters())  # torch's uniform init range


@pytest.mark.parametrize(("ours_cls", "ref_cls", "seq_cls", "kwargs"), PAIRS, ids=IDS)
@pytest.mark.parametrize("n", [4, 1, None], ids=["batched", "batch1", "unbatched"])
def test_cell_matches_torch(ours_cls, ref_cls, seq_cls, kwargs, n):
    ours, ref = make_pair(ours_cls, ref_cls, kwargs)
    g = torch.Generator().manual_seed(1)
    x = torch.randn((3,) if n is None else (n, 3), generator=g)
    state = random_state(ours, n, g)
    out, expected = ours(x, state), ref(x, state)
    torch.testing.assert_close(out, expected)
    # missing state = zeros
    torch.testing.assert_close(ours(x), ref(x))
    if isinstance(expected, tuple):
        assert expected[0].shape == out[0].shape == out[1].shape
    else:
        assert out.shape == expected.shape


def test_gate_order_by_saturating_single_gates():
    # LSTM (i, f, g, o): i = 0 and f = 1 keep the cell state unchanged; GRU (r, z, n): z = 1 keeps h.
    g = torch.Generator().manual_seed(2)
    x, h, c = (torch.randn(2, 4, generator=g) for _ in range(3))
    lstm, gru = rnn.LSTMCell(4, 4), rnn.GRUCell(4, 4)
    with torch.no_grad():
        lstm.bias_ih[0:4] = -1e4  # input gate closed
        lstm.bias_ih[4:8] = 1e4  # forget gate open
        lstm.bias_ih[12:16] = 1e4  # output gate open
        gru.bias_ih[4:8] = 1e4  # update gate: keep the old state
    h_new, c_new = lstm(x, (h, c))
    torch.testing.assert_close(c_new, c)
    torch.testing.assert_close(h_new, torch.tanh(c))
    torch.testing.assert_close(gru(x, h), h)


@pytest.mark.parametrize(("ours_cls", "ref_cls", "seq_cls", "kwargs"), PAIRS, ids=IDS)
def test_cell_non_contiguous_input(ours_cls, ref_cls, seq_cls, kwargs):
    ours, ref = make_pair(ours_cls, ref_cls, kwargs)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 6, generator=g).T  # [6, 3], not contiguous
    assert not x.is_contiguous()
    state = random_state(ours, 6, g)
    torch.testing.assert_close(ours(x, state), ref(x.contiguous(), state))


@pytest.mark.parametrize(("ours_cls", "ref_cls", "seq_cls", "kwargs"), PAIRS, ids=IDS)
def test_cell_gradcheck_float64(ours_cls, ref_cls, seq_cls, kwargs):
    ours, _ = make_pair(ours_cls, ref_cls, kwargs, input_size=2, hidden_size=3, dtype=torch.float64)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 2, generator=g, dtype=torch.float64, requires_grad=True)
    if ours_cls is rnn.LSTMCell:
        h = torch.randn(2, 3, generator=g, dtype=torch.float64, requires_grad=True)
        c = torch.randn(2, 3, generator=g, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda x, h, c: ours(x, (h, c)), (x, h, c))
    else:
        h = torch.randn(2, 3, generator=g, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda x, h: ours(x, h), (x, h))


def test_parameter_gradients_match_torch():
    ours, ref = make_pair(rnn.LSTMCell, nn.LSTMCell, {}, dtype=torch.float64)
    g = torch.Generator().manual_seed(6)
    x = torch.randn(4, 3, generator=g, dtype=torch.float64)
    sum(t.sum() for t in ours(x)).backward()
    sum(t.sum() for t in ref(x)).backward()
    for (name, p), q in zip(ours.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, msg=name)


def test_lstm_formula_written_slowly():
    # Hochreiter & Schmidhuber 1997 with the forget gate (Gers et al. 2000), one unit at a time.
    cell = rnn.LSTMCell(2, 2).double().requires_grad_(False)
    g = torch.Generator().manual_seed(7)
    x, h, c = (torch.randn(1, 2, generator=g, dtype=torch.float64) for _ in range(3))
    h_new, c_new = cell(x, (h, c))
    W, U, b = cell.weight_ih, cell.weight_hh, cell.bias_ih + cell.bias_hh
    H = 2
    for j in range(H):

        def pre(k, j=j):  # gate k in order i, f, g, o
            row = k * H + j
            return sum(W[row, m] * x[0, m] for m in range(2)) + sum(U[row, m] * h[0, m] for m in range(H)) + b[row]

        sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
        i, f, gg, o = sig(pre(0)), sig(pre(1)), math.tanh(pre(2)), sig(pre(3))
        cj = f * c[0, j].item() + i * gg
        assert c_new[0, j].item() == pytest.approx(cj, rel=1e-12)
        assert h_new[0, j].item() == pytest.approx(o * math.tanh(cj), rel=1e-12)


def test_gru_formula_written_slowly():
    # torch's GRU: r multiplies (W_hn h + b_hn); h' = (1 - z) n + z h.
    cell = rnn.GRUCell(2, 2).double().requires_grad_(False)
    g = torch.Generator().manual_seed(8)
    x, h = (torch.randn(1, 2, generator=g, dtype=torch.float64) for _ in range(2))
    h_new = cell(x, h)
    H = 2
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    for j in range(H):
        ax = [sum(cell.weight_ih[k * H + j, m] * x[0, m] for m in range(2)) + cell.bias_ih[k * H + j] for k in range(3)]
        ah = [sum(cell.weight_hh[k * H + j, m] * h[0, m] for m in range(H)) + cell.bias_hh[k * H + j] for k in range(3)]
        r, z = sig(ax[0] + ah[0]), sig(ax[1] + ah[1])
        n = math.tanh(ax[2] + r * ah[2])
        assert h_new[0, j].item() == pytest.approx((1 - z) * n + z * h[0, j].item(), rel=1e-12)


def test_cells_follow_the_input_device_and_dtype():
    cell = rnn.GRUCell(3, 4).double()
    out = cell(torch.zeros(2, 3, dtype=torch.float64))
    assert out.dtype == torch.float64 and out.device == torch.device("cpu")


# ---------------------------------------------------------------- unroll


@pytest.mark.parametrize(("ours_cls", "ref_cls", "seq_cls", "kwargs"), PAIRS, ids=IDS)
@pytest.mark.parametrize("with_state", [False, True], ids=["zero-state", "given-state"])
def test_unroll_matches_torch_sequence_module(ours_cls, ref_cls, seq_cls, kwargs, with_state):
    torch.manual_seed(0)
    seq = seq_cls(3, 5, **kwargs)
    cell = ours_cls(3, 5, **kwargs)
    cell.load_state_dict({k.removesuffix("_l0"): v for k, v in seq.state_dict().items()})
    g = torch.Generator().manual_seed(9)
    inputs = torch.randn(7, 2, 3, generator=g)  # [L, N, I]
    state = random_state(cell, 2, g) if with_state else None
    out, final = rnn.unroll(cell, inputs, state)
    if state is None:
        ref_out, ref_final = seq(inputs)
    elif isinstance(state, tuple):
        ref_out, ref_final = seq(inputs, (state[0][None], state[1][None]))
    else:
        ref_out, ref_final = seq(inputs, state[None])
    assert out.shape == (7, 2, 5)
    torch.testing.assert_close(out, ref_out)
    if isinstance(final, tuple):
        torch.testing.assert_close(final[0], ref_final[0][0])
        torch.testing.assert_close(final[1], ref_final[1][0])
    else:
        torch.testing.assert_close(final, ref_final[0])


@pytest.mark.parametrize(("ours_cls", "ref_cls", "seq_cls", "kwargs"), PAIRS, ids=IDS)
def test_unroll_unbatched_and_non_contiguous(ours_cls, ref_cls, seq_cls, kwargs):
    torch.manual_seed(1)
    seq = seq_cls(3, 4, **kwargs)
    cell = ours_cls(3, 4, **kwargs)
    cell.load_state_dict({k.removesuffix("_l0"): v for k, v in seq.state_dict().items()})
    g = torch.Generator().manual_seed(10)
    unbatched = torch.randn(5, 3, generator=g)  # [L, I]
    out, _ = rnn.unroll(cell, unbatched)
    assert out.shape == (5, 4)
    torch.testing.assert_close(out, seq(unbatched)[0])
    batch_first = torch.randn(2, 5, 3, generator=g)
    inputs = batch_first.transpose(0, 1)  # [L, N, I], not contiguous
    assert not inputs.is_contiguous()
    torch.testing.assert_close(rnn.unroll(cell, inputs)[0], seq(inputs.contiguous())[0])


def test_unroll_accepts_torch_cells_and_backpropagates_through_time():
    torch.manual_seed(2)
    cell = nn.LSTMCell(3, 4)
    x = torch.randn(6, 2, 3, requires_grad=True)
    out, (h, c) = rnn.unroll(cell, x)
    torch.testing.assert_close(out[-1], h)
    out[-1].sum().backward()
    assert x.grad[0].abs().sum() > 0  # the gradient reaches the first time step


# ---------------------------------------------------------------- clip_grad_norm


def _two_models(seed=0):
    torch.manual_seed(seed)
    a = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))
    b = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))
    b.load_state_dict(a.state_dict())
    x = torch.randn(8, 4)
    for m in (a, b):
        (50 * m(x)).pow(2).sum().backward()
    return a, b


@pytest.mark.parametrize("max_norm", [0.5, 3.0, 1e9, 0.0])
def test_clip_grad_norm_matches_torch(max_norm):
    a, b = _two_models()
    ours = rnn.clip_grad_norm(a.parameters(), max_norm)
    ref = nn.utils.clip_grad_norm_(b.parameters(), max_norm)
    torch.testing.assert_close(ours, ref)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad)
    after = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in a.parameters()]))
    assert ours > 1.0  # the gradients were large enough for clipping to matter
    expected = min(max_norm, ours.item())
    assert after.item() == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_clip_grad_norm_single_tensor_missing_grads_and_int_max_norm():
    p = torch.tensor([3.0, 4.0], requires_grad=True)
    p.grad = torch.tensor([3.0, 4.0])
    q = torch.zeros(2, requires_grad=True)  # no grad: skipped
    total = rnn.clip_grad_norm([p, q], 1)
    assert total.item() == pytest.approx(5.0)
    torch.testing.assert_close(p.grad, torch.tensor([0.6, 0.8]) * 5 / (5 + 1e-6))
    assert q.grad is None
    assert rnn.clip_grad_norm(q, 1.0).item() == 0.0
    r = torch.ones(3, requires_grad=True)
    r.grad = torch.ones(3)
    assert rnn.clip_grad_norm(r, 10.0).item() == pytest.approx(math.sqrt(3))
    torch.testing.assert_close(r.grad, torch.ones(3))


def test_clip_grad_norm_non_contiguous_grad():
    p = torch.zeros(3, 4, requires_grad=True)
    p2 = torch.zeros(3, 4, requires_grad=True)
    g = torch.arange(12.0).reshape(4, 3).T  # not contiguous
    p.grad, p2.grad = g.clone().T.contiguous().T, g.contiguous()
    assert not p.grad.is_contiguous()
    torch.testing.assert_close(rnn.clip_grad_norm(p, 2.0), nn.utils.clip_grad_norm_(p2, 2.0))
    torch.testing.assert_close(p.grad, p2.grad)


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda: rnn.RNNCell(3, 4, nonlinearity="sigmoid"), ValueError, r"RNNCell: nonlinearity must be one of"),
        (lambda: rnn.RNNCell(0, 4), ValueError, r"RNNCell: input_size must be >= 1; got 0"),
        (lambda: rnn.LSTMCell(3, -1), ValueError, r"LSTMCell: hidden_size must be >= 1; got -1"),
        (lambda: rnn.GRUCell(3.0, 4), TypeError, r"GRUCell: input_size must be an int; got float"),
        (lambda: rnn.GRUCell(3, True), TypeError, r"GRUCell: hidden_size must be an int; got bool"),
    ],
)
def test_constructor_validation(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.parametrize("cls", [rnn.RNNCell, rnn.GRUCell, rnn.LSTMCell])
def test_forward_validation(cls):
    cell = cls(3, 4)
    name = f"{cls.__name__}.forward"
    wrap = (lambda h: (h, torch.zeros_like(h))) if cls is rnn.LSTMCell else (lambda h: h)
    with pytest.raises(TypeError, match=rf"{name}: x must be a torch.Tensor; got list"):
        cell([1.0, 2.0, 3.0])
    with pytest.raises(TypeError, match=rf"{name}: x must be a floating-point tensor; got dtype torch.int64"):
        cell(torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(TypeError, match=rf"{name}: x must have the dtype and device of the cell's parameters"):
        cell(torch.zeros(2, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match=rf"{name}: x must have 3 features \(input_size\).*got shape \(2, 5\)"):
        cell(torch.zeros(2, 5))
    with pytest.raises(ValueError, match=rf"{name}: x must have shape \(N, 3\) or \(3,\); got \(1, 2, 3\)"):
        cell(torch.zeros(1, 2, 3))
    with pytest.raises(ValueError, match=rf"{name}: batch sizes of x and h differ: x has N = 2, h has N = 3"):
        cell(torch.zeros(2, 3), wrap(torch.zeros(3, 4)))
    with pytest.raises(ValueError, match=rf"{name}: h must have shape \(2, 4\); got \(2, 5\)"):
        cell(torch.zeros(2, 3), wrap(torch.zeros(2, 5)))
    with pytest.raises(ValueError, match=rf"{name}: h must have shape \(4,\); got \(1, 4\)"):
        cell(torch.zeros(3), wrap(torch.zeros(1, 4)))
    with pytest.raises(TypeError, match=rf"{name}: h must have the dtype and device of x"):
        cell(torch.zeros(2, 3), wrap(torch.zeros(2, 4, dtype=torch.float64)))
    if cls is rnn.LSTMCell:
        with pytest.raises(TypeError, match=r"LSTMCell.forward: state must be a tuple \(h, c\)"):
            cell(torch.zeros(2, 3), torch.zeros(2, 4))
        with pytest.raises(ValueError, match=r"LSTMCell.forward: batch sizes of x and c differ: x has N = 2, c has N = 1"):
            cell(torch.zeros(2, 3), (torch.zeros(2, 4), torch.zeros(1, 4)))
        with pytest.raises(TypeError, match=r"LSTMCell\.forward: c must be a torch\.Tensor; got float"):
            cell(torch.zeros(2, 3), (torch.zeros(2, 4), 0.0))
    else:
        with pytest.raises(TypeError, match=rf"{name}: h must be a torch.Tensor; got tuple"):
            cell(torch.zeros(2, 3), (torch.zeros(2, 4),))


def test_unroll_validation():
    cell = rnn.GRUCell(3, 4)
    with pytest.raises(TypeError, match=r"unroll: cell must be RNNCell, LSTMCell or GRUCell; got Linear"):
        rnn.unroll(nn.Linear(3, 4), torch.zeros(5, 2, 3))
    with pytest.raises(TypeError, match=r"unroll: inputs must be a torch\.Tensor; got list"):
        rnn.unroll(cell, [[0.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match=r"unroll: inputs must have shape \(L, N, 3\) or \(L, 3\); got \(3,\)"):
        rnn.unroll(cell, torch.zeros(3))
    with pytest.raises(ValueError, match=r"unroll: inputs must have 3 features \(cell.input_size\).*got shape \(5, 2, 2\)"):
        rnn.unroll(cell, torch.zeros(5, 2, 2))
    with pytest.raises(ValueError, match=r"unroll: inputs must have at least one time step; got shape \(0, 2, 3\)"):
        rnn.unroll(cell, torch.zeros(0, 2, 3))
    with pytest.raises(ValueError, match=r"GRUCell.forward: batch sizes of x and h differ"):
        rnn.unroll(cell, torch.zeros(5, 2, 3), torch.zeros(3, 4))


@pytest.mark.parametrize(
    ("max_norm", "exc", "match"),
    [
        (-1.0, ValueError, r"clip_grad_norm: max_norm must be >= 0; got -1.0"),
        (float("nan"), ValueError, r"clip_grad_norm: max_norm must be a number, not NaN; got nan"),
        ("1", TypeError, r"clip_grad_norm: max_norm must be a real number; got str"),
        (True, TypeError, r"clip_grad_norm: max_norm must be a real number; got bool"),
    ],
)
def test_clip_grad_norm_validation(max_norm, exc, match):
    p = torch.zeros(2, requires_grad=True)
    with pytest.raises(exc, match=match):
        rnn.clip_grad_norm([p], max_norm)


def test_clip_grad_norm_rejects_non_tensor_elements():
    with pytest.raises(TypeError, match=r"clip_grad_norm: parameters must be tensors; element 1 is float"):
        rnn.clip_grad_norm([torch.zeros(1), 1.0], 1.0)


# ---------------------------------------------------------------- multi-layer, bidirectional LSTM / GRU
STACKED = [(rnn.LSTM, nn.LSTM), (rnn.GRU, nn.GRU)]
CONFIGS = [
    # (num_layers, bidirectional, batch_first, bias)
    (1, False, False, True),
    (2, False, True, True),
    (1, True, False, True),
    (2, True, True, True),
    (2, True, False, False),
]


def _pair(ours_cls, ref_cls, layers, bidir, batch_first, bias, dtype=torch.float32):
    torch.manual_seed(0)
    ref = ref_cls(3, 4, num_layers=layers, bidirectional=bidir, batch_first=batch_first, bias=bias).to(dtype)
    ours = ours_cls(3, 4, num_layers=layers, bidirectional=bidir, batch_first=batch_first, bias=bias).to(dtype)
    ours.load_state_dict(ref.state_dict())
    return ours, ref


@pytest.mark.parametrize(("ours_cls", "ref_cls"), STACKED)
@pytest.mark.parametrize("config", CONFIGS)
def test_stacked_state_dict_keys_shapes_and_order_match_torch(ours_cls, ref_cls, config):
    layers, bidir, batch_first, bias = config
    ours = ours_cls(3, 4, num_layers=layers, bidirectional=bidir, batch_first=batch_first, bias=bias)
    ref = ref_cls(3, 4, num_layers=layers, bidirectional=bidir, batch_first=batch_first, bias=bias)
    assert [(k, tuple(v.shape)) for k, v in ours.state_dict().items()] == [
        (k, tuple(v.shape)) for k, v in ref.state_dict().items()
    ]
    bound = 1 / math.sqrt(4)
    assert all(p.abs().max() <= bound for p in ours.parameters())


@pytest.mark.parametrize(("ours_cls", "ref_cls"), STACKED)
@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("with_state", [False, True])
def test_stacked_matches_torch_values_and_gradients(ours_cls, ref_cls, config, with_state):
    layers, bidir, batch_first, bias = config
    ours, ref = _pair(ours_cls, ref_cls, *config)
    g = torch.Generator().manual_seed(1)
    d = 2 if bidir else 1
    x = torch.randn(2, 5, 3, generator=g) if batch_first else torch.randn(5, 2, 3, generator=g)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    hx1 = hx2 = None
    if with_state:
        h = torch.randn(d * layers, 2, 4, generator=g)
        c = torch.randn(d * layers, 2, 4, generator=g)
        h1, h2 = h.clone().requires_grad_(), h.clone().requires_grad_()
        c1, c2 = c.clone().requires_grad_(), c.clone().requires_grad_()
        hx1, hx2 = ((h1, c1), (h2, c2)) if ours_cls is rnn.LSTM else (h1, h2)
    out1, s1 = ours(x1, hx1)
    out2, s2 = ref(x2, hx2)
    torch.testing.assert_close(out1, out2)
    states1 = s1 if isinstance(s1, tuple) else (s1,)
    states2 = s2 if isinstance(s2, tuple) else (s2,)
    for a, b in zip(states1, states2, strict=True):
        torch.testing.assert_close(a, b)
    w = torch.randn(out1.shape, generator=g)
    loss1 = (out1 * w).sum() + sum(s.square().sum() for s in states1)
    loss2 = (out2 * w).sum() + sum(s.square().sum() for s in states2)
    loss1.backward()
    loss2.backward()
    torch.testing.assert_close(x1.grad, x2.grad)
    for (k, p1), (_, p2) in zip(ours.named_parameters(), ref.named_parameters(), strict=True):
        torch.testing.assert_close(p1.grad, p2.grad, msg=lambda m, k=k: f"{k}: {m}")
    if with_state:
        torch.testing.assert_close(h1.grad, h2.grad)


@pytest.mark.parametrize(("ours_cls", "ref_cls"), STACKED)
def test_stacked_unbatched_and_non_contiguous(ours_cls, ref_cls):
    ours, ref = _pair(ours_cls, ref_cls, 2, True, False, True)
    x = torch.randn(3, 5).T  # [5, 3], non-contiguous, unbatched
    assert not x.is_contiguous()
    out1, s1 = ours(x)
    out2, s2 = ref(x)
    assert out1.shape == (5, 8)
    torch.testing.assert_close(out1, out2)
    torch.testing.assert_close(s1[0] if isinstance(s1, tuple) else s1, s2[0] if isinstance(s2, tuple) else s2)


@pytest.mark.parametrize("cls", [rnn.LSTM, rnn.GRU])
def test_stacked_gradcheck_float64(cls):
    torch.manual_seed(0)
    m = cls(2, 3, num_layers=2, bidirectional=True).double()
    x = torch.randn(4, 2, 2, dtype=torch.float64, requires_grad=True)
    first = lambda inp: m(inp)[0]  # noqa: E731
    assert torch.autograd.gradcheck(first, (x,))


def test_bidirectional_output_halves_are_forward_and_reversed_backward_runs():
    # The backward half equals a one-directional LSTM run on the time-reversed input.
    torch.manual_seed(0)
    bi = rnn.LSTM(3, 4, bidirectional=True)
    fwd, bwd = rnn.LSTM(3, 4), rnn.LSTM(3, 4)
    sd = bi.state_dict()
    fwd.load_state_dict({k: v for k, v in sd.items() if not k.endswith("_reverse")})
    bwd.load_state_dict({k.removesuffix("_reverse"): v for k, v in sd.items() if k.endswith("_reverse")})
    x = torch.randn(6, 2, 3)
    out, (h, _) = bi(x)
    torch.testing.assert_close(out[..., :4], fwd(x)[0])
    torch.testing.assert_close(out[..., 4:], bwd(x.flip(0))[0].flip(0))
    torch.testing.assert_close(h[1], out[0, :, 4:])  # the backward final state is at t = 1


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda: rnn.LSTM(0, 4), ValueError, r"LSTM: input_size must be >= 1; got 0"),
        (lambda: rnn.GRU(3, 2.0), TypeError, r"GRU: hidden_size must be an int; got float"),
        (lambda: rnn.LSTM(3, 4, num_layers=0), ValueError, r"LSTM: num_layers must be >= 1; got 0"),
        (lambda: rnn.GRU(3, 4, bias=1), TypeError, r"GRU: bias must be a bool; got int"),
        (lambda: rnn.LSTM(3, 4, batch_first="no"), TypeError, r"LSTM: batch_first must be a bool; got str"),
        (lambda: rnn.GRU(3, 4, bidirectional=None), TypeError, r"GRU: bidirectional must be a bool; got NoneType"),
    ],
)
def test_stacked_constructor_validation(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_stacked_forward_validation():
    lstm, gru = rnn.LSTM(3, 4, num_layers=2), rnn.GRU(3, 4, bidirectional=True)
    x = torch.randn(5, 2, 3)
    with pytest.raises(TypeError, match=r"LSTM.forward: x must be a torch.Tensor; got list"):
        lstm([1.0])
    with pytest.raises(TypeError, match=r"GRU.forward: x must be a floating-point tensor; got dtype torch.int64"):
        gru(torch.zeros(5, 2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"LSTM.forward: x must be 2-D or 3-D; got shape \(5,\)"):
        lstm(torch.randn(5))
    with pytest.raises(ValueError, match=r"GRU.forward: x must have 3 features \(input_size\) in its last dimension"):
        gru(torch.randn(5, 2, 4))
    with pytest.raises(TypeError, match=r"LSTM.forward: x must have the dtype and device of the parameters"):
        lstm(x.double())
    with pytest.raises(ValueError, match=r"GRU.forward: x must have at least one time step; got shape \(0, 2, 3\)"):
        gru(torch.randn(0, 2, 3))
    with pytest.raises(TypeError, match=r"LSTM.forward: hx must be a tuple \(h_0, c_0\) of two tensors or None; got Tensor"):
        lstm(x, torch.zeros(2, 2, 4))
    with pytest.raises(ValueError, match=r"LSTM.forward: c_0 must have shape \(2, 2, 4\) \(D·num_layers, N, H\); got \(1, 2, 4\)"):
        lstm(x, (torch.zeros(2, 2, 4), torch.zeros(1, 2, 4)))
    with pytest.raises(ValueError, match=r"GRU.forward: hx must have shape \(2, 2, 4\)"):
        gru(x, torch.zeros(1, 2, 4))
    with pytest.raises(TypeError, match=r"GRU.forward: hx must have the dtype and device of x"):
        gru(x, torch.zeros(2, 2, 4, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"GRU.forward: hx must be a torch.Tensor; got tuple"):
        gru(x, (torch.zeros(2, 2, 4),))


# ---------------------------------------------------------------- additive attention and seq2seq


def slow_additive_attention(query, keys, w_query, w_key, v, mask=None):
    """Bahdanau et al. 2015, Appendix A.1.2, one sequence and one key at a time."""
    contexts, all_weights = [], []
    for i in range(query.shape[0]):
        scores = []
        for j in range(keys.shape[1]):
            scores.append(v @ torch.tanh(w_query @ query[i] + w_key @ keys[i, j]))  # e_ij
        scores = torch.stack(scores)  # [S]
        allowed = [j for j in range(keys.shape[1]) if mask is None or bool(mask[i, j])]
        weights = torch.zeros_like(scores)
        if allowed:
            e = torch.exp(scores[allowed] - scores[allowed].max())
            weights = weights.index_put((torch.tensor(allowed),), e / e.sum())
        contexts.append(sum(weights[j] * keys[i, j] for j in range(keys.shape[1])))
        all_weights.append(weights)
    return torch.stack(contexts), torch.stack(all_weights)


def attention_inputs(n=3, s=5, q=4, k=6, a=7, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g, dtype=dtype) for shape in ((n, q), (n, s, k), (a, q), (a, k), (a,))]


@pytest.mark.parametrize("with_mask", [False, True], ids=["no-mask", "mask"])
def test_additive_attention_matches_slow_formula_values_and_gradients(with_mask):
    inputs = [t.requires_grad_() for t in attention_inputs()]
    mask = torch.tensor([[1, 1, 0, 1, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 1]], dtype=torch.bool) if with_mask else None
    context, weights = rnn.additive_attention(*inputs, mask)
    slow_context, slow_weights = slow_additive_attention(*inputs, mask)
    torch.testing.assert_close(context, slow_context)
    torch.testing.assert_close(weights, slow_weights)
    assert context.shape == (3, 6) and weights.shape == (3, 5)
    grads = torch.autograd.grad((context * torch.arange(6.0, dtype=torch.float64)).sum() + weights[:, 0].sum(), inputs)
    slow = torch.autograd.grad((slow_context * torch.arange(6.0, dtype=torch.float64)).sum() + slow_weights[:, 0].sum(),
                               inputs)
    for ours, ref in zip(grads, slow):
        torch.testing.assert_close(ours, ref)


@pytest.mark.parametrize("with_mask", [False, True], ids=["no-mask", "mask"])
def test_additive_attention_gradcheck_float64(with_mask):
    inputs = [t.requires_grad_() for t in attention_inputs(n=2, s=4, q=3, k=2, a=3)]
    mask = torch.tensor([[1, 0, 1, 1], [0, 0, 0, 0]], dtype=torch.bool) if with_mask else None
    assert torch.autograd.gradcheck(lambda *t: rnn.additive_attention(*t, mask), inputs)


def test_additive_attention_masking():
    query, keys, w_query, w_key, v = attention_inputs(dtype=torch.float32)
    mask = torch.tensor([[1, 1, 0, 1, 0], [1, 0, 0, 0, 0], [0, 0, 0, 0, 0]], dtype=torch.bool)
    context, weights = rnn.additive_attention(query, keys, w_query, w_key, v, mask)
    assert torch.all(weights[~mask] == 0)  # padded keys get exactly zero weight
    torch.testing.assert_close(weights.sum(1), torch.tensor([1.0, 1.0, 0.0]))  # all-masked row: zeros, no NaN
    torch.testing.assert_close(context[1], keys[1, 0])  # one key left: its weight is 1
    assert torch.all(context[2] == 0)
    # masked keys do not change the result, whatever they hold
    changed = keys.clone()
    changed[~mask] = 1e4
    torch.testing.assert_close(rnn.additive_attention(query, changed, w_query, w_key, v, mask)[0], context)
    # the all-masked row has no NaN in the backward pass either
    keys = keys.clone().requires_grad_()
    rnn.additive_attention(query, keys, w_query, w_key, v, mask)[0].sum().backward()
    assert torch.isfinite(keys.grad).all() and torch.all(keys.grad[2] == 0)
    # an all-true mask is the same as no mask
    full = torch.ones(3, 5, dtype=torch.bool)
    torch.testing.assert_close(rnn.additive_attention(query, keys, w_query, w_key, v, full),
                               rnn.additive_attention(query, keys, w_query, w_key, v))


def test_additive_attention_non_contiguous_and_empty_batch():
    query, keys, w_query, w_key, v = attention_inputs()
    keys_t = keys.transpose(1, 2).contiguous().transpose(1, 2)  # same values, other strides
    assert not keys_t.is_contiguous()
    w_query_t = w_query.T.contiguous().T
    torch.testing.assert_close(rnn.additive_attention(query, keys_t, w_query_t, w_key, v),
                               slow_additive_attention(query, keys, w_query, w_key, v))
    context, weights = rnn.additive_attention(query[:0], keys[:0], w_query, w_key, v)
    assert context.shape == (0, 6) and weights.shape == (0, 5)


def test_additive_attention_module():
    torch.manual_seed(0)
    attention = rnn.AdditiveAttention(4, 6, 7)
    assert {k: tuple(p.shape) for k, p in attention.named_parameters()} == {"w_query": (7, 4), "w_key": (7, 6), "v": (7,)}
    assert attention.w_query.abs().max() <= 1 / math.sqrt(4) and attention.v.abs().max() <= 1 / math.sqrt(7)
    query, keys = torch.randn(3, 4), torch.randn(3, 5, 6)
    context, weights = attention(query, keys)
    expected = slow_additive_attention(query, keys, attention.w_query, attention.w_key, attention.v)
    torch.testing.assert_close(context, expected[0])
    torch.testing.assert_close(weights, expected[1])
    assert "query_size=4, key_size=6, hidden_size=7" in repr(attention)


@pytest.mark.parametrize(
    ("change", "exc", "match"),
    [
        ({"query": [1.0]}, TypeError, r"additive_attention: query must be a torch\.Tensor; got list"),
        ({"query": torch.ones(3, 4, dtype=torch.long)}, TypeError, r"additive_attention: query must be a floating-point tensor"),
        ({"query": torch.ones(3, 1, 1, 4)}, ValueError, r"additive_attention: query must be 2-D or 3-D; got shape \(3, 1, 1, 4\)"),
        ({"keys": torch.ones(3, 6)}, ValueError, r"additive_attention: keys must be 3-D; got shape \(3, 6\)"),
        ({"keys": torch.ones(2, 5, 6)}, ValueError, r"additive_attention: keys must have the batch size N = 3 of query; got shape \(2, 5, 6\)"),
        ({"keys": torch.ones(3, 0, 6)}, ValueError, r"additive_attention: keys must hold at least one key \(S >= 1\); got shape \(3, 0, 6\)"),
        ({"v": torch.ones(7, 1)}, ValueError, r"additive_attention: v must be 1-D; got shape \(7, 1\)"),
        ({"w_query": torch.ones(7, 5)}, ValueError, r"additive_attention: w_query must have shape \(7, 4\); got \(7, 5\)"),
        ({"w_key": torch.ones(6, 6)}, ValueError, r"additive_attention: w_key must have shape \(7, 6\); got \(6, 6\)"),
        ({"v": torch.ones(7, dtype=torch.float64)}, TypeError, r"additive_attention: query, keys, w_query, w_key and v must have one dtype"),
        ({"mask": torch.ones(3, 5)}, TypeError, r"additive_attention: mask must be a bool tensor; got dtype torch\.float32"),
        ({"mask": torch.ones(3, 1, dtype=torch.bool)}, ValueError, r"additive_attention: mask must have shape \(3, 5\); got \(3, 1\)"),
    ],
)
def test_additive_attention_validation(change, exc, match):
    args = dict(zip(("query", "keys", "w_query", "w_key", "v"), attention_inputs(dtype=torch.float32)), mask=None)
    args.update(change)
    with pytest.raises(exc, match=match):
        rnn.additive_attention(**args)


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda: rnn.AdditiveAttention(0, 2, 2), ValueError, r"AdditiveAttention: query_size must be >= 1; got 0"),
        (lambda: rnn.AdditiveAttention(2, 2.0, 2), TypeError, r"AdditiveAttention: key_size must be an int; got float"),
        (lambda: rnn.AdditiveAttention(2, 2, True), TypeError, r"AdditiveAttention: hidden_size must be an int; got bool"),
        (lambda: rnn.Seq2Seq(10, 11, attention=1), TypeError, r"Seq2Seq: attention must be a bool; got int"),
        (lambda: rnn.Seq2Seq(10, 0), ValueError, r"Seq2Seq: tgt_vocab_size must be >= 1; got 0"),
        (lambda: rnn.Seq2Seq(10, 11, hidden_size=5), ValueError, r"Seq2Seq: hidden_size must be even \(H/2 features per encoder direction\); got 5"),
        (lambda: rnn.reversal_batch(-1, 3), ValueError, r"reversal_batch: batch_size must be >= 0; got -1"),
        (lambda: rnn.reversal_batch(2, 0), ValueError, r"reversal_batch: length must be >= 1; got 0"),
        (lambda: rnn.reversal_batch(2, 3, generator=0), TypeError, r"reversal_batch: generator must be a torch\.Generator; got int"),
        (lambda: rnn.shift_right(torch.ones(2, 3), 10), TypeError, r"shift_right: tgt must be an integer tensor"),
        (lambda: rnn.shift_right(torch.ones(3, dtype=torch.long), 10), ValueError, r"shift_right: tgt must be 2-D; got shape \(3,\)"),
        (lambda: rnn.shift_right(torch.ones(2, 3, dtype=torch.long), -1), ValueError, r"shift_right: bos_idx must be >= 0; got -1"),
    ],
)
def test_constructor_and_data_validation(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_reversal_batch_and_shift_right():
    src, tgt = rnn.reversal_batch(5, 4, generator=torch.Generator().manual_seed(0))
    again, _ = rnn.reversal_batch(5, 4, generator=torch.Generator().manual_seed(0))
    assert src.dtype == torch.long and src.shape == (5, 4) and torch.equal(src, again)
    assert 0 <= int(src.min()) and int(src.max()) <= 9
    assert torch.equal(tgt, src[:, [3, 2, 1, 0]])
    dec = rnn.shift_right(tgt, 10)
    assert torch.equal(dec[:, 0], torch.full((5,), 10)) and torch.equal(dec[:, 1:], tgt[:, :-1])
    assert rnn.reversal_batch(0, 3)[0].shape == (0, 3)


def _seq2seq_pair(attention, seed=0):
    torch.manual_seed(seed)
    return rnn.Seq2Seq(10, 11, embed_size=8, hidden_size=12, attention=attention)


@pytest.mark.parametrize("attention", [False, True], ids=["plain", "attention"])
def test_seq2seq_teacher_forcing_written_out(attention):
    """forward() equals the encoder-decoder equations written step by step with our cells."""
    model = _seq2seq_pair(attention)
    src, tgt = rnn.reversal_batch(4, 6, generator=torch.Generator().manual_seed(1))
    tgt_in = rnn.shift_right(tgt, 10)
    logits, weights = model(src, tgt_in, return_weights=True)
    assert logits.shape == (4, 6, 11)
    # by hand: a GRU over the source, then a GRUCell fed [embedding; context]
    encoder = rnn.GRU(8, 6, batch_first=True, bidirectional=True)  # our GRU with the encoder's weights
    encoder.load_state_dict(model.encoder.state_dict())
    states, h_n = encoder(model.src_embed(src))  # [N, S, H], [2, N, H/2]
    summary = torch.cat([states[:, -1, :6], states[:, 0, 6:]], 1)  # forward after x_S, backward after x_1
    torch.testing.assert_close(summary, torch.cat([h_n[0], h_n[1]], 1))
    dec = rnn.GRUCell(20, 12)  # the decoder GRU, step by step
    dec.load_state_dict({k.removesuffix("_l0"): p for k, p in model.decoder.state_dict().items()})
    s = h_last = summary
    for i in range(6):
        s = dec(torch.cat([model.tgt_embed(tgt_in[:, i]), h_last], 1), s)  # [embedding; h_S] every step
        if attention:
            a = model.attention
            context, w = slow_additive_attention(s, states, a.w_query, a.w_key, a.v)  # query s_i
            torch.testing.assert_close(weights[:, i], w)
        else:
            context = h_last  # the fixed context vector
        torch.testing.assert_close(logits[:, i], model.out(torch.cat([s, context], 1)))
    assert (weights is None) == (not attention)


@pytest.mark.parametrize("attention", [False, True], ids=["plain", "attention"])
def test_seq2seq_greedy_decode_equals_teacher_forcing_on_its_own_output(attention):
    model = _seq2seq_pair(attention)
    src, _ = rnn.reversal_batch(5, 7, generator=torch.Generator().manual_seed(2))
    model.train()
    tokens, weights = model.greedy_decode(src, max_len=7, bos_idx=10, return_weights=True)
    assert model.training  # eval_mode restored the mode
    assert tokens.shape == (5, 7) and tokens.dtype == torch.long
    logits, tf_weights = model(src, rnn.shift_right(tokens, 10), return_weights=True)
    assert torch.equal(logits.argmax(-1), tokens)
    if attention:
        torch.testing.assert_close(weights, tf_weights)
        assert weights.shape == (5, 7, 7)
    else:
        assert weights is None
    assert torch.equal(model.greedy_decode(src, 3, 10), tokens[:, :3])


def test_seq2seq_learns_to_reverse_with_attention():
    torch.manual_seed(0)
    model = rnn.Seq2Seq(10, 11, embed_size=16, hidden_size=32, attention=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(150):
        src, tgt = rnn.reversal_batch(64, 5, generator=g)
        logits = model(src, rnn.shift_right(tgt, 10))
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 11), tgt.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    src, tgt = rnn.reversal_batch(200, 5, generator=torch.Generator().manual_seed(1))
    tokens, weights = model.greedy_decode(src, 5, 10, return_weights=True)
    assert (tokens == tgt).float().mean() > 0.9
    anti = weights.mean(0)[torch.arange(5), torch.arange(5).flip(0)]  # output i looks at input 4 - i
    assert anti.mean() > 0.5


def test_seq2seq_validation():
    model = _seq2seq_pair(True)
    src = torch.zeros(2, 3, dtype=torch.long)
    with pytest.raises(TypeError, match=r"Seq2Seq\.encode: src must be an integer tensor; got dtype torch\.float32"):
        model.encode(src.float())
    with pytest.raises(ValueError, match=r"Seq2Seq\.encode: src must be 2-D; got shape \(3,\)"):
        model.encode(src[0])
    with pytest.raises(ValueError, match=r"Seq2Seq\.encode: src must have at least one token per sequence; got shape \(2, 0\)"):
        model.encode(src[:, :0])
    with pytest.raises(ValueError, match=r"Seq2Seq\.encode: src ids must be in \[0, 10\); got min 0, max 10"):
        model.encode(src + torch.tensor([[0, 0, 10]]))
    with pytest.raises(ValueError, match=r"Seq2Seq\.forward: tgt_in ids must be in \[0, 11\); got min -1, max -1"):
        model(src, src - 1)
    with pytest.raises(ValueError, match=r"Seq2Seq\.forward: src and tgt_in must have the same batch size; got 2 and 1"):
        model(src, src[:1])
    with pytest.raises(TypeError, match=r"Seq2Seq\.forward: return_weights must be a bool; got int"):
        model(src, src, return_weights=1)
    with pytest.raises(ValueError, match=r"Seq2Seq\.greedy_decode: max_len must be >= 1; got 0"):
        model.greedy_decode(src, 0, 10)
    with pytest.raises(ValueError, match=r"Seq2Seq\.greedy_decode: bos_idx must be in \[0, 11\); got 11"):
        model.greedy_decode(src, 3, 11)
    with pytest.raises(TypeError, match=r"Seq2Seq\.greedy_decode: return_weights must be a bool; got str"):
        model.greedy_decode(src, 3, 10, return_weights="yes")


def test_additive_attention_several_queries_per_sequence():
    """query [N, L, Q]: each of the L queries gives what it gives alone (values and gradients, float64)."""
    _, keys, w_query, w_key, v = attention_inputs()
    queries = torch.randn(3, 4, 4, generator=torch.Generator().manual_seed(5), dtype=torch.float64)  # [N, L, Q]
    mask = torch.tensor([[1, 1, 0, 1, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]], dtype=torch.bool)
    context, weights = rnn.additive_attention(queries, keys, w_query, w_key, v, mask)
    assert context.shape == (3, 4, 6) and weights.shape == (3, 4, 5)
    for i in range(4):
        slow_context, slow_weights = slow_additive_attention(queries[:, i], keys, w_query, w_key, v, mask)
        torch.testing.assert_close(context[:, i], slow_context)
        torch.testing.assert_close(weights[:, i], slow_weights)
    inputs = [t.requires_grad_() for t in (queries, keys, w_query, w_key, v)]
    assert torch.autograd.gradcheck(lambda *t: rnn.additive_attention(*t, mask), inputs)
