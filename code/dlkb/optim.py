r"""Optimization algorithms written from their update equations.

Chapter "优化算法与类别不平衡 Optimization algorithms and class imbalance".

Every optimizer here is a :class:`torch.optim.Optimizer` subclass, so it works with
``dlkb.train.fit``, ``zero_grad``, ``state_dict`` and torch's learning-rate
schedulers; but each ``step`` is written from the paper's update rule, not by
calling torch's implementation. The tests check that each one produces the same
parameters as the torch optimizer with the same hyper-parameters, step for step.

Notation (per parameter tensor, all updates are element-wise, so any shape works):
:math:`\theta_t` parameters after step :math:`t`, :math:`g_t = \nabla f(\theta_{t-1})`
the gradient, :math:`\eta` the learning rate, :math:`\lambda` the weight decay.
Products, squares, square roots and divisions of tensors are element-wise.

Papers:
    - Robbins & Monro 1951, "A Stochastic Approximation Method" (SGD).
    - Polyak 1964, "Some Methods of Speeding up the Convergence of Iteration Methods" (momentum).
    - Nesterov 1983; in the form of Sutskever et al. 2013, "On the Importance of
      Initialization and Momentum in Deep Learning", Eq. (3)-(4) (Nesterov momentum).
    - Duchi, Hazan & Singer 2011, "Adaptive Subgradient Methods" (AdaGrad).
    - Tieleman & Hinton 2012, Coursera lecture 6.5 (RMSProp).
    - Kingma & Ba 2015, "Adam: A Method for Stochastic Optimization", Algorithm 1.
    - Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization", Algorithm 2 (AdamW).
    - Reddi, Kale & Kumar 2018, "On the Convergence of Adam and Beyond" (AMSGrad).
    - Loshchilov & Hutter 2017, "SGDR: Stochastic Gradient Descent with Warm Restarts"
      (cosine annealing with restarts); Goyal et al. 2017, "Accurate, Large Minibatch SGD"
      (linear warm-up); Smith & Topin 2019, "Super-Convergence: Very Fast Training of
      Neural Networks Using Large Learning Rates" (the one-cycle schedule).
    - Pascanu, Mikolov & Bengio 2013, "On the Difficulty of Training Recurrent Neural
      Networks", Algorithm 1 (clipping the gradient norm); Mikolov 2012 (clipping each
      element of the gradient).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import Optimizer

from dlkb import _validate as _v

__all__ = [
    "SGD",
    "AdaGrad",
    "RMSProp",
    "Adam",
    "clip_grad_norm",
    "clip_grad_value",
    "step_lr",
    "cosine_lr",
    "warmup_lr",
    "one_cycle_lr",
]

Params = Iterable[torch.Tensor] | Iterable[dict[str, Any]]
Closure = Callable[[], torch.Tensor] | None


# ----------------------------------------------------------------------------------------
# Validation and small helpers shared by the four optimizers.
# ----------------------------------------------------------------------------------------
def _grads(caller: str, group: dict[str, Any]) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    """``(param, grad)`` pairs of a group, skipping parameters that received no gradient."""
    for p in group["params"]:
        if p.grad is None:
            continue
        if p.grad.is_sparse:
            raise RuntimeError(f"{caller}: sparse gradients are not supported; use torch.optim.SparseAdam")
        yield p, p.grad


def _real(t: torch.Tensor) -> torch.Tensor:
    """A real view of a complex tensor (update real and imaginary parts independently)."""
    return torch.view_as_real(t) if torch.is_complex(t) else t


class _Base(Optimizer):
    """Checks every parameter group's hyper-parameters, including groups added later."""

    def __init__(self, params: Params, defaults: dict[str, Any]) -> None:
        caller = type(self).__name__
        if isinstance(params, torch.Tensor):
            raise TypeError(f"{caller}: params must be an iterable of tensors or of dicts (parameter groups); got a Tensor "
                            "(wrap it in a list)")
        if isinstance(params, (str, bytes)) or not hasattr(params, "__iter__"):
            raise TypeError(f"{caller}: params must be an iterable of tensors or of dicts (parameter groups); "
                            f"got {type(params).__name__}")
        params = list(params)
        for i, p in enumerate(params):
            if not isinstance(p, (torch.Tensor, dict)):
                raise TypeError(f"{caller}: params[{i}] must be a torch.Tensor or a dict (parameter group); "
                                f"got {type(p).__name__}")
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        self._check_group(self.param_groups[-1])

    def _check_group(self, group: dict[str, Any]) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _run_closure(self, closure: Closure) -> torch.Tensor | None:
        if closure is None:
            return None
        with torch.enable_grad():
            return closure()


