"""The raw-voxel floor: PCA of the grey matter, fitted once on the pretraining cohorts'
training scans, saved as plain arrays, then applied to each cohort on its own."""

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.decomposition import IncrementalPCA

from yaware.data.arrays import NpyArray
from yaware.data.participants import read_table, row_positions
from yaware.errors import DataError
from yaware.io import save_npy, write_atomic


@dataclass(frozen=True)
class VoxelPCA:
    """A fitted PCA restricted to the voxels of ``mask`` (one flag per voxel of a scan),
    loaded from the file ``source``."""

    mask: np.ndarray
    mean: np.ndarray
    components: np.ndarray
    source: str

    def transform(self, voxels: np.ndarray) -> np.ndarray:
        """What ``IncrementalPCA.transform`` returns for the masked voxels (no whitening)."""
        return (voxels - self.mean) @ self.components.T


def fit_voxel_pca(
    sources: Sequence[tuple[str | os.PathLike, Sequence[int]]],
    n_components: int = 128,
    batch: int = 256,
) -> tuple[IncrementalPCA, np.ndarray]:
    """PCA of the grey matter (voxels whose mean map exceeds 10 % of its maximum), fitted by
    batches on the given rows of one or more arrays; returns the model and the voxel mask."""
    scans = [(NpyArray(array), int(row)) for array, rows in sources for row in rows]
    mean = sum(data.row(row).astype(np.float64) for data, row in scans) / len(scans)
    mask = (mean > 0.1 * mean.max()).ravel()
    n_components = min(n_components, len(scans) - 1, int(mask.sum()))
    pca = IncrementalPCA(n_components=n_components)
    # Batches of about `batch` scans, none under n_components (IncrementalPCA needs that
    # many rows per batch): a short last batch is spread over the others, so each scan is
    # seen once.
    n_batches = max(1, len(scans) // max(batch, n_components))
    for chunk in np.array_split(np.arange(len(scans)), n_batches):
        pca.partial_fit(np.stack([scans[i][0].row(scans[i][1]).ravel()[mask] for i in chunk]))
    return pca, mask


def save_voxel_pca(target: str | os.PathLike, pca: IncrementalPCA, mask: np.ndarray) -> None:
    arrays = {
        "mask": mask,
        "mean": pca.mean_,
        "components": pca.components_,
        "explained_variance_ratio": pca.explained_variance_ratio_,
        "n_samples_seen": np.asarray(pca.n_samples_seen_),
    }
    write_atomic(target, lambda handle: np.savez(handle, **arrays))


def load_voxel_pca(path: str | os.PathLike) -> VoxelPCA:
    fix = "delete it and rerun the workflow, which fits it again (rule pca_fit)"
    try:
        saved = np.load(path, allow_pickle=False)
        if not isinstance(saved, np.lib.npyio.NpzFile):
            raise ValueError("an array, not an npz archive")
        with saved:
            pca = VoxelPCA(saved["mask"], saved["mean"], saved["components"], str(path))
    except (OSError, EOFError, ValueError, KeyError) as err:
        raise DataError(f"{path} is not a saved voxel PCA ({err}): {fix}") from None
    n_voxels = int(pca.mask.sum())
    if (
        pca.mask.dtype != bool
        or pca.mean.shape != (n_voxels,)
        or pca.components.shape[1:] != (n_voxels,)
    ):
        raise DataError(f"{path}: its mask, mean and components do not agree: {fix}")
    return pca


def voxel_pca_features(pca: VoxelPCA, array: str | os.PathLike, batch: int = 256) -> np.ndarray:
    """Every scan of ``array`` in the PCA's coordinates, float32, read by batches."""
    data = NpyArray(array)
    n_voxels = int(np.prod(data.shape[1:]))
    if n_voxels != len(pca.mask):
        raise DataError(
            f"{array}: scans of {n_voxels} voxels ({'x'.join(map(str, data.shape[2:]))}), but "
            f"{pca.source} was fitted on scans of {len(pca.mask)}: convert every cohort on the "
            "pretraining cohorts' grid (the same voxel_mm)"
        )
    out = np.empty((len(data), len(pca.components)), np.float32)
    for start in range(0, len(data), batch):
        rows = range(start, min(start + batch, len(data)))
        out[start : start + len(rows)] = pca.transform(
            data.rows(rows).reshape(len(rows), -1)[:, pca.mask]
        )
    return out


def run_pca_fit(
    data: list[str], participants: list[str], splits: list[str], output: str, components: int
) -> None:
    """The pca_fit job: the floor's PCA, fitted on the pretraining cohorts' training rows
    only (like a pretrained encoder); the pca_features jobs apply it to each cohort."""
    sources = []
    for array, table_path, split_path in zip(data, participants, splits, strict=True):
        table, split = read_table(table_path), read_table(split_path)
        rows = row_positions(table, split[split["split"] == "train"], split_path)
        sources.append((array, np.sort(rows)))
    pca, mask = fit_voxel_pca(sources, components)
    save_voxel_pca(output, pca, mask)


def run_pca_features(fit: str, data: str, output: str) -> None:
    """The pca_features job: one cohort in the coordinates of the floor's PCA."""
    save_npy(output, voxel_pca_features(load_voxel_pca(fit), data))
