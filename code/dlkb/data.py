"""Data sets the book uses, all shipped inside installed packages.

Nothing here downloads: the digits come with scikit-learn, the photographs with
scikit-image and scikit-learn. Shapes: images are ``(C, H, W)`` float tensors in
``[0, 1]``; the digits split holds ``(N, 1, 8, 8)`` images and ``(N,)`` labels.

Sources: the UCI optical recognition of handwritten digits data
(Alpaydin & Kaynak 1998, 1,797 images of 8×8 pixels, ten classes), scikit-image's
``skimage.data`` and scikit-learn's ``load_sample_image``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from dlkb import _validate as _v

__all__ = ["Digits", "load_digits", "sample_image", "SAMPLE_IMAGES", "make_loader"]

# name -> (package, loader name). Only images whose files are inside the wheels.
SAMPLE_IMAGES: dict[str, tuple[str, str]] = {
    "astronaut": ("skimage", "astronaut"),
    "chelsea": ("skimage", "chelsea"),
    "coffee": ("skimage", "coffee"),
    "rocket": ("skimage", "rocket"),
    "camera": ("skimage", "camera"),
    "coins": ("skimage", "coins"),
    "china": ("sklearn", "china.jpg"),
    "flower": ("sklearn", "flower.jpg"),
}


@dataclass(frozen=True)
class Digits:
    """A fixed train/test split of scikit-learn's 8×8 digits.

    Attributes:
        x_train (Tensor[N_train, 1, 8, 8]): float32 pixel values in [0, 1].
        y_train (Tensor[N_train]): int64 class labels 0–9.
        x_test (Tensor[N_test, 1, 8, 8]): float32 pixel values in [0, 1].
        y_test (Tensor[N_test]): int64 class labels 0–9.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    num_classes: int = 10

    def loaders(self, *, batch_size: int = 64, seed: int = 0) -> tuple[DataLoader, DataLoader]:
        """``(train_loader, test_loader)``; the training one shuffles with a generator seeded by ``seed``."""
        return (
            make_loader(self.x_train, self.y_train, batch_size=batch_size, shuffle=True, seed=seed),
            make_loader(self.x_test, self.y_test, batch_size=batch_size, shuffle=False),
        )


def load_digits(*, test_size: float = 0.25, seed: int = 0) -> Digits:
    """Scikit-learn's digits as tensors, with a stratified, seeded train/test split.

    With the defaults the split is the book's fixed one: 1,347 training and 450
    test images, the same on every machine.

    Args:
        test_size: fraction of the 1,797 images held out for testing, in (0, 1).
        seed: seed of the split.

    Returns:
        A :class:`Digits` with images scaled from 0–16 to [0, 1].
    """
    test_size = _v.real("test_size", test_size, caller="load_digits", low=0.0, high=1.0, low_open=True, high_open=True)
    seed = _v.integer("seed", seed, caller="load_digits", minimum=0)
    from sklearn.datasets import load_digits as _sk_digits  # noqa: PLC0415
    from sklearn.model_selection import train_test_split  # noqa: PLC0415

    bunch = _sk_digits()
    images = (bunch.images / 16.0).astype(np.float32)[:, None]  # [N, 1, 8, 8]
    labels = bunch.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        images, labels, test_size=test_size, random_state=seed, stratify=labels
    )
    return Digits(*(torch.from_numpy(np.ascontiguousarray(a)) for a in (x_tr, y_tr, x_te, y_te)))


def sample_image(name: str, *, size: tuple[int, int] | None = None) -> torch.Tensor:
    """A photograph shipped with scikit-image or scikit-learn, as a float tensor.

    Args:
        name: one of :data:`SAMPLE_IMAGES` (``"astronaut"``, ``"chelsea"``, ``"coffee"``,
            ``"rocket"``, ``"camera"``, ``"coins"``, ``"china"``, ``"flower"``).
        size: optional ``(H, W)`` to resize to (bilinear, antialiased).

    Returns:
        Tensor[C, H, W] of float32 in [0, 1]; C is 3 for colour images, 1 for grey ones.
    """
    _v.choice("name", name, caller="sample_image", choices=tuple(sorted(SAMPLE_IMAGES)))
    package, item = SAMPLE_IMAGES[name]
    if package == "skimage":
        import skimage.data  # noqa: PLC0415

        array = getattr(skimage.data, item)()
    else:
        from sklearn.datasets import load_sample_image  # noqa: PLC0415

        array = load_sample_image(item)
    image = torch.from_numpy(np.array(array, copy=True)).float().div_(255.0)  # copy: writable, contiguous
    image = image[None] if image.ndim == 2 else image.permute(2, 0, 1).contiguous()  # [C, H, W]
    if size is not None:
        _v.instance("size", size, caller="sample_image", types=(tuple, list))
        size = _v.pair("size", size, caller="sample_image", minimum=1)
        image = torch.nn.functional.interpolate(
            image[None], size=size, mode="bilinear", antialias=True, align_corners=False
        )[0].clamp_(0.0, 1.0)
    return image


def make_loader(
    x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 64, shuffle: bool = False, seed: int = 0
) -> DataLoader:
    """A ``DataLoader`` over ``(x, y)`` whose shuffling order depends only on ``seed``."""
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError(
            f"make_loader: x and y must be tensors; got {type(x).__name__} and {type(y).__name__}"
        )
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"make_loader: x and y must have the same first dimension; got {x.shape[0]} and {y.shape[0]}"
        )
    batch_size = _v.integer("batch_size", batch_size, caller="make_loader", minimum=1)
    _v.boolean("shuffle", shuffle, caller="make_loader")
    seed = _v.integer("seed", seed, caller="make_loader", minimum=0)
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=shuffle, generator=generator)
