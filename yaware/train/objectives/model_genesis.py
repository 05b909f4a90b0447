"""Model Genesis: restore a scan from its own corruption (Zhou et al., MICCAI 2019).

References:
    [0] Models Genesis, Zhou et al., MICCAI 2019, https://arxiv.org/abs/1908.06912

The scan x (N, 1, X, Y, Z), min-max scaled to [0, 1], is corrupted (non-linear intensity,
local shuffling, in- and out-painting: :class:`yaware.augment.genesis.GenesisCorruption`),
and a decoder on the backbone's feature map restores x_hat of x's shape:

    loss = mean((x_hat - x)^2)

No contrastive augmentation and no label: the corruption is the method's own.
"""

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from yaware.augment import AugmentationPolicy
from yaware.augment.genesis import GenesisCorruption, min_max
from yaware.models.heads import GenesisDecoder
from yaware.train.common import autocast
from yaware.train.objectives.base import Objective


class ModelGenesisObjective(Objective):
    """Mean squared error of the restored scan."""

    augmented = False
    own_head = True

    @staticmethod
    def extras(model: nn.Module) -> nn.ModuleDict:
        return nn.ModuleDict({"decoder": GenesisDecoder(model.num_features)})

    @staticmethod
    def route(model: nn.Module, extras: nn.ModuleDict, x: torch.Tensor, out_shape: Any):
        return extras["decoder"](model.feature_map(x), out_shape)

    @staticmethod
    def corruption(shape: tuple[int, ...], seed: int) -> GenesisCorruption:
        return GenesisCorruption(shape, seed=seed)

    def prepare(self, batch: Any, policy: AugmentationPolicy) -> tuple[torch.Tensor, ...]:
        x, y = self.batch_on_device(batch)
        return min_max(policy(x)), y  # corrupted in loss()

    def loss(
        self, inputs: torch.Tensor, y: torch.Tensor, corruption: GenesisCorruption | None
    ) -> torch.Tensor:
        corrupted = corruption(inputs)
        with autocast(self.device, self.amp):
            restored = self.forward(self._layout(corrupted), inputs.shape[2:])
        return F.mse_loss(restored.float(), inputs)
