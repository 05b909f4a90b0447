"""Decoupled uniformity (Dufumier et al., ICML 2023): uniformity of the views' centroids,
with an optional kernel prior on a proxy label."""

import torch
import torch.nn.functional as F
from torch import nn

from yaware.errors import ConfigError
from yaware.losses.kernels import check_kernel_spec, label_kernel


class DecoupledUniformityLoss(nn.Module):
    """Log of the mean Gaussian potential between the centroids of the scans' views:

        loss = log( 1 / (N (N - 1)) * sum_{i != j} exp(-t ||mu_i - mu_j||^2) )

    mu_i = (z1_i + z2_i) / 2 with z on the unit sphere. With a kernel prior on the labels
    (``sigma`` set), each centroid is replaced by the kernel ridge estimate of the
    conditional mean embedding, mu_hat = alpha mu with alpha = (K + lambda I)^-1 K, K the
    kernel matrix of the N labels: scans of similar labels share their centroids. As
    lambda -> 0 (K invertible) alpha -> I and the loss is the kernel-free one.

    References:
        [0] Dufumier et al., "Integrating Prior Knowledge in Contrastive Learning with
            Kernel", ICML 2023, https://arxiv.org/abs/2206.01646 (sec. 4-5)

    Agrees with the authors' ``DecoupledUniformityLoss`` (rbf or no kernel, t = 2,
    lambda = 0.01, read 2026-12) on a fixed batch; as there, alpha is not differentiated.
    """

    def __init__(
        self,
        sigma: float | None = None,
        kernel: str = "gaussian",
        prior_lambda: float = 0.01,
        t: float = 2.0,
    ) -> None:
        super().__init__()
        if not prior_lambda > 0 or not t > 0:
            raise ConfigError(f"prior_lambda and t must be > 0, got {prior_lambda} and {t}")
        self.kernel, self.sigma = (
            (None, None) if sigma is None else check_kernel_spec(kernel, sigma)
        )
        self.prior_lambda, self.t = float(prior_lambda), float(t)

    def forward(self, z1: torch.Tensor, z2: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Loss of one batch: projections (N, D) of each view, labels (N,) or (N, k)."""
        n = len(z1)
        if len(y) != n or z1.shape != z2.shape or n < 2:
            raise ValueError(f"got {len(y)} labels, {tuple(z1.shape)} and {tuple(z2.shape)}")
        dtype = torch.promote_types(z1.dtype, torch.float32)
        with torch.autocast(device_type=z1.device.type, enabled=False):
            centroids = (F.normalize(z1.to(dtype), dim=1) + F.normalize(z2.to(dtype), dim=1)) / 2
            if self.kernel is not None:
                gram = label_kernel(y.to(z1.device), self.kernel, self.sigma).to(dtype)
                ridge = gram + self.prior_lambda * torch.eye(n, dtype=dtype, device=gram.device)
                alpha = torch.linalg.solve(ridge, gram)
                centroids = alpha.detach() @ centroids
            squared = torch.pdist(centroids).square()
            return torch.logsumexp(-self.t * squared, dim=0) - torch.log(
                torch.tensor(len(squared), dtype=dtype, device=squared.device)
            )
