import math

import pytest
import torch
from torch import nn

from dlkb.data import load_digits, make_loader
from dlkb.train import History, accuracy, evaluate, fit, format_loss, format_percent, format_seconds, predict, train_epoch, train_steps
from dlkb.utils import set_seed


def _digits_model():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def test_fit_learns_digits_and_records_history(capsys):
    set_seed(0)
    d = load_digits()
    train, test = d.loaders(batch_size=64, seed=0)
    model = _digits_model()
    history = fit(model, train, epochs=12, val_loader=test, optimizer=torch.optim.Adam(model.parameters(), lr=1e-2))
    assert history.epochs == 12 and len(history.val_acc) == 12 and len(history.seconds) == 12
    assert history.val_acc[-1] > 0.9
    assert history.val_acc[-1] > history.val_acc[0] + 0.02  # it learned during the run, not before
    assert history.train_loss[-1] < 0.5 * history.train_loss[0]
    # At most max_lines (5) progress lines, the last epoch always among them, no times;
    # losses with 3 significant digits and accuracies as percentages with one decimal.
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) <= 5 and lines[-1].startswith("epoch 12/12")
    import re

    pattern = r"epoch +\d+/12  train loss \d\.\d\d\d?\d? acc +\d+\.\d% \| val loss \d\.\d\d\d?\d? acc +\d+\.\d%"
    for line in lines:
        assert re.fullmatch(pattern, line), line
        loss_text = line.split("train loss ")[1].split()[0]
        assert len(loss_text.replace("0.", "", 1).lstrip("0").replace(".", "")) == 3, line
    assert "wall clock" not in "".join(lines)
    loss, acc = evaluate(model, test)
    assert acc == pytest.approx(history.val_acc[-1])
    assert loss == pytest.approx(history.val_loss[-1])


def test_fit_is_reproducible_with_a_seed(capsys):
    d = load_digits()
    runs = []
    for _ in range(2):
        set_seed(7)
        model = _digits_model()
        train, _ = d.loaders(batch_size=128, seed=7)
        runs.append(fit(model, train, epochs=2, verbose=False).train_loss)
    assert runs[0] == runs[1]


def test_fit_silent_and_line_budget(capsys):
    x, y = torch.randn(20, 3), torch.randint(0, 2, (20,))
    loader = make_loader(x, y, batch_size=5)
    fit(nn.Linear(3, 2), loader, epochs=3, verbose=False)
    assert capsys.readouterr().out == ""
    fit(nn.Linear(3, 2), loader, epochs=100, max_lines=4)
    lines = capsys.readouterr().out.strip().splitlines()
    assert [int(l.split()[1].split("/")[0]) for l in lines] == [25, 50, 75, 100]


def test_format_loss_and_percent():
    assert [format_loss(v) for v in (0.012345, 1.23456, 123.456, 0.5, 2.0, 1234.5)] == [
        "0.0123", "1.23", "123", "0.500", "2.00", "1.23e+03"]
    assert format_loss(float("nan")) == "nan"
    assert format_percent(0.93125) == " 93.1%" and format_percent(1.0) == "100.0%"


def test_clipping_caps_the_step_length():
    """With SGD(lr=1) one step moves the parameters by exactly the (clipped) gradient."""
    for clip, expected in ((0.5, 0.5), (None, None)):
        set_seed(0)
        model = nn.Linear(3, 1)
        before = torch.cat([p.detach().flatten() for p in model.parameters()])
        loader = make_loader(torch.randn(8, 3), 1e3 * torch.ones(8, 1), batch_size=8)
        train_epoch(model, loader, torch.optim.SGD(model.parameters(), lr=1.0),
                    loss_fn=nn.functional.mse_loss, clip_grad_norm=clip)
        step = (torch.cat([p.detach().flatten() for p in model.parameters()]) - before).norm().item()
        if expected is None:
            assert step > 100  # unclipped: the huge gradient moves the weights far
        else:
            assert step == pytest.approx(expected, rel=1e-4)


