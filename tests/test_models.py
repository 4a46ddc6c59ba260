"""Tests of dlkb.models: shapes, torchvision equivalence, slow references, validation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet as tv_resnet

from dlkb.models import BasicBlock, Bottleneck, Inception, LeNet, ResNet, nin_block, vgg_block
from dlkb.utils import count_parameters


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _copy_weights(src: nn.Module, dst: nn.Module) -> None:
    """Copy parameters and buffers in registration order (the two modules have the same layout)."""
    src_state, dst_state = src.state_dict(), dst.state_dict()
    assert [v.shape for v in src_state.values()] == [v.shape for v in dst_state.values()]
    dst.load_state_dict(dict(zip(dst_state.keys(), src_state.values(), strict=True)))


def _randomize_bn(module: nn.Module) -> None:
    g = torch.Generator().manual_seed(1)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g))
                m.running_mean.copy_(torch.randn(m.num_features, generator=g))
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)


# ---- vgg_block / nin_block ---------------------------------------------------------------------


def test_vgg_block_layout_and_shape():
    block = vgg_block(3, 2, 5)
    kinds = [type(m).__name__ for m in block]
    assert kinds == ["Conv2d", "ReLU"] * 3 + ["MaxPool2d"]
    assert all(m.kernel_size == (3, 3) and m.padding == (1, 1) for m in block if isinstance(m, nn.Conv2d))
    assert block(torch.randn(4, 2, 9, 8)).shape == (4, 5, 4, 4)
    assert count_parameters(block) == (2 * 9 * 5 + 5) + 2 * (5 * 9 * 5 + 5)


def test_vgg_block_matches_functional_reference():
    block = vgg_block(2, 3, 4)
    x = torch.randn(2, 3, 6, 6).transpose(2, 3)  # non-contiguous
    c1, c2 = block[0], block[2]
    ref = F.max_pool2d(F.relu(F.conv2d(F.relu(F.conv2d(x, c1.weight, c1.bias, padding=1)), c2.weight, c2.bias, padding=1)), 2)
    torch.testing.assert_close(block(x), ref)


def test_nin_block_matches_functional_reference():
    block = nin_block(3, 8, kernel_size=5, stride=2, padding=1)
    assert [type(m).__name__ for m in block] == ["Conv2d", "ReLU"] * 3
    x = torch.randn(2, 3, 11, 9)
    c1, c2, c3 = block[0], block[2], block[4]
    assert c2.kernel_size == c3.kernel_size == (1, 1)
    h = F.relu(F.conv2d(x, c1.weight, c1.bias, stride=2, padding=1))
    # A 1x1 convolution is a linear layer applied at every pixel.
    h = F.relu(torch.einsum("oc,nchw->nohw", c2.weight[:, :, 0, 0], h) + c2.bias[:, None, None])
    h = F.relu(torch.einsum("oc,nchw->nohw", c3.weight[:, :, 0, 0], h) + c3.bias[:, None, None])
    out = block(x)
    assert out.shape == (2, 8, 5, 4)
    torch.testing.assert_close(out, h)


def test_block_validation():
    with pytest.raises(ValueError, match=r"vgg_block: num_convs must be >= 1; got 0"):
        vgg_block(0, 1, 8)
    with pytest.raises(TypeError, match=r"vgg_block: in_channels must be an int; got float"):
        vgg_block(1, 1.0, 8)
    with pytest.raises(ValueError, match=r"nin_block: padding must be >= 0; got -1"):
        nin_block(1, 8, 3, 1, -1)
    with pytest.raises(ValueError, match=r"nin_block: stride must be >= 1; got 0"):
        nin_block(1, 8, 3, 0, 1)


# ---- LeNet -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "channels", "classes"), [(8, 1, 10), (28, 1, 10), (32, 3, 7), (5, 2, 3)])
def test_lenet_shapes(size, channels, classes):
    model = LeNet(num_classes=classes, in_channels=channels)
    assert model(torch.randn(2, channels, size, size)).shape == (2, classes)


def test_lenet_parameter_count_and_gradcheck():
    model = LeNet()
    expected = (6 * 25 + 6) + (16 * 6 * 25 + 16) + (64 * 120 + 120) + (120 * 84 + 84) + (84 * 10 + 10)
    assert count_parameters(model) == expected
    model = LeNet(num_classes=3).double()
    x = torch.randn(1, 1, 8, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(model, (x,))


def test_lenet_validation():
    with pytest.raises(ValueError, match=r"LeNet: input must have shape \(N, 1, H, W\); got \(2, 3, 8, 8\)"):
        LeNet()(torch.randn(2, 3, 8, 8))
    with pytest.raises(ValueError, match=r"LeNet: input must have shape \(N, 1, H, W\); got \(8, 8\)"):
        LeNet()(torch.randn(8, 8))
    with pytest.raises(TypeError, match=r"LeNet: input must be a torch\.Tensor; got ndarray"):
        LeNet()(torch.randn(1, 1, 8, 8).numpy())
    with pytest.raises(ValueError, match=r"LeNet: input must be at least 4x4 pixels; got \(3, 8\)"):
        LeNet()(torch.randn(1, 1, 3, 8))
    with pytest.raises(ValueError, match=r"LeNet: num_classes must be >= 1; got 0"):
        LeNet(num_classes=0)


# ---- Inception ---------------------------------------------------------------------------------


def test_inception_matches_branch_by_branch_reference():
    module = Inception(6, 3, (4, 5), (2, 3), 2)
    x = torch.randn(2, 6, 7, 5)[:, :, :, :]
    x = x.transpose(2, 3).contiguous().transpose(2, 3)  # same values, non-contiguous strides
    assert not x.is_contiguous()
    out = module(x)
    assert out.shape == (2, 3 + 5 + 3 + 2, 7, 5) and module.out_channels == 13

    def conv(seq, i, inp, pad=0):
        return F.relu(F.conv2d(inp, seq[i].weight, seq[i].bias, padding=pad))

    b1 = conv(module.branch1, 0, x)
    b2 = conv(module.branch2, 2, conv(module.branch2, 0, x), pad=1)
    b3 = conv(module.branch3, 2, conv(module.branch3, 0, x), pad=2)
    b4 = conv(module.branch4, 1, F.max_pool2d(x, 3, stride=1, padding=1))
    assert module.branch3[2].kernel_size == (5, 5)  # a real 5x5, unlike torchvision's GoogLeNet
    torch.testing.assert_close(out, torch.cat([b1, b2, b3, b4], dim=1))


def test_inception_parameter_count():
    c_in, c1, c2, c3, c4 = 192, 64, (96, 128), (16, 32), 32  # GoogLeNet's inception (3a)
    expected = (
        (c_in * c1 + c1)
        + (c_in * c2[0] + c2[0]) + (9 * c2[0] * c2[1] + c2[1])
        + (c_in * c3[0] + c3[0]) + (25 * c3[0] * c3[1] + c3[1])
        + (c_in * c4 + c4)
    )
    assert count_parameters(Inception(c_in, c1, c2, c3, c4)) == expected == 163_696


def test_inception_gradcheck():
    module = Inception(2, 1, (1, 2), (1, 1), 1).double()
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(module, (x,))


def test_inception_validation():
    with pytest.raises(TypeError, match=r"Inception: c2 must be a tuple or list of ints; got int 8"):
        Inception(4, 2, 8, (2, 2), 2)
    with pytest.raises(ValueError, match=r"Inception: c2 must be a pair \(reduce, out\) of two ints; got \(2, 2, 2\)"):
        Inception(4, 2, (2, 2, 2), (2, 2), 2)
    with pytest.raises(ValueError, match=r"Inception: c3\[0\] must be >= 1; got 0"):
        Inception(4, 2, (2, 2), (0, 2), 2)
    with pytest.raises(ValueError, match=r"Inception: input must have shape \(N, 4, H, W\); got \(1, 3, 5, 5\)"):
        Inception(4, 2, (2, 2), (2, 2), 2)(torch.randn(1, 3, 5, 5))


# ---- BasicBlock / Bottleneck -------------------------------------------------------------------


@pytest.mark.parametrize(("c_in", "c_out", "stride"), [(8, 8, 1), (8, 16, 2), (4, 6, 1), (6, 6, 2)])
def test_basic_block_equals_torchvision(c_in, c_out, stride):
    ours = BasicBlock(c_in, c_out, stride)
    needs_projection = stride != 1 or c_in != c_out
    downsample = (
        nn.Sequential(tv_resnet.conv1x1(c_in, c_out, stride), nn.BatchNorm2d(c_out)) if needs_projection else None
    )
    ref = tv_resnet.BasicBlock(c_in, c_out, stride, downsample)
    assert count_parameters(ours) == count_parameters(ref)
    assert isinstance(ours.shortcut, nn.Sequential) == needs_projection
    _randomize_bn(ref)
    _copy_weights(ref, ours)
    x = torch.randn(3, c_in, 7, 6).transpose(2, 3)  # non-contiguous [3, c_in, 6, 7]
    for mode in ("eval", "train"):
        getattr(ours, mode)()
        getattr(ref, mode)()
        out = ours(x)
        assert out.shape == (3, c_out, -(-6 // stride), -(-7 // stride))
        torch.testing.assert_close(out, ref(x))


@pytest.mark.parametrize(("c_in", "mid", "stride"), [(16, 4, 1), (8, 4, 2), (16, 8, 2), (12, 3, 1)])
def test_bottleneck_equals_torchvision(c_in, mid, stride):
    ours = Bottleneck(c_in, mid, stride)
    needs_projection = stride != 1 or c_in != 4 * mid
    downsample = (
        nn.Sequential(tv_resnet.conv1x1(c_in, 4 * mid, stride), nn.BatchNorm2d(4 * mid)) if needs_projection else None
    )
    ref = tv_resnet.Bottleneck(c_in, mid, stride, downsample)
    assert count_parameters(ours) == count_parameters(ref)
    assert ours.out_channels == 4 * mid
    _randomize_bn(ref)
    _copy_weights(ref, ours)
    ours.eval()
    ref.eval()
    x = torch.randn(2, c_in, 5, 8)
    out = ours(x)
    assert out.shape == (2, 4 * mid, -(-5 // stride), -(-8 // stride))
    torch.testing.assert_close(out, ref(x))


def test_residual_blocks_gradcheck():
    x = torch.randn(2, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    for block in (BasicBlock(2, 3, stride=2), Bottleneck(2, 1)):
        block = block.double().eval()  # eval: BN uses running statistics, a fixed function
        assert torch.autograd.gradcheck(block, (x,))


def test_identity_shortcut_passes_input_through():
    # With the residual branch zeroed (last BN scale 0), a block is ReLU(x).
    block = BasicBlock(4, 4).eval()
    nn.init.zeros_(block.bn2.weight)
    x = torch.randn(2, 4, 5, 5)
    torch.testing.assert_close(block(x), torch.relu(x))


def test_residual_block_validation():
    with pytest.raises(ValueError, match=r"BasicBlock: stride must be >= 1; got 0"):
        BasicBlock(4, 4, stride=0)
    with pytest.raises(ValueError, match=r"BasicBlock: input must have shape \(N, 4, H, W\); got \(1, 5, 4, 4\)"):
        BasicBlock(4, 4)(torch.randn(1, 5, 4, 4))
    with pytest.raises(TypeError, match=r"Bottleneck: mid_channels must be an int; got float"):
        Bottleneck(4, 2.0)
    with pytest.raises(ValueError, match=r"Bottleneck: input must have shape \(N, 4, H, W\); got \(4, 4, 4\)"):
        Bottleneck(4, 1)(torch.randn(4, 4, 4))


# ---- ResNet ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("block", "layers", "channels"), [(BasicBlock, (2, 2), 16 * 2), (Bottleneck, (1, 1, 1), 4 * 64)])
def test_resnet_shapes_and_widths(block, layers, channels):
    model = ResNet(block, layers, num_classes=7, in_channels=3)
    assert len(model.stages) == len(layers)
    assert [len(s) for s in model.stages] == list(layers)
    assert model.fc.in_features == channels
    for size in (8, 13, 32):
        assert model(torch.randn(2, 3, size, size)).shape == (2, 7)


def test_resnet_parameter_count_basic():
    model = ResNet(BasicBlock, (1, 1))
    stem = 9 * 16 + 2 * 16
    stage1 = count_parameters(tv_resnet.BasicBlock(16, 16))
    down = nn.Sequential(tv_resnet.conv1x1(16, 32, 2), nn.BatchNorm2d(32))
    stage2 = count_parameters(tv_resnet.BasicBlock(16, 32, 2, down))
    assert count_parameters(model) == stem + stage1 + stage2 + (32 * 10 + 10)


def test_resnet_validation():
    with pytest.raises(TypeError, match=r"ResNet: block must be BasicBlock or Bottleneck; got <class 'torch.nn"):
        ResNet(nn.Conv2d, (1,))
    with pytest.raises(ValueError, match=r"ResNet: layers must not be empty; got \(\)"):
        ResNet(BasicBlock, ())
    with pytest.raises(ValueError, match=r"ResNet: layers\[1\] must be >= 1; got 0"):
        ResNet(BasicBlock, (2, 0))
    with pytest.raises(ValueError, match=r"ResNet: in_channels must be >= 1; got 0"):
        ResNet(BasicBlock, (1,), in_channels=0)
    with pytest.raises(ValueError, match=r"ResNet: input must have shape \(N, 1, H, W\); got \(1, 3, 8, 8\)"):
        ResNet(BasicBlock, (1,))(torch.randn(1, 3, 8, 8))


# ---- AlexNet / VGG against torchvision ------------------------------------------------------------


def _shapes(model):
    return [tuple(p.shape) for p in model.parameters()]


def test_alexnet_equals_torchvision():
    import torchvision

    from dlkb.models import AlexNet

    torch.manual_seed(0)
    ref = torchvision.models.alexnet().eval()
    ours = AlexNet().eval()
    assert _shapes(ours) == _shapes(ref)
    assert sum(p.numel() for p in ours.parameters()) == 61_100_840
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(1, 3, 96, 80, generator=torch.Generator().manual_seed(1))  # small, non-square
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x))


@pytest.mark.parametrize("config, name", [("A", "vgg11"), ("B", "vgg13"), ("D", "vgg16"), ("E", "vgg19")])
def test_vgg_parameters_equal_torchvision(config, name):
    import torchvision

    from dlkb.models import VGG

    with torch.device("meta"):
        ours, ref = VGG(config), getattr(torchvision.models, name)()
    assert _shapes(ours) == _shapes(ref)
    if config == "D":
        assert sum(p.numel() for p in ours.parameters()) == 138_357_544


def test_vgg_forward_matches_torchvision_layers_small():
    import torchvision

    from dlkb.models import VGG

    torch.manual_seed(0)
    ours = VGG("A", num_classes=3).eval()
    ref = torchvision.models.vgg11(num_classes=3).eval()
    with torch.no_grad():
        for p, q in zip(ours.parameters(), ref.parameters()):
            p.copy_(q)
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x))


def test_alexnet_vgg_validation():
    from dlkb.models import VGG, AlexNet

    with pytest.raises(ValueError, match=r"VGG: config must be one of \('A', 'B', 'D', 'E'\); got 'C'"):
        VGG("C")
    with pytest.raises(ValueError, match=r"AlexNet: num_classes must be >= 1; got 0"):
        AlexNet(0)
    with pytest.raises(ValueError, match=r"VGG: dropout must be in \[0, 1\]; got 1.5"):
        VGG("A", dropout=1.5)
    with pytest.raises(ValueError, match=r"AlexNet: input must have shape \(N, 3, H, W\); got \(1, 1, 64, 64\)"):
        AlexNet()(torch.zeros(1, 1, 64, 64))
