"""Contrastive losses: y-Aware InfoNCE and its kernels, SimCLR's NT-Xent."""

from yaware.losses.kernels import KERNELS, label_kernel
from yaware.losses.ntxent import NTXentLoss
from yaware.losses.yaware_infonce import YAwareInfoNCE

NTXent = NTXentLoss

__all__ = ["KERNELS", "NTXent", "NTXentLoss", "YAwareInfoNCE", "label_kernel"]
