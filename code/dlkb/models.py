r"""Classic convolutional networks for image classification, small enough for 8×8 digits.

LeNet, VGG blocks, NiN blocks, the Inception module of GoogLeNet and the residual
blocks of ResNet, as building blocks plus small whole networks. Each network works
for any input size its architecture allows (global or adaptive pooling before the
classifier), so the same code runs on 8×8 digits and on larger images.

Shape letters: N batch, C channels, H height, W width, K classes.

Papers: LeCun et al. 1998 (LeNet-5); Krizhevsky, Sutskever & Hinton 2012 (AlexNet) and
Krizhevsky 2014, "One weird trick for parallelizing convolutional neural networks"
(the single-GPU AlexNet of torchvision); Simonyan & Zisserman 2015 (VGG);
Lin, Chen & Yan 2014 (Network in Network); Szegedy et al. 2015 (GoogLeNet,
Inception); He et al. 2016 (ResNet, "Deep residual learning for image recognition").
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from dlkb import _validate as _v

__all__ = ["vgg_block", "nin_block", "LeNet", "AlexNet", "VGG_CONFIGS", "VGG", "Inception", "BasicBlock", "Bottleneck", "ResNet"]


def _check_input(caller: str, x: object, in_channels: int) -> None:
    """Raise unless ``x`` is a Tensor[N, in_channels, H, W]."""
    _v.tensor("input", x, caller=caller, dtype="floating", shape=("N", in_channels, "H", "W"))


def vgg_block(num_convs: int, in_channels: int, out_channels: int) -> nn.Sequential:
    r"""A VGG block: ``num_convs`` × (3×3 convolution, padding 1, + ReLU), then 2×2 max pooling.

    Two stacked 3×3 convolutions see a 5×5 window and three see 7×7, with fewer
    parameters (:math:`2 \cdot 9C^2` or :math:`3 \cdot 9C^2` against :math:`25C^2` or
    :math:`49C^2`) and a ReLU between them (Simonyan & Zisserman 2015, Sec. 2.3).

    Returns:
        ``nn.Sequential`` mapping Tensor[N, in_channels, H, W] to
        Tensor[N, out_channels, ⌊H/2⌋, ⌊W/2⌋].
    """
    caller = "vgg_block"
    num_convs = _v.integer("num_convs", num_convs, caller=caller, minimum=1)
    in_channels = _v.integer("in_channels", in_channels, caller=caller, minimum=1)
    out_channels = _v.integer("out_channels", out_channels, caller=caller, minimum=1)
    layers: list[nn.Module] = []
    for i in range(num_convs):
        layers += [nn.Conv2d(in_channels if i == 0 else out_channels, out_channels, 3, padding=1), nn.ReLU()]
    layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    return nn.Sequential(*layers)


def nin_block(in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int) -> nn.Sequential:
    r"""A Network-in-Network block ("mlpconv"): a convolution, then two 1×1 convolutions, ReLU after each.

    The 1×1 convolutions are a small MLP applied at every pixel across channels
    (Lin et al. 2014, Sec. 3.1, Eq. (2)).

    Returns:
        ``nn.Sequential`` mapping Tensor[N, in_channels, H, W] to Tensor[N, out_channels, H', W'],
        with :math:`H' = \lfloor (H + 2p - k)/s \rfloor + 1` (the first convolution's size).
    """
    caller = "nin_block"
    in_channels = _v.integer("in_channels", in_channels, caller=caller, minimum=1)
    out_channels = _v.integer("out_channels", out_channels, caller=caller, minimum=1)
    kernel_size = _v.integer("kernel_size", kernel_size, caller=caller, minimum=1)
    stride = _v.integer("stride", stride, caller=caller, minimum=1)
    padding = _v.integer("padding", padding, caller=caller, minimum=0)
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding),
        nn.ReLU(),
        nn.Conv2d(out_channels, out_channels, kernel_size=1),
        nn.ReLU(),
        nn.Conv2d(out_channels, out_channels, kernel_size=1),
        nn.ReLU(),
    )


class LeNet(nn.Module):
    r"""A LeNet-5 style network (LeCun et al. 1998, Sec. II.B).

    C1: 5×5 convolution to 6 channels (padding 2) → ReLU → 2×2 max pool;
    C3: 5×5 convolution to 16 channels (padding 2) → ReLU → 2×2 max pool;
    an adaptive average pool to 2×2 (as torchvision's VGG pools to 7×7), then fully
    connected layers 64 → 120 → 84 → ``num_classes``.

    Deviations from the paper, for 8×8 digits and modern training: ReLU and max pooling
    instead of scaled tanh and trainable sub-sampling; C3 padded and fully connected to
    all six C1 maps (the paper used a sparse table on 32×32 inputs); the adaptive pool
    makes any input of at least 4×4 pixels work; plain logits instead of RBF output units.

    Input Tensor[N, in_channels, H, W], output Tensor[N, num_classes].
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.num_classes = _v.integer("num_classes", num_classes, caller="LeNet", minimum=1)
        self.in_channels = _v.integer("in_channels", in_channels, caller="LeNet", minimum=1)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, kernel_size=5, padding=2),  # [N, 6, H, W]
            nn.ReLU(),
            nn.MaxPool2d(2),  # [N, 6, H/2, W/2]
            nn.Conv2d(6, 16, kernel_size=5, padding=2),  # [N, 16, H/2, W/2]
            nn.ReLU(),
            nn.MaxPool2d(2),  # [N, 16, H/4, W/4]
            nn.AdaptiveAvgPool2d((2, 2)),  # [N, 16, 2, 2]
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),  # [N, 64]
            nn.Linear(16 * 2 * 2, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, num_classes),  # [N, K]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input("LeNet", x, self.in_channels)
        if x.shape[-2] < 4 or x.shape[-1] < 4:
            raise ValueError(f"LeNet: input must be at least 4x4 pixels; got {tuple(x.shape[-2:])}")
        return self.classifier(self.features(x))


