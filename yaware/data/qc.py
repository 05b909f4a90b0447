"""Quality control of a cohort: brainprep's rule on the QC metrics.

``qc = NCR < 4.5 and IQR < 4.5 and corr_mean > 0.5`` (thresholds configurable), after the
problem that makes a scan unusable (:mod:`yaware.data.qc_metrics`). Judging reads only the
metrics table, so trying another threshold reads no map again; a scan without a TIV fails
when the conversion's TIV scaling needs one.
"""

import logging
import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

from yaware.data.participants import read_table
from yaware.data.qc_metrics import MEASURED_COLUMNS
from yaware.io import save_table

log = logging.getLogger(__name__)

QC_COLUMNS = [*MEASURED_COLUMNS, "qc", "reason"]
# The scans that pass, by their row in the metrics table (and the participants table).
PASSED_COLUMNS = ["row", "participant_id", "session", "run"]


@dataclass
class QCThresholds:
    ncr_max: float = 4.5
    iqr_max: float = 4.5
    corr_mean_min: float = 0.5


def apply_thresholds(
    metrics: pd.DataFrame, t: QCThresholds, require_tiv: bool = False
) -> pd.DataFrame:
    """The QC table: the metrics with ``qc`` (1: the scan is used) and the ``reason`` of
    each exclusion, its problem first, then each threshold it fails (``require_tiv``: a
    scan without a positive TIV fails too, as the TIV scaling divides by it)."""
    reasons = []
    for row in metrics.itertuples(index=False):
        problem = row.problem if isinstance(row.problem, str) else ""
        failed = [problem] if problem else []
        tiv = float(row.tiv)
        if require_tiv and not problem and not (np.isfinite(tiv) and tiv > 0):
            failed.append("no TIV in the table or the report (needed for TIV scaling)")
        ncr, iqr, corr = float(row.NCR), float(row.IQR), float(row.corr_mean)
        if ncr >= t.ncr_max:
            failed.append(f"NCR {ncr:.2f} >= {t.ncr_max}")
        if iqr >= t.iqr_max:
            failed.append(f"IQR {iqr:.2f} >= {t.iqr_max}")
        if np.isfinite(corr) and not corr > t.corr_mean_min:
            failed.append(f"corr_mean {corr:.3f} <= {t.corr_mean_min}")
        reasons.append("; ".join(failed))
    qc = metrics[MEASURED_COLUMNS].copy()
    qc["qc"] = [int(not reason) for reason in reasons]
    qc["reason"] = reasons
    return qc


def passed_scans(qc: pd.DataFrame) -> pd.DataFrame:
    """The rows of the QC table that pass, with their row number: what the conversion
    reads. Its content changes only when the passing set does, so a threshold that
    excludes no other scan leaves it byte-identical."""
    passed = qc.loc[qc["qc"] == 1, PASSED_COLUMNS[1:]]
    return passed.rename_axis("row").reset_index()[PASSED_COLUMNS]


def plot_qc(
    qc: pd.DataFrame, thresholds: QCThresholds, path: str | os.PathLike, title: str
) -> None:
    """Histograms of NCR, IQR and corr_mean with their thresholds, for a human to look at."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from yaware.io import write_atomic

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    for ax, (column, limit) in zip(
        axes,
        [
            ("NCR", thresholds.ncr_max),
            ("IQR", thresholds.iqr_max),
            ("corr_mean", thresholds.corr_mean_min),
        ],
        strict=True,
    ):
        values = qc[column].dropna()
        ax.hist(values, bins=30, color="0.6")
        ax.axvline(limit, color="crimson", linestyle="--", label=f"threshold {limit}")
        ax.set_xlabel(column)
        ax.set_ylabel("scans")
        ax.legend(fontsize=8)
    n_fail = int((qc["qc"] == 0).sum())
    fig.suptitle(f"{title}: {len(qc) - n_fail} of {len(qc)} scans pass QC")
    fig.tight_layout()
    write_atomic(path, lambda handle: fig.savefig(handle, format="png", dpi=90))
    plt.close(fig)


def run_qc(
    metrics: str,
    table: str,
    passed: str,
    figure: str,
    name: str,
    thresholds: dict,
    require_tiv: bool,
) -> None:
    """The qc job: the table of every scan with its reason, the pass list the conversion
    reads, and a figure; the log lists every exclusion."""
    limits = QCThresholds(**thresholds)
    qc = apply_thresholds(read_table(metrics), limits, require_tiv)
    save_table(table, qc)
    save_table(passed, passed_scans(qc))
    plot_qc(qc, limits, figure, name)
    failed = qc[qc["qc"] == 0]
    log.info("%s: %d of %d scans pass", name, len(qc) - len(failed), len(qc))
    for row in failed.itertuples():
        log.info("excluded %s ses-%s: %s", row.participant_id, row.session, row.reason)
