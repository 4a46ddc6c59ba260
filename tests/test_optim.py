"""Tests of dlkb.optim: each optimizer against its torch counterpart, step for step,
and against the paper's update rule written out slowly."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from dlkb.optim import SGD, Adam, AdaGrad, RMSProp

@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny tensors: threads only add contention on a busy machine. Restored afterwards.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# (our class, our kwargs, torch class, torch kwargs): the same optimizer twice.
CASES = {
    "sgd": (SGD, {"lr": 0.1}, torch.optim.SGD, {"lr": 0.1}),
    "sgd-wd": (SGD, {"lr": 0.05, "weight_decay": 0.01}, torch.optim.SGD, {"lr": 0.05, "weight_decay": 0.01}),
    "momentum": (SGD, {"lr": 0.05, "momentum": 0.9}, torch.optim.SGD, {"lr": 0.05, "momentum": 0.9}),
    "nesterov-wd": (
        SGD,
        {"lr": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 1e-3},
        torch.optim.SGD,
        {"lr": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 1e-3},
    ),
    "adagrad": (AdaGrad, {"lr": 0.1}, torch.optim.Adagrad, {"lr": 0.1}),
    "adagrad-eps": (AdaGrad, {"lr": 0.3, "eps": 1e-3}, torch.optim.Adagrad, {"lr": 0.3, "eps": 1e-3}),
    "rmsprop": (RMSProp, {"lr": 0.01}, torch.optim.RMSprop, {"lr": 0.01}),
    "rmsprop-alpha": (
        RMSProp,
        {"lr": 3e-3, "alpha": 0.9, "eps": 1e-6},
        torch.optim.RMSprop,
        {"lr": 3e-3, "alpha": 0.9, "eps": 1e-6},
    ),
    "adam": (Adam, {"lr": 0.01}, torch.optim.Adam, {"lr": 0.01}),
    "adam-l2": (
        Adam,
        {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1},
        torch.optim.Adam,
        {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1},
    ),
    "adamw": (
        Adam,
        {"lr": 0.01, "weight_decay": 0.1, "decoupled": True},
        torch.optim.AdamW,
        {"lr": 0.01, "weight_decay": 0.1},
    ),
    "adamw-no-decay": (Adam, {"lr": 0.02, "decoupled": True}, torch.optim.AdamW, {"lr": 0.02, "weight_decay": 0.0}),
    "amsgrad-l2": (
        Adam,
        {"lr": 0.01, "betas": (0.8, 0.9), "weight_decay": 0.05, "amsgrad": True},
        torch.optim.Adam,
        {"lr": 0.01, "betas": (0.8, 0.9), "weight_decay": 0.05, "amsgrad": True},
    ),
    "amsgradw": (
        Adam,
        {"lr": 0.01, "betas": (0.8, 0.9), "weight_decay": 0.1, "decoupled": True, "amsgrad": True},
        torch.optim.AdamW,
        {"lr": 0.01, "betas": (0.8, 0.9), "weight_decay": 0.1, "amsgrad": True},
    ),
}


@pytest.mark.parametrize("decoupled", [False, True])
def test_amsgrad_maximum_is_active_and_changes_the_path(decoupled):
    # In the step-for-step comparison the running maximum must really bind somewhere,
    # otherwise AMSGrad and Adam would coincide and the comparison would not test it.
    x, y = _data()
    a, b = _model(), _model()
    opt_a = Adam(a.parameters(), lr=0.01, betas=(0.8, 0.9), decoupled=decoupled, amsgrad=True)
    opt_b = Adam(b.parameters(), lr=0.01, betas=(0.8, 0.9), decoupled=decoupled)
    for step in range(40):
        _train(a, opt_a, 1, x[(step % 8) * 8 :], y[(step % 8) * 8 :])
        _train(b, opt_b, 1, x[(step % 8) * 8 :], y[(step % 8) * 8 :])
    state = opt_a.state[a[0].weight]
    assert (state["max_exp_avg_sq"] > state["exp_avg_sq"]).any()
    assert torch.equal(state["max_exp_avg_sq"], torch.maximum(state["max_exp_avg_sq"], state["exp_avg_sq"]))
    assert not torch.allclose(a[0].weight, b[0].weight)


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))


def _data(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(64, 5, generator=g), torch.randint(0, 3, (64,), generator=g)


def _groups(model: nn.Module) -> list[dict]:
    # Two groups with different learning rates: the first layer's lr is halved.
    first, second = model[0], model[2]
    return [
        {"params": list(first.parameters())},
        {"params": list(second.parameters())},
    ]


def _train(model: nn.Module, opt: torch.optim.Optimizer, steps: int, x: torch.Tensor, y: torch.Tensor) -> list:
    losses = []
    for i in range(steps):
        batch = slice((8 * i) % 64, (8 * i) % 64 + 8)  # mini-batches: changing gradients
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("name", list(CASES))
def test_matches_torch_step_for_step(name):
    ours_cls, ours_kw, ref_cls, ref_kw = CASES[name]
    x, y = _data()
    a, b = _model(), _model()
    groups_a, groups_b = _groups(a), _groups(b)
    groups_a[0]["lr"] = groups_b[0]["lr"] = ours_kw["lr"] / 2  # a per-group override
    opt_a, opt_b = ours_cls(groups_a, **ours_kw), ref_cls(groups_b, **ref_kw)
    for step in range(40):
        _train(a, opt_a, 1, x[(step % 8) * 8 :], y[(step % 8) * 8 :])
        _train(b, opt_b, 1, x[(step % 8) * 8 :], y[(step % 8) * 8 :])
        for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
            torch.testing.assert_close(pa, pb, rtol=1e-6, atol=1e-7, msg=lambda m: f"step {step}: {m}")
    # The parameters really moved (a broken step that does nothing would fail here).
    assert not torch.equal(a[0].weight, _model()[0].weight)


@pytest.mark.parametrize("name", list(CASES))
def test_non_contiguous_parameter_and_skipped_parameter(name):
    ours_cls, ours_kw, ref_cls, ref_kw = CASES[name]
    g = torch.Generator().manual_seed(2)
    base = torch.randn(4, 3, generator=g, dtype=torch.float64)
    target = torch.randn(3, 4, generator=g, dtype=torch.float64)
    results = []
    for cls, kw in ((ours_cls, ours_kw), (ref_cls, ref_kw)):
        w = base.clone().t().requires_grad_()  # a leaf with transposed strides [3, 4]
        frozen = torch.ones(2, dtype=torch.float64, requires_grad=True)  # never gets a gradient
        assert not w.is_contiguous()
        opt = cls([w, frozen], **kw)
        for _ in range(30):
            opt.zero_grad()
            ((w - target) ** 4).sum().backward()
            opt.step()
        assert w.shape == (3, 4) and w.dtype == torch.float64 and not w.is_contiguous()
        torch.testing.assert_close(frozen, torch.ones(2, dtype=torch.float64), rtol=0, atol=0)
        if cls is ours_cls:  # (torch's Adagrad creates state for every parameter up front)
            assert frozen not in opt.state
        results.append(w.detach().clone())
    torch.testing.assert_close(results[0], results[1], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", ["sgd", "nesterov-wd", "adagrad", "rmsprop", "adam-l2", "adamw"])
def test_complex_parameters_match_torch(name):
    ours_cls, ours_kw, ref_cls, ref_kw = CASES[name]
    g = torch.Generator().manual_seed(3)
    start = torch.randn(5, dtype=torch.complex64, generator=g)
    target = torch.randn(5, dtype=torch.complex64, generator=g)
    out = []
    for cls, kw in ((ours_cls, ours_kw), (ref_cls, ref_kw)):
        z = start.clone().requires_grad_()
        opt = cls([z], **kw)
        for _ in range(20):
            opt.zero_grad()
            (z - target).abs().pow(2).sum().backward()
            opt.step()
        out.append(z.detach())
    torch.testing.assert_close(out[0], out[1])


def _slow_reference(name: str, theta: list[float], grads_of, steps: int) -> list[float]:
    """The paper's update rule, one scalar at a time, in Python floats (float64)."""
    _, kw, _, _ = CASES[name]
    lr = kw["lr"] / 10
    n = len(theta)
    buf, s, m, v, vmax = [None] * n, [0.0] * n, [0.0] * n, [0.0] * n, [0.0] * n
    for t in range(1, steps + 1):
        grad = grads_of(theta)
        for i in range(n):
            g = grad[i]
            if name in ("sgd", "sgd-wd", "momentum", "nesterov-wd"):
                mu, wd = kw.get("momentum", 0.0), kw.get("weight_decay", 0.0)
                d = g + wd * theta[i]
                if mu:
                    buf[i] = d if buf[i] is None else mu * buf[i] + d
                    d = d + mu * buf[i] if kw.get("nesterov") else buf[i]
                theta[i] -= lr * d
            elif name.startswith("adagrad"):
                s[i] += g * g
                theta[i] -= lr * g / (math.sqrt(s[i]) + kw.get("eps", 1e-10))
            elif name.startswith("rmsprop"):
                alpha = kw.get("alpha", 0.99)
                s[i] = alpha * s[i] + (1 - alpha) * g * g
                theta[i] -= lr * g / (math.sqrt(s[i]) + kw.get("eps", 1e-8))
            else:  # Adam / AdamW / AMSGrad, Kingma & Ba Alg. 1, Loshchilov & Hutter Alg. 2, Reddi et al. Alg. 2
                b1, b2 = kw.get("betas", (0.9, 0.999))
                eps, wd = kw.get("eps", 1e-8), kw.get("weight_decay", 0.0)
                decoupled = kw.get("decoupled", False)
                d = g if decoupled else g + wd * theta[i]
                m[i] = b1 * m[i] + (1 - b1) * d
                v[i] = b2 * v[i] + (1 - b2) * d * d
                vmax[i] = max(vmax[i], v[i])  # AMSGrad (Reddi et al. 2018), on the uncorrected v as torch
                m_hat = m[i] / (1 - b1**t)
                v_hat = (vmax[i] if kw.get("amsgrad") else v[i]) / (1 - b2**t)
                theta[i] -= lr * m_hat / (math.sqrt(v_hat) + eps) + (lr * wd * theta[i] if decoupled else 0.0)
    return theta


