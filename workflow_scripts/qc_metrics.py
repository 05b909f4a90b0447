"""Snakemake script: QC metrics of one cohort (every scan's marks and corr_mean, or its problem)."""

import logging

from yaware.grid import cat12_grid
from yaware.io import save_table
from yaware.qc import measure_cohort
from yaware.workflow import run_logged


def main(
    participants: str,
    metrics_path: str,
    name: str,
    cohort: dict,
    settings: dict,
    label: str,
    threads: int,
) -> None:
    required = [label] if cohort["role"] == "pretrain" else []
    metrics = measure_cohort(
        participants,
        cohort["cat12_root"],
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
    snakemake.output.metrics,
    snakemake.wildcards.cohort,
    snakemake.params.cohort,
    snakemake.params.settings,
    snakemake.params.label,
    snakemake.threads,
)
