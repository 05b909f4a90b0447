"""Snakemake script of rule pca_features: one cohort in the floor's PCA coordinates."""

from yaware.evaluate.voxel_pca import run_pca_features
from yaware.workflow.logged import run_logged

run_logged(
    snakemake.log[0],
    run_pca_features,
    fit=snakemake.input.fit,
    data=snakemake.input.data,
    output=snakemake.output[0],
)
