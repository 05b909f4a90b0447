"""3D DenseNet with the original y-Aware repository's architecture and state-dict keys.

Keys (encoder mode, 724 tensors): ``features.conv0.weight``, ``features.norm0.*``,
``features.denseblock{1..4}.denselayer{k}.{norm1,conv1,norm2,conv2}.*``,
``features.transition{1..3}.{norm,conv}.*``, ``hidden_representation.*``,
``head_projection.*``. Classifier mode adds ``features.norm5.*`` and ``classifier.*``.
The released DenseNet121_BHB-10K_yAwareContrastive.pth loads into these modules, and so
does MONAI's ``DenseNet121(spatial_dims=3, in_channels=1)`` (the same layers; the loader
reads its ``denselayerN.layers.*`` names; it always has ``norm5``).
"""

from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from yaware.models.base import Backbone3D, init_weights
from yaware.models.stem import StemConv3d


class _DenseLayer(nn.Module):
    """BN-ReLU-conv1x1(bn_size * k)-BN-ReLU-conv3x3(k) over the concatenated inputs."""

    def __init__(self, num_input: int, growth_rate: int, bn_size: int, memory_efficient: bool):
        super().__init__()
        self.norm1 = nn.BatchNorm3d(num_input)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv3d(num_input, bn_size * growth_rate, 1, bias=False)
        self.norm2 = nn.BatchNorm3d(bn_size * growth_rate)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv3d(bn_size * growth_rate, growth_rate, 3, padding=1, bias=False)
        self.memory_efficient = memory_efficient

    def _bottleneck(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.conv1(self.relu1(self.norm1(torch.cat(inputs, 1))))

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        if self.memory_efficient and any(t.requires_grad for t in inputs):
            # Recompute the concatenation and bottleneck in backward: memory grows
            # linearly instead of quadratically with the block depth. The recomputation
            # runs norm1 in training mode again, which would update its running statistics
            # a second time per step (twice the momentum, twice the batch count) and so
            # change the encoder in eval mode. A compiled graph updates them once, and
            # takes no context_fn.
            keep = {} if _is_compiling() else {"context_fn": self._recompute_keeps_running_stats}
            bottleneck = checkpoint(self._bottleneck, *inputs, use_reentrant=False, **keep)
        else:
            bottleneck = self._bottleneck(*inputs)
        return self.conv2(self.relu2(self.norm2(bottleneck)))

    def _recompute_keeps_running_stats(self) -> tuple:
        return nullcontext(), _running_stats_kept(self.norm1)


def _is_compiling() -> bool:
    is_compiling = getattr(torch.compiler, "is_compiling", None)  # torch >= 2.3
    return bool(is_compiling and is_compiling())


@contextmanager
def _running_stats_kept(norm: nn.Module) -> Iterator[None]:
    """Put the running statistics of ``norm`` back as they were before the block ran."""
    buffers = [
        b for b in (norm.running_mean, norm.running_var, norm.num_batches_tracked) if b is not None
    ]
    saved = [b.clone() for b in buffers]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in zip(buffers, saved, strict=True):
                buffer.copy_(value)


class _DenseBlock(nn.ModuleDict):
    def __init__(
        self,
        num_layers: int,
        num_input: int,
        growth_rate: int,
        bn_size: int,
        memory_efficient: bool,
    ):
        super().__init__()
        for i in range(num_layers):
            layer = _DenseLayer(num_input + i * growth_rate, growth_rate, bn_size, memory_efficient)
            self.add_module(f"denselayer{i + 1}", layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class _Transition(nn.Sequential):
    def __init__(self, num_input: int, num_output: int):
        super().__init__()
        self.add_module("norm", nn.BatchNorm3d(num_input))
        self.add_module("relu", nn.ReLU(inplace=True))
        self.add_module("conv", nn.Conv3d(num_input, num_output, 1, bias=False))
        self.add_module("pool", nn.AvgPool3d(2, stride=2))


class DenseNet3D(Backbone3D):
    """3D DenseNet-BC (Huang et al., CVPR 2017) as used by y-Aware.

    Args:
        growth_rate: k, channels added per dense layer.
        block_config: dense layers per block.
        num_init_features: channels of the stem convolution.
        bn_size: bottleneck width factor.
        in_channels: input channels (1 for grey-matter maps).
        mode: ``"encoder"`` (projection head) or ``"classifier"``.
        memory_efficient: gradient checkpointing of each bottleneck, for small GPUs.
        final_norm: end the trunk with ``features.norm5``; None: in classifier mode only,
            as the original. An encoder read from a checkpoint that holds norm5 (a
            fine-tuned network, MONAI's) needs it to compute that network's representation.
    """

    def __init__(
        self,
        growth_rate: int = 32,
        block_config: tuple[int, ...] = (6, 12, 24, 16),
        num_init_features: int = 64,
        bn_size: int = 4,
        in_channels: int = 1,
        mode: str = "encoder",
        num_classes: int = 2,
        hidden_dim: int = 512,
        out_dim: int = 128,
        memory_efficient: bool = False,
        final_norm: bool | None = None,
    ) -> None:
        num_features = num_init_features
        for i, num_layers in enumerate(block_config):
            num_features += num_layers * growth_rate
            if i != len(block_config) - 1:
                num_features //= 2
        super().__init__(num_features, mode, num_classes, hidden_dim, out_dim)
        self.features = nn.Sequential(
            OrderedDict(
                [
                    ("conv0", StemConv3d(in_channels, num_init_features, 7, padding=3)),
                    ("norm0", nn.BatchNorm3d(num_init_features)),
                    ("relu0", nn.ReLU(inplace=True)),
                    ("pool0", nn.MaxPool3d(3, stride=2, padding=1)),
                ]
            )
        )
        channels = num_init_features
        for i, num_layers in enumerate(block_config):
            block = _DenseBlock(num_layers, channels, growth_rate, bn_size, memory_efficient)
            self.features.add_module(f"denseblock{i + 1}", block)
            channels += num_layers * growth_rate
            if i != len(block_config) - 1:
                self.features.add_module(f"transition{i + 1}", _Transition(channels, channels // 2))
                channels //= 2
        if final_norm or (final_norm is None and mode == "classifier"):
            self.features.add_module("norm5", nn.BatchNorm3d(channels))
        self._build_head(num_classes, hidden_dim, out_dim)
        init_weights(self)

    # Device types on which torch.compile leaves the stem's norm, ReLU and max-pool out of
    # its graph (after before_compile). Compiled on an H200, inductor fused that pool with
    # the first block's concatenation into a kernel of 31 ms per step where cuDNN's pool
    # takes 7 ms; with the three left eager the whole compiled step ran 1.10x faster
    # (benchmarks/RESULTS.md, run e). On the CPU the break made the compiled step 5-16 %
    # slower, so the tail stays in the graph there.
    eager_stem_devices: tuple[str, ...] = ("cuda",)

    def before_compile(self) -> None:
        global _eager_stem_tail
        # Made here, not at import: torch.compiler.disable imports torch._dynamo (about 1 s
        # in every job that only builds a model, such as feature extraction).
        if _eager_stem_tail is None:
            _eager_stem_tail = torch.compiler.disable(_stem_tail)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        # F.relu(self.features(x)), written out so that the graph break sits outside
        # nn.Sequential's loop: torch.compile cannot resume inside a loop and would leave
        # every later layer uncompiled.
        features = self.features
        x = features.conv0(x)
        if _eager_stem_tail is not None and x.device.type in self.eager_stem_devices:
            x = _eager_stem_tail(features, x)
        else:
            x = _stem_tail(features, x)
        for module in list(features.children())[4:]:
            x = module(x)
        return F.relu(x)


def _stem_tail(features: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """The stem's norm, ReLU and max-pool."""
    return features.pool0(features.relu0(features.norm0(x)))


# _stem_tail outside any torch.compile graph, once a DenseNet3D has run before_compile.
_eager_stem_tail: Callable[[nn.Sequential, torch.Tensor], torch.Tensor] | None = None


# Dense layers per block of each depth (Huang et al.; growth 32, 64 stem channels), as
# torchvision and MONAI build them; the representation has 1024, 1664 and 1920 features.
DENSENET_BLOCKS = {
    "densenet121": (6, 12, 24, 16),
    "densenet169": (6, 12, 32, 32),
    "densenet201": (6, 12, 48, 32),
}


def build_densenet(name: str, mode: str = "encoder", num_classes: int = 2, **kwargs) -> DenseNet3D:
    """The DenseNet-BC of depth ``name`` (a key of ``DENSENET_BLOCKS``)."""
    blocks = DENSENET_BLOCKS[name]
    return DenseNet3D(32, blocks, 64, mode=mode, num_classes=num_classes, **kwargs)


def densenet121(mode: str = "encoder", num_classes: int = 2, **kwargs) -> DenseNet3D:
    """DenseNet121 3D: growth 32, blocks (6, 12, 24, 16), 64 stem channels, 1024 features."""
    return build_densenet("densenet121", mode, num_classes, **kwargs)