@pytest.mark.parametrize("name", list(CASES))
def test_matches_the_update_rule_written_slowly(name):
    ours_cls, ours_kw, _, _ = CASES[name]

    def grads_of(th):  # gradient of the Rosenbrock function (1-x)² + 10 (y-x²)²
        x, y = th
        return [-2 * (1 - x) - 40 * x * (y - x * x), 20 * (y - x * x)]

    expected = _slow_reference(name, [-1.0, 1.5], grads_of, steps=50)
    p = torch.tensor([-1.0, 1.5], dtype=torch.float64, requires_grad=True)
    opt = ours_cls([p], **{**ours_kw, "lr": ours_kw["lr"] / 10})  # small enough for plain SGD here
    for _ in range(50):
        opt.zero_grad()
        x, y = p
        ((1 - x) ** 2 + 10 * (y - x**2) ** 2).backward()
        opt.step()
    torch.testing.assert_close(p.detach(), torch.tensor(expected, dtype=torch.float64), rtol=1e-10, atol=1e-12)


def test_adam_first_step_has_size_lr_thanks_to_bias_correction():
    # m̂_1 = g_1 and v̂_1 = g_1², so the first step is -lr·sign(g) whatever the gradient's scale.
    p = torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64, requires_grad=True)
    opt = Adam([p], lr=0.1, eps=0.0)
    (torch.tensor([1e-3, -5.0, 100.0], dtype=torch.float64) * p).sum().backward()
    opt.step()
    torch.testing.assert_close(p.detach(), torch.tensor([0.9, -1.9, 2.9], dtype=torch.float64))


