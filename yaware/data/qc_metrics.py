"""QC metrics of a cohort: every scan's CAT12 marks and corr_mean, or what makes it unusable.

Per scan: the NCR and IQR marks of its ``cat_*.xml`` and ``corr_mean``, the mean Fisher-z
correlation of its grey-matter map with every other scan of the cohort (on a coarse grid,
inside the mean map's grey matter). A scan is unusable, with its reason, when its file is
missing, unreadable or ambiguous, is not 3-D, has another shape, voxel size or affine
than the cohort's grid (after reorienting a map stored in another voxel order), holds
NaN/inf or only zeros, lacks a report, or its row is unusable (unsafe or duplicated id,
missing age where age is the label). A bad scan never stops the stage.

``measure_cohort`` reads every map and report (the costly part) into a metrics table;
:mod:`yaware.data.qc` then judges it against the thresholds, reading no map again. An
array cohort (the maps as one ``.npy``, row i of the table describing map i) is measured
by ``measure_array_cohort``: the same row and map checks, marks and TIV from the table;
an OpenBHB copy (a ``.npy`` per scan, named in the ``path`` column) by ``measure_npy_cohort``.
"""

import logging
import math
import os
import unicodedata
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from yaware.data.cat12 import find_scan, read_report, report_for
from yaware.data.grid import Grid, cat12_grid
from yaware.data.maps import check_values, load_map, open_map_array
from yaware.data.openbhb import fetch_hint
from yaware.data.participants import ID_COLUMN, missing_column, not_a_number, read_table
from yaware.errors import DataError
from yaware.io import save_table

log = logging.getLogger(__name__)

MEASURED_COLUMNS = [
    "participant_id",
    "session",
    "run",
    "path",
    "tiv",
    "corr_mean",
    "NCR",
    "ICR",
    "IQR",
]
METRIC_COLUMNS = [*MEASURED_COLUMNS, "problem"]


@dataclass
class _Scan:
    reasons: list[str]
    path: str = ""
    tiv: float = math.nan
    marks: dict[str, float] | None = None
    coarse: np.ndarray | None = None


# BIDS participants.tsv gives age in years; beyond this it is a typo or another unit.
MAX_AGE_YEARS = 120


def unsafe_id(value: str) -> bool:
    """Ids become file names: refuse separators, '..', and empty or hidden names."""
    return (
        not value
        or value.startswith(".")
        or "/" in value
        or "\\" in value
        or ".." in value
        or "\x00" in value
    )


