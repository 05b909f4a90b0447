"""Contrastive losses: y-Aware InfoNCE, its kernelised variants and successors, SimCLR's
NT-Xent; one file per loss."""

from yaware.losses.decoupled_uniformity import DecoupledUniformityLoss
from yaware.losses.expw import ExpWInfoNCE
from yaware.losses.kernels import KERNELS, label_kernel
from yaware.losses.ntxent import NTXentLoss
from yaware.losses.rank_n_contrast import RankNContrastLoss
from yaware.losses.threshold import ThresholdInfoNCE
from yaware.losses.yaware_infonce import YAwareInfoNCE

NTXent = NTXentLoss
# y-Aware InfoNCE and the variants that change only its denominator (PretrainConfig's
# loss_variant, and the workflow's methods of the same names).
KERNEL_LOSSES = {"yaware": YAwareInfoNCE, "threshold": ThresholdInfoNCE, "expw": ExpWInfoNCE}

__all__ = [
    "KERNELS",
    "KERNEL_LOSSES",
    "DecoupledUniformityLoss",
    "ExpWInfoNCE",
    "NTXent",
    "NTXentLoss",
    "RankNContrastLoss",
    "ThresholdInfoNCE",
    "YAwareInfoNCE",
    "label_kernel",
]
