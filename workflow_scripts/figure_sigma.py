"""Snakemake script of rule figure_sigma: Figure 3, AUC and age MAE against sigma."""

from yaware.evaluate.figures import run_figure_sigma
from yaware.workflow.logged import run_logged

run_logged(
    snakemake.log[0],
    run_figure_sigma,
    linear=snakemake.input.linear,
    age_site=snakemake.input.age_site,
    out=snakemake.output[0],
    config=snakemake.params.config,
)