# ----------------------------------------------------------------------------------------
# The optimizers.
# ----------------------------------------------------------------------------------------
class SGD(_Base):
    r"""Stochastic gradient descent, optionally with (Nesterov) momentum and weight decay.

    With :math:`d_t = g_t + \lambda\theta_{t-1}` (L2 weight decay added to the gradient):

    .. math::
        \text{plain:}\quad & \theta_t = \theta_{t-1} - \eta\, d_t \\
        \text{momentum:}\quad & b_t = \mu b_{t-1} + d_t,\ b_1 = d_1,\quad \theta_t = \theta_{t-1} - \eta\, b_t \\
        \text{Nesterov:}\quad & b_t = \mu b_{t-1} + d_t,\quad \theta_t = \theta_{t-1} - \eta\,(d_t + \mu b_t)

    Momentum is Polyak's (1964) heavy ball written with a velocity that is not scaled by
    :math:`\eta` (as in ``torch.optim.SGD`` with ``dampening=0``). The Nesterov form is
    Sutskever et al. (2013, Eq. 3-4) rewritten so that the stored parameters are the
    look-ahead point, which lets the gradient be taken at the stored parameters.

    Args:
        params: parameters (or parameter groups) to optimize.
        lr: learning rate :math:`\eta \ge 0`.
        momentum: momentum factor :math:`\mu \in [0, 1)`; 0 is plain SGD.
        nesterov: use Nesterov momentum (needs ``momentum > 0``).
        weight_decay: L2 penalty :math:`\lambda \ge 0` added to the gradient.

    Raises:
        TypeError: a hyper-parameter is not a number (or ``nesterov`` not a bool).
        ValueError: negative ``lr`` or ``weight_decay``, ``momentum`` outside [0, 1),
            or ``nesterov=True`` with ``momentum == 0``.
    """

    def __init__(
        self, params: Params, lr: float, momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0
    ) -> None:
        defaults = {"lr": lr, "momentum": momentum, "nesterov": nesterov, "weight_decay": weight_decay}
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        _v.real("lr", group["lr"], caller="SGD", low=0.0)
        _v.real("momentum", group["momentum"], caller="SGD", low=0.0, high=1.0, high_open=True)
        _v.real("weight_decay", group["weight_decay"], caller="SGD", low=0.0)
        _v.boolean("nesterov", group["nesterov"], caller="SGD")
        if group["nesterov"] and group["momentum"] == 0:
            raise ValueError("SGD: nesterov=True needs momentum > 0; got momentum=0")

    @torch.no_grad()
    def step(self, closure: Closure = None) -> torch.Tensor | None:
        """Update every parameter that has a gradient; return ``closure()`` if given."""
        loss = self._run_closure(closure)
        for group in self.param_groups:
            lr, mu, wd = group["lr"], group["momentum"], group["weight_decay"]
            for p, g in _grads("SGD", group):
                d = g.add(p, alpha=wd) if wd != 0 else g  # d_t = g_t + λ θ_{t-1}
                if mu != 0:
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        state["momentum_buffer"] = d.detach().clone()  # b_1 = d_1
                    else:
                        state["momentum_buffer"].mul_(mu).add_(d)  # b_t = μ b_{t-1} + d_t
                    b = state["momentum_buffer"]
                    d = d.add(b, alpha=mu) if group["nesterov"] else b  # Nesterov: d_t + μ b_t
                p.add_(d, alpha=-lr)  # θ_t = θ_{t-1} - η d
        return loss


