"""Snakemake script of rule qc: the QC thresholds on one cohort's metrics."""

from yaware.data.qc import run_qc
from yaware.workflow.logged import run_logged

run_logged(
    snakemake.log[0],
    run_qc,
    metrics=snakemake.input.metrics,
    table=snakemake.output.table,
    passed=snakemake.output.passed,
    figure=snakemake.output.figure,
    name=snakemake.params.name,
    thresholds=snakemake.params.thresholds,
    require_tiv=snakemake.params.require_tiv,
)
