"""Snakemake script: one cohort in the coordinates of the raw-voxel floor's PCA."""

from yaware.evaluate.voxel_pca import load_voxel_pca, voxel_pca_features
from yaware.io import save_npy
from yaware.workflow.logged import run_logged


def main(fit: str, data: str, output: str) -> None:
    save_npy(output, voxel_pca_features(load_voxel_pca(fit), data))


run_logged(snakemake.log[0], main, snakemake.input.fit, snakemake.input.data, snakemake.output[0])
