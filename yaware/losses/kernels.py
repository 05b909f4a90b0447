"""Similarity kernels on proxy labels, computed on the labels' device.

Every kernel is a function of the bandwidth-scaled difference u = (y_a - y_b) / sigma and
equals 1 at u = 0:

- ``gaussian`` (rbf): exp(-|u|^2 / 2)
- ``exponential`` (laplacian): exp(-|u|_1)
- ``epanechnikov``: max(0, 1 - |u|^2)
- ``cauchy``: 1 / (1 + |u|^2)
- ``linear`` (triangular): max(0, 1 - |u|)
- ``cosine``: cos(pi |u| / 2) where |u| < 1, else 0
- ``categorical``: 1 where the labels are equal, else 0 (supervised contrastive)

(``linear`` and ``cosine`` as nidl's ``KernelMetric`` defines them.) A vector label (N, k)
with one kernel name uses one bandwidth per dimension in the norm.
A sequence of kernel names, one per label dimension, gives the product kernel over mixed
labels, e.g. ``("gaussian", "categorical")`` for (age, sex).
"""

from collections.abc import Callable, Sequence

import torch

from yaware.errors import ConfigError

Tensor = torch.Tensor


def _gaussian(u: Tensor) -> Tensor:
    return torch.exp(-0.5 * u.square().sum(-1))


def _exponential(u: Tensor) -> Tensor:
    return torch.exp(-u.abs().sum(-1))


def _epanechnikov(u: Tensor) -> Tensor:
    return torch.clamp(1.0 - u.square().sum(-1), min=0.0)


def _cauchy(u: Tensor) -> Tensor:
    return 1.0 / (1.0 + u.square().sum(-1))


def _norm(u: Tensor) -> Tensor:
    # The norm's gradient at u = 0 (a pair with equal labels) is NaN; the kernels below
    # read it only through values, and labels carry no gradient.
    return u.square().sum(-1).sqrt()


def _linear(u: Tensor) -> Tensor:
    return torch.clamp(1.0 - _norm(u), min=0.0)


def _cosine(u: Tensor) -> Tensor:
    norm = _norm(u)
    return torch.where(norm < 1.0, torch.cos(torch.pi * norm / 2), torch.zeros_like(norm))


_SCALED_KERNELS: dict[str, Callable[[Tensor], Tensor]] = {
    "gaussian": _gaussian,
    "rbf": _gaussian,
    "exponential": _exponential,
    "laplacian": _exponential,
    "epanechnikov": _epanechnikov,
    "cauchy": _cauchy,
    "linear": _linear,
    "cosine": _cosine,
}
KERNELS = (*_SCALED_KERNELS, "categorical")


def check_kernel_spec(
    kernel: str | Sequence[str], sigma: float | Sequence[float] | None
) -> tuple[tuple[str, ...], tuple[float, ...] | None]:
    """Validate a kernel specification; returns (kernel names, bandwidths).

    Raises:
        ConfigError: unknown kernel name, non-positive or mismatched bandwidths.
    """
    names = (kernel,) if isinstance(kernel, str) else tuple(kernel)
    if not names:
        raise ConfigError("kernel: give a kernel name, e.g. kernel='gaussian'")
    for name in names:
        if name not in KERNELS:
            raise ConfigError(
                f"kernel: unknown kernel {name!r}; choose one of {', '.join(KERNELS)}"
            )
    if all(name == "categorical" for name in names):
        return names, None
    if sigma is None:
        raise ConfigError("sigma: a bandwidth is required for kernel(s) " + ", ".join(names))
    sigmas = (float(sigma),) if isinstance(sigma, int | float) else tuple(map(float, sigma))
    if not sigmas or any(not s > 0 for s in sigmas):
        raise ConfigError(f"sigma must be > 0 (got {sigma!r}); use method 'simclr' for sigma -> 0")
    if len(names) > 1 and len(sigmas) not in (1, len(names)):
        raise ConfigError(
            f"sigma: give one bandwidth or one per kernel ({len(names)}), got {sigmas}"
        )
    return names, sigmas


def label_kernel(
    y: Tensor, kernel: str | Sequence[str] = "gaussian", sigma: float | Sequence[float] = 1.0
) -> Tensor:
    """Kernel matrix K[a, b] = K(y_a, y_b) of shape (N, N), on y's device, in float32 or wider.

    Args:
        y: labels, shape (N,) or (N, k).
        kernel: one kernel name, or one name per label dimension (product kernel).
        sigma: one bandwidth, or one per label dimension.
    """
    names, sigmas = check_kernel_spec(kernel, sigma)
    dtype = torch.promote_types(y.dtype, torch.float32) if y.is_floating_point() else torch.float32
    y = y.to(dtype)
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2:
        raise ValueError(f"labels must have shape (N,) or (N, k), got {tuple(y.shape)}")
    n_dims = y.shape[1]
    if len(names) > 1 and len(names) != n_dims:
        raise ValueError(f"{len(names)} kernels given for labels with {n_dims} dimensions")
    diff = y[:, None, :] - y[None, :, :]  # (N, N, k)
    if len(names) == 1:
        return _one_kernel(names[0], diff, sigmas)
    weights = torch.ones(diff.shape[:2], dtype=dtype, device=y.device)
    for dim, name in enumerate(names):
        dim_sigma = None if sigmas is None else (sigmas[dim] if len(sigmas) > 1 else sigmas[0],)
        weights = weights * _one_kernel(name, diff[..., dim : dim + 1], dim_sigma)
    return weights


def _one_kernel(name: str, diff: Tensor, sigmas: tuple[float, ...] | None) -> Tensor:
    if name == "categorical":
        return (diff == 0).all(-1).to(diff.dtype)
    assert sigmas is not None  # guaranteed by check_kernel_spec
    if len(sigmas) not in (1, diff.shape[-1]):
        raise ValueError(f"{len(sigmas)} bandwidths given for labels with {diff.shape[-1]} dims")
    # Python scalars, not a tensor built from them: no host-to-device copy, no sync.
    if len(sigmas) == 1:
        return _SCALED_KERNELS[name](diff / sigmas[0])
    scaled = torch.stack([diff[..., d] / s for d, s in enumerate(sigmas)], dim=-1)
    return _SCALED_KERNELS[name](scaled)
