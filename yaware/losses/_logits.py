"""Cosine-similarity logits shared by the contrastive losses."""

import torch
import torch.nn.functional as F


def cosine_logits(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """Logits s_ab / tau between all 2N views, self-similarity masked with -inf.

    Computed outside autocast in float32 (or float64 if the inputs are), so the loss stays
    finite under bf16/fp16 training.

    Args:
        z1: first views' projections, shape (N, D).
        z2: second views' projections, shape (N, D).

    Returns:
        Tensor of shape (2N, 2N); rows 0..N-1 are the first views, N..2N-1 the second.
    """
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(
            f"z1 and z2 must both have shape (N, D); got {tuple(z1.shape)} and {tuple(z2.shape)}"
        )
    dtype = torch.promote_types(z1.dtype, torch.float32)
    with torch.autocast(device_type=z1.device.type, enabled=False):
        z = torch.cat([z1, z2]).to(dtype)  # (2N, D)
        z = F.normalize(z, dim=1)
        logits = z @ z.T / temperature  # (2N, 2N)
        eye = torch.eye(len(z), dtype=torch.bool, device=z.device)
        return logits.masked_fill(eye, float("-inf"))


def check_temperature(temperature: float) -> float:
    temperature = float(temperature)
    if not temperature > 1e-8:
        raise ValueError(f"temperature must be > 0 (got {temperature}); the paper uses 0.1")
    return temperature
