"""Snakemake script: the raw-voxel floor, PCA of the masked grey matter.

Fitted on the pretraining cohorts' training rows only (like a pretrained encoder), then
applied to every cohort.
"""

import numpy as np

from yaware.io import save_npy
from yaware.participants import read_table, row_positions
from yaware.probes import fit_voxel_pca, voxel_pca_features
from yaware.workflow import run_logged


def main(
    data: list[str], participants: list[str], splits: list[str], outputs: list[str], components: int
) -> None:
    sources = []
    for array, table_path, split_path in zip(data, participants, splits, strict=False):
        table, split = read_table(table_path), read_table(split_path)
        sources.append(
            (array, np.sort(row_positions(table, split[split["split"] == "train"], split_path)))
        )
    pca, mask = fit_voxel_pca(sources, components)
    for array, out in zip(data, outputs, strict=True):
        save_npy(out, voxel_pca_features(pca, mask, array))


run_logged(
    snakemake.log[0],
    main,
    list(snakemake.input.data),
    list(snakemake.input.participants),
    list(snakemake.input.split),
    list(snakemake.output),
    snakemake.params.components,
)
