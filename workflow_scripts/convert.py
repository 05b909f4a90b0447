"""Snakemake script: stream one cohort's QC-passing maps into data.npy."""

from pathlib import Path

from yaware.convert import ConversionSettings, convert_cohort
from yaware.qc import QCThresholds
from yaware.workflow import run_logged


def main(
    metrics: str,
    participants: str,
    data: str,
    cohort: dict,
    settings: dict,
    thresholds: dict,
    pass_list: str | None,
    threads: int,
) -> None:
    conversion = ConversionSettings(
        voxel_mm=settings["voxel_mm"],
        dtype=settings["dtype"],
        tiv_scaling=settings["tiv_scaling"],
        threads=threads,
    )
    convert_cohort(
        metrics,
        participants,
        Path(data).parent,
        cohort["voxel_mm"],
        conversion,
        QCThresholds(**thresholds),
        expected_pass_list=pass_list,
    )


# The thresholds come from the config, not from params: the job's param is the digest of
# the pass list they give, so that a threshold that excludes no other scan reruns nothing.
run_logged(
    snakemake.log[0],
    main,
    snakemake.input.metrics,
    snakemake.input.participants,
    snakemake.output.data,
    snakemake.params.cohort,
    snakemake.params.settings,
    {key: snakemake.config["qc"][key] for key in ("ncr_max", "iqr_max", "corr_mean_min")},
    snakemake.params.pass_list,
    snakemake.threads,
)
