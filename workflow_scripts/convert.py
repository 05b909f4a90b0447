"""Snakemake script: stream one cohort's QC-passing maps into data.npy."""

from pathlib import Path

from yaware.data.convert import ConversionSettings, convert_cohort
from yaware.workflow.logged import run_logged


def main(
    metrics: str,
    passed: str,
    participants: str,
    array: str | None,
    data: str,
    cohort: dict,
    settings: dict,
    threads: int,
) -> None:
    conversion = ConversionSettings(
        voxel_mm=settings["voxel_mm"],
        dtype=settings["dtype"],
        tiv_scaling=settings["tiv_scaling"],
        threads=threads,
    )
    out = Path(data).parent
    convert_cohort(metrics, passed, participants, out, cohort["voxel_mm"], conversion, array)


run_logged(
    snakemake.log[0],
    main,
    snakemake.input.metrics,
    snakemake.input.passed,
    snakemake.input.participants,
    snakemake.input.array or None,  # a path, or none for a CAT12 cohort
    snakemake.output.data,
    snakemake.params.cohort,
    snakemake.params.settings,
    snakemake.threads,
)
