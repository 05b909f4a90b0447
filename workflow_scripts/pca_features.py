"""Snakemake script: the raw-voxel floor, PCA of the masked grey matter.

Fitted on the pretraining cohort's training rows only (like a pretrained encoder), then
applied to every cohort.
"""

import numpy as np

from yaware.data import read_table
from yaware.evaluate import row_index
from yaware.io import save_npy
from yaware.probes import fit_voxel_pca, voxel_pca_features
from yaware.workflow import run_logged


def main(
    data: list[str], participants: str, split: str, outputs: list[str], components: int
) -> None:
    table, split_table = read_table(participants), read_table(split)
    train = row_index(table, split_table[split_table["split"] == "train"], split)
    pca, mask = fit_voxel_pca(data[0], np.sort(train), components)
    for array, out in zip(data, outputs, strict=True):
        save_npy(out, voxel_pca_features(pca, mask, array))


run_logged(
    snakemake.log[0],
    main,
    list(snakemake.input.data),
    snakemake.input.participants,
    snakemake.input.split,
    list(snakemake.output),
    snakemake.params.components,
)
