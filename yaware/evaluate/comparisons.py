"""Paired differences between methods: each method's score minus a baseline's, on the same
draws (the same training scans, the same test set) and the same pretraining seeds.

A draw's training subset and the test set are shared by every method, so pairing on the
draw removes the draw-to-draw spread that dominates the summary's sd. The draws are not
independent replicates, though: they share the test set and overlap in training scans. The
independent units are the pretrainings, so the interval and the p-value are a Student t
over the per-seed means of the paired differences (no interval with one seed, or when
every seed's mean is the same). Neither includes the sampling error of the one test set.
"""

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

COLUMNS = [
    "evaluation",
    "cohort",
    "task",
    "n_target",
    "label",
    "baseline",
    "n_pairs",
    "n_seeds",
    "diff_mean",
    "diff_sd",
    "p_better",
    "ci_low",
    "ci_high",
    "p_value",
    "q_value",
]
# Two cohorts may share a task (ADNI and OASIS, both AD vs CN): each is its own comparison.
GROUP = ["cohort", "task", "n_target"]
# Scores (AUCs) closer than this are equal: far below any difference worth a row.
SCORE_TOLERANCE = 1e-9


def _scores(rows: pd.DataFrame, value: str) -> pd.Series:
    """A label's scores indexed by (seed, repeat); no seed (training from scratch) is one."""
    seeds = rows["seed"].fillna(-1).astype(int) if "seed" in rows else pd.Series(-1, rows.index)
    scores = pd.Series(rows[value].to_numpy(float), index=[seeds.to_numpy(), rows["repeat"]])
    if scores.index.has_duplicates:
        label = rows["label"].iloc[0]
        raise ValueError(
            f"{label!r} has more than one row for a seed and draw: labels must be unique"
        )
    return scores


def _pairs(method: pd.Series, baseline: pd.Series) -> pd.DataFrame:
    """Paired (seed, repeat, difference) rows. A side with a single seed (a floor, a model
    made elsewhere, training from scratch) pairs with every seed of the other on each draw;
    otherwise seeds pair by number, and a seed that only one side has is left out."""
    m = method.rename("m").rename_axis(["seed", "repeat"]).reset_index()
    b = baseline.rename("b").rename_axis(["seed", "repeat"]).reset_index()
    if m["seed"].nunique() == 1 or b["seed"].nunique() == 1:
        unit = "seed_b" if m["seed"].nunique() == 1 else "seed_m"
        joined = m.merge(b, on="repeat", suffixes=("_m", "_b")).rename(columns={unit: "unit"})
    else:
        joined = m.merge(b, on=["seed", "repeat"]).rename(columns={"seed": "unit"})
    joined = joined.dropna(subset=["m", "b"])
    return pd.DataFrame({"unit": joined["unit"], "diff": joined["m"] - joined["b"]})


def _row(pairs: pd.DataFrame, confidence: float) -> dict:
    diff = pairs["diff"].to_numpy()
    per_seed = pairs.groupby("unit")["diff"].mean().to_numpy()
    # Each pretraining weighs the same; with as many draws per seed, this is diff.mean().
    mean = float(per_seed.mean())
    # AUCs on a small test set take few values: a difference of rounding error is a tie.
    won = np.where(np.abs(diff) <= SCORE_TOLERANCE, 0.5, (diff > 0).astype(float))
    row = {
        "n_pairs": len(diff),
        "n_seeds": len(per_seed),
        "diff_mean": mean,
        "diff_sd": float(diff.std(ddof=1)) if len(diff) > 1 else np.nan,
        "p_better": float(won.mean()),
        "ci_low": np.nan,
        "ci_high": np.nan,
        "p_value": np.nan,
    }
    spread = float(per_seed.std(ddof=1)) if len(per_seed) > 1 else 0.0
    # Equal per-seed means (often, with discrete AUCs and two seeds) leave the t no spread
    # to estimate: its p would be 0 from rounding error alone. No interval, no p then.
    if spread > SCORE_TOLERANCE:
        se = spread / np.sqrt(len(per_seed))
        df = len(per_seed) - 1
        half = float(stats.t.ppf(0.5 + confidence / 2, df)) * se
        row |= {"ci_low": mean - half, "ci_high": mean + half}
        row["p_value"] = float(2 * stats.t.sf(abs(mean) / se, df))
    return row


def paired_differences(
    frame: pd.DataFrame,
    value: str,
    baselines: Sequence[str],
    evaluation: str,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Every label minus each baseline label (a label whose method is in ``baselines``), per
    cohort, task and N_target. ``frame``: one row per label, seed (optional), cohort, task,
    n_target and repeat, with ``method`` and the score column ``value``."""
    rows = []
    frame = frame.dropna(subset=[value])
    compared: set[frozenset[str]] = set()  # two baselines are compared once, not both ways
    references = [label for m in baselines for label in frame.loc[frame["method"] == m, "label"]]
    for baseline in dict.fromkeys(references):
        for label in frame["label"].unique():
            if label == baseline or frozenset((label, baseline)) in compared:
                continue
            compared.add(frozenset((label, baseline)))
            for key, group in frame[frame["label"].isin([label, baseline])].groupby(
                GROUP, sort=False
            ):
                method = group[group["label"] == label]
                reference = group[group["label"] == baseline]
                if method.empty or reference.empty:
                    continue
                pairs = _pairs(_scores(method, value), _scores(reference, value))
                if pairs.empty:
                    continue
                rows.append(
                    dict(zip(GROUP, key, strict=True))
                    | {"evaluation": evaluation, "label": label, "baseline": baseline}
                    | _row(pairs, confidence)
                )
    return pd.DataFrame(rows, columns=COLUMNS)


def with_q_values(table: pd.DataFrame) -> pd.DataFrame:
    """Benjamini-Hochberg q-values over every tested row of the table: a table of many
    comparisons finds some p < 0.05 by chance alone."""
    # An evaluation without rows (fine-tuning switched off) leaves the column of objects.
    p_values = table["p_value"].astype(float)
    tested = p_values.notna()
    q = pd.Series(np.nan, index=table.index)
    if tested.any():
        q[tested] = stats.false_discovery_control(p_values[tested].to_numpy())
    return table.assign(p_value=p_values, q_value=q)
