"""SimCLR's normalised temperature-scaled cross-entropy (NT-Xent)."""

import torch
from torch import nn

from yaware.losses._logits import check_temperature, cosine_logits


class NTXentLoss(nn.Module):
    """NT-Xent loss of SimCLR: each view must pick the other view of its scan among 2N - 1.

    References:
        [0] SimCLR, 2020, https://arxiv.org/abs/2002.05709

    The value is the sum over the 2N anchors divided by N (the sum of the two views' mean
    cross-entropies), the scale of the original y-Aware code.

    Raises:
        ValueError: temperature <= 0.

    Examples:
        >>> loss = NTXentLoss(temperature=0.1)
        >>> z = torch.ones(4, 8)
        >>> round(float(loss(z, z)), 4) == round(2 * float(torch.log(torch.tensor(7.0))), 4)
        True
    """

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        self.temperature = check_temperature(temperature)

    def forward(
        self, z1: torch.Tensor, z2: torch.Tensor, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Args: z1, z2 of shape (N, D); y is ignored (accepted for a common signature)."""
        n = len(z1)
        logits = cosine_logits(z1, z2, self.temperature)  # (2N, 2N)
        rows = torch.arange(2 * n, device=logits.device)  # made on the device: no host copy
        positives = (rows + n) % (2 * n)
        log_prob = torch.log_softmax(logits, dim=1)
        return -log_prob[rows, positives].sum() / n
