"""3D ResNets (He et al., CVPR 2016; 3D variant of Hara et al., CVPR 2018).

``resnet18``: basic blocks, every stage but the first halving the grid, 512 features.

``medicalnet_resnet{10,18,34,50,101,152,200}``: the networks of MedicalNet (Chen et al.,
"Med3D: Transfer Learning for 3D Medical Image Analysis", 2019), whose pretrained weights
much 3D medical imaging starts from. Their third and fourth stages keep the grid and dilate
their convolutions instead (2 and 4: the trunk's output stride is 8, not 32), and each
depth has the shortcut its released weights were trained with: ``A`` (a parameter-free
subsampling padded with zero channels) for 18 and 34, ``B`` (1x1 convolution and batch
norm) for the others. A MedicalNet file (``{"state_dict": {"module.conv1.weight", ...}}``)
names the trunk's layers without our ``features.`` prefix; the checkpoint loader adds it.
"""

import torch
import torch.nn.functional as F
from torch import nn

from yaware.models.base import Backbone3D, init_weights
from yaware.models.stem import StemConv3d

SHORTCUTS = ("A", "B")
# Each ResNet name: block, blocks per stage, shortcut. Ours stride every stage but the
# first; MedicalNet's keep the grid in the last two and dilate them.
RESNETS = {"resnet18": ("basic", (2, 2, 2, 2), "B")}
# MedicalNet's depths, each with the shortcut of its released weights (MedicalNet's README;
# MONAI's get_medicalnet_pretrained_resnet_args agrees).
MEDICALNET = {
    "medicalnet_resnet10": ("basic", (1, 1, 1, 1), "B"),
    "medicalnet_resnet18": ("basic", (2, 2, 2, 2), "A"),
    "medicalnet_resnet34": ("basic", (3, 4, 6, 3), "A"),
    "medicalnet_resnet50": ("bottleneck", (3, 4, 6, 3), "B"),
    "medicalnet_resnet101": ("bottleneck", (3, 4, 23, 3), "B"),
    "medicalnet_resnet152": ("bottleneck", (3, 8, 36, 3), "B"),
    "medicalnet_resnet200": ("bottleneck", (3, 24, 36, 3), "B"),
}
MEDICALNET_STRIDES = (1, 2, 1, 1)
MEDICALNET_DILATIONS = (1, 1, 2, 4)


class _ZeroPadShortcut(nn.Module):
    """Shortcut A: the input subsampled by ``stride``, its channels padded with zeros."""

    def __init__(self, out_channels: int, stride: int) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, 0, 0, self.out_channels - x.shape[1]))


def _shortcut(in_planes: int, out_planes: int, stride: int, kind: str) -> nn.Module | None:
    """None where the block keeps its input's shape; else shortcut ``kind`` (A or B)."""
    if stride == 1 and in_planes == out_planes:
        return None
    if kind == "A":
        return _ZeroPadShortcut(out_planes, stride)
    return nn.Sequential(
        nn.Conv3d(in_planes, out_planes, 1, stride, bias=False), nn.BatchNorm3d(out_planes)
    )


class _BasicBlock(nn.Module):
    expansion = 1

    def __init__(
        self, in_planes: int, planes: int, stride: int = 1, dilation: int = 1, shortcut: str = "B"
    ):
        super().__init__()
        self.conv1 = nn.Conv3d(in_planes, planes, 3, stride, dilation, dilation, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(planes, planes, 3, 1, dilation, dilation, bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.downsample = _shortcut(in_planes, planes, stride, shortcut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        return F.relu(self.bn2(self.conv2(out)) + identity, inplace=True)


class _Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided, dilated), 1x1 expand by ``expansion``."""

    expansion = 4

    def __init__(
        self, in_planes: int, planes: int, stride: int = 1, dilation: int = 1, shortcut: str = "B"
    ):
        super().__init__()
        self.conv1 = nn.Conv3d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(planes, planes, 3, stride, dilation, dilation, bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = nn.Conv3d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm3d(planes * self.expansion)
        self.downsample = _shortcut(in_planes, planes * self.expansion, stride, shortcut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = F.relu(self.bn2(self.conv2(out)), inplace=True)
        return F.relu(self.bn3(self.conv3(out)) + identity, inplace=True)


BLOCKS: dict[str, type[_BasicBlock] | type[_Bottleneck]] = {
    "basic": _BasicBlock,
    "bottleneck": _Bottleneck,
}


class ResNet3D(Backbone3D):
    """3D ResNet: a 7x7x7 stride-2 stem and a max-pool, then four stages of blocks.

    Args:
        layers: blocks per stage; ``(2, 2, 2, 2)`` with basic blocks is ResNet-18.
        block: ``"basic"`` (two 3x3 convolutions) or ``"bottleneck"`` (1x1, 3x3, 1x1 x4).
        widths: each stage's width (a bottleneck stage outputs 4 times it).
        strides: each stage's stride (in its first block).
        dilations: each stage's dilation of its 3x3 convolutions.
        shortcut: ``"B"`` (1x1 convolution and batch norm where the shape changes) or
            ``"A"`` (subsampling and zero channels, no parameters).
    """

    def __init__(
        self,
        layers: tuple[int, ...] = (2, 2, 2, 2),
        block: str = "basic",
        widths: tuple[int, ...] = (64, 128, 256, 512),
        strides: tuple[int, ...] = (1, 2, 2, 2),
        dilations: tuple[int, ...] = (1, 1, 1, 1),
        shortcut: str = "B",
        in_channels: int = 1,
        mode: str = "encoder",
        num_classes: int = 2,
        hidden_dim: int = 512,
        out_dim: int = 128,
    ) -> None:
        if shortcut not in SHORTCUTS:
            raise ValueError(f"shortcut must be one of {SHORTCUTS}, got {shortcut!r}")
        unit = BLOCKS[block]
        super().__init__(widths[-1] * unit.expansion, mode, num_classes, hidden_dim, out_dim)
        stem = [
            ("conv1", StemConv3d(in_channels, widths[0], 7, padding=3)),
            ("bn1", nn.BatchNorm3d(widths[0])),
            ("relu", nn.ReLU(inplace=True)),
            ("maxpool", nn.MaxPool3d(3, 2, 1)),
        ]
        self.features = nn.Sequential()
        for name, module in stem:
            self.features.add_module(name, module)
        in_planes = widths[0]
        stages = zip(layers, widths, strides, dilations, strict=True)
        for i, (blocks, planes, stride, dilation) in enumerate(stages):
            stage = [unit(in_planes, planes, stride, dilation, shortcut)]
            in_planes = planes * unit.expansion
            stage += [unit(in_planes, planes, 1, dilation, shortcut) for _ in range(blocks - 1)]
            self.features.add_module(f"layer{i + 1}", nn.Sequential(*stage))
        self._build_head(num_classes, hidden_dim, out_dim)
        init_weights(self)


def resnet18(mode: str = "encoder", num_classes: int = 2, **kwargs) -> ResNet3D:
    block, layers, shortcut = RESNETS["resnet18"]
    return ResNet3D(layers, block, shortcut=shortcut, mode=mode, num_classes=num_classes, **kwargs)


def medicalnet_resnet(name: str, mode: str = "encoder", num_classes: int = 2) -> ResNet3D:
    """MedicalNet's network ``name`` (a key of ``MEDICALNET``): dilated last two stages."""
    block, layers, shortcut = MEDICALNET[name]
    return ResNet3D(
        layers,
        block,
        strides=MEDICALNET_STRIDES,
        dilations=MEDICALNET_DILATIONS,
        shortcut=shortcut,
        mode=mode,
        num_classes=num_classes,
    )
