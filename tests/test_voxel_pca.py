"""The raw-voxel PCA floor, fitted by batches over the rows of several arrays."""

import numpy as np
import pytest

from yaware.errors import DataError
from yaware.evaluate.voxel_pca import (
    fit_voxel_pca,
    load_voxel_pca,
    save_voxel_pca,
    voxel_pca_features,
)


@pytest.mark.parametrize(("n_rows", "batch"), [(50, 16), (47, 16), (20, 64), (33, 5)])
def test_pca_sees_every_scan_once(tmp_path, n_rows, batch):
    """Before, a last batch shorter than n_components was refilled with scans already
    seen, which then counted twice in the mean and the covariance."""
    rng = np.random.default_rng(0)
    # three strong directions over a little noise, on a positive mean map
    directions = rng.normal(size=(3, 80))
    weights = rng.normal(size=(n_rows, 3)) * [10.0, 6.0, 3.0]
    flat = 20.0 + weights @ directions + rng.normal(scale=0.1, size=(n_rows, 80))
    scans = flat.reshape(n_rows, 1, 4, 5, 4).astype(np.float32)
    first, second = tmp_path / "a.npy", tmp_path / "b.npy"
    np.save(first, scans[:30])
    np.save(second, scans[30:])
    rows_a, rows_b = list(range(0, min(30, n_rows), 1)), list(range(max(0, n_rows - 30)))
    pca, mask = fit_voxel_pca([(first, rows_a), (second, rows_b)], n_components=8, batch=batch)
    chosen = np.concatenate([scans[:30][rows_a], scans[30:][rows_b]]).reshape(-1, 80)[:, mask]
    assert pca.n_samples_seen_ == len(chosen)
    np.testing.assert_allclose(pca.mean_, chosen.mean(0), rtol=1e-5)
    # the leading components span the planted directions, as a full PCA finds them
    top = np.linalg.svd(chosen - chosen.mean(0), full_matrices=False)[2][:3]
    overlap = np.linalg.svd(top @ pca.components_[:3].T, compute_uv=False)
    assert overlap.min() > 0.999


def _scans(tmp_path, name: str, n_rows: int, grid=(4, 5, 4), seed: int = 0):
    rng = np.random.default_rng(seed)
    scans = (20.0 + rng.normal(size=(n_rows, 1, *grid))).astype(np.float32)
    path = tmp_path / f"{name}.npy"
    np.save(path, scans)
    return path, scans


def test_a_saved_pca_gives_what_the_fitted_one_gives_on_another_cohort(tmp_path):
    """The fit and its use are separate jobs: the saved arrays must transform a cohort the
    fit never saw exactly as scikit-learn's fitted model does."""
    train, _ = _scans(tmp_path, "train", 40)
    other, other_scans = _scans(tmp_path, "other", 13, seed=1)
    pca, mask = fit_voxel_pca([(train, range(40))], n_components=6, batch=16)
    save_voxel_pca(tmp_path / "fit.npz", pca, mask)
    loaded = load_voxel_pca(tmp_path / "fit.npz")
    features = voxel_pca_features(loaded, other, batch=5)
    expected = pca.transform(other_scans.reshape(13, -1)[:, mask])
    assert features.shape == (13, 6) and features.dtype == np.float32
    np.testing.assert_allclose(features, expected, rtol=1e-4, atol=1e-4)


def test_a_cohort_on_another_grid_is_named_with_the_fix(tmp_path):
    train, _ = _scans(tmp_path, "train", 20)
    coarse, _ = _scans(tmp_path, "coarse", 5, grid=(3, 4, 3))
    pca, mask = fit_voxel_pca([(train, range(20))], n_components=4)
    save_voxel_pca(tmp_path / "fit.npz", pca, mask)
    with pytest.raises(DataError, match=r"coarse\.npy: scans of 36 voxels \(3x4x3\).*voxel_mm"):
        voxel_pca_features(load_voxel_pca(tmp_path / "fit.npz"), coarse)


@pytest.mark.parametrize("content", [b"", b"not an npz", "array", "npz"])
def test_a_damaged_pca_file_is_named_with_the_fix(tmp_path, content):
    path = tmp_path / "fit.npz"
    if content == "npz":  # an archive without the PCA's arrays
        np.savez(path, mask=np.ones(4, bool))
    elif content == "array":  # a plain .npy under the archive's name
        with open(path, "wb") as handle:
            np.save(handle, np.ones(4))
    else:
        path.write_bytes(content)
    with pytest.raises(DataError, match=r"fit\.npz is not a saved voxel PCA .*rule pca_fit"):
        load_voxel_pca(path)


def test_a_pca_file_whose_arrays_disagree_is_named_with_the_fix(tmp_path):
    path = tmp_path / "fit.npz"
    np.savez(path, mask=np.ones(4, bool), mean=np.zeros(3), components=np.zeros((2, 4)))
    with pytest.raises(DataError, match=r"fit\.npz: its mask, mean and components do not agree"):
        load_voxel_pca(path)
