"""The OpenBHB challenge's metrics of a representation, and the ROI floor.

Per model, on an OpenBHB cohort (Dufumier et al., NeuroImage 2022; the score as in
EIDOSLAB's contrastive-brain-age-prediction): a ridge probe of age fitted on the official
``train`` split (this pipeline's train and val sides) and scored on ``internal_test`` and
``external_test`` separately; the balanced accuracy of a logistic probe of ``siteXacq``
fitted on ``train`` and scored on ``internal_test`` (the external sites are unseen, so no
classifier can name them); and the score ``site_bacc ** 0.3 * mae_external`` (lower is
better).
"""

import logging
import math
import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from yaware.data.openbhb import ROI_SHAPE, fetch_hint
from yaware.data.participants import as_text, read_table, row_positions
from yaware.errors import DataError
from yaware.evaluate.markdown import markdown_table
from yaware.evaluate.probes import age_probe, site_probe
from yaware.io import save_npy, save_table

log = logging.getLogger(__name__)

OPENBHB_COLUMNS = [
    "cohort",
    "model",
    "label",
    "method",
    "seed",
    "kind",
    "n_train",
    "n_internal",
    "n_external",
    "mae_internal",
    "mae_external",
    "site_bacc",
    "site_chance",
    "score",
]
ROI_FLOOR = {"model": "roi", "label": "ROI volumes", "method": "roi", "seed": 0, "kind": "floor"}
# The split sides of an OpenBHB cohort (yaware.data.splits.official_pretrain_split).
TRAIN_SIDES = ("train", "val")


def challenge_metrics(
    x: np.ndarray, table: pd.DataFrame, split: pd.DataFrame, label: str, source: str
) -> dict[str, float]:
    """The challenge's metrics of representations ``x`` (row i: row i of ``table``)."""
    sides = {}
    for side, names in (
        ("train", TRAIN_SIDES),
        ("internal", ("internal_test",)),
        ("external", ("external_test",)),
    ):
        sides[side] = row_positions(table, split[split["split"].isin(names)], source)
    age = pd.to_numeric(table[label], errors="coerce").to_numpy(float)
    site = as_text(table["site"]).to_numpy()
    train = sides["train"]
    result = {f"n_{side}": len(rows) for side, rows in sides.items()}
    for side in ("internal", "external"):
        rows = sides[side]
        mae = age_probe(x[train], age[train], x[rows], age[rows])["age_mae"] if len(rows) else None
        result[f"mae_{side}"] = math.nan if mae is None else mae
    internal = sides["internal"]
    if len(internal) and len(np.unique(site[train])) > 1:
        probe = site_probe(x[train], site[train], x[internal], site[internal])
        result |= {
            "site_bacc": probe["site_balanced_accuracy"],
            "site_chance": probe["site_chance"],
        }
    else:
        result |= {"site_bacc": math.nan, "site_chance": math.nan}
    result["score"] = result["site_bacc"] ** 0.3 * result["mae_external"]
    return result


def roi_features(participants: str | os.PathLike, root: str) -> np.ndarray:
    """The (N, 284) ROI volumes of a converted OpenBHB cohort's scans, in its row order,
    read from its ``roi_path`` column (``root``: the copy, named in an error)."""
    table = read_table(participants)
    out = np.empty((len(table), ROI_SHAPE[1]), dtype=np.float32)
    subjects, paths = table["participant_id"], table["roi_path"]
    for i, (subject, path) in enumerate(zip(subjects, paths, strict=True)):
        if not os.path.isfile(path):
            raise DataError(
                f"subject {subject}: missing ROI volumes {path} (openbhb_roi_floor reads "
                f"them); {fetch_hint(root)} with --roi, or set openbhb_roi_floor: false"
            )
        volumes = np.load(path, allow_pickle=False)
        if volumes.shape not in (ROI_SHAPE, ROI_SHAPE[1:]) or not np.isfinite(volumes).all():
            raise DataError(
                f"subject {subject}: {path} holds {volumes.shape} "
                f"{'values' if volumes.shape == ROI_SHAPE else 'array'}; OpenBHB's ROI volumes "
                f"are {ROI_SHAPE}, all finite: fetch the file again"
            )
        out[i] = volumes.reshape(-1)
    return out


def run_openbhb_roi(participants: str, output: str, root: str) -> None:
    """The openbhb_roi job: one cohort's ROI volumes, as a floor's features."""
    save_npy(output, roi_features(participants, root))


def run_openbhb_metrics(
    inputs: dict,
    output: str,
    pairs: Sequence[tuple[str, str]],
    cohorts: Sequence[str],
    roi_cohorts: Sequence[str],
    models: dict,
    label: str,
) -> None:
    """The openbhb_metrics job. ``pairs``: the (model, cohort) of each features file;
    ``cohorts``: the cohort of each participants and split file; ``roi_cohorts``: the
    cohort of each ROI floor's features file (``inputs['roi']``)."""
    tables = {
        c: (read_table(t), read_table(s))
        for c, t, s in zip(cohorts, inputs["participants"], inputs["splits"], strict=True)
    }
    jobs = [(models[m], c, path) for (m, c), path in zip(pairs, inputs["features"], strict=True)]
    jobs += [(ROI_FLOOR, c, path) for c, path in zip(roi_cohorts, inputs["roi"], strict=True)]
    rows = []
    for model, cohort, path in jobs:
        table, split = tables[cohort]
        x = np.load(path)
        if len(x) != len(table):
            raise DataError(f"{path} has {len(x)} rows but cohort {cohort} has {len(table)} scans")
        metrics = challenge_metrics(x, table, split, label, f"{cohort} split")
        rows.append({**{k: model[k] for k in OPENBHB_COLUMNS if k in model}, "cohort": cohort})
        rows[-1] |= metrics
    save_table(output, pd.DataFrame(rows, columns=OPENBHB_COLUMNS))


# Published points on the real OpenBHB, ResNet-18 encoders (Barbano et al., ISBI 2023):
# (label, mae_internal, mae_external, site_bacc).
PUBLISHED = [("y-Aware, rbf sigma 2", 2.66, 4.10, 0.066), ("expw kernel", 2.55, 3.76, 0.051)]


def openbhb_section(table: pd.DataFrame) -> str:
    """The summary's OpenBHB section: mean and sd over seeds per cohort and label, and the
    published points a user should expect on the real data."""
    metrics = ["mae_internal", "mae_external", "site_bacc", "score"]
    grouped = table.groupby(["cohort", "label", "kind"], sort=False)
    summary = grouped[metrics].agg(["mean", "std"])
    summary.columns = [f"{name}_{stat.replace('std', 'sd')}" for name, stat in summary.columns]
    summary = summary.reset_index().assign(seeds=grouped.size().to_numpy())
    published = pd.DataFrame(PUBLISHED, columns=["label", *metrics[:3]])
    published["score"] = published["site_bacc"] ** 0.3 * published["mae_external"]
    return (
        "## OpenBHB challenge metrics (results/tables/openbhb.csv)\n\n"
        "Age MAE (years) of a ridge probe fitted on the official train split, on "
        "internal_test (training sites) and external_test (unseen sites); site_bacc: "
        "balanced accuracy of a linear probe of siteXacq on internal_test (lower: less site "
        "in the representation); score = site_bacc ** 0.3 x mae_external (lower is better). "
        "Mean and sd over seeds.\n\n" + markdown_table(summary) + "\n\nPublished on the real "
        "OpenBHB (Barbano et al., ISBI 2023; ResNet-18, 3,227 training scans), what a "
        "full-size run should approach:\n\n" + markdown_table(published.round(3))
    )
