"""3D ResNet-18 (He et al., CVPR 2016; 3D variant of Hara et al., CVPR 2018)."""

import torch
import torch.nn.functional as F
from torch import nn

from yaware.models.base import Backbone3D, init_weights
from yaware.models.stem import StemConv3d


class _BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv3d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.downsample = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(
                nn.Conv3d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm3d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        return F.relu(self.bn2(self.conv2(out)) + identity, inplace=True)


class ResNet3D(Backbone3D):
    """3D ResNet with basic blocks; ``layers=(2, 2, 2, 2)`` is ResNet-18 (512 features)."""

    def __init__(
        self,
        layers: tuple[int, ...] = (2, 2, 2, 2),
        widths: tuple[int, ...] = (64, 128, 256, 512),
        in_channels: int = 1,
        mode: str = "encoder",
        num_classes: int = 2,
        hidden_dim: int = 512,
        out_dim: int = 128,
    ) -> None:
        super().__init__(widths[-1], mode, num_classes, hidden_dim, out_dim)
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
        for i, (blocks, planes) in enumerate(zip(layers, widths, strict=True)):
            stride = 1 if i == 0 else 2
            stage = [_BasicBlock(in_planes, planes, stride)]
            stage += [_BasicBlock(planes, planes) for _ in range(blocks - 1)]
            self.features.add_module(f"layer{i + 1}", nn.Sequential(*stage))
            in_planes = planes
        self._build_head(num_classes, hidden_dim, out_dim)
        init_weights(self)


def resnet18(mode: str = "encoder", num_classes: int = 2, **kwargs) -> ResNet3D:
    return ResNet3D((2, 2, 2, 2), mode=mode, num_classes=num_classes, **kwargs)
