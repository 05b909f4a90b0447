"""Scans that two cohorts, or two subjects, share: found by the hash of their voxels.

The probes and fine-tuning score each evaluation cohort's test (and external) scans. A map
that is also a pretraining scan, or a training scan of its own cohort under another id,
makes those scores optimistic: the kind of leak a cohort assembled from several studies
brings in (a control in both the healthy pretraining set and a patient study). The
conversion records the SHA-256 of each map's voxels in ``manifest.json``; this finds maps
identical voxel for voxel, whatever holds them (a .nii or .nii.gz file with any header, or
a row of an array cohort), not another session of the same subject or the same scan
preprocessed again.
"""

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from yaware.data.participants import ID_COLUMN, read_table
from yaware.errors import DataError
from yaware.io import save_table

log = logging.getLogger(__name__)

HELD_OUT = ("test", "external")
# A pretraining cohort's sides: the encoder learns on train and is selected on val. An
# evaluation cohort's probes learn on its own pool ("train") only, so a copy in another
# evaluation cohort's pool is shared, not leaked (two tasks on one study share controls).
TRAINING = ("train", "val")
KEY = "voxels_sha256"
# "map": the row of an array cohort's array, blank for a NIfTI map.
COLUMNS = [KEY, "cohort", "role", ID_COLUMN, "session", "split", "path", "map", "leak"]


def scan_sides(
    manifest: str | os.PathLike, split: str | os.PathLike, cohort: str, role: str
) -> pd.DataFrame:
    """One row per converted scan: its hash, ids, map and side of the split (``unused``:
    a later session, which the evaluation leaves out)."""
    sources = pd.DataFrame(json.loads(Path(manifest).read_text(encoding="utf-8"))["sources"])
    if KEY not in sources:
        raise DataError(
            f"{manifest} has no {KEY} of its maps: it was written by a conversion from "
            "before 2026-12-06 (kept by snakemake --touch?); convert the cohort again: "
            f"snakemake --forcerun results/data/{cohort}/data.npy"
        )
    sources["session"] = sources["session"].fillna("").astype(str)
    sources["map"] = sources.get("map", pd.Series(pd.NA, index=sources.index)).astype("Int64")
    sides = read_table(split)[[ID_COLUMN, "session", "split"]]
    sides["session"] = sides["session"].fillna("").astype(str)
    sides = sides.drop_duplicates([ID_COLUMN, "session"])  # a split is by subject: runs agree
    rows = sources.merge(sides, on=[ID_COLUMN, "session"], how="left")
    return rows.assign(split=rows["split"].fillna("unused"), cohort=cohort, role=role)


def shared_scans(sides: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Every scan whose voxels are identical to another's, grouped by hash; ``leak``
    marks the groups where a held-out evaluation scan meets a copy that trained what
    scores it: a pretraining scan (train or val), or one of its own cohort's pool."""
    scans = pd.concat(sides, ignore_index=True)
    shared = scans[scans.duplicated(KEY, keep=False)].copy()
    shared["leak"] = False
    for _, group in shared.groupby(KEY):
        pretraining = ((group["role"] == "pretrain") & group["split"].isin(TRAINING)).any()
        held = group[(group["role"] == "evaluate") & group["split"].isin(HELD_OUT)]
        pools = set(group.loc[group["split"] == "train", "cohort"])
        if (pretraining and len(held)) or set(held["cohort"]) & pools:
            shared.loc[group.index, "leak"] = True
    shared = shared.sort_values([KEY, "cohort", ID_COLUMN, "session"])
    return shared[COLUMNS].reset_index(drop=True)


def _scan_name(scan: Any) -> str:
    where = scan.path if pd.isna(scan.map) else f"{scan.path}, map {scan.map}"
    session = scan.session or "-"
    return f"{scan.cohort} {scan.participant_id} session {session} ({scan.split}: {where})"


def check_leaks(shared: pd.DataFrame, on_leak: str) -> None:
    """Stop (``on_leak: error``) or warn when held-out scans are copies of training ones."""
    if shared.empty:
        log.info("no two converted scans share a map")
        return
    leaks = shared[shared["leak"]]
    log.info(
        "%d scans share their map with another (%d groups); %d of them in leaking groups",
        len(shared),
        shared[KEY].nunique(),
        len(leaks),
    )
    if leaks.empty:
        return
    examples = []
    for _, group in list(leaks.groupby(KEY, sort=False))[:3]:
        examples.append(" = ".join(_scan_name(scan) for scan in group.itertuples()))
    message = (
        f"{leaks[KEY].nunique()} held-out evaluation scans are identical voxel for voxel to "
        "pretraining scans or to their own cohort's training scans, e.g. "
        f"{'; '.join(examples)}. Their scores would be optimistic: "
        "drop the copies from one of the participants tables (a pretraining cohort must "
        "not hold an evaluation cohort's scans), or set checks.shared_scans: warn to go on"
    )
    if on_leak == "error":
        raise DataError(message)
    log.warning("%s", message)


def run_shared_scans(
    manifests: list[str], splits: list[str], cohorts: dict[str, str], on_leak: str, out: str
) -> None:
    """The shared_scans job: ``cohorts`` maps each cohort (in the order of ``manifests``
    and ``splits``) to its role."""
    sides = [
        scan_sides(manifest, split, cohort, role)
        for manifest, split, (cohort, role) in zip(manifests, splits, cohorts.items(), strict=True)
    ]
    shared = shared_scans(sides)
    check_leaks(shared, on_leak)
    save_table(out, shared)
