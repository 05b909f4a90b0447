"""Age supervision: the backbone's representation regresses the standardised age.

One augmented view per scan; a linear head on the representation h (N, F) predicts
a_hat (N,), and with the training set's age mean m and sd s:

    loss = (1 / N) * sum_i |a_hat_i - (y_i - m) / s|

The head is discarded after pretraining: the encoder is evaluated as every other.
"""

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from yaware.augment import AugmentationPolicy
from yaware.augment.genesis import GenesisCorruption
from yaware.models.heads import AgeHead
from yaware.train.common import autocast
from yaware.train.objectives.base import Objective


class AgeSupervisionObjective(Objective):
    """L1 loss of the predicted standardised age."""

    own_head = True

    @staticmethod
    def extras(model: nn.Module) -> nn.ModuleDict:
        return nn.ModuleDict({"age_head": AgeHead(model.num_features)})

    @staticmethod
    def route(model: nn.Module, extras: nn.ModuleDict, x: torch.Tensor, out_shape: Any):
        return extras["age_head"](model.representation(x))

    def prepare(self, batch: Any, policy: AugmentationPolicy) -> tuple[torch.Tensor, ...]:
        x, y = self.batch_on_device(batch)
        return self._layout(policy(x)), y

    def loss(
        self, inputs: torch.Tensor, y: torch.Tensor, corruption: GenesisCorruption | None
    ) -> torch.Tensor:
        with autocast(self.device, self.amp):
            predicted = self.forward(inputs)
        return F.l1_loss(predicted.float(), (y - self.age_mean) / self.age_std)