def test_closure_scheduler_and_state_dict():
    x, y = _data()
    model = _model()
    opt = Adam(model.parameters(), lr=0.05, weight_decay=0.01, decoupled=True)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=5, gamma=0.5)
    ref_model = _model()
    ref = torch.optim.AdamW(ref_model.parameters(), lr=0.05, weight_decay=0.01)
    ref_sched = torch.optim.lr_scheduler.StepLR(ref, step_size=5, gamma=0.5)

    def closure(m, o):
        def f():
            o.zero_grad()
            loss = nn.functional.cross_entropy(m(x), y)
            loss.backward()
            return loss

        return f

    for _ in range(12):
        loss = opt.step(closure(model, opt))
        ref_loss = ref.step(closure(ref_model, ref))
        sched.step()
        ref_sched.step()
        torch.testing.assert_close(loss, ref_loss)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05 * 0.25)
    for pa, pb in zip(model.parameters(), ref_model.parameters(), strict=True):
        torch.testing.assert_close(pa, pb)

    # Resuming from a state_dict continues exactly like an uninterrupted run.
    clone = copy.deepcopy(model)
    opt2 = Adam(clone.parameters(), lr=0.05, weight_decay=0.01, decoupled=True)
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))  # a saved checkpoint
    _train(model, opt, 5, x, y)
    _train(clone, opt2, 5, x, y)
    for pa, pb in zip(model.parameters(), clone.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0)


