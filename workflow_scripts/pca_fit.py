"""Snakemake script of rule pca_fit: the raw-voxel floor's PCA of the masked grey matter."""

from yaware.evaluate.voxel_pca import run_pca_fit
from yaware.workflow.logged import run_logged

run_logged(
    snakemake.log[0],
    run_pca_fit,
    data=list(snakemake.input.data),
    participants=list(snakemake.input.participants),
    splits=list(snakemake.input.split),
    output=snakemake.output[0],
    components=snakemake.params.components,
)
