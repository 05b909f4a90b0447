"""A small 3D CNN with the backbone interface, fast enough for 2 CPU cores at 3-6 mm."""

from torch import nn

from yaware.models.base import Backbone3D, init_weights

# The default stage widths; the representation has the last one's features.
WIDTHS = (16, 32, 64, 128)


class TinyCNN3D(Backbone3D):
    """A stride-2 stem then conv-BN-ReLU stages, each halving the grid (max-pool) but the
    last; 128-d representation.

    With the default widths (16, 32, 64, 128) it has about 0.3 M parameters in its
    backbone and trains at a few hundred scans/s on 2 CPU cores at 6 mm (31x37x31): meant
    for the CPU default, not for the paper (DenseNet121 at 1.5 mm).
    """

    # Channels-last 3D on the CPU: 1.3-1.5x the training step at 6 and 3 mm (oneDNN's
    # kernels for few channels; benchmarks/RESULTS.md, "Training throughput").
    channels_last_on_cpu = True

    def __init__(
        self,
        widths: tuple[int, ...] = WIDTHS,
        in_channels: int = 1,
        mode: str = "encoder",
        num_classes: int = 2,
        hidden_dim: int = 512,
        out_dim: int = 128,
    ) -> None:
        super().__init__(widths[-1], mode, num_classes, hidden_dim, out_dim)
        self.features = nn.Sequential()
        channels = in_channels
        for i, width in enumerate(widths):
            stride = 2 if i == 0 else 1  # a strided stem: the full-resolution conv is the cost
            conv = nn.Conv3d(channels, width, 3, stride=stride, padding=1, bias=False)
            self.features.add_module(f"conv{i}", conv)
            self.features.add_module(f"norm{i}", nn.BatchNorm3d(width))
            self.features.add_module(f"relu{i}", nn.ReLU(inplace=True))
            if i < len(widths) - 1:
                self.features.add_module(f"pool{i}", nn.MaxPool3d(2, ceil_mode=True))
            channels = width
        self._build_head(num_classes, hidden_dim, out_dim)
        init_weights(self)


def tinycnn(mode: str = "encoder", num_classes: int = 2, **kwargs) -> TinyCNN3D:
    return TinyCNN3D(mode=mode, num_classes=num_classes, **kwargs)
