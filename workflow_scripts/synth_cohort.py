"""Snakemake script of rule synth_cohort: simulate one synthetic CAT12 cohort."""

from yaware.data.synth import run_synth_cohort
from yaware.workflow.logged import run_logged

run_logged(
    snakemake.log[0],
    run_synth_cohort,
    participants=snakemake.output.participants,
    name=snakemake.params.name,
    spec=snakemake.params.spec,
    voxel_mm=snakemake.params.voxel_mm,
    seed=snakemake.params.seed,
    brain_age_gap=snakemake.params.brain_age_gap,
    threads=snakemake.threads,
)
