r"""Recurrent networks: the Elman RNN cell, LSTM, GRU, unrolling and gradient clipping.

Shape letters: L sequence length, N batch, I input features (``input_size``),
H hidden features (``hidden_size``). A cell maps one time step ``x`` (Tensor[N, I],
or Tensor[I] unbatched) and the previous state to the next state; :func:`unroll`
applies it over a sequence (Tensor[L, N, I]) and backpropagation through time is
ordinary autograd through that loop.

The cells keep PyTorch's parameter names, shapes, initialization and gate order, so
``load_state_dict`` from ``nn.RNNCell`` / ``nn.LSTMCell`` / ``nn.GRUCell`` works and
the outputs agree; they are written with matmul, sigmoid and tanh only.

Papers:
    Elman 1990, "Finding Structure in Time" (simple recurrent network).
    Bengio, Simard & Frasconi 1994, "Learning Long-Term Dependencies with Gradient
    Descent Is Difficult"; Pascanu, Mikolov & Bengio 2013, "On the Difficulty of
    Training Recurrent Neural Networks" (vanishing/exploding gradients, clipping).
    Hochreiter & Schmidhuber 1997, "Long Short-Term Memory"; Gers, Schmidhuber &
    Cummins 2000, "Learning to Forget" (the forget gate).
    Cho et al. 2014, "Learning Phrase Representations using RNN Encoder-Decoder"
    (the GRU).
    Schuster & Paliwal 1997, "Bidirectional Recurrent Neural Networks"; Graves,
    Mohamed & Hinton 2013, "Speech Recognition with Deep Recurrent Neural Networks"
    (stacked, bidirectional LSTMs: :class:`LSTM`, :class:`GRU`).
    Sequence to sequence (:class:`Seq2Seq`; S source length, L target length, V target
    vocabulary, A attention size): Sutskever, Vinyals & Le 2014, "Sequence to Sequence
    Learning with Neural Networks"; Cho et al. 2014 (the RNN encoder-decoder above);
    Bahdanau, Cho & Bengio 2015, "Neural Machine Translation by Jointly Learning to Align
    and Translate" (additive attention: :func:`additive_attention`); Luong, Pham & Manning
    2015, "Effective Approaches to Attention-based Neural Machine Translation" (where the
    attention sits in the decoder).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from dlkb import _validate as _v
from dlkb.utils import eval_mode

__all__ = [
    "clip_grad_norm",
    "unroll",
    "reversal_batch",
    "shift_right",
    "additive_attention",
    "RNNCell",
    "LSTMCell",
    "GRUCell",
    "LSTM",
    "GRU",
    "AdditiveAttention",
    "Seq2Seq",
]


def _shape(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def _check_step_input(x: object, input_size: int, caller: str) -> torch.Tensor:
    """Validate one time step ``x`` (Tensor[N, I] or Tensor[I]) and return it as Tensor[N, I]."""
    _v.tensor("x", x, caller=caller, dtype="floating")
    if x.ndim not in (1, 2):
        raise ValueError(f"{caller}: x must have shape (N, {input_size}) or ({input_size},); got {_shape(x)}")
    if x.shape[-1] != input_size:
        raise ValueError(
            f"{caller}: x must have {input_size} features (input_size) in its last dimension; got shape {_shape(x)}"
        )
    return x if x.ndim == 2 else x.unsqueeze(0)


def _check_state(name: str, state: object, x: torch.Tensor, unbatched: bool, hidden_size: int, caller: str):
    """Validate a state tensor against ``x`` (already Tensor[N, I]); return Tensor[N, H] (zeros if None)."""
    n = x.shape[0]
    if state is None:
        return x.new_zeros(n, hidden_size)
    _v.instance(name, state, caller=caller, types=torch.Tensor)
    expected = (hidden_size,) if unbatched else (n, hidden_size)
    if _shape(state) != expected:
        if not unbatched and state.ndim == 2 and state.shape[1] == hidden_size:
            raise ValueError(
                f"{caller}: batch sizes of x and {name} differ: x has N = {n}, {name} has N = {state.shape[0]}"
            )
        raise ValueError(f"{caller}: {name} must have shape {expected}; got {_shape(state)}")
    if state.dtype != x.dtype or state.device != x.device:
        raise TypeError(
            f"{caller}: {name} must have the dtype and device of x ({x.dtype}, {x.device}); "
            f"got ({state.dtype}, {state.device})"
        )
    return state if not unbatched else state.unsqueeze(0)


def clip_grad_norm(parameters: torch.Tensor | Iterable[torch.Tensor], max_norm: float) -> torch.Tensor:
    r"""Rescale gradients in place so that their global L2 norm is at most ``max_norm``.

    Pascanu et al. 2013, Algorithm 1: with :math:`g` all gradients seen as one vector,

    .. math::
        \lVert g \rVert = \Big(\sum_p \lVert g_p \rVert_2^2\Big)^{1/2}, \qquad
        g \leftarrow g \cdot \min\Big(1, \frac{\text{max\_norm}}{\lVert g \rVert + 10^{-6}}\Big).

    The direction of the update is kept; only its length is capped. This is what
    ``torch.nn.utils.clip_grad_norm_`` does (L2 norm, the same ``1e-6``), parameters
    whose ``.grad`` is ``None`` are skipped.

    Args:
        parameters: a tensor or an iterable of tensors (e.g. ``model.parameters()``).
        max_norm: the largest allowed global norm, ``>= 0``.

    Returns:
        The global norm of the gradients *before* clipping (a 0-d tensor; ``tensor(0.)``
        when no parameter has a gradient).

    Raises:
        TypeError: if ``max_norm`` is not a real number or an element is not a tensor.
        ValueError: if ``max_norm`` is negative or NaN.
    """
    caller = "clip_grad_norm"
    max_norm = _v.real("max_norm", max_norm, caller=caller, low=0.0, finite=False)
    params = [parameters] if isinstance(parameters, torch.Tensor) else list(parameters)
    for i, p in enumerate(params):
        if not isinstance(p, torch.Tensor):
            raise TypeError(f"{caller}: parameters must be tensors; element {i} is {type(p).__name__}")
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    with torch.no_grad():
        first = grads[0].device
        norms = torch.stack([torch.linalg.vector_norm(g, 2).to(first) for g in grads])  # [P]
        total = torch.linalg.vector_norm(norms, 2)  # global L2 norm, 0-d
        scale = torch.clamp(max_norm / (total + 1e-6), max=1.0)
        for g in grads:
            g.mul_(scale.to(g.device))
    return total


def unroll(cell: nn.Module, inputs: torch.Tensor, state=None):
    r"""Apply ``cell`` to every time step of ``inputs``: :math:`s_t = \text{cell}(x_t, s_{t-1})`.

    Backpropagation through time (BPTT) is autograd through this loop: the same
    weights are used at every step, so their gradient is a sum over time steps.

    Args:
        cell: a :class:`RNNCell`, :class:`LSTMCell` or :class:`GRUCell` (torch's
            ``nn.RNNCell`` / ``nn.LSTMCell`` / ``nn.GRUCell`` work too).
        inputs (Tensor[L, N, I] or Tensor[L, I] unbatched): the sequence, time first.
        state: initial state, ``h`` (Tensor[N, H]) or ``(h, c)`` for an LSTM; zeros when ``None``.

    Returns:
        ``(outputs, state)``: ``outputs`` (Tensor[L, N, H] or Tensor[L, H]) stacks the
        hidden state ``h_t`` of every step; ``state`` is the final ``h_L`` (or
        ``(h_L, c_L)``). ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` with one layer return the
        same ``outputs``, and the final state with an extra leading layer dimension.

    Raises:
        TypeError: if ``cell`` is not one of the cells above or ``inputs`` is not a tensor.
        ValueError: if ``inputs`` has the wrong number of dimensions, features or ``L = 0``.
    """
    caller = "unroll"
    cells = (RNNCell, LSTMCell, GRUCell, nn.RNNCell, nn.LSTMCell, nn.GRUCell)
    if not isinstance(cell, cells):
        raise TypeError(f"{caller}: cell must be RNNCell, LSTMCell or GRUCell; got {type(cell).__name__}")
    _v.instance("inputs", inputs, caller=caller, types=torch.Tensor)
    if inputs.ndim not in (2, 3):
        raise ValueError(
            f"{caller}: inputs must have shape (L, N, {cell.input_size}) or (L, {cell.input_size}); "
            f"got {_shape(inputs)}"
        )
    if inputs.shape[-1] != cell.input_size:
        raise ValueError(
            f"{caller}: inputs must have {cell.input_size} features (cell.input_size) in the last dimension; "
            f"got shape {_shape(inputs)}"
        )
    if inputs.shape[0] == 0:
        raise ValueError(f"{caller}: inputs must have at least one time step; got shape {_shape(inputs)}")
    lstm = isinstance(cell, (LSTMCell, nn.LSTMCell))
    outputs = []
    for x_t in inputs:  # x_t: [N, I] (or [I])
        state = cell(x_t, state)
        outputs.append(state[0] if lstm else state)  # h_t: [N, H]
    return torch.stack(outputs), state  # [L, N, H]


class _CellBase(nn.Module):
    """Parameters shared by the three cells: ``weight_ih`` [G·H, I], ``weight_hh`` [G·H, H], biases [G·H]."""

    def __init__(self, input_size: int, hidden_size: int, gates: int, caller: str) -> None:
        super().__init__()
        self.input_size = _v.integer("input_size", input_size, caller=caller, minimum=1)
        self.hidden_size = _v.integer("hidden_size", hidden_size, caller=caller, minimum=1)
        self.weight_ih = nn.Parameter(torch.empty(gates * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(gates * hidden_size, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(gates * hidden_size))
        self.bias_hh = nn.Parameter(torch.empty(gates * hidden_size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's initialization: every parameter uniform in :math:`[-1/\\sqrt{H}, 1/\\sqrt{H}]`."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def _check_x(self, x: object, caller: str) -> torch.Tensor:
        """Validate one time step against the cell; return it as Tensor[N, I]."""
        x = _check_step_input(x, self.input_size, caller)
        w = self.weight_ih
        if x.dtype != w.dtype or x.device != w.device:
            raise TypeError(
                f"{caller}: x must have the dtype and device of the cell's parameters ({w.dtype}, {w.device}); "
                f"got ({x.dtype}, {x.device})"
            )
        return x

    def _affine(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Input and recurrent pre-activations, each [N, G·H]."""
        return x @ self.weight_ih.T + self.bias_ih, h @ self.weight_hh.T + self.bias_hh

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}"


class RNNCell(_CellBase):
    r"""Elman's simple recurrent cell (Elman 1990):

    .. math::
        h' = \phi(W_{ih} x + b_{ih} + W_{hh} h + b_{hh}), \qquad \phi \in \{\tanh, \mathrm{ReLU}\}.

    Parameters ``weight_ih`` [H, I], ``weight_hh`` [H, H], ``bias_ih`` [H], ``bias_hh`` [H],
    as in ``nn.RNNCell``.

    Args:
        input_size: I, features of one time step.
        hidden_size: H, features of the hidden state.
        nonlinearity: ``"tanh"`` (default) or ``"relu"``.
    """

    def __init__(self, input_size: int, hidden_size: int, nonlinearity: str = "tanh") -> None:
        _v.choice("nonlinearity", nonlinearity, caller="RNNCell", choices=("tanh", "relu"))
        super().__init__(input_size, hidden_size, 1, "RNNCell")
        self.nonlinearity = nonlinearity

    def forward(self, x: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        """One step: ``x`` (Tensor[N, I] or Tensor[I]), ``h`` (Tensor[N, H] or Tensor[H]; zeros if None) → ``h'``."""
        unbatched = isinstance(x, torch.Tensor) and x.ndim == 1
        x = self._check_x(x, "RNNCell.forward")  # [N, I]
        h = _check_state("h", h, x, unbatched, self.hidden_size, "RNNCell.forward")  # [N, H]
        a_x, a_h = self._affine(x, h)  # [N, H] each
        pre = a_x + a_h
        h_new = torch.tanh(pre) if self.nonlinearity == "tanh" else torch.relu(pre)  # [N, H]
        return h_new.squeeze(0) if unbatched else h_new

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, nonlinearity={self.nonlinearity!r}"


class LSTMCell(_CellBase):
    r"""Long short-term memory cell (Hochreiter & Schmidhuber 1997, with the forget gate of Gers et al. 2000):

    .. math::
        \begin{aligned}
        i &= \sigma(W_{ii} x + b_{ii} + W_{hi} h + b_{hi}), &
        f &= \sigma(W_{if} x + b_{if} + W_{hf} h + b_{hf}), \\
        g &= \tanh(W_{ig} x + b_{ig} + W_{hg} h + b_{hg}), &
        o &= \sigma(W_{io} x + b_{io} + W_{ho} h + b_{ho}), \\
        c' &= f \odot c + i \odot g, &
        h' &= o \odot \tanh(c').
        \end{aligned}

    The rows of ``weight_ih`` [4H, I], ``weight_hh`` [4H, H] and of the biases [4H] hold
    the gates in torch's order (i, f, g, o).

    Args:
        input_size: I, features of one time step.
        hidden_size: H, features of the hidden and the cell state.
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size, 4, "LSTMCell")

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step: ``x`` [N, I] (or [I]) and ``state = (h, c)`` (each [N, H]; zeros if None) → ``(h', c')``."""
        caller = "LSTMCell.forward"
        unbatched = isinstance(x, torch.Tensor) and x.ndim == 1
        x = self._check_x(x, caller)  # [N, I]
        if state is None:
            h = c = None
        else:
            if not isinstance(state, (tuple, list)) or len(state) != 2:
                raise TypeError(f"{caller}: state must be a tuple (h, c) of two tensors or None; got {state!r:.60}")
            h, c = state
        h = _check_state("h", h, x, unbatched, self.hidden_size, caller)  # [N, H]
        c = _check_state("c", c, x, unbatched, self.hidden_size, caller)  # [N, H]
        a_x, a_h = self._affine(x, h)  # [N, 4H] each
        i, f, g, o = (a_x + a_h).chunk(4, dim=1)  # [N, H] each, torch's order
        i, f, o = torch.sigmoid(i), torch.sigmoid(f), torch.sigmoid(o)  # gates in (0, 1)
        g = torch.tanh(g)  # candidate in (-1, 1)
        c_new = f * c + i * g  # additive update of the cell state
        h_new = o * torch.tanh(c_new)
        if unbatched:
            return h_new.squeeze(0), c_new.squeeze(0)
        return h_new, c_new


class GRUCell(_CellBase):
    r"""Gated recurrent unit (Cho et al. 2014, Eqs. (5)–(8)), in torch's convention:

    .. math::
        \begin{aligned}
        r &= \sigma(W_{ir} x + b_{ir} + W_{hr} h + b_{hr}), \qquad
        z = \sigma(W_{iz} x + b_{iz} + W_{hz} h + b_{hz}), \\
        n &= \tanh\big(W_{in} x + b_{in} + r \odot (W_{hn} h + b_{hn})\big), \qquad
        h' = (1 - z) \odot n + z \odot h.
        \end{aligned}

    Deviation from the paper, as in ``nn.GRUCell``: the reset gate multiplies
    :math:`W_{hn} h + b_{hn}`, whereas Cho et al. (Eq. (8)) apply it to :math:`h` before
    the matmul, :math:`W_{hn}(r \odot h)`. As in the paper (Eq. (7)), :math:`z` weighs
    the *old* state; some later texts swap :math:`z` and :math:`1 - z`. Rows of
    ``weight_ih`` [3H, I], ``weight_hh`` [3H, H] and the biases [3H] are in the order
    (r, z, n).

    Args:
        input_size: I, features of one time step.
        hidden_size: H, features of the hidden state.
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size, 3, "GRUCell")

    def forward(self, x: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        """One step: ``x`` (Tensor[N, I] or Tensor[I]), ``h`` (Tensor[N, H] or Tensor[H]; zeros if None) → ``h'``."""
        unbatched = isinstance(x, torch.Tensor) and x.ndim == 1
        x = self._check_x(x, "GRUCell.forward")  # [N, I]
        h = _check_state("h", h, x, unbatched, self.hidden_size, "GRUCell.forward")  # [N, H]
        a_x, a_h = self._affine(x, h)  # [N, 3H] each
        x_r, x_z, x_n = a_x.chunk(3, dim=1)  # [N, H] each
        h_r, h_z, h_n = a_h.chunk(3, dim=1)  # [N, H] each
        r = torch.sigmoid(x_r + h_r)  # reset gate
        z = torch.sigmoid(x_z + h_z)  # update gate
        n = torch.tanh(x_n + r * h_n)  # candidate state
        h_new = (1 - z) * n + z * h  # interpolate between candidate and old state
        return h_new.squeeze(0) if unbatched else h_new



# ---------------------------------------------------------------- multi-layer, bidirectional
def _lstm_step(
    x: torch.Tensor, h: torch.Tensor, c: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor,
    b_ih: torch.Tensor | None, b_hh: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One LSTM step from raw weights (the equations of :class:`LSTMCell`): x [N, I], h, c [N, H] → (h', c')."""
    a = x @ w_ih.T + h @ w_hh.T  # [N, 4H]
    if b_ih is not None:
        a = a + b_ih + b_hh
    i, f, g, o = a.chunk(4, dim=1)  # torch's gate order (i, f, g, o)
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c_new), c_new


def _gru_step(
    x: torch.Tensor, h: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor,
    b_ih: torch.Tensor | None, b_hh: torch.Tensor | None,
) -> torch.Tensor:
    """One GRU step from raw weights (the equations of :class:`GRUCell`): x [N, I], h [N, H] → h'."""
    a_x, a_h = x @ w_ih.T, h @ w_hh.T  # [N, 3H] each
    if b_ih is not None:
        a_x, a_h = a_x + b_ih, a_h + b_hh
    x_r, x_z, x_n = a_x.chunk(3, dim=1)
    h_r, h_z, h_n = a_h.chunk(3, dim=1)
    r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
    n = torch.tanh(x_n + r * h_n)
    return (1 - z) * n + z * h


class _StackedRNN(nn.Module):
    r"""A stack of ``num_layers`` recurrent layers, each optionally bidirectional.

    Layer :math:`\ell` reads the outputs of layer :math:`\ell-1` (for a bidirectional
    layer, the forward and the backward hidden states concatenated, 2H features); the
    backward direction runs the same equations from :math:`t = L` down to :math:`t = 1`
    with its own weights (Schuster & Paliwal 1997). Parameter names, shapes, order and
    initialization are those of ``torch.nn.LSTM`` / ``torch.nn.GRU``
    (``weight_ih_l{k}[_reverse]`` [G·H, I or D·H], ``weight_hh_l{k}[_reverse]`` [G·H, H],
    ``bias_ih_l{k}[_reverse]``, ``bias_hh_l{k}[_reverse]`` [G·H]), so ``load_state_dict``
    works in both directions.
    """

    _gates = 0
    _lstm = False

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        bidirectional: bool = False,
    ) -> None:
        super().__init__()
        caller = type(self).__name__
        self.input_size = _v.integer("input_size", input_size, caller=caller, minimum=1)
        self.hidden_size = _v.integer("hidden_size", hidden_size, caller=caller, minimum=1)
        self.num_layers = _v.integer("num_layers", num_layers, caller=caller, minimum=1)
        self.bias = _v.boolean("bias", bias, caller=caller)
        self.batch_first = _v.boolean("batch_first", batch_first, caller=caller)
        self.bidirectional = _v.boolean("bidirectional", bidirectional, caller=caller)
        d = 2 if self.bidirectional else 1
        gh = self._gates * self.hidden_size
        for layer in range(self.num_layers):
            in_features = self.input_size if layer == 0 else d * self.hidden_size
            for suffix in ("", "_reverse")[:d]:
                setattr(self, f"weight_ih_l{layer}{suffix}", nn.Parameter(torch.empty(gh, in_features)))
                setattr(self, f"weight_hh_l{layer}{suffix}", nn.Parameter(torch.empty(gh, self.hidden_size)))
                if self.bias:
                    setattr(self, f"bias_ih_l{layer}{suffix}", nn.Parameter(torch.empty(gh)))
                    setattr(self, f"bias_hh_l{layer}{suffix}", nn.Parameter(torch.empty(gh)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's initialization: every parameter uniform in :math:`[-1/\\sqrt{H}, 1/\\sqrt{H}]`."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def _weights(self, layer: int, suffix: str):
        get = lambda name: getattr(self, f"{name}_l{layer}{suffix}") if self.bias or "weight" in name else None  # noqa: E731
        return get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh")

    def _check_state(self, name: str, s: object, x: torch.Tensor, unbatched: bool, caller: str) -> torch.Tensor:
        """``s`` as Tensor[D·num_layers, N, H] (zeros if None)."""
        layers = (2 if self.bidirectional else 1) * self.num_layers
        n = x.shape[1]
        if s is None:
            return x.new_zeros(layers, n, self.hidden_size)
        _v.tensor(name, s, caller=caller, dtype="floating")
        expected = (layers, self.hidden_size) if unbatched else (layers, n, self.hidden_size)
        if tuple(s.shape) != expected:
            raise ValueError(f"{caller}: {name} must have shape {expected} (D·num_layers, N, H); got {_shape(s)}")
        if s.dtype != x.dtype or s.device != x.device:
            raise TypeError(f"{caller}: {name} must have the dtype and device of x ({x.dtype}, {x.device}); "
                            f"got ({s.dtype}, {s.device})")
        return s.unsqueeze(1) if unbatched else s

    def forward(self, x: torch.Tensor, hx=None):
        """Run the stack over a sequence.

        Args:
            x (Tensor[L, N, I], Tensor[N, L, I] if ``batch_first``, or Tensor[L, I] unbatched): the inputs.
            hx: initial state, Tensor[D·num_layers, N, H] (``h_0``; for the LSTM a pair ``(h_0, c_0)``);
                zeros when ``None``. D = 2 if bidirectional else 1; rows are ordered layer by layer,
                forward before backward, as in torch.

        Returns:
            ``(output, h_n)`` for the GRU, ``(output, (h_n, c_n))`` for the LSTM, as torch returns them:
            ``output`` (Tensor[L, N, D·H], batch first if ``batch_first``) holds the last layer's hidden
            states (forward and backward concatenated); ``h_n``/``c_n`` (Tensor[D·num_layers, N, H]) the
            final states of every layer and direction (for the backward direction, the state after t = 1).

        Raises:
            TypeError: ``x`` not a floating tensor of the parameters' dtype/device, or a bad ``hx`` type.
            ValueError: wrong number of dimensions or features, ``L = 0``, or an ``hx`` of the wrong shape.
        """
        caller = f"{type(self).__name__}.forward"
        _v.tensor("x", x, caller=caller, dtype="floating", ndim=(2, 3))
        if x.shape[-1] != self.input_size:
            raise ValueError(f"{caller}: x must have {self.input_size} features (input_size) in its last dimension; "
                             f"got shape {_shape(x)}")
        w = self.weight_ih_l0
        if x.dtype != w.dtype or x.device != w.device:
            raise TypeError(f"{caller}: x must have the dtype and device of the parameters ({w.dtype}, {w.device}); "
                            f"got ({x.dtype}, {x.device})")
        unbatched = x.ndim == 2
        seq = x.unsqueeze(1) if unbatched else (x.transpose(0, 1) if self.batch_first else x)  # [L, N, I]
        if seq.shape[0] == 0:
            raise ValueError(f"{caller}: x must have at least one time step; got shape {_shape(x)}")
        if self._lstm:
            if hx is None:
                h0 = c0 = None
            elif not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError(f"{caller}: hx must be a tuple (h_0, c_0) of two tensors or None; "
                                f"got {type(hx).__name__}")
            else:
                h0, c0 = hx
            h0 = self._check_state("h_0", h0, seq, unbatched, caller)
            c0 = self._check_state("c_0", c0, seq, unbatched, caller)
        else:
            h0 = self._check_state("hx", hx, seq, unbatched, caller)
        d = 2 if self.bidirectional else 1
        h_n, c_n = [], []
        for layer in range(self.num_layers):
            outs = []
            for k, suffix in enumerate(("", "_reverse")[:d]):
                weights = self._weights(layer, suffix)
                h = h0[d * layer + k]  # [N, H]
                c = c0[d * layer + k] if self._lstm else None
                steps = range(seq.shape[0]) if k == 0 else range(seq.shape[0] - 1, -1, -1)
                hs = [None] * seq.shape[0]
                for t in steps:
                    if self._lstm:
                        h, c = _lstm_step(seq[t], h, c, *weights)
                    else:
                        h = _gru_step(seq[t], h, *weights)
                    hs[t] = h
                outs.append(torch.stack(hs))  # [L, N, H], in time order
                h_n.append(h)
                c_n.append(c)
            seq = torch.cat(outs, dim=2) if d == 2 else outs[0]  # [L, N, D·H]: next layer's input
        output = seq.squeeze(1) if unbatched else (seq.transpose(0, 1) if self.batch_first else seq)
        h_n = torch.stack(h_n)  # [D·num_layers, N, H]
        if unbatched:
            h_n = h_n.squeeze(1)
        if not self._lstm:
            return output, h_n
        c_n = torch.stack(c_n)
        return output, (h_n, c_n.squeeze(1) if unbatched else c_n)

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, bias={self.bias}, "
                f"batch_first={self.batch_first}, bidirectional={self.bidirectional}")


class LSTM(_StackedRNN):
    r"""Multi-layer, optionally bidirectional LSTM with the interface of ``torch.nn.LSTM``
    (without dropout and projections).

    Each layer and direction applies the :class:`LSTMCell` equations (Hochreiter &
    Schmidhuber 1997 with the forget gate of Gers et al. 2000); stacking and the backward
    direction as in Graves et al. 2013. ``forward(x, (h_0, c_0))`` returns
    ``(output, (h_n, c_n))``.

    Args:
        input_size: I. hidden_size: H. num_layers: how many layers are stacked (≥ 1).
        bias: with the two bias vectors per layer and direction.
        batch_first: ``x`` and ``output`` are [N, L, ·] instead of [L, N, ·] (the states are not affected).
        bidirectional: add a backward direction to every layer (D = 2).
    """

    _gates = 4
    _lstm = True


class GRU(_StackedRNN):
    r"""Multi-layer, optionally bidirectional GRU with the interface of ``torch.nn.GRU`` (without dropout).

    Each layer and direction applies the :class:`GRUCell` equations (Cho et al. 2014, in
    torch's convention). ``forward(x, h_0)`` returns ``(output, h_n)``.

    Args:
        input_size: I. hidden_size: H. num_layers: how many layers are stacked (≥ 1).
        bias: with the two bias vectors per layer and direction.
        batch_first: ``x`` and ``output`` are [N, L, ·] instead of [L, N, ·].
        bidirectional: add a backward direction to every layer (D = 2).
    """

    _gates = 3


# ---------------------------------------------------------------- sequence to sequence


def reversal_batch(
    batch_size: int, length: int, *, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of the digit-reversal task of the Transformer chapter: ``3 1 4 → 4 1 3``.

    Args:
        batch_size: N, number of sequences (≥ 0).
        length: L, digits per sequence (≥ 1).
        generator: source of randomness (the default generator if None).

    Returns:
        ``(src, tgt)``: both Tensor[N, L] of long, digits 0–9; ``tgt = src.flip(1)``.
    """
    caller = "reversal_batch"
    batch_size = _v.integer("batch_size", batch_size, caller=caller, minimum=0)
    length = _v.integer("length", length, caller=caller, minimum=1)
    if generator is not None:
        _v.instance("generator", generator, caller=caller, types=torch.Generator)
    src = torch.randint(0, 10, (batch_size, length), generator=generator)  # [N, L]
    return src, src.flip(1)


def shift_right(tgt: torch.Tensor, bos_idx: int) -> torch.Tensor:
    """Decoder input for teacher forcing: BOS, then the target without its last token.

    Args:
        tgt (Tensor[N, L] of long): target tokens.
        bos_idx: the begin-of-sequence token.

    Returns:
        Tensor[N, L] of long: ``[BOS, y_1, ..., y_{L-1}]`` per row.
    """
    caller = "shift_right"
    _v.tensor("tgt", tgt, caller=caller, dtype="integer", ndim=2)
    bos_idx = _v.integer("bos_idx", bos_idx, caller=caller, minimum=0)
    bos = torch.full((tgt.shape[0], 1), bos_idx, dtype=tgt.dtype, device=tgt.device)
    return torch.cat([bos, tgt[:, :-1]], dim=1)


def additive_attention(
    query: torch.Tensor,
    keys: torch.Tensor,
    w_query: torch.Tensor,
    w_key: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Additive attention of Bahdanau, Cho & Bengio 2015 (Sec. 3.1 and Appendix A.1.2).

    For a query :math:`q` (a decoder state) and keys :math:`k_1, \dots, k_S` (the encoder
    states :math:`h_j`, which are also the values):

    .. math::
        e_j = v^\top \tanh(W_q\, q + W_k\, k_j), \qquad
        \alpha_j = \frac{\exp e_j}{\sum_{j'} \exp e_{j'}}, \qquad
        c = \sum_j \alpha_j k_j .

    The paper writes :math:`W_a, U_a, v_a` for :math:`W_q, W_k, v`; there is no bias.
    Keys with ``mask`` False get weight 0; a row whose keys are all masked gets zero
    weights and a zero context (not NaN), as ``dlkb.transformer.scaled_dot_product_attention``
    and ``F.scaled_dot_product_attention`` do.

    Args:
        query (Tensor[N, Q] or Tensor[N, L, Q]): one query, or L queries, per sequence.
        keys (Tensor[N, S, K]): the keys, also used as values; S ≥ 1.
        w_query (Tensor[A, Q]): query projection. w_key (Tensor[A, K]): key projection.
        v (Tensor[A]): the scoring vector.
        mask (Tensor[N, S] of bool, optional): True = the queries may attend to this key.

    Returns:
        ``(context, weights)``: Tensor[N, K] and Tensor[N, S] for one query per sequence,
        Tensor[N, L, K] and Tensor[N, L, S] for L; weights sum to 1 (0 if fully masked).

    Raises:
        TypeError: a non-floating tensor, mixed dtypes, or a non-boolean mask.
        ValueError: wrong number of dimensions or mismatched sizes.
    """
    caller = "additive_attention"
    _v.tensor("query", query, caller=caller, dtype="floating", ndim=(2, 3))
    _v.tensor("keys", keys, caller=caller, dtype="floating", ndim=3)
    n, q_size = query.shape[0], query.shape[-1]
    if keys.shape[0] != n:
        raise ValueError(f"{caller}: keys must have the batch size N = {n} of query; got shape {_shape(keys)}")
    if keys.shape[1] == 0:
        raise ValueError(f"{caller}: keys must hold at least one key (S >= 1); got shape {_shape(keys)}")
    k_size = keys.shape[2]
    _v.tensor("v", v, caller=caller, dtype="floating", ndim=1)
    a = v.shape[0]
    _v.tensor("w_query", w_query, caller=caller, dtype="floating", shape=(a, q_size))
    _v.tensor("w_key", w_key, caller=caller, dtype="floating", shape=(a, k_size))
    dtypes = (query.dtype, keys.dtype, w_query.dtype, w_key.dtype, v.dtype)
    if len(set(dtypes)) != 1:
        raise TypeError(f"{caller}: query, keys, w_query, w_key and v must have one dtype; got {dtypes}")
    if mask is not None:
        _v.tensor("mask", mask, caller=caller, dtype="bool", shape=(n, keys.shape[1]))
    single = query.ndim == 2
    q = query[:, None, :] if single else query  # [N, L, Q]
    hidden = (q @ w_query.T)[:, :, None, :] + (keys @ w_key.T)[:, None, :, :]  # [N, L, 1, A] + [N, 1, S, A]
    scores = torch.tanh(hidden) @ v  # e_j for every query: [N, L, S]
    if mask is None:
        weights = torch.softmax(scores, dim=-1)  # [N, L, S]
    else:
        # The most negative finite number, not -inf: a fully masked row softmaxes to a uniform
        # row (no NaN, also none in the backward pass), which the second fill sets to zero.
        keep = mask[:, None, :]  # [N, 1, S], the same for every query
        scores = scores.masked_fill(~keep, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=-1).masked_fill(~keep, 0.0)  # [N, L, S]
    context = weights @ keys  # [N, L, S] @ [N, S, K] -> [N, L, K]
    if single:
        return context[:, 0], weights[:, 0]
    return context, weights


class AdditiveAttention(nn.Module):
    r"""Bahdanau attention as a module: parameters ``w_query`` [A, Q], ``w_key`` [A, K], ``v`` [A].

    :func:`additive_attention` with learned weights, initialized uniformly in
    :math:`[-1/\sqrt{\text{fan\_in}}, 1/\sqrt{\text{fan\_in}}]` (as ``nn.Linear``).
    PyTorch has no additive-attention module; the tests check it against the formula
    written out key by key.

    Args:
        query_size: Q, features of a query (the decoder state).
        key_size: K, features of a key (an encoder state).
        hidden_size: A, size of the hidden layer of the scoring network.
    """

    def __init__(self, query_size: int, key_size: int, hidden_size: int) -> None:
        super().__init__()
        caller = "AdditiveAttention"
        self.query_size = _v.integer("query_size", query_size, caller=caller, minimum=1)
        self.key_size = _v.integer("key_size", key_size, caller=caller, minimum=1)
        self.hidden_size = _v.integer("hidden_size", hidden_size, caller=caller, minimum=1)
        self.w_query = nn.Parameter(torch.empty(hidden_size, query_size))
        self.w_key = nn.Parameter(torch.empty(hidden_size, key_size))
        self.v = nn.Parameter(torch.empty(hidden_size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform in ``[-1/sqrt(fan_in), 1/sqrt(fan_in)]`` for each parameter."""
        for p, fan_in in ((self.w_query, self.query_size), (self.w_key, self.key_size), (self.v, self.hidden_size)):
            bound = 1.0 / math.sqrt(fan_in)
            nn.init.uniform_(p, -bound, bound)

    def forward(
        self, query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``query`` [N, Q] or [N, L, Q], ``keys`` [N, S, K], ``mask`` [N, S] (True = attend) → ``(context, weights)``.

        Shapes as in :func:`additive_attention`: [N, K] and [N, S], or [N, L, K] and [N, L, S].
        """
        return additive_attention(query, keys, self.w_query, self.w_key, self.v, mask)

    def extra_repr(self) -> str:
        return f"query_size={self.query_size}, key_size={self.key_size}, hidden_size={self.hidden_size}"


class Seq2Seq(nn.Module):
    r"""A GRU encoder–decoder, with or without additive attention.

    Encoder: embedding and a one-layer bidirectional ``nn.GRU`` with H/2 features per
    direction; the encoder state :math:`h_j = [\overrightarrow{h}_j; \overleftarrow{h}_j]`
    (Tensor[N, S, H]) describes token j with its left and right context, as in Bahdanau et
    al. 2015. The fixed-size summary of the whole source is
    :math:`c = [\overrightarrow{h}_S; \overleftarrow{h}_1]` (both directions' last states,
    Tensor[N, H]). Decoder: a one-layer ``nn.GRU`` started at :math:`s_0 = c`, reading at
    step :math:`i` the embedding of the previous target token and :math:`c` (the context
    vector of Cho et al. 2014). The logits are a linear map of :math:`[s_i; c_i]`:

    - ``attention=False`` (Cho et al. 2014; Sutskever et al. 2014): :math:`c_i = c` at
      every step, one fixed-size vector for the whole source;
    - ``attention=True``: :math:`c_i` is the :class:`AdditiveAttention` context (the score of
      Bahdanau et al. 2015) of the query :math:`s_i` over all :math:`h_j`.

    Deviations from Bahdanau et al., the same for both variants so that attention is the only
    difference: the output layer is linear (theirs is a maxout layer), :math:`s_0 = c`
    (theirs is :math:`\tanh(W_s \overleftarrow{h}_1)`), and the query is the current state
    :math:`s_i`, with :math:`c_i` used only by the output layer, as in Luong et al. 2015;
    Bahdanau et al. use :math:`s_{i-1}` and feed :math:`c_i` into the recurrence. With that
    placement the decoder's recurrence does not depend on the attention, so teacher forcing
    runs the whole target through ``nn.GRU`` at once. All sources of a batch have one length
    (no padding).

    Args:
        src_vocab_size: number of source tokens.
        tgt_vocab_size: V, number of target tokens (including BOS).
        embed_size: E, size of the token embeddings.
        hidden_size: H, size of the encoder states (H/2 per direction, so H must be even),
            of the decoder state and of the attention layer.
        attention: use additive attention.
    """

    def __init__(
        self, src_vocab_size: int, tgt_vocab_size: int, embed_size: int = 32, hidden_size: int = 64,
        *, attention: bool = True,
    ) -> None:
        super().__init__()
        caller = "Seq2Seq"
        for name, value in (("src_vocab_size", src_vocab_size), ("tgt_vocab_size", tgt_vocab_size),
                            ("embed_size", embed_size), ("hidden_size", hidden_size)):
            _v.integer(name, value, caller=caller, minimum=1)
        if hidden_size % 2:
            raise ValueError(f"{caller}: hidden_size must be even (H/2 features per encoder direction); got {hidden_size}")
        self.use_attention = _v.boolean("attention", attention, caller=caller)
        self.hidden_size = hidden_size
        self.src_embed = nn.Embedding(src_vocab_size, embed_size)
        self.tgt_embed = nn.Embedding(tgt_vocab_size, embed_size)
        self.encoder = nn.GRU(embed_size, hidden_size // 2, batch_first=True, bidirectional=True)
        self.decoder = nn.GRU(embed_size + hidden_size, hidden_size, batch_first=True)
        self.attention = AdditiveAttention(hidden_size, hidden_size, hidden_size) if attention else None
        self.out = nn.Linear(2 * hidden_size, tgt_vocab_size)

    def _check_tokens(self, name: str, tokens: object, vocab: int, caller: str) -> torch.Tensor:
        _v.tensor(name, tokens, caller=caller, dtype="integer", ndim=2)
        if tokens.shape[1] == 0:
            raise ValueError(f"{caller}: {name} must have at least one token per sequence; got shape {_shape(tokens)}")
        if tokens.numel() and not (0 <= int(tokens.min()) and int(tokens.max()) < vocab):
            raise ValueError(
                f"{caller}: {name} ids must be in [0, {vocab}); got min {int(tokens.min())}, max {int(tokens.max())}"
            )
        return tokens

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Source tokens Tensor[N, S] → encoder states Tensor[N, S, H] and the summary c Tensor[N, H].

        ``c`` joins the forward direction's state after :math:`x_S` and the backward
        direction's state after :math:`x_1`.
        """
        self._check_tokens("src", src, self.src_embed.num_embeddings, "Seq2Seq.encode")
        states, h_n = self.encoder(self.src_embed(src))  # [N, S, H], [2, N, H/2] (forward, backward)
        return states, torch.cat([h_n[0], h_n[1]], dim=1)  # [N, H]

    def _decode(
        self, tokens: torch.Tensor, s: torch.Tensor, states: torch.Tensor, h_last: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Decoder input tokens [N, T] from state s [1, N, H] → logits [N, T, V], last state, weights [N, T, S] or None.

        ``states`` (Tensor[N, S, H]) are the encoder states, ``h_last`` (Tensor[N, H]) the summary c.
        """
        x = self.tgt_embed(tokens)  # [N, T, E]
        x = torch.cat([x, h_last[:, None, :].expand(-1, x.shape[1], -1)], dim=2)  # [N, T, E + H]
        out, s = self.decoder(x, s)  # s_1..s_T: [N, T, H]; s: [1, N, H]
        if self.attention is not None:
            context, weights = self.attention(out, states)  # queries s_i: [N, T, H], [N, T, S]
        else:
            context, weights = h_last[:, None, :].expand_as(out), None  # the same vector at every step
        return self.out(torch.cat([out, context], dim=2)), s, weights  # [N, T, V]

    def forward(
        self, src: torch.Tensor, tgt_in: torch.Tensor, *, return_weights: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor | None]:
        """Teacher forcing: source Tensor[N, S], decoder input Tensor[N, L] (BOS first) → logits Tensor[N, L, V].

        With ``return_weights``, also the attention weights Tensor[N, L, S] (None without attention).
        """
        caller = "Seq2Seq.forward"
        self._check_tokens("src", src, self.src_embed.num_embeddings, caller)
        self._check_tokens("tgt_in", tgt_in, self.tgt_embed.num_embeddings, caller)
        _v.boolean("return_weights", return_weights, caller=caller)
        if tgt_in.shape[0] != src.shape[0]:
            raise ValueError(f"{caller}: src and tgt_in must have the same batch size; "
                             f"got {src.shape[0]} and {tgt_in.shape[0]}")
        states, h_last = self.encode(src)
        logits, _, weights = self._decode(tgt_in, h_last[None], states, h_last)
        return (logits, weights) if return_weights else logits

    def greedy_decode(
        self, src: torch.Tensor, max_len: int, bos_idx: int, *, return_weights: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor | None]:
        """Greedy decoding: from BOS, feed back the arg-max token ``max_len`` times, one step at a time.

        Returns:
            Tensor[N, max_len] of long (without BOS); with ``return_weights`` also the
            attention weights Tensor[N, max_len, S] (None without attention).
        """
        caller = "Seq2Seq.greedy_decode"
        max_len = _v.integer("max_len", max_len, caller=caller, minimum=1)
        vocab = self.tgt_embed.num_embeddings
        bos_idx = _v.integer("bos_idx", bos_idx, caller=caller, minimum=0)
        if bos_idx >= vocab:
            raise ValueError(f"{caller}: bos_idx must be in [0, {vocab}); got {bos_idx}")
        _v.boolean("return_weights", return_weights, caller=caller)
        with torch.no_grad(), eval_mode(self):
            states, h_last = self.encode(src)
            token = torch.full((src.shape[0], 1), bos_idx, dtype=torch.long, device=src.device)  # [N, 1]
            s, tokens, weights = h_last[None], [], []
            for _ in range(max_len):
                logits, s, w = self._decode(token, s, states, h_last)  # one step: [N, 1, V]
                token = logits.argmax(dim=-1)  # [N, 1]
                tokens.append(token)
                weights.append(w)
        tokens = torch.cat(tokens, dim=1)  # [N, max_len]
        if not return_weights:
            return tokens
        return tokens, (torch.cat(weights, dim=1) if self.attention is not None else None)

    def extra_repr(self) -> str:
        return f"attention={self.use_attention}"
