"""Rank-N-Contrast and decoupled uniformity against float64 transcriptions of their papers'
equations (numpy, explicit loops), on random batches with and without tied labels, and
their limiting cases."""

import math

import numpy as np
import pytest
import torch

from yaware.errors import ConfigError
from yaware.losses import DecoupledUniformityLoss, NTXentLoss, RankNContrastLoss, ThresholdInfoNCE


def _rnc_reference(z1, z2, y, tau) -> float:
    """Zha et al. (NeurIPS 2023), eq. 2-3: for anchor i and each other view j, the views k
    with d(y_i, y_k) >= d(y_i, y_j) form the denominator; s = -||z_i - z_k||_2 / tau."""
    z = np.concatenate([z1, z2]).astype(np.float64)
    labels = np.concatenate([y, y]).astype(np.float64).reshape(len(z), -1)
    m = len(z)
    total = 0.0
    for i in range(m):
        for j in range(m):
            if j == i:
                continue
            d_ij = float(np.sum(np.abs(labels[i] - labels[j])))
            s_ij = -float(np.linalg.norm(z[i] - z[j])) / tau
            denominator = 0.0
            for k in range(m):
                if k != i and float(np.sum(np.abs(labels[i] - labels[k]))) >= d_ij:
                    denominator += math.exp(-float(np.linalg.norm(z[i] - z[k])) / tau)
            total += s_ij - math.log(denominator)
    return -total / (m * (m - 1))


def _du_reference(z1, z2, y, sigma, lam, t=2.0) -> float:
    """Dufumier et al. (ICML 2023): centroids of the normalised views, estimated through
    the kernel ridge weights alpha = (K + lambda I)^-1 K when a prior is given; the log of
    the mean Gaussian potential over pairs of distinct scans."""
    n = len(z1)
    centroids = []
    for i in range(n):
        a = z1[i] / np.linalg.norm(z1[i])
        b = z2[i] / np.linalg.norm(z2[i])
        centroids.append((a + b) / 2)
    mu = np.array(centroids, dtype=np.float64)
    if sigma is not None:
        gram = np.empty((n, n))
        for i in range(n):
            for j in range(n):
                gram[i, j] = math.exp(-((y[i] - y[j]) ** 2) / (2 * sigma**2))
        alpha = np.linalg.inv(gram + lam * np.eye(n)) @ gram
        mu = np.array([sum(alpha[i, j] * mu[j] for j in range(n)) for i in range(n)])
    potentials = [
        math.exp(-t * float(np.sum((mu[i] - mu[j]) ** 2)))
        for i in range(n)
        for j in range(n)
        if i != j
    ]
    return math.log(sum(potentials) / len(potentials))


def _batch(seed: int, n: int = 7, d: int = 5, ties: bool = False):
    rng = np.random.default_rng(seed)
    y = rng.uniform(20, 80, size=n)
    if ties:
        y = np.round(y / 15) * 15
        assert len(np.unique(y)) < n
    return rng.normal(size=(n, d)), rng.normal(size=(n, d)), y


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("tau", [0.5, 2.0])
def test_rank_n_contrast_matches_its_equation(seed, ties, tau):
    z1, z2, y = _batch(seed, ties=ties)
    got = RankNContrastLoss(tau)(*(torch.tensor(a) for a in (z1, z2, y)))
    assert got.dtype == torch.float64
    assert float(got) == pytest.approx(_rnc_reference(z1, z2, y, tau), abs=1e-6, rel=1e-6)


def test_rank_n_contrast_with_two_distinct_labels():
    # Two scans, two labels: a view's own other view (d = 0) is contrasted with all three
    # other views, each view of the other scan with that scan's two views only.
    rng = np.random.default_rng(3)
    z1, z2 = rng.normal(size=(2, 4)), rng.normal(size=(2, 4))
    z = np.concatenate([z1, z2])
    s = -np.linalg.norm(z[:, None] - z[None], axis=-1) / 2.0
    same = {0: 2, 1: 3, 2: 0, 3: 1}
    total = 0.0
    for i in range(4):
        others = [k for k in range(4) if k != i]
        farther = [k for k in others if k != same[i]]  # the other scan's views
        total += s[i, same[i]] - np.log(np.exp(s[i, others]).sum())
        for j in farther:
            total += s[i, j] - np.log(np.exp(s[i, farther]).sum())
    got = RankNContrastLoss(2.0)(torch.tensor(z1), torch.tensor(z2), torch.tensor([30.0, 60.0]))
    assert float(got) == pytest.approx(-total / 12, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("sigma", [None, 5.0, 30.0])
def test_decoupled_uniformity_matches_its_equation(seed, ties, sigma):
    z1, z2, y = _batch(seed, ties=ties)
    got = DecoupledUniformityLoss(sigma, prior_lambda=0.05)(*(torch.tensor(a) for a in (z1, z2, y)))
    assert got.dtype == torch.float64
    expected = _du_reference(z1, z2, y, sigma, 0.05)
    assert float(got) == pytest.approx(expected, abs=1e-6, rel=1e-6)


def test_decoupled_uniformity_without_a_prior_is_the_limit_of_a_vanishing_ridge():
    z1, z2, y = (torch.tensor(a) for a in _batch(4))
    free = DecoupledUniformityLoss(None)(z1, z2, y)
    assert float(DecoupledUniformityLoss(5.0, prior_lambda=1e-10)(z1, z2, y)) == pytest.approx(
        float(free), abs=1e-6
    )
    # A real prior moves the centroids of scans of similar age together: another loss.
    assert abs(float(DecoupledUniformityLoss(5.0, prior_lambda=0.01)(z1, z2, y) - free)) > 1e-3


def test_threshold_with_a_vanishing_bandwidth_is_ntxent():
    # Distinct labels and sigma -> 0: the only positive is the other view, and every other
    # view is weaker in label, so the denominator is SimCLR's.
    gen = torch.Generator().manual_seed(5)
    z1, z2 = torch.randn(9, 16, generator=gen), torch.randn(9, 16, generator=gen)
    ages = torch.randperm(60, generator=gen)[:9].float() + 20
    got = ThresholdInfoNCE(sigma=1e-3, temperature=0.1)(z1, z2, ages)
    assert torch.allclose(got, NTXentLoss(0.1)(z1, z2), atol=1e-6, rtol=0)


def test_bad_settings_are_named():
    with pytest.raises(ConfigError, match="prior_lambda"):
        DecoupledUniformityLoss(5.0, prior_lambda=0.0)
    with pytest.raises(ValueError, match="temperature"):
        RankNContrastLoss(0.0)
