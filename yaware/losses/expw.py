"""Exponential-weighting kernel loss: y-Aware InfoNCE whose repulsion weakens with label
similarity (Barbano et al., ISBI 2023)."""

import torch

from yaware.losses.yaware_infonce import YAwareInfoNCE


class ExpWInfoNCE(YAwareInfoNCE):
    """y-Aware InfoNCE with the denominator D_a = sum_{c != a} exp(s_ac * (1 - K_ac)): a view
    of the same label (K = 1) is not repelled at all, one far in label (K = 0) as in
    SimCLR. The kernel must lie in [0, 1] (every kernel of :mod:`.kernels` does).

    References:
        [0] Barbano et al., "Contrastive learning for regression in multi-site brain age
            prediction", ISBI 2023, https://arxiv.org/abs/2211.08326 (eq. 6)

    Difference from the authors' code (``KernelizedSupCon``, method ``expw``, in
    EIDOSLAB/contrastive-brain-age-prediction ``src/losses.py``, read 2026-12): it
    subtracts each row's largest logit m before the weighting, so its denominator is
    sum_c exp((s_ac - m)(1 - K_ac)), which is not the paper's D_a shifted by a constant
    (the shift m is scaled by 1 - K_ac); this follows the paper. Their loss is also the
    mean over the 2N anchors times tau / base_tau, where this one sums the 2N anchors and
    divides by N, as :class:`YAwareInfoNCE` does.
    """

    def _log_prob(
        self, logits: torch.Tensor, kernel: torch.Tensor, eye: torch.Tensor
    ) -> torch.Tensor:
        damped = (logits * (1.0 - kernel)).masked_fill(eye, float("-inf"))
        return logits - torch.logsumexp(damped, dim=1, keepdim=True)
