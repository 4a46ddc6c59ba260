"""The one validation layer of dlkb: types give TypeError, values ValueError, messages name everything."""

import numpy as np
import pytest
import torch
from torch import nn

from dlkb import _validate as v


def test_integer_accepts_ints_and_numpy_ints_and_returns_int():
    assert v.integer("k", 3, caller="f") == 3
    out = v.integer("k", np.int64(4), caller="f", minimum=1, maximum=4)
    assert out == 4 and type(out) is int


@pytest.mark.parametrize("bad", [True, 1.0, "3", None, torch.tensor(3)])
def test_integer_refuses_other_types(bad):
    with pytest.raises(TypeError, match=r"^f: k must be an int; got "):
        v.integer("k", bad, caller="f")


def test_integer_range_messages():
    with pytest.raises(ValueError, match=r"^f: k must be >= 1; got 0$"):
        v.integer("k", 0, caller="f", minimum=1)
    with pytest.raises(ValueError, match=r"^f: k must be <= 3; got 4$"):
        v.integer("k", 4, caller="f", maximum=3)
    with pytest.raises(ValueError, match=r"^f: k must be in \[0, 3\]; got -1$"):
        v.integer("k", -1, caller="f", minimum=0, maximum=3)


def test_real():
    assert v.real("x", 2, caller="f") == 2.0 and type(v.real("x", 2, caller="f")) is float
    assert v.real("x", np.float32(0.5), caller="f", low=0.0, high=1.0) == 0.5
    with pytest.raises(TypeError, match=r"^f: x must be a real number; got bool True$"):
        v.real("x", True, caller="f")
    with pytest.raises(TypeError, match=r"^f: x must be a real number; got str"):
        v.real("x", "1", caller="f")
    with pytest.raises(ValueError, match=r"^f: x must be a finite number; got nan$"):
        v.real("x", float("nan"), caller="f")
    with pytest.raises(ValueError, match=r"^f: x must be a finite number; got inf$"):
        v.real("x", float("inf"), caller="f")
    assert v.real("x", float("inf"), caller="f", finite=False) == float("inf")
    with pytest.raises(ValueError, match=r"^f: x must be > 0; got 0.0$"):
        v.real("x", 0.0, caller="f", low=0.0, low_open=True)
    with pytest.raises(ValueError, match=r"^f: x must be in \[0, 1\); got 1.0$"):
        v.real("x", 1.0, caller="f", low=0.0, high=1.0, high_open=True)
    assert v.real("x", 0.0, caller="f", low=0.0, high=1.0, high_open=True) == 0.0


def test_boolean_choice_instance_module():
    assert v.boolean("b", np.bool_(True), caller="f") is True
    with pytest.raises(TypeError, match=r"^f: b must be a bool; got int 1$"):
        v.boolean("b", 1, caller="f")
    assert v.choice("r", "sum", caller="f", choices=("mean", "sum")) == "sum"
    with pytest.raises(ValueError, match=r"^f: r must be one of \('mean', 'sum'\); got 'max'$"):
        v.choice("r", "max", caller="f", choices=("mean", "sum"))
    with pytest.raises(TypeError, match=r"^f: r must be a str, one of \('mean', 'sum'\); got int 3$"):
        v.choice("r", 3, caller="f", choices=("mean", "sum"))
    with pytest.raises(TypeError, match=r"^f: x must be int or float; got str$"):
        v.instance("x", "a", caller="f", types=(int, float))
    assert isinstance(v.module("m", nn.Linear(1, 1), caller="f"), nn.Module)
    with pytest.raises(TypeError, match=r"^f: m must be an nn.Module; got int$"):
        v.module("m", 3, caller="f")