def test_works_with_dlkb_train_fit():
    from dlkb.data import make_loader
    from dlkb.train import fit

    x, _ = _data()
    y = x[:, :3].argmax(dim=1)  # a learnable rule
    model = _model()
    history = fit(
        model, make_loader(x, y, batch_size=16, shuffle=True, seed=0), epochs=20,
        optimizer=Adam(model.parameters(), lr=0.02), device=torch.device("cpu"), verbose=False,
    )
    assert history.train_loss[-1] < 0.5 * history.train_loss[0]


def _param():
    return [torch.zeros(2, requires_grad=True)]


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: SGD(_param(), lr=-0.1), ValueError, r"SGD: lr must be >= 0; got -0.1"),
        (lambda: SGD(_param(), lr="0.1"), TypeError, r"SGD: lr must be a real number; got str"),
        (lambda: SGD(_param(), lr=True), TypeError, r"SGD: lr must be a real number; got bool"),
        (lambda: SGD(_param(), lr=float("nan")), ValueError, r"SGD: lr must be a finite number; got nan"),
        (lambda: SGD(_param(), lr=0.1, momentum=1.0), ValueError, r"SGD: momentum must be in \[0, 1\); got 1.0"),
        (lambda: SGD(_param(), lr=0.1, momentum=-0.5), ValueError, r"SGD: momentum must be in \[0, 1\); got -0.5"),
        (lambda: SGD(_param(), lr=0.1, weight_decay=-1e-4), ValueError, r"SGD: weight_decay must be >= 0"),
        (lambda: SGD(_param(), lr=0.1, nesterov=True), ValueError, r"SGD: nesterov=True needs momentum > 0"),
        (lambda: SGD(_param(), lr=0.1, momentum=0.9, nesterov=1), TypeError, r"SGD: nesterov must be a bool; got int"),
        (lambda: SGD([{"params": _param(), "lr": -1.0}], lr=0.1), ValueError, r"SGD: lr must be >= 0; got -1.0"),
        (lambda: AdaGrad(_param(), lr=-0.01), ValueError, r"AdaGrad: lr must be >= 0; got -0.01"),
        (lambda: AdaGrad(_param(), eps=-1e-10), ValueError, r"AdaGrad: eps must be >= 0"),
        (lambda: RMSProp(_param(), lr=-0.01), ValueError, r"RMSProp: lr must be >= 0"),
        (lambda: RMSProp(_param(), alpha=1.5), ValueError, r"RMSProp: alpha must be in \[0, 1\]; got 1.5"),
        (lambda: RMSProp(_param(), eps=-1.0), ValueError, r"RMSProp: eps must be >= 0"),
        (lambda: Adam(_param(), lr=-1e-3), ValueError, r"Adam: lr must be >= 0; got -0.001"),
        (lambda: Adam(_param(), betas=(1.0, 0.999)), ValueError, r"Adam: betas\[0\] must be in \[0, 1\); got 1.0"),
        (lambda: Adam(_param(), betas=(0.9, -0.1)), ValueError, r"Adam: betas\[1\] must be in \[0, 1\); got -0.1"),
        (lambda: Adam(_param(), betas=0.9), TypeError, r"Adam: betas must be tuple or list; got float"),
        (lambda: Adam(_param(), eps=-1e-8), ValueError, r"Adam: eps must be >= 0"),
        (lambda: Adam(_param(), weight_decay=-0.1), ValueError, r"Adam: weight_decay must be >= 0"),
        (lambda: Adam(_param(), decoupled="yes"), TypeError, r"Adam: decoupled must be a bool; got str"),
        (lambda: Adam(_param(), amsgrad=1), TypeError, r"Adam: amsgrad must be a bool; got int"),
    ],
)
def test_validation(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_validation_of_a_group_added_later():
    opt = Adam(_param(), lr=1e-3)
    with pytest.raises(ValueError, match=r"Adam: betas\[0\] must be in \[0, 1\); got 1.5"):
        opt.add_param_group({"params": _param(), "betas": (1.5, 0.9)})


@pytest.mark.parametrize("cls", [SGD, AdaGrad, RMSProp, Adam])
def test_sparse_gradients_are_refused(cls):
    emb = nn.Embedding(4, 2, sparse=True)
    opt = cls(emb.parameters(), lr=0.1)
    emb(torch.tensor([0, 1])).sum().backward()
    with pytest.raises(RuntimeError, match=rf"{cls.__name__}: sparse gradients are not supported"):
        opt.step()


# ---------------------------------------------------------------- learning-rate schedules
def _torch_curve(make, epochs, lr=0.1):
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = make(opt)
    out = []
    for _ in range(epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    return out


def test_schedules_match_torch_schedulers():
    from dlkb.optim import cosine_lr, step_lr, warmup_lr
    from torch.optim import lr_scheduler as S

    want = _torch_curve(lambda o: S.StepLR(o, step_size=30, gamma=0.1), 100)
    assert [step_lr(t, base_lr=0.1, step_size=30) for t in range(100)] == pytest.approx(want, rel=1e-12)
    want = _torch_curve(lambda o: S.CosineAnnealingLR(o, T_max=100, eta_min=1e-3), 100)
    assert [cosine_lr(t, base_lr=0.1, period=100, min_lr=1e-3) for t in range(100)] == pytest.approx(want, rel=1e-9)
    for mult in (1, 2, 3):
        want = _torch_curve(lambda o: S.CosineAnnealingWarmRestarts(o, T_0=7, T_mult=mult, eta_min=0.01), 120)
        got = [cosine_lr(t, base_lr=0.1, period=7, min_lr=0.01, period_mult=mult) for t in range(120)]
        assert got == pytest.approx(want, rel=1e-9)
    want = _torch_curve(lambda o: S.LinearLR(o, start_factor=0.01, total_iters=10), 30)
    assert [warmup_lr(t, base_lr=0.1, warmup=10, start_factor=0.01) for t in range(30)] == pytest.approx(want, rel=1e-9)
    # the restarts really happen: back to base_lr at t = 7 and t = 7 + 14
    assert cosine_lr(7, base_lr=0.1, period=7, period_mult=2) == pytest.approx(0.1)
    assert cosine_lr(21, base_lr=0.1, period=7, period_mult=2) == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda f: f["step_lr"](-1, base_lr=0.1, step_size=3), ValueError, r"step_lr: t must be >= 0; got -1"),
        (lambda f: f["step_lr"](1, base_lr=0.1, step_size=0), ValueError, r"step_lr: step_size must be >= 1; got 0"),
        (lambda f: f["step_lr"](1, base_lr=0.1, step_size=2, gamma=1.5), ValueError, r"step_lr: gamma must be in \[0, 1\]"),
        (lambda f: f["step_lr"](1, base_lr="0.1", step_size=2), TypeError, r"step_lr: base_lr must be a real number"),
        (lambda f: f["cosine_lr"](1.0, base_lr=0.1, period=3), TypeError, r"cosine_lr: t must be an int; got float"),
        (lambda f: f["cosine_lr"](1, base_lr=0.1, period=0), ValueError, r"cosine_lr: period must be >= 1; got 0"),
        (lambda f: f["cosine_lr"](1, base_lr=0.1, period=3, min_lr=0.2), ValueError, r"cosine_lr: min_lr must be in \[0, 0.1\]"),
        (lambda f: f["cosine_lr"](1, base_lr=0.1, period=3, period_mult=0), ValueError, r"cosine_lr: period_mult must be >= 1"),
        (lambda f: f["warmup_lr"](1, base_lr=-0.1, warmup=3), ValueError, r"warmup_lr: base_lr must be >= 0; got -0.1"),
        (lambda f: f["warmup_lr"](1, base_lr=0.1, warmup=0), ValueError, r"warmup_lr: warmup must be >= 1; got 0"),
        (lambda f: f["warmup_lr"](1, base_lr=0.1, warmup=3, start_factor=2.0), ValueError, r"warmup_lr: start_factor must be in \[0, 1\]"),
    ],
)
def test_schedule_validation(call, exc, match):
    from dlkb import optim

    with pytest.raises(exc, match=match):
        call(vars(optim))


