"""Snakemake script: QC thresholds on one cohort's metrics (the table of every scan with its
reason, the pass list the conversion reads, and a figure)."""

import logging

from yaware.data.participants import read_table
from yaware.data.qc import QCThresholds, apply_thresholds, passed_scans, plot_qc
from yaware.io import save_table
from yaware.workflow.logged import run_logged


def main(
    metrics: str,
    table: str,
    passed: str,
    figure: str,
    name: str,
    thresholds: dict,
    require_tiv: bool,
) -> None:
    limits = QCThresholds(**thresholds)
    qc = apply_thresholds(read_table(metrics), limits, require_tiv)
    save_table(table, qc)
    save_table(passed, passed_scans(qc))
    plot_qc(qc, limits, figure, name)
    failed = qc[qc["qc"] == 0]
    logging.info("%s: %d of %d scans pass", name, len(qc) - len(failed), len(qc))
    for row in failed.itertuples():
        logging.info("excluded %s ses-%s: %s", row.participant_id, row.session, row.reason)


run_logged(
    snakemake.log[0],
    main,
    snakemake.input.metrics,
    snakemake.output.table,
    snakemake.output.passed,
    snakemake.output.figure,
    snakemake.wildcards.cohort,
    snakemake.params.thresholds,
    snakemake.params.require_tiv,
)
