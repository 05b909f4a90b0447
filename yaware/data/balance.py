"""Whether the sides of a split differ in age, sex or class: per-side summaries and tests.

Splits are stratified (pretraining: age bin, site, sex; evaluation: class, site, sex), so
their sides should not differ much; this records by how much they do, with the tests
ClinicaDL runs on its splits (Welch's t-test on age, a chi-square test on each categorical
column), each side against the training side, and flags a difference at p < ``alpha``.
"""

import logging

import numpy as np
import pandas as pd
from scipy import stats

from yaware.data.participants import ID_COLUMN, as_text

log = logging.getLogger(__name__)

CATEGORICAL = ("sex", "site")


def _summary(rows: pd.DataFrame, categorical: list[str]) -> dict:
    ages = pd.to_numeric(rows["age"], errors="coerce").dropna() if "age" in rows else None
    summary: dict = {"n_subjects": int(rows[ID_COLUMN].nunique())}
    if ages is not None and len(ages):
        summary |= {
            "age_mean": float(ages.mean()),
            "age_sd": float(ages.std(ddof=1)) if len(ages) > 1 else 0.0,
        }
    for column in categorical:
        counts = as_text(rows[column]).value_counts().sort_index()
        summary[f"{column}_counts"] = {str(k): int(v) for k, v in counts.items()}
    return summary


def _age_p(reference: pd.DataFrame, side: pd.DataFrame) -> float | None:
    a = pd.to_numeric(reference["age"], errors="coerce").dropna()
    b = pd.to_numeric(side["age"], errors="coerce").dropna()
    if len(a) < 2 or len(b) < 2 or (a.std() == 0 and b.std() == 0):
        return None
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def _categorical_p(reference: pd.DataFrame, side: pd.DataFrame, column: str) -> float | None:
    table = pd.crosstab(
        np.r_[np.zeros(len(reference)), np.ones(len(side))],
        np.r_[as_text(reference[column]), as_text(side[column])],
    )
    if table.shape[1] < 2:
        return None
    return float(stats.chi2_contingency(table.to_numpy()).pvalue)


def split_balance(
    table: pd.DataFrame,
    sides: pd.Series,
    label: str | None = None,
    alpha: float = 0.05,
    cohort: str = "",
) -> dict:
    """Summaries of each side of ``sides`` (one side name per row of ``table``, subjects on
    their first row) and p-values of each side against ``train``; logs a warning per
    difference at p < ``alpha``. ``label``: the task's class column, tested like sex."""
    categorical = [c for c in (*CATEGORICAL, label) if c and c in table.columns]
    rows = {name: table[sides.to_numpy() == name] for name in pd.unique(sides)}
    balance: dict = {"alpha": alpha, "sides": {}, "against_train": {}}
    for name, side in rows.items():
        balance["sides"][str(name)] = _summary(side, categorical)
    reference = rows.get("train")
    if reference is None:
        return balance
    for name, side in rows.items():
        if name == "train" or not len(side):
            continue
        tests: dict[str, float | None] = {}
        if "age" in table.columns:
            tests["age_p"] = _age_p(reference, side)
        for column in categorical:
            tests[f"{column}_p"] = _categorical_p(reference, side, column)
        balance["against_train"][str(name)] = tests
        if name == "external":  # whole sites held out: they may differ, by design
            continue
        for test, p in tests.items():
            if p is not None and p < alpha:
                log.warning(
                    "%s: %s differs between train and %s (p = %.3g); try another "
                    "splits.seed, or report it with the results",
                    cohort or "split",
                    test.removesuffix("_p"),
                    name,
                    p,
                )
    return balance