class AlexNet(nn.Module):
    r"""AlexNet in torchvision's single-GPU layout (Krizhevsky 2014), for 224×224 inputs.

    Five convolutions (11×11 stride 4, 5×5, three 3×3) with ReLU, overlapping 3×3
    stride-2 max pooling after the first, second and fifth, adaptive average pooling to
    6×6, and three fully connected layers with dropout before the first two
    (Krizhevsky et al. 2012, Sec. 3-4). The 2012 network split its layers over two
    GPUs, had 96, 256, 384, 384, 256 channels and local response normalization after
    the first two convolutions; the single-GPU variant of "One weird trick", which
    ``torchvision.models.alexnet`` builds, has 64, 192, 384, 256, 256 channels and no
    LRN. The layer names and order equal torchvision's, so its ``state_dict`` loads as is.

    Args:
        num_classes: outputs of the last layer (≥ 1).
        in_channels: input channels (≥ 1).
        dropout: drop probability of the two dropout layers, in [0, 1].

    Shape:
        Tensor[N, in_channels, H, W] → Tensor[N, num_classes], for H, W ≥ 63.
    """

    def __init__(self, num_classes: int = 1000, *, in_channels: int = 3, dropout: float = 0.5) -> None:
        super().__init__()
        caller = "AlexNet"
        num_classes = _v.integer("num_classes", num_classes, caller=caller, minimum=1)
        self.in_channels = _v.integer("in_channels", in_channels, caller=caller, minimum=1)
        dropout = _v.real("dropout", dropout, caller=caller, low=0.0, high=1.0)
        self.features = nn.Sequential(
            nn.Conv2d(self.in_channels, 64, kernel_size=11, stride=4, padding=2),  # [N, 64, 55, 55]
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),  # overlapping pooling, [N, 64, 27, 27]
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),  # [N, 192, 13, 13]
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),  # [N, 256, 6, 6]
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(256 * 6 * 6, 4096),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input("AlexNet", x, self.in_channels)
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


#: VGG configurations of Simonyan & Zisserman 2015, Table 1, as (number of 3×3 convolutions,
#: channels) per block. Configuration C (with 1×1 convolutions) and A-LRN are left out:
#: they are not made of :func:`vgg_block` alone.
VGG_CONFIGS: dict[str, tuple[tuple[int, int], ...]] = {
    "A": ((1, 64), (1, 128), (2, 256), (2, 512), (2, 512)),  # VGG-11
    "B": ((2, 64), (2, 128), (2, 256), (2, 512), (2, 512)),  # VGG-13
    "D": ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512)),  # VGG-16
    "E": ((2, 64), (2, 128), (4, 256), (4, 512), (4, 512)),  # VGG-19
}


