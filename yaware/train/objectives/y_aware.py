"""y-Aware pretraining: InfoNCE weighted by a kernel on a continuous proxy label (age).

References:
    [0] y-Aware InfoNCE, Dufumier et al., MICCAI 2021, https://arxiv.org/abs/2106.08808
    [1] Kernelised SupCon (loss_variant threshold, expw), Barbano et al., ISBI 2023,
        https://arxiv.org/abs/2211.08326

With 2N projections z, s_ab = cos(z_a, z_b) / tau and w_ab = K(y_a, y_b) normalised per
anchor row (the gaussian kernel: exp(-(y_a - y_b)^2 / (2 sigma^2))):

    loss = -(1 / N) * sum_a sum_{b != a} w_ab * log(exp(s_ab) / sum_{c != a} exp(s_ac))

Shapes: views (2N, 1, X, Y, Z) in, projections (2N, 128) and labels (N,) or (N, L) to the
loss. sigma -> 0 with distinct labels gives SimCLR. See
:class:`yaware.losses.YAwareInfoNCE`.
"""

from torch import nn

from yaware.losses import KERNEL_LOSSES
from yaware.train.config import PretrainConfig
from yaware.train.objectives.contrastive import ContrastiveObjective


class YAwareObjective(ContrastiveObjective):
    """y-Aware InfoNCE with the config's sigma, temperature, kernel, normalisation and
    loss variant; the workflow's methods ``threshold`` and ``expw`` are those variants."""

    @staticmethod
    def contrastive_loss(cfg: PretrainConfig) -> nn.Module:
        variant = cfg.method if cfg.method in KERNEL_LOSSES else cfg.loss_variant
        return KERNEL_LOSSES[variant](cfg.sigma, cfg.temperature, cfg.kernel, cfg.normalisation)