def test_train_steps_loop_callback_clipping_and_validation():
    set_seed(0)
    w = torch.zeros(2, requires_grad=True)
    target = torch.tensor([3.0, -1.0])
    opt = torch.optim.SGD([w], lr=0.1)
    losses = train_steps(lambda step: (w - target).pow(2).sum(), opt, steps=50)
    assert len(losses) == 50 and losses[-1] < 1e-3 * losses[0]
    torch.testing.assert_close(w.detach(), target, atol=1e-3, rtol=0)
    # Early stop: the callback sees (step, loss) and stops the loop by returning True.
    seen = []
    w2 = torch.zeros(2, requires_grad=True)
    out = train_steps(lambda step: (w2 - target).pow(2).sum(), torch.optim.SGD([w2], lr=0.1), steps=100,
                      callback=lambda step, loss: seen.append(step) or loss < 1.0)
    assert len(out) == seen[-1] < 100 and out[-1] < 1.0 <= out[-2]
    # Clipping: one SGD(lr=1) step moves w by at most the clip norm.
    w3 = torch.zeros(2, requires_grad=True)
    train_steps(lambda step: 100 * (w3 - target).pow(2).sum(), torch.optim.SGD([w3], lr=1.0), steps=1, clip_grad_norm=0.25)
    assert w3.detach().norm().item() == pytest.approx(0.25, rel=1e-4)
    # The scheduler is stepped once per step.
    w4 = torch.zeros(1, requires_grad=True)
    opt4 = torch.optim.SGD([w4], lr=1.0)
    sched = torch.optim.lr_scheduler.StepLR(opt4, step_size=1, gamma=0.5)
    train_steps(lambda step: w4.sum(), opt4, steps=3, scheduler=sched)
    assert opt4.param_groups[0]["lr"] == pytest.approx(0.125)
    with pytest.raises(ValueError, match=r"train_steps: loss_fn must return a scalar tensor; got \(2,\)"):
        train_steps(lambda step: w * 2, opt, steps=1)
    with pytest.raises(ValueError, match=r"train_steps: steps must be >= 1; got 0"):
        train_steps(lambda step: w.sum(), opt, steps=0)
    with pytest.raises(TypeError, match=r"train_steps: loss_fn must be callable"):
        train_steps(3, opt, steps=1)
    with pytest.raises(TypeError, match=r"train_steps: optimizer must be a torch.optim.Optimizer; got list"):
        train_steps(lambda step: w.sum(), [w], steps=1)


def test_regression_outputs_give_nan_accuracy():
    set_seed(0)
    x = torch.randn(64, 4)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1
    model = nn.Sequential(nn.Linear(4, 1), nn.Flatten(0))
    loader = make_loader(x, y, batch_size=16)
    history = fit(model, loader, epochs=40, loss_fn=nn.functional.mse_loss, clip_grad_norm=1.0, verbose=False,
                  optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    assert math.isnan(history.train_acc[0])
    assert history.train_loss[-1] < 1e-2


def test_train_epoch_rejects_non_scalar_loss():
    model = nn.Linear(2, 2)
    loader = make_loader(torch.randn(4, 2), torch.randint(0, 2, (4,)), batch_size=2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    per_sample = lambda out, y: nn.functional.cross_entropy(out, y, reduction="none")  # noqa: E731
    with pytest.raises(ValueError, match=r"train_epoch: loss_fn must return a scalar; got shape \(2,\)"):
        train_epoch(model, loader, opt, loss_fn=per_sample)


def test_predict_batches_and_restores_mode():
    model = nn.Sequential(nn.Linear(3, 2), nn.Dropout(0.5))
    model.train()
    x = torch.randn(1000, 3)
    out = predict(model, x, batch_size=128)
    assert out.shape == (1000, 2) and model.training
    with torch.no_grad():
        model.eval()
        torch.testing.assert_close(out, model(x))


def test_accuracy_and_validation():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]])
    assert accuracy(logits, torch.tensor([0, 1, 1])) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match=r"accuracy: target must have shape \(3,\); got \(3, 1\)"):
        accuracy(logits, torch.zeros(3, 1, dtype=torch.long))
    with pytest.raises(ValueError, match=r"fit: epochs must be >= 1; got 0"):
        fit(nn.Linear(1, 1), [], epochs=0)
    with pytest.raises(TypeError, match=r"fit: model must be an nn.Module; got str"):
        fit("model", [], epochs=1)
    with pytest.raises(ValueError, match="train_epoch: loader yielded no batches"):
        fit(nn.Linear(1, 1), [], epochs=1)
    with pytest.raises(ValueError, match=r"fit: clip_grad_norm must be > 0; got 0"):
        fit(nn.Linear(1, 1), [], epochs=1, clip_grad_norm=0)


def test_history_plot_and_format_seconds():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h = History(train_loss=[1.0, 0.5], train_acc=[0.5, 0.7], val_loss=[1.1, 0.6], val_acc=[0.4, 0.6], seconds=[0.1, 0.2])
    ax = h.plot(metric="acc")
    assert len(ax.lines) == 2
    plt.close("all")
    assert h.total_seconds == pytest.approx(0.3)
    with pytest.raises(ValueError, match=r"History\.plot: metric must be one of \('loss', 'acc'\); got 'f1'"):
        h.plot(metric="f1")
    assert format_seconds(1.234) == "1.23 s (wall clock)"
    with pytest.raises(ValueError, match=r"format_seconds: seconds must be >= 0; got -1"):
        format_seconds(-1)


def test_fit_accepts_models_that_return_tuples():
    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 3), nn.Linear(3, 1)

        def forward(self, x):
            return self.a(x), self.b(x)

    set_seed(0)
    x = torch.randn(32, 3)
    loader = make_loader(x, x, batch_size=8)
    loss_fn = lambda out, y: nn.functional.mse_loss(out[0], y) + out[1].pow(2).mean()  # noqa: E731
    model = TwoHeads()
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    history = fit(model, loader, epochs=30, optimizer=opt, loss_fn=loss_fn, val_loader=loader, verbose=False)
    assert math.isnan(history.train_acc[0]) and math.isnan(history.val_acc[0])
    assert history.train_loss[-1] < 0.5 * history.train_loss[0]
