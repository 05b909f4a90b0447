"""y-Aware InfoNCE: contrastive learning weighted by a kernel on continuous proxy labels."""

from collections.abc import Sequence

import torch
from torch import nn

from yaware.errors import ConfigError
from yaware.losses._logits import check_temperature, cosine_logits
from yaware.losses.kernels import check_kernel_spec, label_kernel

NORMALISATIONS = ("row", "column")


class YAwareInfoNCE(nn.Module):
    """y-Aware InfoNCE loss of Dufumier et al. (MICCAI 2021); the kernelised variants of
    Barbano et al. (:mod:`.threshold`, :mod:`.expw`) change its denominator only.

    References:
        [0] y-Aware InfoNCE, Dufumier et al., MICCAI 2021, https://arxiv.org/abs/2106.08808

    With 2N views z (both views of N scans), logits s_ab = cos(z_a, z_b) / tau and kernel
    weights w_ab = K(y_a, y_b) for b != a, normalised per anchor row (``normalisation="row"``,
    the paper) so that sum_b w_ab = 1:

        loss = -(1 / N) * sum_a sum_b w_ab * log(exp(s_ab) / D_ab)

    where D_ab = sum_{c != a} exp(s_ac).

    ``normalisation="column"`` divides column b by the sum of row b, as the original code
    does (``weights /= weights.sum(axis=1)`` broadcasts over columns); it reproduces the
    original's numbers. With a gaussian kernel, sigma -> 0 and distinct labels the loss is
    SimCLR's NT-Xent.

    Attributes:
        sigma: kernel bandwidth(s), in label units.
        temperature: softmax temperature tau.
        kernel: kernel name(s), see :mod:`yaware.losses.kernels`.

    Raises:
        ConfigError: sigma <= 0, unknown kernel or normalisation.

    Examples:
        >>> loss = YAwareInfoNCE(sigma=5.0)
        >>> z1, z2, age = torch.randn(8, 128), torch.randn(8, 128), torch.rand(8) * 60 + 20
        >>> bool(torch.isfinite(loss(z1, z2, age)))
        True
    """

    def __init__(
        self,
        sigma: float | Sequence[float] | None = 5.0,
        temperature: float = 0.1,
        kernel: str | Sequence[str] = "gaussian",
        normalisation: str = "row",
    ) -> None:
        super().__init__()
        self.kernel, sigmas = check_kernel_spec(kernel, sigma)
        self.sigma = sigmas
        self.temperature = check_temperature(temperature)
        if normalisation not in NORMALISATIONS:
            raise ConfigError(
                f"normalisation must be one of {NORMALISATIONS}, got {normalisation!r}"
            )
        self.normalisation = normalisation

    def forward(self, z1: torch.Tensor, z2: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Loss of one batch.

        Args:
            z1: projections of the first views, shape (N, D).
            z2: projections of the second views, shape (N, D).
            y: proxy labels, shape (N,) or (N, k), on any device (moved to z1's).

        Returns:
            Scalar tensor, float32 (float64 for float64 inputs).
        """
        n = len(z1)
        if len(y) != n:
            raise ValueError(f"got {len(y)} labels for a batch of {n} scans")
        logits = cosine_logits(z1, z2, self.temperature)  # (2N, 2N), diagonal -inf
        y = y.to(logits.device)
        y2 = torch.cat([y, y])  # labels of the 2N views
        kernel = label_kernel(y2, self.kernel, self.sigma if self.sigma else 1.0).to(logits.dtype)
        eye = torch.eye(2 * n, dtype=torch.bool, device=logits.device)
        kernel = kernel.masked_fill(eye, 0.0)
        if self.normalisation == "row":
            weights = kernel / kernel.sum(dim=1, keepdim=True)
        else:
            weights = kernel / kernel.sum(dim=1)[None, :]
        log_prob = self._log_prob(logits, kernel, eye)  # (2N, 2N)
        return -(weights * log_prob.masked_fill(eye, 0.0)).sum() / n

    def _log_prob(
        self, logits: torch.Tensor, kernel: torch.Tensor, eye: torch.Tensor
    ) -> torch.Tensor:
        """log(exp(s_ab) / D_ab) for every anchor a and positive b; D_ab here is y-Aware's
        sum over every other view. The kernelised variants override it."""
        return torch.log_softmax(logits, dim=1)
