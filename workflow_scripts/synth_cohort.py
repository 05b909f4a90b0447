"""Snakemake script: simulate one synthetic CAT12 cohort."""

from pathlib import Path

from yaware.data.synth import CohortSpec, SimulationSettings, write_cohort
from yaware.workflow.logged import run_logged


def main(
    participants: str,
    name: str,
    spec: dict,
    voxel_mm: float,
    seed: int,
    brain_age_gap: dict,
    threads: int,
) -> None:
    fields = {k: tuple(v) if k == "age_range" else v for k, v in spec.items() if k != "role"}
    settings = SimulationSettings(voxel_mm=voxel_mm, brain_age_gap=brain_age_gap, threads=threads)
    write_cohort(Path(participants).parent, CohortSpec(name=name, seed=seed, **fields), settings)


run_logged(
    snakemake.log[0],
    main,
    snakemake.output.participants,
    snakemake.wildcards.synthetic,
    snakemake.params.spec,
    snakemake.params.voxel_mm,
    snakemake.params.seed,
    snakemake.params.brain_age_gap,
    snakemake.threads,
)
