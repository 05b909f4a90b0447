"""Snakemake script of rule qc_metrics: every scan's marks and corr_mean, or its problem."""

from yaware.data.qc_metrics import run_qc_metrics
from yaware.workflow.logged import run_logged

run_logged(
    snakemake.log[0],
    run_qc_metrics,
    participants=snakemake.input.participants,
    array=snakemake.input.array or None,  # a path, or none for a CAT12 cohort
    metrics_path=snakemake.output.metrics,
    name=snakemake.params.name,
    cohort=snakemake.params.cohort,
    settings=snakemake.params.settings,
    label=snakemake.params.label,
    threads=snakemake.threads,
)
