"""Alignment and uniformity (Wang & Isola, ICML 2020) against loops over their definitions."""

import math

import numpy as np
import pytest
import torch

from yaware.evaluate.alignment_uniformity import alignment, uniformity


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_they_match_their_definitions():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(9, 6)), rng.normal(size=(9, 6))
    ua, ub = _unit(a), _unit(b)
    expected_alignment = sum(float(np.sum((ua[i] - ub[i]) ** 2)) for i in range(9)) / 9
    pairs = [(i, j) for i in range(9) for j in range(i + 1, 9)]
    potentials = [math.exp(-2 * float(np.sum((ua[i] - ua[j]) ** 2))) for i, j in pairs]
    expected_uniformity = math.log(sum(potentials) / len(pairs))
    got_a = alignment(torch.tensor(3.0 * a), torch.tensor(b))  # scale-free: normalised first
    assert got_a == pytest.approx(expected_alignment, rel=1e-12)
    assert uniformity(torch.tensor(a)) == pytest.approx(expected_uniformity, rel=1e-12)


def test_their_extremes():
    z = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    assert alignment(z, z) == 0.0 and alignment(z, -z) == pytest.approx(4.0)
    assert uniformity(z) == pytest.approx(-8.0)  # two antipodal points: d^2 = 4
    assert uniformity(torch.ones(5, 3)) == pytest.approx(0.0)  # one point: no spread
