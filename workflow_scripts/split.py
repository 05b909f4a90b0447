"""Snakemake script of rule split: subject-level splits of one converted cohort."""

from yaware.data.splits import run_split
from yaware.workflow.logged import run_logged

run_logged(
    snakemake.log[0],
    run_split,
    participants=snakemake.input.participants,
    outputs=dict(snakemake.output.items()),
    name=snakemake.params.name,
    cohort=snakemake.params.cohort,
    settings=snakemake.params.settings,
)
