"""Kernel bandwidths from the labels: Scott's and Silverman's rules of thumb.

Per label dimension j, sigma_j = std_j * factor (std with ddof 1), with the factors of
``scipy.stats.gaussian_kde`` (and of nidl's ``KernelMetric``, which keeps the diagonal of
the covariance as here) for n labels of dimension d:

- ``scott``: n ** (-1 / (d + 4))
- ``silverman``: (n (d + 2) / 4) ** (-1 / (d + 4))

A vector label (N, d) gets a vector bandwidth, one sigma per dimension.
"""

import numpy as np

from yaware.errors import ConfigError, DataError

RULES = ("scott", "silverman")


def rule_bandwidth(labels: np.ndarray, rule: str) -> tuple[float, ...]:
    """One bandwidth per label dimension of ``labels`` (N,) or (N, d) by ``rule``."""
    if rule not in RULES:
        raise ConfigError(f"sigma: unknown bandwidth rule {rule!r}; choose one of {RULES}")
    values = np.asarray(labels, dtype=np.float64)
    values = values[:, None] if values.ndim == 1 else values
    n, d = values.shape
    if n < 2:
        raise DataError(f"the {rule} bandwidth needs at least 2 labels, got {n}")
    spread = values.std(axis=0, ddof=1)
    if not (np.isfinite(spread).all() and (spread > 0).all()):
        raise DataError(
            f"the {rule} bandwidth needs labels that vary in every dimension (sd {spread}); "
            "set sigma to a number"
        )
    factor = n ** (-1 / (d + 4)) if rule == "scott" else (n * (d + 2) / 4) ** (-1 / (d + 4))
    return tuple(float(s) for s in spread * factor)
