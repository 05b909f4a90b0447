"""SimCLR pretraining: NT-Xent over two augmented views of each scan, no label.

References:
    [0] SimCLR, Chen et al., ICML 2020, https://arxiv.org/abs/2002.05709

With 2N projections z and s_ab = cos(z_a, z_b) / tau, the positive of view a is the other
view of its scan, p(a):

    loss = -(1 / 2N) * sum_a log(exp(s_a,p(a)) / sum_{b != a} exp(s_ab))

Shapes: views (2N, 1, X, Y, Z) in, projections (2N, 128) out; the label y (N,) is gathered
but not read. See :class:`yaware.losses.NTXentLoss`.
"""

from torch import nn

from yaware.losses import NTXentLoss
from yaware.train.config import PretrainConfig
from yaware.train.objectives.contrastive import ContrastiveObjective


class SimCLRObjective(ContrastiveObjective):
    """SimCLR's NT-Xent at ``cfg.temperature``."""

    @staticmethod
    def contrastive_loss(cfg: PretrainConfig) -> nn.Module:
        return NTXentLoss(cfg.temperature)
