"""Binary task labels from a diagnosis column (e.g. alzheimer vs control)."""

from collections.abc import Sequence

import numpy as np
import pandas as pd

from yaware.data.participants import as_text, missing_column
from yaware.errors import DataError


def binary_labels(
    table: pd.DataFrame,
    column: str,
    positive: Sequence[str | float],
    negative: Sequence[str | float],
    source: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Class labels (1 = positive) and the mask of rows that belong to the task.

    Without ``positive``/``negative`` the column must already hold 0 and 1.

    Raises:
        DataError: the column is missing, or a class has no row.
    """
    if column not in table.columns:
        raise missing_column(table, column, source, "set the task's label to one of them")
    values = table[column]
    if positive:
        pos, neg = matches(values, positive), matches(values, negative)
    else:
        numeric = pd.to_numeric(values, errors="coerce")
        if not numeric.dropna().isin([0, 1]).all() or numeric.isna().any():
            raise DataError(
                f"{source}: column {column!r} holds {sorted(as_text(values).unique())[:6]}; "
                "give positive and negative values (e.g. positive: [alzheimer], "
                "negative: [control])"
            )
        pos, neg = numeric == 1, numeric == 0
    both = pos & neg
    if both.any():
        raise DataError(
            f"{source}: values {sorted(as_text(values[both]).unique())} of column "
            f"{column!r} are in both classes (positive {list(positive)}, negative "
            f"{list(negative)}); list each value in one class"
        )
    for name, mask, wanted in (
        ("positive", pos, positive or [1]),
        ("negative", neg, negative or [0]),
    ):
        if not mask.any():
            raise DataError(
                f"{source}: no row of the {name} class ({list(wanted)}) "
                f"in column {column!r}, which holds {sorted(as_text(values).unique())[:6]}"
            )
    return pos.to_numpy().astype(np.int64), (pos | neg).to_numpy()


def matches(values: pd.Series, wanted: Sequence[str | float]) -> pd.Series:
    """Rows whose value is one of ``wanted``: as text, ignoring case and spaces, or as a
    number (a code 1 matches a column read as 1.0 because another row is empty)."""
    text = values.astype(str).str.strip().str.lower()
    found = text.isin([str(v).strip().lower() for v in wanted])
    codes = pd.to_numeric(pd.Series(list(wanted), dtype=object), errors="coerce").dropna()
    if len(codes):
        found |= pd.to_numeric(values, errors="coerce").isin(codes.astype(float))
    return found
