"""Rank-N-Contrast (Zha et al., NeurIPS 2023): contrast views by the rank of their label
distance to the anchor."""

import torch
from torch import nn

from yaware.losses._logits import check_temperature


class RankNContrastLoss(nn.Module):
    """RnC loss over the 2N views of N scans. With s_ab = -||z_a - z_b||_2 / tau (negative
    L2 distance of the projections) and d_ab = ||y_a - y_b||_1 (L1 label distance), each
    other view b of anchor a is a positive against the views at least as far in label:

        loss = -1 / (2N (2N - 1)) * sum_a sum_{b != a}
               log(exp(s_ab) / sum_{c != a, d_ac >= d_ab} exp(s_ac))

    With two distinct labels and one scan of each, a view's other view (d = 0) is
    contrasted against all three others, and each view of the other scan against the two
    views of that scan.

    References:
        [0] Zha et al., "Rank-N-Contrast: Learning Continuous Representations for
            Regression", NeurIPS 2023, https://arxiv.org/abs/2210.01189 (eq. 2-3)

    Agrees with the authors' ``RnCLoss`` (kaiwenzha/Rank-N-Contrast ``loss.py``, read
    2026-12; temperature 2, L1 label distance, L2 feature similarity) on a fixed batch.
    The authors apply it to the encoder's features; the workflow applies it to the
    projection head's output, as every contrastive method here, so that the methods share
    one network.
    """

    def __init__(self, temperature: float = 2.0) -> None:
        super().__init__()
        self.temperature = check_temperature(temperature)

    def forward(self, z1: torch.Tensor, z2: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Loss of one batch: projections (N, D) of each view, labels (N,) or (N, k)."""
        n = len(z1)
        if len(y) != n or z1.shape != z2.shape:
            raise ValueError(f"got {len(y)} labels, {tuple(z1.shape)} and {tuple(z2.shape)}")
        dtype = torch.promote_types(z1.dtype, torch.float32)
        with torch.autocast(device_type=z1.device.type, enabled=False):
            z = torch.cat([z1, z2]).to(dtype)
            logits = -torch.cdist(z, z) / self.temperature  # (2N, 2N)
            labels = torch.cat([y, y]).to(z.device, dtype)
            labels = labels[:, None] if labels.ndim == 1 else labels
            distance = torch.cdist(labels, labels, p=1)
            eye = torch.eye(2 * n, dtype=torch.bool, device=z.device)
            # [a, b, c]: c is in the denominator of positive b when d_ac >= d_ab, c != a
            farther = (distance[:, None, :] >= distance[:, :, None]) & ~eye[:, None, :]
            lowest = torch.finfo(dtype).min
            others = logits[:, None, :].expand_as(farther).masked_fill(~farther, lowest)
            log_prob = logits - torch.logsumexp(others, dim=2)
            return -log_prob.masked_fill(eye, 0.0).sum() / (2 * n * (2 * n - 1))
