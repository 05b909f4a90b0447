"""Snakemake script of rule figure_umap: Figure 2, UMAP of one cohort's representations."""

from yaware.evaluate.figures import run_figure_umap
from yaware.workflow.logged import run_logged

run_logged(
    snakemake.log[0],
    run_figure_umap,
    features=list(snakemake.input.features),
    participants=snakemake.input.participants,
    out=snakemake.output[0],
    titles=snakemake.params.titles,
    task=snakemake.params.task,
    settings=snakemake.params.settings,
    cohort=snakemake.params.cohort,
    pretraining=snakemake.params.pretraining,
)
