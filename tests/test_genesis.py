"""Model Genesis corruptions: shape kept, the right voxels changed, reproducible."""

import numpy as np
import pytest
import torch

from yaware.augment.genesis import (
    GenesisCorruption,
    LocalShuffle,
    NonLinearIntensity,
    Painting,
    min_max,
)

SHAPE = (12, 14, 10)


def _batch(n: int = 4) -> torch.Tensor:
    return min_max(torch.rand(n, 1, *SHAPE, generator=torch.Generator().manual_seed(0)))


def test_nonlinear_intensity_is_a_monotone_map_of_each_scan():
    x = _batch()
    transform = NonLinearIntensity(p=1.0)
    params = transform.sample_params(4, torch.Generator().manual_seed(1))
    out = transform.apply(x.clone(), params)
    assert out.shape == x.shape and (out >= 0).all() and (out <= 1).all()
    for b in range(4):
        order = x[b].flatten().argsort()
        mapped = out[b].flatten()[order]
        steps = mapped.diff()
        assert (steps >= -1e-6).all() if not params["decreasing"][b] else (steps <= 1e-6).all()
        assert not torch.allclose(mapped, x[b].flatten()[order], atol=1e-3)


def test_nonlinear_intensity_follows_its_bezier_curve():
    """Each voxel lands on the scan's curve, here drawn densely in float64 (the transform
    reads a 16,385-entry table of it), for the sampled curves, steep or flat, both ways."""
    transform = NonLinearIntensity(p=1.0)
    params = transform.sample_params(32, torch.Generator().manual_seed(4))
    x = torch.rand(32, 1, *SHAPE, generator=torch.Generator().manual_seed(5))
    x[:, 0, 0, 0, :2] = torch.tensor([0.0, 1.0])
    out = transform.apply(x.clone(), params)
    t = np.linspace(0, 1, 200_001)[:, None]
    weights = np.hstack([(1 - t) ** 3, 3 * t * (1 - t) ** 2, 3 * t**2 * (1 - t), t**3])
    assert params["decreasing"].any() and (~params["decreasing"]).any()
    for b in range(32):
        points = np.vstack([[0, 0], params["control"][b].double().numpy(), [1, 1]])
        curve_x, curve_y = (weights @ points).T
        if params["decreasing"][b]:
            curve_y = curve_y[::-1]
        expected = np.interp(x[b].double().numpy().ravel(), curve_x, curve_y)
        np.testing.assert_allclose(out[b].double().numpy().ravel(), expected, atol=2e-3)


@pytest.mark.parametrize(
    ("transform", "low", "high", "min_side"),
    [
        (LocalShuffle(SHAPE, n_blocks=50), 0.02, 0.1, 2),
        (Painting(SHAPE, max_boxes=50), 0.15, 0.4, 1),
    ],
)
def test_boxes_lie_inside_the_scan_with_sides_in_range(transform, low, high, min_side):
    boxes = transform.sample_params(64, torch.Generator().manual_seed(6))["boxes"]
    corners, sizes = boxes[..., :3], boxes[..., 3:]
    sides = torch.tensor(SHAPE)
    assert boxes.dtype == torch.int64 and boxes.shape == (64, 50, 6)
    assert (corners >= 0).all() and (corners + sizes <= sides).all()
    smallest = (sides * low).round().clamp(min=min_side)
    largest = (sides * high).round().clamp(min=min_side)
    assert (sizes >= smallest).all() and (sizes <= largest).all()
    # Placed anywhere: some box touches each face of the scan.
    assert (corners == 0).any(dim=(0, 1)).all() and (corners + sizes == sides).any(dim=(0, 1)).all()


def test_local_shuffle_permutes_voxels_inside_blocks_only():
    x = _batch()
    transform = LocalShuffle(SHAPE, n_blocks=5, p=1.0)
    params = transform.sample_params(4, torch.Generator().manual_seed(2))
    out = transform.apply(x.clone(), params)
    for b in range(4):
        inside = torch.zeros(SHAPE, dtype=torch.bool)
        for i, j, k, sx, sy, sz in params["boxes"][b].tolist():
            inside[i : i + sx, j : j + sy, k : k + sz] = True
        assert torch.equal(out[b, 0][~inside], x[b, 0][~inside])
        assert torch.equal(out[b].flatten().sort().values, x[b].flatten().sort().values)
        assert not torch.equal(out[b], x[b])


def test_painting_replaces_inside_or_outside_the_boxes():
    x = _batch(8)
    transform = Painting(SHAPE, p=1.0, inpaint_share=0.5)
    params = transform.sample_params(8, torch.Generator().manual_seed(3))
    out = transform.apply(x.clone(), params)
    assert params["inpaint"].any() and (~params["inpaint"]).any()
    for b in range(8):
        inside = torch.zeros(SHAPE, dtype=torch.bool)
        for i, j, k, sx, sy, sz in params["boxes"][b][: int(params["counts"][b])].tolist():
            inside[i : i + sx, j : j + sy, k : k + sz] = True
        kept = ~inside if params["inpaint"][b] else inside
        assert torch.equal(out[b, 0][kept], x[b, 0][kept])
        assert not torch.equal(out[b, 0][~kept], x[b, 0][~kept])


def test_corruption_is_reproducible_from_a_seed_and_keeps_the_input():
    x = _batch()
    before = x.clone()
    a, b = GenesisCorruption(SHAPE, seed=5)(x), GenesisCorruption(SHAPE, seed=5)(x)
    assert torch.equal(a, b) and a.shape == x.shape and torch.equal(x, before)
    assert not torch.equal(a, GenesisCorruption(SHAPE, seed=6)(x))
