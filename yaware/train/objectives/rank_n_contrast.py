"""Rank-N-Contrast pretraining: two augmented views of each scan, ranked by label distance.

References:
    [0] Zha et al., "Rank-N-Contrast: Learning Continuous Representations for Regression",
        NeurIPS 2023, https://arxiv.org/abs/2210.01189

With 2N projections z, s_ab = -||z_a - z_b|| / tau and d_ab = |y_a - y_b|:

    loss = -1 / (2N (2N - 1)) * sum_a sum_{b != a}
           log(exp(s_ab) / sum_{c != a, d_ac >= d_ab} exp(s_ac))

See :class:`yaware.losses.RankNContrastLoss`.
"""

from torch import nn

from yaware.losses import RankNContrastLoss
from yaware.train.config import PretrainConfig
from yaware.train.objectives.contrastive import ContrastiveObjective


class RankNContrastObjective(ContrastiveObjective):
    """RnC at ``cfg.temperature`` (the workflow's method default: the paper's 2)."""

    @staticmethod
    def contrastive_loss(cfg: PretrainConfig) -> nn.Module:
        return RankNContrastLoss(cfg.temperature)