class AdaGrad(_Base):
    r"""AdaGrad: divide by the root of the sum of all past squared gradients.

    Duchi, Hazan & Singer (2011), diagonal version:

    .. math::
        s_t = s_{t-1} + g_t^2,\quad s_0 = 0, \qquad
        \theta_t = \theta_{t-1} - \eta\, \frac{g_t}{\sqrt{s_t} + \epsilon}

    Each coordinate gets its own step size :math:`\eta/\sqrt{s_t}`: large for rarely
    updated coordinates, shrinking for frequent ones, and always decreasing. As in
    ``torch.optim.Adagrad``, :math:`\epsilon` is added outside the square root.

    Args:
        params: parameters (or parameter groups) to optimize.
        lr: learning rate :math:`\eta \ge 0`.
        eps: :math:`\epsilon \ge 0` added to the denominator for numerical stability.

    Raises:
        TypeError: a hyper-parameter is not a number.
        ValueError: negative ``lr`` or ``eps``.
    """

    def __init__(self, params: Params, lr: float = 1e-2, eps: float = 1e-10) -> None:
        super().__init__(params, {"lr": lr, "eps": eps})

    def _check_group(self, group: dict[str, Any]) -> None:
        _v.real("lr", group["lr"], caller="AdaGrad", low=0.0)
        _v.real("eps", group["eps"], caller="AdaGrad", low=0.0)

    @torch.no_grad()
    def step(self, closure: Closure = None) -> torch.Tensor | None:
        """Update every parameter that has a gradient; return ``closure()`` if given."""
        loss = self._run_closure(closure)
        for group in self.param_groups:
            for p, g in _grads("AdaGrad", group):
                state = self.state[p]
                if "sum" not in state:
                    state["step"] = 0
                    state["sum"] = torch.zeros_like(p, memory_format=torch.preserve_format)  # s_0 = 0
                state["step"] += 1
                s, g, theta = _real(state["sum"]), _real(g), _real(p)
                s.addcmul_(g, g)  # s_t = s_{t-1} + g_t²
                denom = s.sqrt().add_(group["eps"])  # √s_t + ε
                theta.addcdiv_(g, denom, value=-group["lr"])  # θ_t = θ_{t-1} - η g_t / (√s_t + ε)
        return loss


