"""Decoupled uniformity pretraining: the uniformity of the centroids of each scan's two
views, with a kernel prior on the label when sigma is set.

References:
    [0] Dufumier et al., "Integrating Prior Knowledge in Contrastive Learning with Kernel",
        ICML 2023, https://arxiv.org/abs/2206.01646

With centroids mu_i of the two normalised views (replaced by alpha mu, alpha =
(K + lambda I)^-1 K, under a kernel prior K on the labels):

    loss = log(1 / (N (N - 1)) * sum_{i != j} exp(-2 ||mu_i - mu_j||^2))

See :class:`yaware.losses.DecoupledUniformityLoss`.
"""

from torch import nn

from yaware.losses import DecoupledUniformityLoss
from yaware.train.config import PretrainConfig
from yaware.train.objectives.contrastive import ContrastiveObjective


class DecoupledUniformityObjective(ContrastiveObjective):
    """Decoupled uniformity with the config's sigma (None: no prior), kernel and
    ``prior_lambda``."""

    @staticmethod
    def contrastive_loss(cfg: PretrainConfig) -> nn.Module:
        return DecoupledUniformityLoss(cfg.sigma, cfg.kernel, cfg.prior_lambda)