def test_pair_and_int_sequence():
    assert v.pair("k", 3, caller="f", minimum=1) == (3, 3)
    assert v.pair("k", [2, 3], caller="f", minimum=1) == (2, 3)
    with pytest.raises(ValueError, match=r"^f: k must be an int or a pair of ints; got \(1, 2, 3\) \(length 3\)$"):
        v.pair("k", (1, 2, 3), caller="f")
    with pytest.raises(TypeError, match=r"^f: k must be an int or a pair of ints; got float 2.0$"):
        v.pair("k", 2.0, caller="f")
    with pytest.raises(TypeError, match=r"^f: k must be an int; got float 2.0$"):
        v.pair("k", (2.0, 1), caller="f")
    with pytest.raises(ValueError, match=r"^f: k must be >= 1; got \(1, 0\)$"):
        v.pair("k", [1, 0], caller="f", minimum=1)
    assert v.int_sequence("levels", [1, 2], caller="f", minimum=1) == (1, 2)
    with pytest.raises(ValueError, match=r"^f: levels must not be empty; got \(\)$"):
        v.int_sequence("levels", (), caller="f")
    with pytest.raises(ValueError, match=r"^f: levels\[1\] must be >= 1; got 0$"):
        v.int_sequence("levels", (1, 0), caller="f", minimum=1)
    with pytest.raises(TypeError, match=r"^f: levels must be a tuple or list of ints; got int 3$"):
        v.int_sequence("levels", 3, caller="f")


def test_tensor():
    x = torch.zeros(2, 3)
    assert v.tensor("x", x, caller="f", dtype="floating", shape=(None, 3)) is x
    with pytest.raises(TypeError, match=r"^f: x must be a torch.Tensor; got list$"):
        v.tensor("x", [1.0], caller="f")
    with pytest.raises(TypeError, match=r"^f: x must be a floating-point tensor; got dtype torch.int64$"):
        v.tensor("x", torch.zeros(2, dtype=torch.long), caller="f", dtype="floating")
    with pytest.raises(TypeError, match=r"^f: y must be an integer tensor; got dtype torch.float32$"):
        v.tensor("y", x, caller="f", dtype="integer")
    with pytest.raises(TypeError, match=r"^f: y must be a real tensor; got dtype torch.complex64$"):
        v.tensor("y", torch.zeros(2, dtype=torch.complex64), caller="f", dtype="real")
    with pytest.raises(ValueError, match=r"^f: x must have shape \(\*, 4\); got \(2, 3\)$"):
        v.tensor("x", x, caller="f", shape=(None, 4))
    with pytest.raises(ValueError, match=r"^f: x must have shape \(2,\); got \(2, 3\)$"):
        v.tensor("x", x, caller="f", shape=(2,))
    with pytest.raises(ValueError, match=r"^f: x must be 3-D or 4-D; got shape \(2, 3\)$"):
        v.tensor("x", x, caller="f", ndim=(3, 4))
    with pytest.raises(ValueError, match=r"^f: x must not be empty; got shape \(0, 3\)$"):
        v.tensor("x", torch.zeros(0, 3), caller="f", nonempty=True)
    with pytest.raises(ValueError, match=r"dtype must be one of"):
        v.tensor("x", x, caller="f", dtype="float")


def test_same_shape_never_broadcasts():
    a, b = torch.zeros(8, 1), torch.zeros(8)
    with pytest.raises(ValueError, match=r"^f: target must have the same shape as input \(8, 1\); got \(8,\)"):
        v.same_shape("target", b, caller="f", like=a, like_name="input")
    assert v.same_shape("target", a, caller="f", like=a, like_name="input") is a


def test_every_dlkb_module_uses_the_one_validation_layer(root):
    """No module keeps a private copy of the primitive checks (int, real, pair, choice, type)."""
    import re

    primitives = re.compile(r"^def _(check_int|check_real|int|pair|number|check_positive_int|check_size|check_pair|is_int)\(", re.M)
    for path in sorted((root / "code" / "dlkb").glob("*.py")):
        if path.name == "_validate.py":
            continue
        text = path.read_text(encoding="utf-8")
        assert not primitives.search(text), f"{path.name} defines its own primitive check"
        assert "isinstance(value, bool)" not in text, f"{path.name} checks bool-vs-int by hand"