class RMSProp(_Base):
    r"""RMSProp: divide by the root of an exponentially weighted average of squared gradients.

    Tieleman & Hinton (2012):

    .. math::
        v_t = \alpha v_{t-1} + (1-\alpha)\, g_t^2,\quad v_0 = 0, \qquad
        \theta_t = \theta_{t-1} - \eta\, \frac{g_t}{\sqrt{v_t} + \epsilon}

    Unlike AdaGrad's growing sum, the average forgets old gradients (time constant
    about :math:`1/(1-\alpha)` steps), so the step size does not decay to zero. As in
    ``torch.optim.RMSprop``, there is no bias correction and :math:`\epsilon` is added
    outside the square root.

    Args:
        params: parameters (or parameter groups) to optimize.
        lr: learning rate :math:`\eta \ge 0`.
        alpha: smoothing constant :math:`\alpha \in [0, 1]`.
        eps: :math:`\epsilon \ge 0` added to the denominator.

    Raises:
        TypeError: a hyper-parameter is not a number.
        ValueError: negative ``lr`` or ``eps``, ``alpha`` outside [0, 1].
    """

    def __init__(self, params: Params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8) -> None:
        super().__init__(params, {"lr": lr, "alpha": alpha, "eps": eps})

    def _check_group(self, group: dict[str, Any]) -> None:
        _v.real("lr", group["lr"], caller="RMSProp", low=0.0)
        _v.real("alpha", group["alpha"], caller="RMSProp", low=0.0, high=1.0)
        _v.real("eps", group["eps"], caller="RMSProp", low=0.0)

    @torch.no_grad()
    def step(self, closure: Closure = None) -> torch.Tensor | None:
        """Update every parameter that has a gradient; return ``closure()`` if given."""
        loss = self._run_closure(closure)
        for group in self.param_groups:
            alpha = group["alpha"]
            for p, g in _grads("RMSProp", group):
                state = self.state[p]
                if "square_avg" not in state:
                    state["step"] = 0
                    state["square_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)  # v_0 = 0
                state["step"] += 1
                v, g, theta = _real(state["square_avg"]), _real(g), _real(p)
                v.mul_(alpha).addcmul_(g, g, value=1 - alpha)  # v_t = α v_{t-1} + (1-α) g_t²
                denom = v.sqrt().add_(group["eps"])  # √v_t + ε
                theta.addcdiv_(g, denom, value=-group["lr"])  # θ_t = θ_{t-1} - η g_t / (√v_t + ε)
        return loss


class Adam(_Base):
    r"""Adam (Kingma & Ba 2015, Algorithm 1), and AdamW with ``decoupled=True``.

    With :math:`d_t = g_t + \lambda\theta_{t-1}` (Adam's L2 penalty) or :math:`d_t = g_t`
    (AdamW):

    .. math::
        m_t &= \beta_1 m_{t-1} + (1-\beta_1)\, d_t, \qquad
        v_t = \beta_2 v_{t-1} + (1-\beta_2)\, d_t^2, \qquad m_0 = v_0 = 0 \\
        \hat m_t &= \frac{m_t}{1-\beta_1^t}, \qquad \hat v_t = \frac{v_t}{1-\beta_2^t} \\
        \theta_t &= \theta_{t-1} - \eta\, \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}
        \;\Big[ -\, \eta\lambda\,\theta_{t-1} \text{ for AdamW} \Big]

    The bias corrections undo the pull of the zero initial values towards 0: for a
    constant gradient :math:`g`, :math:`m_t = (1-\beta_1^t) g`, so :math:`\hat m_t = g`
    from the first step. AdamW (Loshchilov & Hutter 2019, Algorithm 2, with the
    schedule multiplier :math:`\eta_t` folded into :math:`\eta`, as torch does) shrinks
    the weights directly, :math:`\theta \leftarrow (1-\eta\lambda)\theta`, instead of adding
    :math:`\lambda\theta` to the gradient, where Adam's division by :math:`\sqrt{\hat v_t}`
    would weaken the decay of weights with large gradients. As in Algorithm 1 and in
    torch, :math:`\epsilon` is added after bias-correcting :math:`v_t` (the paper's
    "more efficient" reordering at the end of its Section 2 uses a rescaled
    :math:`\hat\epsilon` instead, which is not the same optimizer).

    Args:
        params: parameters (or parameter groups) to optimize.
        lr: learning rate :math:`\eta \ge 0`.
        betas: :math:`(\beta_1, \beta_2)`, each in [0, 1).
        eps: :math:`\epsilon \ge 0` added to the denominator.
        weight_decay: :math:`\lambda \ge 0`.
        decoupled: ``False`` adds :math:`\lambda\theta` to the gradient (``torch.optim.Adam``);
            ``True`` decays the weights directly (``torch.optim.AdamW``).
        amsgrad: AMSGrad (Reddi et al. 2018): divide by the running maximum
            :math:`v^{max}_t = \max(v^{max}_{t-1}, v_t)` instead of :math:`v_t`, so that the
            effective step size :math:`\eta/\sqrt{\hat v_t}` never grows. As in torch, the
            maximum is taken over the uncorrected :math:`v_t` and then divided by
            :math:`1-\beta_2^t`; the paper's Algorithm 2 has no bias correction.

    Raises:
        TypeError: a hyper-parameter has the wrong type.
        ValueError: negative ``lr``, ``eps`` or ``weight_decay``, ``betas`` not two numbers in [0, 1).
    """

    def __init__(
        self,
        params: Params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decoupled: bool = False,
        amsgrad: bool = False,
    ) -> None:
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay, "decoupled": decoupled,
                    "amsgrad": amsgrad}
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        _v.real("lr", group["lr"], caller="Adam", low=0.0)
        betas = group["betas"]
        _v.instance("betas", betas, caller="Adam", types=(tuple, list))
        if len(betas) != 2:
            raise ValueError(f"Adam: betas must be a pair (beta1, beta2); got {betas!r}")
        _v.real("betas[0]", betas[0], caller="Adam", low=0.0, high=1.0, high_open=True)
        _v.real("betas[1]", betas[1], caller="Adam", low=0.0, high=1.0, high_open=True)
        _v.real("eps", group["eps"], caller="Adam", low=0.0)
        _v.real("weight_decay", group["weight_decay"], caller="Adam", low=0.0)
        _v.boolean("decoupled", group["decoupled"], caller="Adam")
        _v.boolean("amsgrad", group.setdefault("amsgrad", False), caller="Adam")

    @torch.no_grad()
    def step(self, closure: Closure = None) -> torch.Tensor | None:
        """Update every parameter that has a gradient; return ``closure()`` if given."""
        loss = self._run_closure(closure)
        for group in self.param_groups:
            lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
            beta1, beta2 = group["betas"]
            for p, g in _grads("Adam", group):
                state = self.state[p]
                if "exp_avg" not in state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)  # m_0 = 0
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)  # v_0 = 0
                if group["amsgrad"] and "max_exp_avg_sq" not in state:
                    state["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                t = state["step"]
                if wd != 0:
                    if group["decoupled"]:
                        p.mul_(1 - lr * wd)  # AdamW: θ ← (1 - ηλ) θ
                    else:
                        g = g.add(p, alpha=wd)  # Adam: d_t = g_t + λ θ_{t-1}
                m, v, g, theta = _real(state["exp_avg"]), _real(state["exp_avg_sq"]), _real(g), _real(p)
                m.lerp_(g, 1 - beta1)  # m_t = β1 m_{t-1} + (1-β1) d_t   (lerp: m + (1-β1)(d - m))
                v.mul_(beta2).addcmul_(g, g, value=1 - beta2)  # v_t = β2 v_{t-1} + (1-β2) d_t²
                bias1 = 1 - beta1**t  # m̂_t = m_t / (1 - β1^t)
                bias2 = 1 - beta2**t  # v̂_t = v_t / (1 - β2^t)
                if group["amsgrad"]:
                    v_max = _real(state["max_exp_avg_sq"])
                    torch.maximum(v_max, v, out=v_max)  # AMSGrad: v_max_t = max(v_max_{t-1}, v_t)
                    v = v_max
                denom = (v.sqrt() / bias2**0.5).add_(eps)  # √v̂_t + ε
                theta.addcdiv_(m, denom, value=-lr / bias1)  # θ_t = θ_{t-1} - η m̂_t / (√v̂_t + ε)
        return loss


# ----------------------------------------------------------------------------------------
# Gradient clipping (call between backward() and step()).
# ----------------------------------------------------------------------------------------
def _grad_list(parameters: object, caller: str) -> list[torch.Tensor]:
    """The ``.grad`` of every parameter that has one (a single tensor is one parameter)."""
    if isinstance(parameters, torch.Tensor):
        params = [parameters]
    elif isinstance(parameters, (str, bytes)) or not hasattr(parameters, "__iter__"):
        raise TypeError(f"{caller}: parameters must be a tensor or an iterable of tensors; "
                        f"got {type(parameters).__name__}")
    else:
        params = list(parameters)
    for i, p in enumerate(params):
        if not isinstance(p, torch.Tensor):
            raise TypeError(f"{caller}: parameters[{i}] must be a torch.Tensor; got {type(p).__name__}")
    return [p.grad for p in params if p.grad is not None]


def clip_grad_norm(
    parameters: torch.Tensor | Iterable[torch.Tensor],
    max_norm: float,
    norm_type: float = 2.0,
    *,
    error_if_nonfinite: bool = False,
) -> torch.Tensor:
    r"""Rescale all gradients together so that their global norm is at most ``max_norm``.

    Pascanu et al. 2013, Algorithm 1, for any :math:`p`-norm: with :math:`g` all
    gradients seen as one vector,

    .. math::
        \lVert g \rVert_p = \Big\lVert \big(\lVert g_1 \rVert_p, \dots, \lVert g_P \rVert_p\big) \Big\rVert_p,
        \qquad g \leftarrow g \cdot \min\Big(1,\ \frac{\text{max\_norm}}{\lVert g \rVert_p + 10^{-6}}\Big),

    where :math:`\lVert\cdot\rVert_\infty` is the largest absolute value. The direction of
    the update is kept and only its length capped. Equals ``torch.nn.utils.clip_grad_norm_``
    (same :math:`10^{-6}`, same order of operations); parameters whose ``.grad`` is ``None``
    are skipped. A non-finite norm (a NaN or an infinite gradient) is handled as torch
    does: with ``error_if_nonfinite=False`` the gradients are multiplied by the resulting
    NaN (or by 0 for an infinite norm, which turns the infinite entries into NaN), so the
    next optimizer step spoils the parameters; ``error_if_nonfinite=True`` raises instead.

    Args:
        parameters: a tensor or an iterable of tensors (e.g. ``model.parameters()``).
        max_norm: the largest allowed global norm, ``>= 0`` (torch accepts a negative
            value and flips the gradients; here it is an error).
        norm_type: :math:`p > 0`, ``float("inf")`` for the largest absolute value.
        error_if_nonfinite: raise ``RuntimeError`` when the global norm is NaN or infinite.

    Returns:
        The global norm of the gradients *before* clipping (a 0-d tensor; ``tensor(0.)``
        when no parameter has a gradient).

    Raises:
        TypeError: ``parameters`` holds something other than tensors, or ``max_norm`` /
            ``norm_type`` is not a real number, or ``error_if_nonfinite`` not a bool.
        ValueError: ``max_norm`` negative or NaN, ``norm_type`` not > 0.
        RuntimeError: ``error_if_nonfinite=True`` and the norm is not finite.
    """
    caller = "clip_grad_norm"
    grads = _grad_list(parameters, caller)
    max_norm = _v.real("max_norm", max_norm, caller=caller, low=0.0, finite=False)
    norm_type = _v.real("norm_type", norm_type, caller=caller, low=0.0, low_open=True, finite=False)
    error_if_nonfinite = _v.boolean("error_if_nonfinite", error_if_nonfinite, caller=caller)
    if not grads:
        return torch.tensor(0.0)
    with torch.no_grad():
        first = grads[0].device
        norms = [torch.linalg.vector_norm(g, norm_type) for g in grads]  # one norm per tensor
        total = torch.linalg.vector_norm(torch.stack([n.to(first) for n in norms]), norm_type)  # 0-d
        if error_if_nonfinite and not bool(torch.isfinite(total)):
            raise RuntimeError(f"{caller}: the total norm of order {norm_type} of the gradients is non-finite "
                               f"({total.item()}), so it cannot be clipped; pass error_if_nonfinite=False to "
                               "scale the gradients by it anyway")
        scale = torch.clamp(max_norm / (total + 1e-6), max=1.0)  # min(1, max_norm / (‖g‖ + 1e-6))
        for g in grads:
            g.mul_(scale.to(g.device))
    return total


def clip_grad_value(parameters: torch.Tensor | Iterable[torch.Tensor], clip_value: float) -> None:
    r"""Clamp every gradient entry into :math:`[-c, c]` in place (Mikolov 2012).

    Unlike :func:`clip_grad_norm`, each coordinate is clipped on its own, so the
    direction of the update changes whenever some entries are clipped and others not.
    Equals ``torch.nn.utils.clip_grad_value_``: NaN entries stay NaN, infinite ones
    become :math:`\pm c`; parameters whose ``.grad`` is ``None`` are skipped.

    Args:
        parameters: a tensor or an iterable of tensors.
        clip_value: :math:`c \ge 0`, finite (torch accepts a negative value; here it is an error).

    Raises:
        TypeError: ``parameters`` holds something other than tensors, or ``clip_value``
            is not a real number.
        ValueError: ``clip_value`` negative or not finite.
    """
    caller = "clip_grad_value"
    grads = _grad_list(parameters, caller)
    clip_value = _v.real("clip_value", clip_value, caller=caller, low=0.0)
    with torch.no_grad():
        for g in grads:
            g.clamp_(min=-clip_value, max=clip_value)



# ----------------------------------------------------------------------------------------
# Learning-rate schedules as closed-form functions of the epoch (or step) t = 0, 1, 2, ...
# ----------------------------------------------------------------------------------------
def step_lr(t: int, *, base_lr: float, step_size: int, gamma: float = 0.1) -> float:
    r"""Step decay: :math:`\eta_t = \eta_0\,\gamma^{\lfloor t/s \rfloor}` (``torch.optim.lr_scheduler.StepLR``).

    Args:
        t: epoch (or step) index, ``t >= 0``.
        base_lr: :math:`\eta_0 \ge 0`.
        step_size: :math:`s \ge 1`, epochs between decays.
        gamma: :math:`\gamma \in [0, 1]`, the decay factor.
    """
    caller = "step_lr"
    t = _v.integer("t", t, caller=caller, minimum=0)
    base_lr = _v.real("base_lr", base_lr, caller=caller, low=0.0)
    step_size = _v.integer("step_size", step_size, caller=caller, minimum=1)
    gamma = _v.real("gamma", gamma, caller=caller, low=0.0, high=1.0)
    return base_lr * gamma ** (t // step_size)


def cosine_lr(t: int, *, base_lr: float, period: int, min_lr: float = 0.0, period_mult: int = 1) -> float:
    r"""Cosine annealing with warm restarts, SGDR (Loshchilov & Hutter 2017, Eq. (5)).

    .. math::
        \eta_t = \eta_{\min} + \tfrac12(\eta_0 - \eta_{\min})\big(1 + \cos(\pi\, T_{cur} / T_i)\big),

    where :math:`T_{cur}` counts the epochs since the last restart and the :math:`i`-th
    period lasts :math:`T_i = T_0 \cdot T_{mult}^{\,i}` epochs. Equals
    ``CosineAnnealingWarmRestarts(T_0=period, T_mult=period_mult, eta_min=min_lr)``; for
    ``t < period`` it is ``CosineAnnealingLR(T_max=period)`` (at ``t = period`` SGDR restarts, where
    ``CosineAnnealingLR`` reaches its minimum).

    Args:
        t: epoch (or step) index, ``t >= 0``.
        base_lr: :math:`\eta_0 \ge 0`.
        period: :math:`T_0 \ge 1`, the length of the first period.
        min_lr: :math:`\eta_{\min}`, with ``0 <= min_lr <= base_lr``.
        period_mult: :math:`T_{mult} \ge 1`, how much longer each period is than the previous one.
    """
    caller = "cosine_lr"
    t = _v.integer("t", t, caller=caller, minimum=0)
    base_lr = _v.real("base_lr", base_lr, caller=caller, low=0.0)
    period = _v.integer("period", period, caller=caller, minimum=1)
    min_lr = _v.real("min_lr", min_lr, caller=caller, low=0.0, high=base_lr)
    period_mult = _v.integer("period_mult", period_mult, caller=caller, minimum=1)
    t_cur, t_i = t, period
    while t_cur >= t_i:  # skip whole periods: at most log(t) iterations when period_mult > 1
        if period_mult == 1:
            t_cur %= t_i
            break
        t_cur -= t_i
        t_i *= period_mult
    return min_lr + 0.5 * (base_lr - min_lr) * (1 + math.cos(math.pi * t_cur / t_i))


def warmup_lr(t: int, *, base_lr: float, warmup: int, start_factor: float = 0.0) -> float:
    r"""Linear warm-up (Goyal et al. 2017): from ``start_factor * base_lr`` to ``base_lr`` in ``warmup`` steps.

    .. math::
        \eta_t = \eta_0\Big(f + (1 - f)\,\frac{\min(t, T_w)}{T_w}\Big),

    which is ``torch.optim.lr_scheduler.LinearLR(start_factor=f, total_iters=T_w)``;
    after the warm-up it stays at :math:`\eta_0` (chain a decay after it).

    Args:
        t: epoch (or step) index, ``t >= 0``.
        base_lr: :math:`\eta_0 \ge 0`.
        warmup: :math:`T_w \ge 1`.
        start_factor: :math:`f \in [0, 1]`.
    """
    caller = "warmup_lr"
    t = _v.integer("t", t, caller=caller, minimum=0)
    base_lr = _v.real("base_lr", base_lr, caller=caller, low=0.0)
    warmup = _v.integer("warmup", warmup, caller=caller, minimum=1)
    start_factor = _v.real("start_factor", start_factor, caller=caller, low=0.0, high=1.0)
    return base_lr * (start_factor + (1 - start_factor) * min(t, warmup) / warmup)



def one_cycle_lr(
    t: int,
    *,
    max_lr: float,
    total_steps: int,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    anneal: str = "cos",
    three_phase: bool = False,
) -> float:
    r"""The one-cycle schedule (Smith & Topin 2019) as ``torch.optim.lr_scheduler.OneCycleLR`` defines it.

    The learning rate rises from :math:`\eta_0 = \eta_{\max}/d` to :math:`\eta_{\max}` over the
    first ``pct_start * total_steps - 1`` steps, then falls to :math:`\eta_0 / d_f`, far
    below where it started, by the last step ``total_steps - 1``. Within a phase from
    :math:`a` to :math:`b` at fraction :math:`u \in [0, 1]` of the phase, ``"cos"`` gives
    :math:`b + \tfrac12(a - b)(1 + \cos \pi u)` and ``"linear"`` gives :math:`a + (b - a)u`.
    With ``three_phase=True`` the fall back to :math:`\eta_0` mirrors the rise and a third
    phase anneals from :math:`\eta_0` to :math:`\eta_0 / d_f`; with linear annealing this is
    the shape the paper describes (one triangle, then a final decrease). torch also cycles
    the momentum in the opposite direction by default; this function gives the learning rate.

    Args:
        t: step index, ``0 <= t < total_steps`` (torch raises beyond the last step).
        max_lr: :math:`\eta_{\max} \ge 0`.
        total_steps: number of steps of the cycle, ``>= 2``.
        pct_start: fraction of the cycle spent rising, in (0, 1), with ``pct_start * total_steps > 1``.
        div_factor: :math:`d > 0`, with :math:`\eta_0 = \eta_{\max} / d`.
        final_div_factor: :math:`d_f > 0`; the last learning rate is :math:`\eta_0 / d_f`.
        anneal: ``"cos"`` or ``"linear"``.
        three_phase: use the three-phase variant.
    """
    caller = "one_cycle_lr"
    total_steps = _v.integer("total_steps", total_steps, caller=caller, minimum=2)
    t = _v.integer("t", t, caller=caller, minimum=0, maximum=total_steps - 1)
    max_lr = _v.real("max_lr", max_lr, caller=caller, low=0.0)
    pct_start = _v.real("pct_start", pct_start, caller=caller, low=0.0, high=1.0, low_open=True, high_open=True)
    div_factor = _v.real("div_factor", div_factor, caller=caller, low=0.0, low_open=True)
    final_div_factor = _v.real("final_div_factor", final_div_factor, caller=caller, low=0.0, low_open=True)
    _v.choice("anneal", anneal, caller=caller, choices=("cos", "linear"))
    three_phase = _v.boolean("three_phase", three_phase, caller=caller)
    if pct_start * total_steps <= 1:  # torch divides by zero then
        raise ValueError(f"{caller}: pct_start * total_steps must be > 1 (the rise needs at least one step); "
                         f"got {pct_start} * {total_steps}")
    initial = max_lr / div_factor  # η_0
    final = initial / final_div_factor  # η_0 / d_f
    rise_end = float(pct_start * total_steps) - 1  # the last step of the rise (torch's end_step)
    if three_phase:
        phases = [(rise_end, initial, max_lr), (2 * rise_end, max_lr, initial), (total_steps - 1, initial, final)]
    else:
        phases = [(rise_end, initial, max_lr), (total_steps - 1, max_lr, final)]
    start_step = 0.0
    for i, (end_step, a, b) in enumerate(phases):
        if t <= end_step or i == len(phases) - 1:
            u = (t - start_step) / (end_step - start_step)  # fraction of this phase
            if anneal == "cos":
                return b + (a - b) / 2.0 * (math.cos(math.pi * u) + 1)
            return (b - a) * u + a
        start_step = end_step
    raise AssertionError("unreachable")  # pragma: no cover
