"""Snakemake script: stream one cohort's QC-passing maps into data.npy."""

from pathlib import Path

from yaware.convert import ConversionSettings, convert_cohort
from yaware.workflow import run_logged


def main(
    metrics: str,
    passed: str,
    participants: str,
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
    convert_cohort(metrics, passed, participants, Path(data).parent, cohort["voxel_mm"], conversion)


run_logged(
    snakemake.log[0],
    main,
    snakemake.input.metrics,
    snakemake.input.passed,
    snakemake.input.participants,
    snakemake.output.data,
    snakemake.params.cohort,
    snakemake.params.settings,
    snakemake.threads,
)
