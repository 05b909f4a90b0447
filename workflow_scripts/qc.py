"""Snakemake script: QC of one cohort (table of every scan with its reason, and a figure)."""

import logging

from yaware.grid import cat12_grid
from yaware.io import save_table
from yaware.qc import QCThresholds, plot_qc, run_qc
from yaware.workflow import run_logged


def main(
    participants: str,
    table: str,
    figure: str,
    name: str,
    cohort: dict,
    settings: dict,
    label: str,
    require_tiv: bool,
    threads: int,
) -> None:
    thresholds = QCThresholds(
        ncr_max=settings["ncr_max"],
        iqr_max=settings["iqr_max"],
        corr_mean_min=settings["corr_mean_min"],
        corr_voxel_mm=settings["corr_voxel_mm"],
    )
    required = [label] if cohort["role"] == "pretrain" else []
    qc = run_qc(
        participants,
        cohort["cat12_root"],
        cat12_grid(cohort["voxel_mm"]),
        thresholds,
        required,
        require_tiv,
        threads,
    )
    save_table(table, qc)
    plot_qc(qc, thresholds, figure, name)
    failed = qc[qc["qc"] == 0]
    logging.info("%s: %d of %d scans pass", name, len(qc) - len(failed), len(qc))
    for row in failed.itertuples():
        logging.info("excluded %s ses-%s: %s", row.participant_id, row.session, row.reason)


run_logged(
    snakemake.log[0],
    main,
    snakemake.input.participants,
    snakemake.output.table,
    snakemake.output.figure,
    snakemake.wildcards.cohort,
    snakemake.params.cohort,
    snakemake.params.settings,
    snakemake.params.label,
    snakemake.params.require_tiv,
    snakemake.threads,
)
