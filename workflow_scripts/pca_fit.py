"""Snakemake script: the raw-voxel floor's PCA of the masked grey matter.

Fitted on the pretraining cohorts' training rows only (like a pretrained encoder); the
pca_features jobs apply it to each cohort.
"""

import numpy as np

from yaware.data.participants import read_table, row_positions
from yaware.evaluate.voxel_pca import fit_voxel_pca, save_voxel_pca
from yaware.workflow.logged import run_logged


def main(
    data: list[str], participants: list[str], splits: list[str], output: str, components: int
) -> None:
    sources = []
    for array, table_path, split_path in zip(data, participants, splits, strict=True):
        table, split = read_table(table_path), read_table(split_path)
        sources.append(
            (array, np.sort(row_positions(table, split[split["split"] == "train"], split_path)))
        )
    pca, mask = fit_voxel_pca(sources, components)
    save_voxel_pca(output, pca, mask)


run_logged(
    snakemake.log[0],
    main,
    list(snakemake.input.data),
    list(snakemake.input.participants),
    list(snakemake.input.split),
    snakemake.output[0],
    snakemake.params.components,
)
