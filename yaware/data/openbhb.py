"""OpenBHB read as distributed: its participants table and per-subject ``.npy`` files.

The layout (``docs/data.md``, "OpenBHB"): ``participants.tsv`` at the root, one row per
subject with an integer ``participant_id``, ``age``, ``sex``, ``siteXacq`` (the challenge's
site label) and ``split`` (``train``, ``internal_test``, ``external_test``); a subject's files
in ``<train|val>/derivatives/sub-<id>/ses-1/``, ``val/`` holding both test splits.

:func:`index_openbhb` turns the table into this pipeline's participants table: one scan per
subject (session 1), the site as ``siteXacq``, the official split in ``official_split``, and
the absolute paths of the VBM map and of the ROI volumes. QC and the conversion read the
maps from ``path`` (:func:`yaware.data.maps.load_map` reads ``.npy`` maps).
"""

import logging
import os
import re
from pathlib import Path

import pandas as pd

from yaware.data.participants import ID_COLUMN, missing_column, read_table
from yaware.errors import DataError
from yaware.io import save_table

log = logging.getLogger(__name__)

REPO_ID = "benoit-dufumier/openBHB"
# The revision nidl reads (neurospin-deepinsight/nidl, nidl/datasets/openbhb.py).
REVISION = "4806b5b36bd0982452c871f240cfc26e6934690c"
TABLE = "participants.tsv"
VBM_SUFFIX = "preproc-cat12vbm_desc-gm_T1w.npy"
ROI_SUFFIX = "preproc-cat12vbm_desc-gm_ROI.npy"
VBM_PATTERN = f"*/derivatives/sub-*/ses-1/sub-*_{VBM_SUFFIX}"
ROI_PATTERN = f"*/derivatives/sub-*/ses-1/sub-*_{ROI_SUFFIX}"
ROI_SHAPE = (1, 284)  # 142 GM then 142 CSF volumes (Neuromorphometrics)
SPLITS = ("train", "internal_test", "external_test")
REQUIRED_COLUMNS = (ID_COLUMN, "age", "sex", "siteXacq", "split")
SITE_COLUMN = "siteXacq"
# An id written by a float column ("101.0"): pandas reads a column of integers with one
# missing cell as floats, and writes them back so.
_FLOAT_ID = re.compile(r"^(\d+)\.0*$")


def folder_of(split: str) -> str:
    """The top folder of a split's files: ``val/`` holds both test splits."""
    return "train" if split == "train" else "val"


def subject_file(root: str | os.PathLike, subject: str, split: str, suffix: str) -> Path:
    """The path of one of a subject's files under ``root``."""
    folder = Path(root) / folder_of(split) / "derivatives" / f"sub-{subject}" / "ses-1"
    return folder / f"sub-{subject}_{suffix}"


def fetch_hint(root: str | os.PathLike) -> str:
    """How to fetch what is missing under ``root``: the command, or the config key."""
    return (
        f"fetch it with `yaware openbhb-download --root {root}` (needs `pip install "
        "yaware[openbhb]` and internet), or set the cohort's openbhb_download: true"
    )


def _subject_ids(table: pd.DataFrame, source: str) -> pd.Series:
    """The table's ids as integer text ("101.0" read as 101); DataError naming the row of an
    id that is no integer."""
    ids = table[ID_COLUMN].astype(str).str.strip().str.removeprefix("sub-")
    ids = ids.str.replace(_FLOAT_ID, lambda m: m.group(1), regex=True)
    bad = ~ids.str.fullmatch(r"\d+")
    if bad.any():
        row = int(bad.to_numpy().nonzero()[0][0])
        raise DataError(
            f"{source}: participant_id {table[ID_COLUMN].iloc[row]!r} (line {row + 2}) is not "
            "an integer; OpenBHB's ids are integers (folders sub-<int>). Is this OpenBHB's "
            f"participants.tsv? Fetch it again: {fetch_hint(Path(source).parent)}"
        )
    return ids


def read_openbhb_table(path: str | os.PathLike) -> pd.DataFrame:
    """OpenBHB's participants table, its ids as integer text; DataError for a missing
    column or a split other than OpenBHB's."""
    source = str(path)
    table = read_table(path)
    for column in REQUIRED_COLUMNS:
        if column not in table.columns:
            raise missing_column(
                table, column, source, "OpenBHB's participants.tsv has it; fetch it again"
            )
    table[ID_COLUMN] = _subject_ids(table, source)
    split = table["split"].astype(str).str.strip()
    unknown = sorted(set(split) - set(SPLITS))
    if unknown:
        raise DataError(
            f"{source}: split values {unknown} are not OpenBHB's {list(SPLITS)}; the "
            "official split is kept as distributed, so fix the table or fetch it again"
        )
    return table.assign(split=split)


def index_openbhb(root: str | os.PathLike, output: str | os.PathLike) -> pd.DataFrame:
    """Write this pipeline's participants table of the OpenBHB copy under ``root``."""
    root = Path(root).resolve()
    table = read_openbhb_table(root / TABLE)
    # The challenge's site label is siteXacq (site by acquisition); OpenBHB's own site
    # column is kept beside it.
    renamed = {"site": "openbhb_site"} if "site" in table else {}
    table = table.rename(columns=renamed)
    files = {
        column: [
            str(subject_file(root, subject, split, suffix))
            for subject, split in zip(table[ID_COLUMN], table["split"], strict=True)
        ]
        for column, suffix in (("path", VBM_SUFFIX), ("roi_path", ROI_SUFFIX))
    }
    indexed = table.assign(
        session="1",
        site=table[SITE_COLUMN].astype(str),
        official_split=table["split"],
        **files,
    ).drop(columns=["split"])
    first = [ID_COLUMN, "session", "age", "sex", "site", "official_split", "path", "roi_path"]
    indexed = indexed[first + [c for c in indexed.columns if c not in first]]
    save_table(output, indexed)
    return indexed


def missing_files(root: str | os.PathLike, roi: bool = False) -> list[str]:
    """The files of the table's subjects that are not under ``root``, relative to it (the
    VBM maps, and the ROI volumes when ``roi``)."""
    table = read_openbhb_table(Path(root) / TABLE)
    suffixes = (VBM_SUFFIX, ROI_SUFFIX) if roi else (VBM_SUFFIX,)
    wanted = [
        subject_file("", subject, split, suffix)
        for subject, split in zip(table[ID_COLUMN], table["split"], strict=True)
        for suffix in suffixes
    ]
    return [str(path) for path in wanted if not (Path(root) / path).is_file()]


def run_openbhb_index(root: str, output: str, download: bool, roi: bool) -> None:
    """The openbhb_index job: fetch what is missing when asked, then index the copy."""
    if download:
        from yaware.data.openbhb_fetch import fetch_openbhb

        fetched = fetch_openbhb(root, roi)
        log.info("fetched %d files into %s", len(fetched), root)
    indexed = index_openbhb(root, output)
    sides = indexed["official_split"].value_counts().to_dict()
    log.info("%s: %d subjects (%s)", root, len(indexed), sides)