# ---------------------------------------------------------------- one-cycle schedule


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"pct_start": 0.25, "anneal_strategy": "linear"},
        {"three_phase": True, "anneal_strategy": "linear"},
        {"three_phase": True, "div_factor": 10.0, "final_div_factor": 100.0},
        {"pct_start": 0.45},
    ],
    ids=["default", "linear", "three-phase-linear", "three-phase-cos", "long-rise"],
)
@pytest.mark.parametrize("total", [100, 37])
def test_one_cycle_lr_matches_torch_onecycle(kw, total):
    from dlkb.optim import one_cycle_lr
    from torch.optim import lr_scheduler as S

    want = _torch_curve(lambda o: S.OneCycleLR(o, max_lr=0.4, total_steps=total, **kw), total)
    ours = {k.replace("anneal_strategy", "anneal"): v for k, v in kw.items()}
    got = [one_cycle_lr(t, max_lr=0.4, total_steps=total, **ours) for t in range(total)]
    assert got == pytest.approx(want, rel=1e-9, abs=1e-15)
    assert max(got) == pytest.approx(0.4, rel=0.05)  # near max_lr (exactly when the rise ends on a step)
    if total == 100:
        assert max(got) == pytest.approx(0.4, rel=1e-12)
    assert got[0] == pytest.approx(0.4 / kw.get("div_factor", 25.0))
    assert got[-1] == pytest.approx(0.4 / kw.get("div_factor", 25.0) / kw.get("final_div_factor", 1e4))


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"t": 100}, ValueError, r"one_cycle_lr: t must be in \[0, 99\]; got 100"),
        ({"total_steps": 1, "t": 0}, ValueError, r"one_cycle_lr: total_steps must be >= 2; got 1"),
        ({"max_lr": -1.0}, ValueError, r"one_cycle_lr: max_lr must be >= 0; got -1.0"),
        ({"pct_start": 1.0}, ValueError, r"one_cycle_lr: pct_start must be in \(0, 1\); got 1.0"),
        ({"pct_start": 0.01}, ValueError, r"one_cycle_lr: pct_start \* total_steps must be > 1"),
        ({"div_factor": 0.0}, ValueError, r"one_cycle_lr: div_factor must be > 0; got 0.0"),
        ({"final_div_factor": -2.0}, ValueError, r"one_cycle_lr: final_div_factor must be > 0"),
        ({"anneal": "cosine"}, ValueError, r"one_cycle_lr: anneal must be one of \('cos', 'linear'\); got 'cosine'"),
        ({"three_phase": 1}, TypeError, r"one_cycle_lr: three_phase must be a bool; got int 1"),
        ({"t": 1.0}, TypeError, r"one_cycle_lr: t must be an int; got float"),
    ],
)
def test_one_cycle_lr_validation(kwargs, exc, match):
    from dlkb.optim import one_cycle_lr

    call = {"t": 0, "max_lr": 0.1, "total_steps": 100} | kwargs
    with pytest.raises(exc, match=match):
        one_cycle_lr(call.pop("t"), **call)


