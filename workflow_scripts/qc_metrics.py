"""Snakemake script: QC metrics of one cohort (every scan's marks and corr_mean, or its problem)."""

import logging

from yaware.data.grid import cat12_grid
from yaware.data.qc import measure_array_cohort, measure_cohort
from yaware.io import save_table
from yaware.workflow.logged import run_logged


def main(
    participants: str,
    array: str | None,
    metrics_path: str,
    name: str,
    cohort: dict,
    settings: dict,
    label: str,
    threads: int,
) -> None:
    required = [label] if cohort["role"] == "pretrain" else []
    # An array cohort's maps are an input (its one file); a CAT12 cohort's are found by QC.
    metrics = (measure_array_cohort if array else measure_cohort)(
        participants,
        array or cohort["cat12_root"],
        cat12_grid(cohort["voxel_mm"]),
        settings["corr_voxel_mm"],
        required,
        threads,
    )
    save_table(metrics_path, metrics)
    unusable = int((metrics["problem"] != "").sum())
    # Each scan's problem is in metrics.tsv; the qc job's log lists every exclusion.
    logging.info("%s: %d of %d scans unusable", name, unusable, len(metrics))


run_logged(
    snakemake.log[0],
    main,
    snakemake.input.participants,
    snakemake.input.array or None,  # a path, or none for a CAT12 cohort
    snakemake.output.metrics,
    snakemake.wildcards.cohort,
    snakemake.params.cohort,
    snakemake.params.settings,
    snakemake.params.label,
    snakemake.threads,
)
