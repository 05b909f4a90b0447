"""What every pretraining objective shares: the network it trains, and how a batch reaches it.

The training engine (:mod:`yaware.train.pretrain`) knows no method by name: it asks the
objective of ``cfg.method`` (:data:`yaware.train.objectives.OBJECTIVES`) which modules to
train beside the backbone, how a batch becomes the network's input and what the loss is.
"""

from typing import Any, ClassVar

import torch
from torch import nn

from yaware.augment import AugmentationPolicy
from yaware.augment.genesis import GenesisCorruption
from yaware.models.base import Backbone3D
from yaware.train.common import to_device
from yaware.train.config import PretrainConfig


class Objective:
    """One batch's loss of a pretraining method; a subclass per method.

    Attributes:
        augmented: whether the method trains on the configured augmentation (Model Genesis
            learns from its own corruptions of unaugmented scans).
        own_head: whether the method trains a module of its own beside the backbone (the
            projection head then gets no gradient: DistributedDataParallel must know).
    """

    augmented: ClassVar[bool] = True
    own_head: ClassVar[bool] = False

    def __init__(
        self,
        cfg: PretrainConfig,
        network: nn.Module,
        device: torch.device,
        age_stats: tuple[float, float],
        layout: torch.memory_format,
        amp: torch.dtype | None,
    ) -> None:
        self.network, self.device, self.layout, self.amp = network, device, layout, amp
        # Compiled once per (train/eval mode, batch shape); the weights stay the network's.
        if cfg.compile:
            for module in network.modules():
                if isinstance(module, Backbone3D):
                    module.before_compile()
        self.forward = torch.compile(network) if cfg.compile else network
        self.age_mean, self.age_std = age_stats

    @staticmethod
    def extras(model: Backbone3D) -> nn.ModuleDict:
        """Modules the method trains beside the backbone and then discards."""
        return nn.ModuleDict()

    @staticmethod
    def route(
        model: Backbone3D, extras: nn.ModuleDict, x: torch.Tensor, out_shape: Any
    ) -> torch.Tensor:
        """The network's forward: the backbone with its projection head by default."""
        return model(x)

    @staticmethod
    def corruption(shape: tuple[int, ...], seed: int) -> GenesisCorruption | None:
        """The method's own corruption of its inputs, drawn from ``seed``; none by default."""
        return None

    def train(self, mode: bool = True) -> None:
        self.network.train(mode)

    def batch_on_device(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Scans and labels of a loader batch on the device (pinned copies do not block)."""
        x, y = batch
        return to_device(x, self.device), y.to(self.device, non_blocking=True)

    def prepare(self, batch: Any, policy: AugmentationPolicy) -> tuple[torch.Tensor, ...]:
        """The batch on the device as the network's input: (views or scans, labels).

        Staged on a side CUDA stream by the training loop (:mod:`yaware.train.staging`).
        """
        raise NotImplementedError

    def loss(
        self, inputs: torch.Tensor, y: torch.Tensor, corruption: GenesisCorruption | None
    ) -> torch.Tensor:
        """The batch's loss, a scalar float32 tensor."""
        raise NotImplementedError

    def _layout(self, views: torch.Tensor) -> torch.Tensor:
        return views.contiguous(memory_format=self.layout)


class PretrainNetwork(nn.Module):
    """The backbone with the method's extra modules, routed by the method's objective.

    One module so that DistributedDataParallel can wrap every trained parameter at once.
    """

    def __init__(self, objective: type[Objective], model: nn.Module, extras: nn.ModuleDict):
        super().__init__()
        self.route, self.model, self.extras = objective.route, model, extras

    def forward(self, x: torch.Tensor, out_shape: tuple[int, ...] | None = None) -> torch.Tensor:
        return self.route(self.model, self.extras, x, out_shape)
