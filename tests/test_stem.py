"""The space-to-depth stem: the same convolution as PyTorch's, for any grid and kernel."""

import pytest
import torch
import torch.nn.functional as F

from yaware.models import build_model
from yaware.models.stem import StemConv3d, direct_stems, space_to_depth_conv


@pytest.mark.parametrize(
    ("size", "kernel", "padding", "channels"),
    [
        ((121, 145, 121), 7, 3, 1),  # the paper's grid and DenseNet's stem
        ((31, 37, 31), 7, 3, 1),  # odd sizes
        ((8, 9, 10), 7, 3, 2),  # mixed parity, two input channels
        ((12, 12, 12), 7, 0, 1),  # no padding
        ((11, 13, 9), 3, 1, 1),  # a 3x3x3 kernel
        ((10, 11, 12), 4, 1, 3),  # an even kernel
        ((9, 9, 9), 5, 2, 1),
    ],
)
def test_space_to_depth_equals_the_strided_convolution(size, kernel, padding, channels):
    generator = torch.Generator().manual_seed(sum(size) + kernel)
    x = torch.randn(2, channels, *size, dtype=torch.float64, generator=generator)
    weight = torch.randn(5, channels, kernel, kernel, kernel, dtype=torch.float64)
    x.requires_grad_(True)
    weight.requires_grad_(True)
    direct = F.conv3d(x, weight, stride=2, padding=padding)
    folded = space_to_depth_conv(x, weight, padding)
    assert folded.shape == direct.shape
    torch.testing.assert_close(folded, direct, rtol=1e-10, atol=1e-10)
    grad = torch.randn_like(direct)
    expected = torch.autograd.grad(direct, (x, weight), grad)
    got = torch.autograd.grad(folded, (x, weight), grad)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("encoder", ["densenet121", "resnet18"])
def test_encoders_train_the_same_with_either_stem(encoder):
    torch.manual_seed(0)
    # eval(): batch statistics of 2 scans at a 1-voxel feature map would amplify the
    # stems' different rounding far beyond float64's precision
    model = build_model(encoder).double().eval()
    x = torch.randn(2, 1, 32, 40, 32, dtype=torch.float64)
    runs = []
    for direct in (True, False):
        model.zero_grad()
        if direct:
            with direct_stems(model):
                out = model(x)
        else:
            out = model(x)
        out.square().sum().backward()
        stem = next(m for m in model.modules() if isinstance(m, StemConv3d))
        runs.append((out.detach(), stem.weight.grad.clone()))
    assert stem.space_to_depth  # direct_stems restored the flag
    torch.testing.assert_close(runs[1][0], runs[0][0], rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(runs[1][1], runs[0][1], rtol=1e-7, atol=1e-7)


def test_the_stem_keeps_the_convolution_weight_and_its_keys():
    stem = StemConv3d(1, 64, 7, padding=3)
    assert isinstance(stem, torch.nn.Conv3d) and stem.bias is None
    assert list(stem.state_dict()) == ["weight"]
    assert stem.weight.shape == (64, 1, 7, 7, 7) and stem.stride == (2, 2, 2)
    x = torch.randn(1, 1, 20, 21, 22)
    plain = torch.nn.Conv3d(1, 64, 7, 2, 3, bias=False)
    plain.load_state_dict(stem.state_dict())
    torch.testing.assert_close(stem(x), plain(x), rtol=1e-4, atol=1e-5)
