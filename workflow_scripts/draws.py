"""Snakemake script of rule draws: the training draws (N_target x repeat) of one cohort."""

from yaware.data.splits import run_draws
from yaware.workflow.logged import run_logged

run_logged(
    snakemake.log[0],
    run_draws,
    participants=snakemake.input.participants,
    split=snakemake.input.split,
    draws=snakemake.output.draws,
    name=snakemake.params.name,
    task=snakemake.params.task,
    settings=snakemake.params.settings,
)
