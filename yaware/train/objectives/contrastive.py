"""Two augmented views of each scan, one contrastive loss over the global batch: what
SimCLR and y-Aware share (:mod:`.simclr`, :mod:`.y_aware`)."""

from typing import Any

import torch
from torch import nn

from yaware.augment import AugmentationPolicy
from yaware.augment.genesis import GenesisCorruption
from yaware.train import distributed
from yaware.train.common import autocast
from yaware.train.objectives.base import Objective


class ContrastiveObjective(Objective):
    """Both views of a batch projected at once (``2N`` rows: the views ``z1``, ``z2`` of
    shape ``(N, 128)`` each), projections and labels gathered from every rank, then
    :meth:`contrastive_loss`'s loss of ``(z1, z2, y)``."""

    def __init__(self, cfg, network, device, age_stats, layout, amp) -> None:
        super().__init__(cfg, network, device, age_stats, layout, amp)
        self.contrastive = self.contrastive_loss(cfg)

    @staticmethod
    def contrastive_loss(cfg: Any) -> nn.Module:
        raise NotImplementedError

    def prepare(self, batch: Any, policy: AugmentationPolicy) -> tuple[torch.Tensor, ...]:
        x, y = self.batch_on_device(batch)
        return self._layout(policy(torch.cat([x, x]))), y  # both views, drawn apart

    def loss(
        self, inputs: torch.Tensor, y: torch.Tensor, corruption: GenesisCorruption | None
    ) -> torch.Tensor:
        with autocast(self.device, self.amp):
            z = self.forward(inputs)
        z1, z2 = z.float().chunk(2)
        z1, z2 = distributed.gather(z1), distributed.gather(z2)
        return self.contrastive(z1, z2, distributed.gather_labels(y))
