"""Losses against literal float64 references written here, closed forms and invariances."""

import math

import numpy as np
import pytest
import torch

from yaware.errors import ConfigError
from yaware.losses import (
    KERNEL_LOSSES,
    DecoupledUniformityLoss,
    ExpWInfoNCE,
    NTXentLoss,
    RankNContrastLoss,
    YAwareInfoNCE,
    label_kernel,
)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _ref_kernel(ya, yb, name: str, sigma) -> float:
    """One kernel value, transcribed from the formulas (float64, loops)."""
    ya, yb = np.atleast_1d(ya).astype(float), np.atleast_1d(yb).astype(float)
    if name == "categorical":
        return float(np.all(ya == yb))
    u = (ya - yb) / np.broadcast_to(np.asarray(sigma, float), ya.shape)
    sq = float(np.sum(u**2))
    return {
        "gaussian": math.exp(-sq / 2),
        "exponential": math.exp(-float(np.sum(np.abs(u)))),
        "epanechnikov": max(0.0, 1 - sq),
        "cauchy": 1 / (1 + sq),
        "linear": max(0.0, 1 - math.sqrt(sq)),
        "cosine": math.cos(math.pi * math.sqrt(sq) / 2) if sq < 1 else 0.0,
    }[name]


def _ref_loss(z1, z2, y, sigma, tau, kernel="gaussian", normalisation="row", method="yaware"):
    """The paper's formula with explicit loops over anchors and positives."""
    z = np.concatenate([z1, z2]).astype(np.float64)
    labels = np.concatenate([y, y])
    n2 = len(z)
    s = np.array([[_cos(z[a], z[b]) / tau for b in range(n2)] for a in range(n2)])
    k = np.zeros((n2, n2))
    for a in range(n2):
        for b in range(n2):
            if a != b:
                k[a, b] = _ref_kernel(labels[a], labels[b], kernel, sigma)
    row_sums = k.sum(axis=1)
    w = k / (row_sums[:, None] if normalisation == "row" else row_sums[None, :])
    total = 0.0
    for a in range(n2):
        for b in range(n2):
            if a == b or w[a, b] == 0:
                continue
            others = [c for c in range(n2) if c != a]
            if method == "yaware":
                denom = sum(math.exp(s[a, c]) for c in others)
            elif method == "expw":
                denom = sum(math.exp(s[a, c] * (1 - k[a, c])) for c in others)
            else:  # threshold
                denom = math.exp(s[a, b]) + sum(
                    math.exp(s[a, c]) for c in others if k[a, c] < k[a, b]
                )
            total += w[a, b] * (s[a, b] - math.log(denom))
    return -total / (n2 // 2)


def _original_code_loss(z1, z2, y, sigma, tau):
    """The original repository's computation, re-expressed in numpy (column normalisation)."""
    n = len(z1)
    zi = z1 / np.linalg.norm(z1, axis=1, keepdims=True)
    zj = z2 / np.linalg.norm(z2, axis=1, keepdims=True)
    sii, sjj, sij = (
        zi @ zi.T / tau - 1e8 * np.eye(n),
        zj @ zj.T / tau - 1e8 * np.eye(n),
        zi @ zj.T / tau,
    )
    sim = np.block([[sii, sij], [sij.T, sjj]])
    labels = np.concatenate([y, y]).reshape(2 * n, -1)
    sq = ((labels[:, None, :] - labels[None, :, :]) ** 2).sum(-1)
    weights = np.exp(-sq / (2 * sigma**2)) * (1 - np.eye(2 * n))
    weights /= weights.sum(axis=1)
    log_sim = (
        sim
        - np.log(np.exp(sim - sim.max(1, keepdims=True)).sum(1, keepdims=True))
        - sim.max(1, keepdims=True)
    )
    return float(-1.0 / n * (weights * log_sim).sum())


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    n, d = 6, 5
    return rng.normal(size=(n, d)), rng.normal(size=(n, d)), rng.uniform(20, 80, size=n)


@pytest.mark.parametrize(
    "kernel", ["gaussian", "exponential", "epanechnikov", "cauchy", "linear", "cosine"]
)
@pytest.mark.parametrize("normalisation", ["row", "column"])
@pytest.mark.parametrize("method", list(KERNEL_LOSSES))
@pytest.mark.parametrize("ties", [False, True])
def test_matches_float64_reference(batch, kernel, normalisation, method, ties):
    z1, z2, y = batch
    if ties:  # equal labels: equal kernel values, where threshold's strict < matters
        y = np.round(y / 20) * 20
        assert len(np.unique(y)) < len(y)
    sigma, tau = 15.0, 0.1  # wide enough that epanechnikov keeps several neighbours
    expected = _ref_loss(z1, z2, y, sigma, tau, kernel, normalisation, method)
    loss = KERNEL_LOSSES[method](sigma, tau, kernel=kernel, normalisation=normalisation)
    got = loss(*(torch.tensor(a) for a in (z1, z2, y)))
    assert got.dtype == torch.float64
    assert float(got) == pytest.approx(expected, rel=1e-10, abs=1e-10)


def test_column_normalisation_reproduces_original_code(batch):
    z1, z2, y = batch
    original = _original_code_loss(z1, z2, y, sigma=5.0, tau=0.1)
    ours_col = YAwareInfoNCE(5.0, 0.1, normalisation="column")(*map(torch.tensor, (z1, z2, y)))
    ours_row = YAwareInfoNCE(5.0, 0.1, normalisation="row")(*map(torch.tensor, (z1, z2, y)))
    assert float(ours_col) == pytest.approx(original, rel=1e-9)
    # Row and column weights differ for these ages, so the two options are not the same loss.
    assert abs(float(ours_row) - original) > 1e-4


def test_float32_close_to_reference(batch):
    z1, z2, y = batch
    got = YAwareInfoNCE(5.0, 0.1)(*(torch.tensor(a, dtype=torch.float32) for a in batch))
    assert got.dtype == torch.float32
    assert float(got) == pytest.approx(_ref_loss(z1, z2, y, 5.0, 0.1), rel=1e-5)


@pytest.mark.parametrize("n", [2, 5, 16])
def test_sigma_to_zero_is_ntxent(n):
    gen = torch.Generator().manual_seed(n)
    z1, z2 = torch.randn(n, 32, generator=gen), torch.randn(n, 32, generator=gen)
    ages = torch.randperm(60, generator=gen)[:n].float() + 20  # distinct labels
    yaware = YAwareInfoNCE(sigma=1e-3, temperature=0.1)(z1, z2, ages)
    simclr = NTXentLoss(0.1)(z1, z2)
    assert torch.allclose(yaware, simclr, atol=1e-6, rtol=0)


def test_ntxent_closed_form_on_identical_embeddings():
    n = 7
    z = torch.ones(n, 3)
    # Every anchor sees 2N - 1 equally likely candidates: loss = 2N log(2N-1) / N.
    assert float(NTXentLoss(0.5)(z, z)) == pytest.approx(2 * math.log(2 * n - 1), rel=1e-6)


def test_categorical_kernel_is_supervised_contrastive():
    gen = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(6, 4, generator=gen), torch.randn(6, 4, generator=gen)
    cls = torch.tensor([0, 1, 0, 1, 1, 2])
    got = YAwareInfoNCE(None, 0.2, kernel="categorical")(z1, z2, cls)
    # SupCon (L_out): mean over each anchor's positives of -log p, summed over anchors / N.
    z = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=1).double()
    logits = z @ z.T / 0.2
    labels = torch.cat([cls, cls])
    total = 0.0
    for a in range(12):
        denom = sum(math.exp(logits[a, c]) for c in range(12) if c != a)
        positives = [b for b in range(12) if b != a and labels[b] == labels[a]]
        total += sum(-(logits[a, b] - math.log(denom)) for b in positives) / len(positives)
    assert float(got) == pytest.approx(float(total) / 6, rel=1e-5)


