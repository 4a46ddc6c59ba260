import random

import numpy as np
import pytest
import torch
from torch import nn

from dlkb.utils import count_parameters, device, eval_mode, set_seed


def _draw():
    return random.random(), np.random.rand(), torch.rand(1).item()


def test_set_seed_reproduces_python_numpy_and_torch():
    set_seed(123)
    first = _draw()
    set_seed(123)
    assert _draw() == first
    set_seed(124)
    assert _draw() != first


@pytest.mark.parametrize("bad", [1.5, "3", None, True])
def test_set_seed_rejects_non_int(bad):
    with pytest.raises(TypeError, match=r"set_seed: seed must be an int; got"):
        set_seed(bad)


@pytest.mark.parametrize("bad", [-1, 2**32])
def test_set_seed_rejects_out_of_range(bad):
    with pytest.raises(ValueError, match=r"set_seed: seed must be in \[0, 4294967295\]; got"):
        set_seed(bad)


def test_device_follows_cuda_availability(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device() == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert device() == torch.device("cuda")


def test_count_parameters():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))  # 3*4+4 + 4*2+2 = 26
    assert count_parameters(model) == 26
    model[0].weight.requires_grad_(False)
    assert count_parameters(model) == 14
    assert count_parameters(model, trainable_only=False) == 26
    with pytest.raises(TypeError, match=r"count_parameters: model must be an nn.Module; got int"):
        count_parameters(3)


def test_eval_mode_restores_the_previous_mode_even_on_error():
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))
    model.train()
    with eval_mode(model):
        assert not model.training and not model[1].training
    assert model.training and model[1].training
    with pytest.raises(RuntimeError, match="boom"), eval_mode(model):
        raise RuntimeError("boom")
    assert model.training
    model.eval()
    with eval_mode(model):
        pass
    assert not model.training  # an eval-mode model stays in eval mode
    with pytest.raises(TypeError, match="eval_mode: model must be an nn.Module; got int"), eval_mode(3):
        pass
