"""The raw-voxel PCA floor, fitted by batches over the rows of several arrays."""

import numpy as np
import pytest

from yaware.probes import fit_voxel_pca


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
