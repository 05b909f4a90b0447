"""Heads that the comparison methods train on top of a backbone and then discard."""

import torch
import torch.nn.functional as F
from torch import nn


class AgeHead(nn.Module):
    """Age Supervision: a linear regression of standardised age from the representation."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(num_features, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.linear(h).squeeze(1)


class GenesisDecoder(nn.Module):
    """Model Genesis: a light decoder from the backbone's feature map back to the scan.

    1x1 projection to ``width`` channels, three (transposed-convolution x2 upsampling, BN,
    ReLU) stages halving the width, as Model Genesis's 3D U-Net upsamples, a 1-channel
    output conv, then a final resize to the input grid.
    """

    def __init__(self, num_features: int, width: int = 64) -> None:
        super().__init__()
        self.project = nn.Conv3d(num_features, width, 1)
        stages = []
        channels = width
        for _ in range(3):
            stages += [
                nn.ConvTranspose3d(channels, channels // 2, 2, stride=2, bias=False),
                nn.BatchNorm3d(channels // 2),
                nn.ReLU(inplace=True),
            ]
            channels //= 2
        self.up = nn.Sequential(*stages)
        self.out = nn.Conv3d(channels, 1, 3, padding=1)

    def forward(self, feature_map: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
        restored = self.out(self.up(self.project(feature_map)))
        return F.interpolate(restored, size=size, mode="trilinear", align_corners=False)