def coarse_map(data: np.ndarray, factor: int) -> np.ndarray:
    """Block means of ``factor`` voxels per axis (edges cropped)."""
    if factor <= 1:
        return data
    cropped = data[tuple(slice(0, s - s % factor) for s in data.shape)]
    shape = [s // factor for s in cropped.shape]
    blocks = cropped.reshape(shape[0], factor, shape[1], factor, shape[2], factor)
    return blocks.mean(axis=(1, 3, 5))


def _checked_rows(
    participants: str | os.PathLike, required_columns: Sequence[str]
) -> tuple[pd.DataFrame, list[_Scan], pd.DataFrame]:
    """The table's rows with ids as text, a scan record per row holding the problems of its
    row (unsafe or duplicated id, a required value missing or implausible), and each row's
    (subject, session, run) without BIDS prefixes."""
    table = read_table(participants)
    source = str(participants)
    for column in (ID_COLUMN, *required_columns):
        if column not in table.columns:
            raise missing_column(table, column, source, "add it")
    # No session column: a dataset without sessions (sub-<id>/anat/...).
    rows = table.assign(
        participant_id=table[ID_COLUMN].astype(str).str.strip(),
        session=table["session"].astype(str).str.strip() if "session" in table else "",
        run=table["run"].astype(str).str.strip() if "run" in table else "",
    )
    rows["run"] = rows["run"].replace({"nan": ""})
    scans = [_Scan(reasons=[]) for _ in range(len(rows))]
    # "sub-01" and "01" name the same scan.
    scan_keys = pd.DataFrame(
        {
            "subject": rows[ID_COLUMN].str.removeprefix("sub-"),
            "session": rows["session"].str.removeprefix("ses-"),
            "run": rows["run"].str.removeprefix("run-"),
        }
    )
    duplicated = scan_keys.duplicated(keep="first")
    for i, row in enumerate(rows.itertuples(index=False)):
        reasons = scans[i].reasons
        if unsafe_id(row.participant_id) or unsafe_id(row.session or "x"):
            reasons.append("unsafe participant_id or session (path separator or '..')")
        if duplicated.iloc[i]:
            reasons.append("duplicated (participant_id, session) row")
        for column in required_columns:
            value = getattr(row, column)
            problem = not_a_number(value)
            if problem:
                reasons.append(f"{column} {problem}")
            elif column == "age" and not 0 < float(value) <= MAX_AGE_YEARS:
                reasons.append(
                    f"age {float(value):g} is not a plausible age in years (0 to {MAX_AGE_YEARS}):"
                    " a typo, or another unit?"
                )
    return rows, scans, scan_keys


def measure_cohort(
    participants: str | os.PathLike,
    cat12_root: str | os.PathLike,
    grid: Grid,
    corr_voxel_mm: float = 6.0,
    required_columns: Sequence[str] = (),
    threads: int = 1,
) -> pd.DataFrame:
    """Metrics of a cohort, one row per row of ``participants`` (in its order): the marks,
    TIV and corr_mean of each scan, or the problem that makes it unusable."""
    source = str(participants)
    rows, scans, scan_keys = _checked_rows(participants, required_columns)
    has_path = "path" in rows.columns
    factor = max(1, round(corr_voxel_mm / grid.voxel_mm))
    base = Path(participants).parent

    def check(i: int) -> None:
        scan, row = scans[i], rows.iloc[i]
        if scan.reasons:
            return
        if has_path and isinstance(row["path"], str) and row["path"].strip():
            image = Path(row["path"].strip())
            image = image if image.is_absolute() else base / image
            found = find_scan(cat12_root, row[ID_COLUMN], row["session"], row["run"] or None)
            found.image, found.problem = image, "" if image.exists() else f"missing file {image}"
            beside = report_for(image)
            if beside is not None and beside.exists():
                found.report = beside
        else:
            found = find_scan(cat12_root, row[ID_COLUMN], row["session"], row["run"] or None)
        if found.problem:
            scan.reasons.append(found.problem)
            return
        scan.path = str(found.image)
        try:
            data = load_map(found.image, grid)
        except DataError as err:
            scan.reasons.append(str(err))
            return
        scan.coarse = coarse_map(data, factor).ravel()
        if found.report is None:
            scan.reasons.append("missing CAT12 report cat_*.xml")
            return
        try:
            scan.marks = read_report(found.report)
        except Exception as err:
            scan.reasons.append(f"unreadable report {found.report.name} ({err})")
            return
        tiv = pd.to_numeric(pd.Series([row.get("tiv", math.nan)]), errors="coerce").iloc[0]
        scan.tiv = float(tiv) if np.isfinite(tiv) else scan.marks["vol_TIV"]

    with ThreadPoolExecutor(max(1, threads)) as pool:
        list(pool.map(check, range(len(scans))))
    _warn_unlisted(cat12_root, set(scan_keys["subject"]), source)
    corr = _corr_mean([s.coarse if not s.reasons else None for s in scans])
    return _metrics(rows, scans, corr)


def measure_array_cohort(
    participants: str | os.PathLike,
    array_path: str | os.PathLike,
    grid: Grid,
    corr_voxel_mm: float = 6.0,
    required_columns: Sequence[str] = (),
    threads: int = 1,
) -> pd.DataFrame:
    """Metrics of a cohort given as one array of maps, as the original repository takes
    them (``data.npy`` and its table): row i of the table describes map i. The NCR, ICR and
    IQR marks and the TIV come from the table's columns of those names where it has them
    (as brainprep's qc.tsv); a table without NCR and IQR columns has no marks, and the
    thresholds on them do not apply. Each map is checked, and its corr_mean measured, as a
    CAT12 cohort's."""
    rows, scans, _ = _checked_rows(participants, required_columns)
    array = open_map_array(array_path, grid, len(rows))
    has_marks = {"NCR", "IQR"} <= set(rows.columns)
    marks = {
        column: pd.to_numeric(rows[column], errors="coerce").to_numpy(float)
        for column in ("NCR", "ICR", "IQR")
        if column in rows
    }
    no_tiv = np.full(len(rows), math.nan)
    tiv = pd.to_numeric(rows["tiv"], errors="coerce").to_numpy(float) if "tiv" in rows else no_tiv
    factor = max(1, round(corr_voxel_mm / grid.voxel_mm))

    def check(i: int) -> None:
        scan = scans[i]
        scan.path = str(array_path)
        if scan.reasons:
            return
        data = np.asarray(array[i], dtype=np.float32)
        try:
            check_values(data)
        except DataError as err:
            scan.reasons.append(f"map {i} of the array: {err}")
            return
        scan.coarse = coarse_map(data, factor).ravel()
        scan.marks = {column: float(values[i]) for column, values in marks.items()}
        scan.tiv = float(tiv[i])

    with ThreadPoolExecutor(max(1, threads)) as pool:
        list(pool.map(check, range(len(scans))))
    corr = _corr_mean([s.coarse if not s.reasons else None for s in scans])
    no_marks = "no NCR or IQR mark in the table's columns of those names" if has_marks else None
    return _metrics(rows, scans, corr, no_marks)


def measure_npy_cohort(
    participants: str | os.PathLike,
    grid: Grid,
    corr_voxel_mm: float = 6.0,
    required_columns: Sequence[str] = (),
    threads: int = 1,
    fix_missing: str = "",
) -> pd.DataFrame:
    """Metrics of a cohort whose table gives each scan's ``.npy`` map in its ``path``
    column (an indexed OpenBHB copy, :mod:`yaware.data.openbhb`): each map checked and its
    corr_mean measured, the TIV from the table's ``tiv`` column where it has one. Such maps
    come with no CAT12 report, so the thresholds on its marks do not apply. ``fix_missing``
    follows the problem of a missing map (how to fetch it)."""
    rows, scans, _ = _checked_rows(participants, required_columns)
    if "path" not in rows:
        raise missing_column(rows, "path", str(participants), "index the copy again")
    tiv = pd.to_numeric(rows.get("tiv", pd.Series(math.nan, index=rows.index)), errors="coerce")
    factor = max(1, round(corr_voxel_mm / grid.voxel_mm))

    def check(i: int) -> None:
        scan, path = scans[i], Path(str(rows["path"].iloc[i]))
        scan.path = str(path)
        if scan.reasons:
            return
        if not path.parent.parent.is_dir():
            scan.reasons.append(
                f"listed in the table, but no folder {path.parent.parent}; {fix_missing}"
            )
            return
        try:
            data = load_map(path, grid)
        except DataError as err:
            missing = not path.is_file()
            scan.reasons.append(f"{err}; {fix_missing}" if missing else str(err))
            return
        scan.coarse = coarse_map(data, factor).ravel()
        scan.marks, scan.tiv = {}, float(tiv.iloc[i])

    with ThreadPoolExecutor(max(1, threads)) as pool:
        list(pool.map(check, range(len(scans))))
    corr = _corr_mean([s.coarse if not s.reasons else None for s in scans])
    return _metrics(rows, scans, corr, no_marks=None)


def unlisted_subjects(cat12_root: str | os.PathLike, listed: set[str]) -> list[str]:
    """Subjects with a ``sub-<id>`` folder under the CAT12 root but no table row
    (``listed``: the table's ids without their ``sub-`` prefix)."""
    root = Path(cat12_root)
    if not root.is_dir():
        return []
    folders = (p.name[4:] for p in root.iterdir() if p.is_dir() and p.name.startswith("sub-"))
    listed = {unicodedata.normalize("NFC", name) for name in listed}  # NFD from macOS
    return sorted(name for name in folders if unicodedata.normalize("NFC", name) not in listed)


def _warn_unlisted(cat12_root: str | os.PathLike, listed: set[str], source: str) -> None:
    unlisted = unlisted_subjects(cat12_root, listed)
    if unlisted:
        shown = ", ".join(unlisted[:10]) + (" ..." if len(unlisted) > 10 else "")
        log.warning(
            "%d subject folder(s) under %s have no row in %s and are left out: %s "
            "(add them to the table to use them)",
            len(unlisted),
            cat12_root,
            source,
            shown,
        )


def _corr_mean(maps: list[np.ndarray | None]) -> np.ndarray:
    """Mean Fisher-z correlation of each map with every other one (NaN where no map)."""
    out = np.full(len(maps), np.nan)
    present = [i for i, m in enumerate(maps) if m is not None]
    if len(present) < 2:
        return out
    stack = np.stack([maps[i] for i in present]).astype(np.float64)
    mask = stack.mean(0) > 0.1 * stack.mean(0).max()
    z = stack[:, mask]
    z = (z - z.mean(1, keepdims=True)) / np.maximum(z.std(1, keepdims=True), 1e-12)
    r = np.clip(z @ z.T / z.shape[1], -0.999999, 0.999999)
    fisher = np.arctanh(r)
    np.fill_diagonal(fisher, 0.0)
    out[present] = fisher.sum(1) / (len(present) - 1)
    return out


def _metrics(
    rows: pd.DataFrame,
    scans: list[_Scan],
    corr: np.ndarray,
    no_marks: str | None = "report lacks NCR or IQR marks",
) -> pd.DataFrame:
    """``no_marks``: the problem of a scan without its NCR or IQR mark (None: the cohort has
    no marks, and their thresholds do not apply)."""
    records = []
    readable = int(np.isfinite(corr).sum()) or 1
    for i, scan in enumerate(scans):
        marks = scan.marks or {}
        ncr, iqr = marks.get("NCR", math.nan), marks.get("IQR", math.nan)
        problems = list(scan.reasons)
        if not problems:
            if no_marks and not (np.isfinite(ncr) and np.isfinite(iqr)):
                problems.append(no_marks)
            if np.isnan(corr[i]):
                problems.append(
                    "no corr_mean: it compares a map with the cohort's other readable maps, "
                    f"and there are {readable - 1}"
                )
        records.append(
            {
                "participant_id": rows.iloc[i][ID_COLUMN],
                "session": rows.iloc[i]["session"],
                "run": rows.iloc[i]["run"],
                "path": scan.path,
                "tiv": scan.tiv,
                "corr_mean": corr[i],
                "NCR": ncr,
                "ICR": marks.get("ICR", math.nan),
                "IQR": iqr,
                "problem": "; ".join(problems),
            }
        )
    return pd.DataFrame.from_records(records, columns=METRIC_COLUMNS)


def run_qc_metrics(
    participants: str,
    array: str | None,
    metrics_path: str,
    name: str,
    cohort: dict,
    settings: dict,
    label: str,
    threads: int,
) -> None:
    """The qc_metrics job: an array cohort's maps are its one input file; a CAT12 cohort's
    are found under its ``cat12_root``."""
    required = [label] if cohort["role"] == "pretrain" else []
    grid = cat12_grid(cohort["voxel_mm"])
    if cohort.get("openbhb_root"):
        fix = fetch_hint(cohort["openbhb_root"])
        metrics = measure_npy_cohort(
            participants, grid, settings["corr_voxel_mm"], required, threads, fix
        )
    else:
        metrics = (measure_array_cohort if array else measure_cohort)(
            participants,
            array or cohort["cat12_root"],
            grid,
            settings["corr_voxel_mm"],
            required,
            threads,
        )
    save_table(metrics_path, metrics)
    unusable = int((metrics["problem"] != "").sum())
    # Each scan's problem is in metrics.tsv; the qc job's log lists every exclusion.
    log.info("%s: %d of %d scans unusable", name, unusable, len(metrics))