class VGG(nn.Module):
    r"""A VGG network (Simonyan & Zisserman 2015) made of five :func:`vgg_block`\ s.

    The blocks of configuration ``config`` (see :data:`VGG_CONFIGS`), adaptive average
    pooling to 7×7 (as torchvision, so that inputs other than 224×224 work), then three
    fully connected layers 25088 → 4096 → 4096 → ``num_classes`` with ReLU and dropout.
    Configuration ``"D"`` is VGG-16, with the parameters of ``torchvision.models.vgg16``
    layer by layer (the module names differ: the convolutions sit inside the blocks).

    Args:
        config: ``"A"``, ``"B"``, ``"D"`` or ``"E"``.
        num_classes: outputs of the last layer (≥ 1).
        in_channels: input channels (≥ 1).
        dropout: drop probability of the two dropout layers, in [0, 1].

    Shape:
        Tensor[N, in_channels, H, W] → Tensor[N, num_classes], for H, W ≥ 32.
    """

    def __init__(self, config: str = "D", num_classes: int = 1000, *, in_channels: int = 3, dropout: float = 0.5) -> None:
        super().__init__()
        caller = "VGG"
        config = _v.choice("config", config, caller=caller, choices=tuple(VGG_CONFIGS))
        num_classes = _v.integer("num_classes", num_classes, caller=caller, minimum=1)
        self.in_channels = _v.integer("in_channels", in_channels, caller=caller, minimum=1)
        dropout = _v.real("dropout", dropout, caller=caller, low=0.0, high=1.0)
        blocks, channels = [], self.in_channels
        for num_convs, out_channels in VGG_CONFIGS[config]:
            blocks.append(vgg_block(num_convs, channels, out_channels))
            channels = out_channels
        self.config = config
        self.features = nn.Sequential(*blocks)  # [N, 512, H/32, W/32]
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input("VGG", x, self.in_channels)
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    def extra_repr(self) -> str:
        return f"config={self.config!r}"


class Inception(nn.Module):
    r"""The Inception module of GoogLeNet with 1×1 reductions (Szegedy et al. 2015, Fig. 2(b)).

    Four parallel branches, ReLU after every convolution, concatenated along channels:

    1. 1×1 convolution to ``c1`` channels;
    2. 1×1 convolution to ``c2[0]``, then 3×3 (padding 1) to ``c2[1]``;
    3. 1×1 convolution to ``c3[0]``, then 5×5 (padding 2) to ``c3[1]``;
    4. 3×3 max pool (stride 1, padding 1), then 1×1 convolution to ``c4``.

    The 1×1 reductions make the 3×3 and 5×5 convolutions cheap. Unlike torchvision's
    ``GoogLeNet``, branch 3 really uses a 5×5 kernel (torchvision keeps a 3×3 there for
    weight compatibility) and there is no batch normalization (the 2015 paper had none).

    Input Tensor[N, in_channels, H, W], output Tensor[N, c1 + c2[1] + c3[1] + c4, H, W].
    """

    def __init__(
        self, in_channels: int, c1: int, c2: tuple[int, int], c3: tuple[int, int], c4: int
    ) -> None:
        super().__init__()
        caller = "Inception"
        self.in_channels = _v.integer("in_channels", in_channels, caller=caller, minimum=1)
        c1 = _v.integer("c1", c1, caller=caller, minimum=1)
        c4 = _v.integer("c4", c4, caller=caller, minimum=1)
        for name, pair in (("c2", c2), ("c3", c3)):
            pair = _v.int_sequence(name, pair, caller=caller, minimum=1)
            if len(pair) != 2:
                raise ValueError(f"{caller}: {name} must be a pair (reduce, out) of two ints; got {pair!r}")
        self.out_channels = c1 + c2[1] + c3[1] + c4
        self.branch1 = nn.Sequential(nn.Conv2d(in_channels, c1, 1), nn.ReLU())
        self.branch2 = nn.Sequential(
            nn.Conv2d(in_channels, c2[0], 1), nn.ReLU(), nn.Conv2d(c2[0], c2[1], 3, padding=1), nn.ReLU()
        )
        self.branch3 = nn.Sequential(
            nn.Conv2d(in_channels, c3[0], 1), nn.ReLU(), nn.Conv2d(c3[0], c3[1], 5, padding=2), nn.ReLU()
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(3, stride=1, padding=1), nn.Conv2d(in_channels, c4, 1), nn.ReLU()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input("Inception", x, self.in_channels)
        branches = (self.branch1, self.branch2, self.branch3, self.branch4)
        return torch.cat([branch(x) for branch in branches], dim=1)  # [N, c1 + c2[1] + c3[1] + c4, H, W]


class BasicBlock(nn.Module):
    r"""The basic residual block of ResNet-18/34 (He et al. 2016, Fig. 2 and Fig. 5 left).

    :math:`y = \operatorname{ReLU}(\mathcal F(x) + W_s x)`, Eq. (2) of the paper, where
    :math:`\mathcal F` is 3×3 conv (``stride``) → BN → ReLU → 3×3 conv → BN, and
    :math:`W_s` is the identity, or a projection (1×1 conv with ``stride`` → BN, option B)
    when the shape changes. Same layout and parameter count as torchvision's
    ``BasicBlock(in_channels, out_channels, stride, downsample)`` with that projection.

    Input Tensor[N, in_channels, H, W], output Tensor[N, out_channels, ⌈H/stride⌉, ⌈W/stride⌉].
    """

    expansion = 1

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        caller = "BasicBlock"
        self.in_channels = _v.integer("in_channels", in_channels, caller=caller, minimum=1)
        self.out_channels = _v.integer("out_channels", out_channels, caller=caller, minimum=1)
        stride = _v.integer("stride", stride, caller=caller, minimum=1)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input("BasicBlock", x, self.in_channels)
        residual = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))  # F(x): [N, C_out, H', W']
        return torch.relu(residual + self.shortcut(x))


