"""Snakemake script of rule figure_age_curve: Figure 4, validation age MAE per epoch."""

from yaware.evaluate.figures import run_figure_age_curve
from yaware.workflow.logged import run_logged

run_logged(
    snakemake.log[0],
    run_figure_age_curve,
    metrics=list(snakemake.input.metrics),
    labels=snakemake.params.labels,
    seeds=snakemake.params.seeds,
    floors=dict(zip(snakemake.params.floor_labels, snakemake.input.floors, strict=True)),
    out=snakemake.output[0],
    pretraining=snakemake.params.pretraining,
)