# ---------------------------------------------------------------- gradient clipping


def _grads_pair(scale=50.0, seed=0, dtype=torch.float32):
    """Two identical small models with the same (large) gradients, one of them frozen-free parameter without grad."""
    torch.manual_seed(seed)
    a = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).to(dtype)
    b = copy.deepcopy(a)
    x = torch.randn(8, 4, dtype=dtype)
    for m in (a, b):
        (scale * m(x)).pow(2).sum().backward()
    return list(a.parameters()), list(b.parameters())


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.5, math.inf])
@pytest.mark.parametrize("max_norm", [0.5, 7.0, 1e12, 0.0])
def test_clip_grad_norm_matches_torch(norm_type, max_norm):
    from dlkb.optim import clip_grad_norm

    ours_p, ref_p = _grads_pair()
    ours = clip_grad_norm(ours_p, max_norm, norm_type)
    ref = nn.utils.clip_grad_norm_(ref_p, max_norm, norm_type)
    torch.testing.assert_close(ours, ref)
    for p, q in zip(ours_p, ref_p, strict=True):
        torch.testing.assert_close(p.grad, q.grad)
    # the returned norm is the norm before clipping, and afterwards the norm is min(max_norm, before)
    flat = torch.cat([p.grad.reshape(-1) for p in ours_p])
    assert ours.item() > 10.0
    assert torch.linalg.vector_norm(flat, norm_type).item() == pytest.approx(min(max_norm, ours.item()), rel=1e-5, abs=1e-6)