# The checks a review found missing: each now fails with a message naming the argument.
@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: __import__("dlkb.generative").generative.PixelCNN(channels=0), ValueError, r"^PixelCNN: channels must be >= 1; got 0$"),
        (lambda: __import__("dlkb.generative").generative.EnsembleMLP(0, 2, 2), ValueError, r"^EnsembleMLP: members must be >= 1; got 0$"),
        (lambda: __import__("dlkb.pooling").pooling.SpatialPyramidPooling(levels=(0,)), ValueError, r"^SpatialPyramidPooling: levels\[0\] must be >= 1; got 0$"),
        (lambda: __import__("dlkb.pooling").pooling.StochasticPool2d(0), ValueError, r"^StochasticPool2d: kernel_size must be >= 1; got 0$"),
        (lambda: __import__("dlkb.generative").generative.VAE(latent=-1), ValueError, r"^VAE: latent must be >= 1; got -1$"),
        (lambda: __import__("dlkb.generative").generative.pixelcnn_sample(nn.Conv2d(1, 1, 1), 2, 5), TypeError, r"^pixelcnn_sample: size must be tuple or list; got int$"),
        (lambda: __import__("dlkb.generative").generative.vae_loss([0.0], torch.zeros(1, 1), torch.zeros(1, 1), torch.zeros(1, 1)), TypeError, r"^vae_loss: logits must be a torch.Tensor; got list$"),
        (lambda: __import__("dlkb.generative").generative.train_ring_gan("gan", latent=0), ValueError, r"^train_ring_gan: latent must be >= 1; got 0$"),
        (lambda: __import__("dlkb.train").train.predict(nn.Linear(2, 2), torch.zeros(3, 2), batch_size=0), ValueError, r"^predict: batch_size must be >= 1; got 0$"),
        (lambda: __import__("dlkb.train").train.accuracy([[0.1, 0.9]], torch.tensor([1])), TypeError, r"^accuracy: logits must be a torch.Tensor; got list$"),
        (lambda: __import__("dlkb.train").train.accuracy(torch.zeros(2, 3), torch.zeros(2)), TypeError, r"^accuracy: target must be an integer tensor; got dtype torch.float32$"),
        (lambda: __import__("dlkb.train").train.accuracy(torch.zeros(2, 3), torch.zeros(3, dtype=torch.long)), ValueError, r"^accuracy: target must have shape \(2,\); got \(3,\)$"),
    ],
)
def test_checks_that_were_missing(call, error, match):
    with pytest.raises(error, match=match):
        call()


def _public_callables():
    import importlib
    import inspect

    modules = ["augment", "bench", "classic", "cnn", "data", "detection", "fewlabels", "generative", "losses", "models", "optim", "pooling", "rnn",
               "train", "transformer", "utils", "plot", "show"]
    for name in modules:
        module = importlib.import_module(f"dlkb.{name}")
        for attr in module.__all__:
            obj = getattr(module, attr)
            if callable(obj) and not (inspect.isclass(obj) and not issubclass(obj, (nn.Module, torch.optim.Optimizer))):
                yield pytest.param(obj, id=f"{name}.{attr}")


@pytest.mark.parametrize("fn", list(_public_callables()))
def test_every_public_callable_names_itself_when_given_garbage(fn):
    """Call with a string for every required argument: the error is a TypeError or ValueError
    from dlkb's validation (naming the function), never an AttributeError deep inside."""
    import inspect

    params = [p for p in inspect.signature(fn).parameters.values()
              if p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if not params:
        pytest.skip("no required argument")
    if fn.__name__ == "bilingual":  # strings are its valid input
        with pytest.raises(TypeError, match=r"^bilingual: zh must be str; got int$"):
            fn(1, "en")
        return
    args = [p for p in params if p.kind != p.KEYWORD_ONLY]
    kwargs = {p.name: "garbage" for p in params if p.kind == p.KEYWORD_ONLY}
    with pytest.raises((TypeError, ValueError)) as info:
        fn(*["garbage"] * len(args), **kwargs)
    message = str(info.value)
    owner = fn.__name__
    assert message.startswith(owner) and ": " in message and " must " in message, message
