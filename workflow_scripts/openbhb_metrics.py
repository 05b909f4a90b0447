"""Snakemake script of rule openbhb_metrics: the challenge's metrics of every model."""

from yaware.evaluate.openbhb_metrics import run_openbhb_metrics
from yaware.workflow.logged import run_logged

run_logged(
    snakemake.log[0],
    run_openbhb_metrics,
    inputs={k: list(snakemake.input[k]) for k in ("features", "participants", "splits", "roi")},
    output=snakemake.output[0],
    pairs=snakemake.params.pairs,
    cohorts=snakemake.params.cohorts,
    roi_cohorts=snakemake.params.roi_cohorts,
    models=snakemake.params.models,
    label=snakemake.params.label,
)
