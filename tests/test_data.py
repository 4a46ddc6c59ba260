import pytest
import torch

from dlkb.data import SAMPLE_IMAGES, load_digits, make_loader, sample_image


def test_digits_split_is_fixed_stratified_and_scaled():
    d = load_digits()
    assert d.x_train.shape == (1347, 1, 8, 8) and d.x_test.shape == (450, 1, 8, 8)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    assert 0.0 <= d.x_train.min() and d.x_train.max() <= 1.0
    assert d.x_train.max() == 1.0
    # Stratified: every class is in the test set with its share (about 45 of 450).
    counts = torch.bincount(d.y_test, minlength=10)
    assert counts.min() >= 43 and counts.max() <= 47
    again = load_digits()
    assert torch.equal(again.x_test, d.x_test) and torch.equal(again.y_train, d.y_train)
    other = load_digits(seed=1)
    assert not torch.equal(other.y_test, d.y_test)


def test_digits_match_scikit_learn():
    import numpy as np
    from sklearn.datasets import load_digits as sk

    bunch = sk()
    d = load_digits()
    ours = np.concatenate([d.x_train.reshape(-1, 64).numpy(), d.x_test.reshape(-1, 64).numpy()]) * 16
    labels = np.concatenate([d.y_train.numpy(), d.y_test.numpy()])
    rows = np.column_stack([ours, labels])
    reference = np.column_stack([bunch.data, bunch.target])
    # The same images with the same labels, in another order.
    sort = lambda a: a[np.lexsort(a.T[::-1])]  # noqa: E731
    np.testing.assert_array_equal(sort(rows), sort(reference))


def test_digits_loaders_are_seeded():
    d = load_digits()
    a, _ = d.loaders(batch_size=32, seed=3)
    b, test = d.loaders(batch_size=32, seed=3)
    assert torch.equal(next(iter(a))[1], next(iter(b))[1])
    assert torch.equal(next(iter(test))[1], d.y_test[:32])


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"test_size": 0.0}, ValueError, r"load_digits: test_size must be in \(0, 1\); got 0.0"),
        ({"test_size": 1}, ValueError, r"load_digits: test_size must be in \(0, 1\); got 1"),
        ({"test_size": "0.2"}, TypeError, "load_digits: test_size must be a real number; got str"),
        ({"seed": "0"}, TypeError, "load_digits: seed must be an int; got str"),
    ],
)
def test_load_digits_validates(kwargs, error, message):
    with pytest.raises(error, match=message):
        load_digits(**kwargs)


@pytest.mark.parametrize("name", sorted(SAMPLE_IMAGES))
def test_sample_images_are_float_chw_in_unit_range(name):
    image = sample_image(name)
    assert image.dtype == torch.float32 and image.ndim == 3 and image.shape[0] in (1, 3)
    assert image.is_contiguous()
    assert 0.0 <= image.min() and image.max() <= 1.0 and image.std() > 0.05


def test_sample_image_matches_source_and_resizes():
    import skimage.data

    image = sample_image("astronaut")
    reference = torch.from_numpy(skimage.data.astronaut()).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(image, reference)
    small = sample_image("camera", size=(32, 48))
    assert small.shape == (1, 32, 48)


def test_sample_image_validates():
    with pytest.raises(ValueError, match=r"sample_image: name must be one of \('astronaut', .*\); got 'lena'"):
        sample_image("lena")
    with pytest.raises(TypeError, match="sample_image: name must be a str, one of .*; got int 3"):
        sample_image(3)
    with pytest.raises(TypeError, match=r"sample_image: size must be tuple or list; got int"):
        sample_image("coffee", size=32)
    with pytest.raises(ValueError, match=r"sample_image: size must be >= 1; got \(32, 0\)"):
        sample_image("coffee", size=(32, 0))


def test_make_loader_validates():
    x, y = torch.zeros(4, 2), torch.zeros(3)
    with pytest.raises(ValueError, match="make_loader: x and y must have the same first dimension; got 4 and 3"):
        make_loader(x, y)
    with pytest.raises(TypeError, match="make_loader: x and y must be tensors; got list and Tensor"):
        make_loader([1], y)
    with pytest.raises(ValueError, match=r"make_loader: batch_size must be >= 1; got 0"):
        make_loader(x, torch.zeros(4), batch_size=0)


def test_nothing_downloads(monkeypatch):
    import socket

    def refuse(*args, **kwargs):
        raise OSError("network access attempted")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    load_digits()
    for name in SAMPLE_IMAGES:
        sample_image(name)
