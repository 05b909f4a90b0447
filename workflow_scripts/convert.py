"""Snakemake script of rule convert: stream one cohort's QC-passing maps into data.npy."""

from yaware.data.convert import run_convert
from yaware.workflow.logged import run_logged

run_logged(
    snakemake.log[0],
    run_convert,
    metrics=snakemake.input.metrics,
    passed=snakemake.input.passed,
    participants=snakemake.input.participants,
    array=snakemake.input.array or None,  # a path, or none for a CAT12 cohort
    data=snakemake.output.data,
    cohort=snakemake.params.cohort,
    settings=snakemake.params.settings,
    threads=snakemake.threads,
)
