"""Snakemake script of rule figure_auc: Figure 1, test AUC against N_target per cohort."""

from yaware.evaluate.figures import run_figure_auc
from yaware.workflow.logged import run_logged

run_logged(
    snakemake.log[0],
    run_figure_auc,
    linear=snakemake.input.linear,
    finetune=snakemake.input.finetune,
    out=snakemake.output[0],
    panels=snakemake.params.panels,
    config=snakemake.params.config,
)
