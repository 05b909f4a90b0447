"""Probing one model's representations on every task, and on age and site.

Inputs are files the workflow wrote: features (N, F) aligned with each cohort's converted
participants table, and the cohort's split and draws tables.
"""

import os
from collections.abc import Mapping

import numpy as np
import pandas as pd

from yaware.data import ID_COLUMN, read_table
from yaware.errors import DataError
from yaware.labels import binary_labels
from yaware.probes import age_probe, linear_probe, site_probe


def row_index(table: pd.DataFrame, keys: pd.DataFrame, source: str) -> np.ndarray:
    """Positions in ``table`` of the (participant_id, session) rows of ``keys``."""
    position = {
        (str(p), str(s)): i
        for i, (p, s) in enumerate(zip(table[ID_COLUMN], table["session"], strict=True))
    }
    try:
        return np.array(
            [
                position[(str(p), str(s))]
                for p, s in zip(keys[ID_COLUMN], keys["session"], strict=True)
            ]
        )
    except KeyError as err:
        raise DataError(
            f"{source}: split row {err.args[0]} is not in the converted table; rerun the splits"
        ) from None


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
    test = row_index(table, split_table[split_table["split"] == "test"], str(split))
    rows = []
    for (n_target, repeat), draw in read_table(draws).groupby(["n_target", "repeat"]):
        train = row_index(table, draw, str(draws))
        scores = linear_probe(
            x[train],
            labels[train],
            x[test],
            labels[test],
            probe["Cs"],
            probe["inner_folds"],
            probe["seed"] + int(repeat),
        )
        rows.append(
            {"n_target": int(n_target), "repeat": int(repeat), "n_test": len(test), **scores}
        )
    return pd.DataFrame(rows)


def probe_age_and_site(
    features: str | os.PathLike,
    participants: str | os.PathLike,
    split: str | os.PathLike,
    label: str,
) -> dict[str, float]:
    """Age MAE (ridge) and site balanced accuracy, training rows to validation rows."""
    x = np.load(features)
    table = read_table(participants)
    split_table = read_table(split)
    train = row_index(table, split_table[split_table["split"] == "train"], str(split))
    val = row_index(table, split_table[split_table["split"] == "val"], str(split))
    age = pd.to_numeric(table[label]).to_numpy(float)
    result = age_probe(x[train], age[train], x[val], age[val])
    if "site" in table.columns and table["site"].nunique() > 1:
        site = table["site"].astype(str).to_numpy()
        result |= site_probe(x[train], site[train], x[val], site[val])
    return result | {"n_train": len(train), "n_val": len(val)}
