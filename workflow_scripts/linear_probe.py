"""Snakemake script of rule linear_probe: one model on one evaluation cohort's task."""

from yaware.evaluate.tasks import run_linear_probe
from yaware.workflow.logged import run_logged

run_logged(
    snakemake.log[0],
    run_linear_probe,
    inputs={k: snakemake.input[k] for k in ("features", "participants", "split", "draws")},
    output=snakemake.output[0],
    cohort=snakemake.params.cohort,
    task=snakemake.params.task,
    probe=snakemake.params.probe,
)