class Bottleneck(nn.Module):
    r"""The bottleneck residual block of ResNet-50/101/152 (He et al. 2016, Fig. 5 right).

    :math:`\mathcal F`: 1×1 conv to ``mid_channels`` → BN → ReLU → 3×3 conv (``stride``) → BN →
    ReLU → 1×1 conv to :math:`4 \cdot` ``mid_channels`` → BN; output
    :math:`\operatorname{ReLU}(\mathcal F(x) + W_s x)` with a projection shortcut (1×1 conv
    with ``stride`` → BN) when the shape changes. The stride sits on the 3×3 convolution,
    as in torchvision ("ResNet v1.5"); the paper strides the first 1×1. Same parameter
    count as torchvision's ``Bottleneck(in_channels, mid_channels, stride, downsample)``.

    Input Tensor[N, in_channels, H, W], output Tensor[N, 4·mid_channels, ⌈H/stride⌉, ⌈W/stride⌉].
    """

    expansion = 4

    def __init__(self, in_channels: int, mid_channels: int, stride: int = 1) -> None:
        super().__init__()
        caller = "Bottleneck"
        self.in_channels = _v.integer("in_channels", in_channels, caller=caller, minimum=1)
        mid_channels = _v.integer("mid_channels", mid_channels, caller=caller, minimum=1)
        stride = _v.integer("stride", stride, caller=caller, minimum=1)
        self.out_channels = out_channels = self.expansion * mid_channels
        self.conv1 = nn.Conv2d(in_channels, mid_channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid_channels)
        self.conv2 = nn.Conv2d(mid_channels, mid_channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid_channels)
        self.conv3 = nn.Conv2d(mid_channels, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input("Bottleneck", x, self.in_channels)
        out = torch.relu(self.bn1(self.conv1(x)))  # [N, mid, H, W]
        out = torch.relu(self.bn2(self.conv2(out)))  # [N, mid, H', W']
        residual = self.bn3(self.conv3(out))  # F(x): [N, 4 mid, H', W']
        return torch.relu(residual + self.shortcut(x))


class ResNet(nn.Module):
    r"""A small ResNet for small images, built from :class:`BasicBlock` or :class:`Bottleneck`.

    Stem: 3×3 conv (16 channels) → BN → ReLU, without the 7×7 stride-2 conv and max pool
    of the ImageNet models (as He et al. 2016, Sec. 4.2, do for 32×32 CIFAR-10 images).
    Then ``len(layers)`` stages; stage ``i`` has ``layers[i]`` blocks of width
    :math:`16 \cdot 2^i` (times 4 at the output of a bottleneck), and stages after the
    first halve the resolution in their first block. Global average pooling and one
    fully connected layer give the logits.

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        layers: number of blocks per stage, e.g. ``(2, 2)``.
        num_classes: number of classes K.
        in_channels: channels of the input images.

    Input Tensor[N, in_channels, H, W], output Tensor[N, num_classes].
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: Sequence[int],
        num_classes: int = 10,
        in_channels: int = 1,
    ) -> None:
        super().__init__()
        caller = "ResNet"
        if block not in (BasicBlock, Bottleneck):
            raise TypeError(f"{caller}: block must be BasicBlock or Bottleneck; got {block!r}")
        layers = _v.int_sequence("layers", layers, caller=caller, minimum=1)
        self.num_classes = _v.integer("num_classes", num_classes, caller=caller, minimum=1)
        self.in_channels = _v.integer("in_channels", in_channels, caller=caller, minimum=1)
        width = 16
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
        )
        stages, channels = [], width
        for i, n_blocks in enumerate(layers):
            blocks = []
            for j in range(n_blocks):
                blocks.append(block(channels, width * 2**i, stride=2 if i > 0 and j == 0 else 1))
                channels = blocks[-1].out_channels
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input("ResNet", x, self.in_channels)
        features = self.pool(self.stages(self.stem(x)))  # [N, C, 1, 1]
        return self.fc(features.flatten(1))  # [N, K]