def test_clip_grad_norm_inf_norm_is_the_largest_entry_and_keeps_the_direction():
    from dlkb.optim import clip_grad_norm

    p, q = torch.zeros(2, requires_grad=True), torch.zeros(3, requires_grad=True)
    p.grad, q.grad = torch.tensor([3.0, -4.0]), torch.tensor([1.0, 12.0, -2.0])
    before = torch.cat([p.grad, q.grad])
    total = clip_grad_norm([p, q], 6.0, norm_type=float("inf"))
    assert total.item() == 12.0
    after = torch.cat([p.grad, q.grad])
    torch.testing.assert_close(after, before * 6.0 / (12.0 + 1e-6))  # one common factor: same direction


def test_clip_grad_norm_single_tensor_empty_and_missing_grads():
    from dlkb.optim import clip_grad_norm

    p = torch.tensor([3.0, 4.0], requires_grad=True)
    p.grad = torch.tensor([3.0, 4.0])
    q = torch.zeros(2, requires_grad=True)  # no gradient: skipped, stays None
    assert clip_grad_norm([p, q], 1).item() == pytest.approx(5.0)
    torch.testing.assert_close(p.grad, torch.tensor([0.6, 0.8]) * 5 / (5 + 1e-6))
    assert q.grad is None
    # nothing to clip: tensor(0.), as torch
    for params in ([], [q], q):
        ours = clip_grad_norm(params, 1.0)
        torch.testing.assert_close(ours, nn.utils.clip_grad_norm_(params, 1.0))
        assert ours.item() == 0.0
    # an empty gradient tensor has norm 0 and is left alone
    e, e2 = torch.zeros(0, requires_grad=True), torch.zeros(0, requires_grad=True)
    e.grad, e2.grad = torch.zeros(0), torch.zeros(0)
    torch.testing.assert_close(clip_grad_norm(e, 1.0), nn.utils.clip_grad_norm_(e2, 1.0))
    # a generator is consumed once, as torch does
    r = torch.ones(3, requires_grad=True)
    r.grad = torch.ones(3)
    assert clip_grad_norm((t for t in [r]), 10.0).item() == pytest.approx(math.sqrt(3))
    torch.testing.assert_close(r.grad, torch.ones(3))


def test_clip_grad_norm_non_contiguous_and_float64_grads():
    from dlkb.optim import clip_grad_norm

    p, p2 = torch.zeros(3, 4, requires_grad=True), torch.zeros(3, 4, requires_grad=True)
    g = torch.arange(12.0).reshape(4, 3).T  # not contiguous
    p.grad, p2.grad = g.clone().T.contiguous().T, g.contiguous()
    assert not p.grad.is_contiguous()
    torch.testing.assert_close(clip_grad_norm(p, 2.0), nn.utils.clip_grad_norm_(p2, 2.0))
    torch.testing.assert_close(p.grad, p2.grad)
    ours_p, ref_p = _grads_pair(dtype=torch.float64)
    torch.testing.assert_close(clip_grad_norm(ours_p, 1.0, 2.0), nn.utils.clip_grad_norm_(ref_p, 1.0, 2.0))
    for a, b in zip(ours_p, ref_p, strict=True):
        torch.testing.assert_close(a.grad, b.grad)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_clip_grad_norm_non_finite_as_torch(bad):
    from dlkb.optim import clip_grad_norm

    def make():
        p, q = torch.zeros(3, requires_grad=True), torch.zeros(2, requires_grad=True)
        p.grad, q.grad = torch.tensor([1.0, bad, 2.0]), torch.tensor([3.0, 4.0])
        return [p, q]

    ours_p, ref_p = make(), make()
    ours = clip_grad_norm(ours_p, 1.0)
    ref = nn.utils.clip_grad_norm_(ref_p, 1.0)
    torch.testing.assert_close(ours, ref, equal_nan=True)
    for a, b in zip(ours_p, ref_p, strict=True):
        torch.testing.assert_close(a.grad, b.grad, equal_nan=True)
    assert not torch.isfinite(ours_p[0].grad).all()  # the step would spoil the parameters
    with pytest.raises(RuntimeError, match=r"clip_grad_norm: the total norm of order 2.0 of the gradients is non-finite"):
        clip_grad_norm(make(), 1.0, error_if_nonfinite=True)
    with pytest.raises(RuntimeError, match="non-finite"):
        nn.utils.clip_grad_norm_(make(), 1.0, error_if_nonfinite=True)


