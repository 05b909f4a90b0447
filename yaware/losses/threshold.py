"""Threshold kernel loss: y-Aware InfoNCE that repels only the views less similar in label
than the positive (Barbano et al., ISBI 2023)."""

import torch

from yaware.losses.yaware_infonce import YAwareInfoNCE


class ThresholdInfoNCE(YAwareInfoNCE):
    """y-Aware InfoNCE whose denominator, for anchor a and positive b, holds b and the
    views c whose label is farther from a's than b's is (K_ac < K_ab):

        D_ab = exp(s_ab) + sum_{c != a, K_ac < K_ab} exp(s_ac)

    so views of labels at least as close as b's are not pushed away.

    References:
        [0] Barbano et al., "Contrastive learning for regression in multi-site brain age
            prediction", ISBI 2023, https://arxiv.org/abs/2211.08326 (eq. 5)

    Difference from the authors' code (``KernelizedSupCon``, method ``threshold``, in
    EIDOSLAB/contrastive-brain-age-prediction ``src/losses.py``, read 2026-12): it takes
    one denominator per anchor a, sum_c exp(s_ac) * #{k : K_ck < K_ac}, comparing kernel
    values across rows; this follows the paper's per-positive D_ab. Their loss is also the
    mean over the 2N anchors times tau / base_tau, where this one sums the 2N anchors and
    divides by N (twice theirs at tau = base_tau), as :class:`YAwareInfoNCE` does.
    """

    def _log_prob(
        self, logits: torch.Tensor, kernel: torch.Tensor, eye: torch.Tensor
    ) -> torch.Tensor:
        weaker = kernel[:, None, :] < kernel[:, :, None]  # [a, b, c]: K_ac < K_ab
        weaker = weaker & ~eye[:, None, :]
        # A finite fill keeps the gradient finite where no view is weaker (an empty sum).
        lowest = torch.finfo(logits.dtype).min
        others = logits[:, None, :].expand_as(weaker).masked_fill(~weaker, lowest)
        denominator = torch.logaddexp(logits, torch.logsumexp(others, dim=2))  # (2N, 2N)
        return logits - denominator
