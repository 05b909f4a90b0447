"""Snakemake script of rule shared_scans: scans shared between cohorts, and the leaks."""

from yaware.data.shared_scans import run_shared_scans
from yaware.workflow.logged import run_logged

run_logged(
    snakemake.log[0],
    run_shared_scans,
    manifests=list(snakemake.input.manifests),
    splits=list(snakemake.input.splits),
    cohorts=snakemake.params.cohorts,
    on_leak=snakemake.params.on_leak,
    out=snakemake.output[0],
)
