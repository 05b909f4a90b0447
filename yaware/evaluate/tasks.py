"""Probing one model's representations on every task, and on age and site.

Inputs are files the workflow wrote: features (N, F) aligned with each cohort's converted
participants table, and the cohort's split and draws tables.
"""

import os
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from yaware.data.labels import binary_labels
from yaware.data.participants import MISSING, as_text, read_table, row_positions
from yaware.errors import DataError
from yaware.evaluate.probes import age_probe, linear_probe, site_probe
from yaware.io import save_json, save_table

# With splits.external_sites, probes and fine-tuned models are also scored on the sites
# held out whole: these columns follow the internal test's in both tidy tables.
EXTERNAL_COLUMNS = ["n_external", "external_auc", "external_balanced_accuracy"]


def probe_task(
    features: str | os.PathLike,
    participants: str | os.PathLike,
    split: str | os.PathLike,
    draws: str | os.PathLike,
    task: Mapping,
    probe: Mapping,
) -> pd.DataFrame:
    """One row per (n_target, repeat): test AUC and balanced accuracy of a linear probe."""
    x = np.load(features)
    table = read_table(participants)
    if len(x) != len(table):
        raise DataError(f"{features} has {len(x)} rows but {participants} has {len(table)}")
    labels, _ = binary_labels(
        table, task["label"], task["positive"], task["negative"], str(participants)
    )
    split_table = read_table(split)
    test = row_positions(table, split_table[split_table["split"] == "test"], str(split))
    held_out = split_table[split_table["split"] == "external"]
    external = row_positions(table, held_out, str(split)) if len(held_out) else None
    rows = []
    for (n_target, repeat), draw in read_table(draws).groupby(["n_target", "repeat"]):
        train = row_positions(table, draw, str(draws))
        scores = linear_probe(
            x[train],
            labels[train],
            x[test],
            labels[test],
            probe["Cs"],
            probe["inner_folds"],
            probe["seed"] + int(repeat),
            external=None if external is None else (x[external], labels[external]),
        )
        sizes = {"n_test": len(test)} | ({} if external is None else {"n_external": len(external)})
        rows.append({"n_target": int(n_target), "repeat": int(repeat), **sizes, **scores})
    return pd.DataFrame(rows)


def probe_age_and_site(
    features: Sequence[str | os.PathLike],
    participants: Sequence[str | os.PathLike],
    splits: Sequence[str | os.PathLike],
    label: str,
) -> dict[str, float]:
    """Age MAE (ridge) and site balanced accuracy, training rows to validation rows, over
    the pretraining cohorts pooled (one features, table and split file each)."""
    parts: dict[str, list] = {"train": [], "val": []}
    for feature_path, table_path, split_path in zip(features, participants, splits, strict=True):
        x, table, split = np.load(feature_path), read_table(table_path), read_table(split_path)
        site = as_text(table["site"]) if "site" in table else pd.Series("", index=table.index)
        for side, chunks in parts.items():
            rows = row_positions(table, split[split["split"] == side], str(split_path))
            age = pd.to_numeric(table[label]).to_numpy(float)[rows]
            chunks.append((x[rows], age, site.to_numpy()[rows]))
    train_x, train_age, train_site = (np.concatenate(c) for c in zip(*parts["train"], strict=True))
    val_x, val_age, val_site = (np.concatenate(c) for c in zip(*parts["val"], strict=True))
    result = age_probe(train_x, train_age, val_x, val_age)
    # A scan of no known site is no example of one: the site probe leaves it out.
    known, val_known = train_site != MISSING, val_site != MISSING
    if len(np.unique(train_site[known])) > 1 and val_known.any():
        result |= site_probe(
            train_x[known], train_site[known], val_x[val_known], val_site[val_known]
        )
    return result | {"n_train": len(train_x), "n_val": len(val_x)}


LINEAR_PROBE_COLUMNS = [
    "cohort",
    "task",
    "n_target",
    "repeat",
    "n_test",
    "auc",
    "balanced_accuracy",
    "C",
]


def run_linear_probe(inputs: dict, output: str, cohort: str, task: dict, probe: dict) -> None:
    """The linear_probe job: one model on one evaluation cohort's task, every draw."""
    table = probe_task(
        inputs["features"], inputs["participants"], inputs["split"], inputs["draws"], task, probe
    ).assign(cohort=cohort, task=task["name"])
    columns = LINEAR_PROBE_COLUMNS + [c for c in EXTERNAL_COLUMNS if c in table]
    save_table(output, table[columns])


def run_age_site_probe(
    features: list[str], participants: list[str], splits: list[str], output: str, label: str
) -> None:
    """The age_site_probe job: one model over the pretraining cohorts pooled."""
    save_json(output, probe_age_and_site(features, participants, splits, label))