def test_product_kernel_over_age_and_sex():
    y = torch.tensor([[30.0, 0], [32.0, 1], [30.0, 0], [70.0, 1]])
    k = label_kernel(y, ("gaussian", "categorical"), (5.0, 1.0))
    for a in range(4):
        for b in range(4):
            expected = _ref_kernel(y[a, 0], y[b, 0], "gaussian", 5.0) * float(y[a, 1] == y[b, 1])
            assert float(k[a, b]) == pytest.approx(expected, rel=1e-6)


def test_vector_labels_use_one_bandwidth_per_dimension():
    y = torch.tensor([[0.0, 0.0], [1.0, 10.0]])
    k = label_kernel(y, "gaussian", (1.0, 10.0))
    assert float(k[0, 1]) == pytest.approx(math.exp(-0.5 * (1 + 1)), rel=1e-6)


def test_permutation_invariance(batch):
    z1, z2, y = (torch.tensor(a) for a in batch)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(3))
    loss = YAwareInfoNCE(5.0)
    assert torch.allclose(loss(z1, z2, y), loss(z1[perm], z2[perm], y[perm]), atol=1e-12)


@pytest.mark.parametrize(
    "loss",
    [
        *(loss(5.0, 0.5) for loss in KERNEL_LOSSES.values()),
        RankNContrastLoss(2.0),
        DecoupledUniformityLoss(5.0),
        DecoupledUniformityLoss(None),
    ],
    ids=[*KERNEL_LOSSES, "rank_n_contrast", "decoupled_uniformity", "decoupled_no_prior"],
)
def test_gradcheck(loss):
    gen = torch.Generator().manual_seed(2)
    z1 = torch.randn(4, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    z2 = torch.randn(4, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    y = torch.tensor([20.0, 25.0, 40.0, 41.0], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a, b: loss(a, b, y), (z1, z2))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_finite_under_low_precision(dtype):
    gen = torch.Generator().manual_seed(4)
    z1, z2 = torch.randn(16, 128, generator=gen), torch.randn(16, 128, generator=gen)
    y = torch.rand(16, generator=gen) * 60 + 20
    loss = YAwareInfoNCE(5.0)
    reference = loss(z1, z2, y)
    low = loss(z1.to(dtype), z2.to(dtype), y)
    assert low.dtype == torch.float32
    assert torch.isfinite(low)
    assert float(low) == pytest.approx(float(reference), rel=2e-2)
    # Under autocast too, where matmuls would otherwise run in low precision.
    head = torch.nn.Linear(128, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = loss(head(z1), head(z2), y)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(head.weight.grad).all()


def test_kernel_computed_on_label_device_without_numpy(batch):
    y = torch.tensor(batch[2])
    k = label_kernel(y, "gaussian", 5.0)
    assert isinstance(k, torch.Tensor) and k.device == y.device
    assert torch.allclose(torch.diagonal(k), torch.ones(len(y), dtype=k.dtype))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sigma": 0.0}, "sigma must be > 0"),
        ({"sigma": -1.0}, "sigma must be > 0"),
        ({"kernel": "gausian"}, "unknown kernel 'gausian'"),
        ({"normalisation": "rows"}, "normalisation must be one of"),
    ],
)
def test_invalid_options_raise_clear_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        YAwareInfoNCE(**{"sigma": 5.0, **kwargs})


def test_loss_decreases_when_positives_are_pulled_together():
    # Pairs of scans share an age far from the others': with a narrow kernel their positives
    # are the other view and the same-age scan. Collapsing each age group onto one direction
    # must lower the loss compared with unrelated embeddings.
    gen = torch.Generator().manual_seed(5)
    ages = torch.tensor([20.0, 20.0, 40.0, 40.0, 60.0, 60.0, 80.0, 80.0])
    centres = torch.randn(4, 16, generator=gen)
    grouped = centres.repeat_interleave(2, dim=0)
    scattered = torch.randn(8, 16, generator=gen)
    for loss in (YAwareInfoNCE(1.0), ExpWInfoNCE(1.0)):
        pulled = loss(grouped + 0.01 * torch.randn(8, 16, generator=gen), grouped, ages)
        apart = loss(scattered, torch.randn(8, 16, generator=gen), ages)
        assert float(pulled) < float(apart)