@pytest.mark.parametrize("clip_value", [0.0, 0.3, 2.5, 1e9])
def test_clip_grad_value_matches_torch(clip_value):
    from dlkb.optim import clip_grad_value

    ours_p, ref_p = _grads_pair(scale=0.3)
    assert clip_grad_value(ours_p, clip_value) is None
    nn.utils.clip_grad_value_(ref_p, clip_value)
    for p, q in zip(ours_p, ref_p, strict=True):
        torch.testing.assert_close(p.grad, q.grad)
        assert p.grad.abs().max().item() <= clip_value


def test_clip_grad_value_non_finite_empty_and_non_contiguous():
    from dlkb.optim import clip_grad_value

    def make():
        p = torch.zeros(4, requires_grad=True)
        p.grad = torch.tensor([float("nan"), float("inf"), -float("inf"), -0.5])
        return p

    p, q = make(), make()
    clip_grad_value(p, 1.0)
    nn.utils.clip_grad_value_(q, 1.0)
    torch.testing.assert_close(p.grad, q.grad, equal_nan=True)
    assert p.grad[1:].tolist() == [1.0, -1.0, -0.5]
    clip_grad_value([], 1.0)  # nothing to do
    r = torch.zeros(3, 4, requires_grad=True)
    r.grad = (torch.arange(12.0).reshape(4, 3).T - 6).clone().T.contiguous().T  # non-contiguous
    expected = r.grad.clamp(-2, 2)
    clip_grad_value(r, 2)
    torch.testing.assert_close(r.grad, expected)


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda f, p: f.clip_grad_norm(p, -1.0), ValueError, r"clip_grad_norm: max_norm must be >= 0; got -1.0"),
        (lambda f, p: f.clip_grad_norm(p, float("nan")), ValueError, r"clip_grad_norm: max_norm must be a number, not NaN"),
        (lambda f, p: f.clip_grad_norm(p, "1"), TypeError, r"clip_grad_norm: max_norm must be a real number; got str"),
        (lambda f, p: f.clip_grad_norm(p, 1.0, 0.0), ValueError, r"clip_grad_norm: norm_type must be > 0; got 0.0"),
        (lambda f, p: f.clip_grad_norm(p, 1.0, "inf"), TypeError, r"clip_grad_norm: norm_type must be a real number"),
        (lambda f, p: f.clip_grad_norm(p, 1.0, error_if_nonfinite=1), TypeError,
         r"clip_grad_norm: error_if_nonfinite must be a bool"),
        (lambda f, p: f.clip_grad_norm([p, 3.0], 1.0), TypeError, r"clip_grad_norm: parameters\[1\] must be a torch.Tensor; got float"),
        (lambda f, p: f.clip_grad_norm(3.0, 1.0), TypeError, r"clip_grad_norm: parameters must be a tensor or an iterable"),
        (lambda f, p: f.clip_grad_value(p, -0.1), ValueError, r"clip_grad_value: clip_value must be >= 0; got -0.1"),
        (lambda f, p: f.clip_grad_value(p, float("inf")), ValueError, r"clip_grad_value: clip_value must be a finite number"),
        (lambda f, p: f.clip_grad_value(p, None), TypeError, r"clip_grad_value: clip_value must be a real number"),
        (lambda f, p: f.clip_grad_value("w", 1.0), TypeError, r"clip_grad_value: parameters must be a tensor or an iterable"),
    ],
)
def test_clipping_validation(call, exc, match):
    from dlkb import optim

    p = torch.zeros(2, requires_grad=True)
    p.grad = torch.ones(2)
    with pytest.raises(exc, match=match):
        call(optim, p)
    assert p.grad.tolist() == [1.0, 1.0]  # a refused call changes nothing
