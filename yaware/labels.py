"""Binary task labels from a diagnosis column (e.g. alzheimer vs control)."""

from collections.abc import Sequence

import numpy as np
import pandas as pd

from yaware.errors import DataError


def binary_labels(
    table: pd.DataFrame,
    column: str,
    positive: Sequence[str],
    negative: Sequence[str],
    source: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Class labels (1 = positive) and the mask of rows that belong to the task.

    Without ``positive``/``negative`` the column must already hold 0 and 1.

    Raises:
        DataError: the column is missing, or a class has no row.
    """
    if column not in table.columns:
        raise DataError(f"{source}: no column {column!r}; the table has {list(table.columns)}")
    values = table[column]
    if positive:
        text = values.astype(str).str.strip().str.lower()
        pos = text.isin([str(v).lower() for v in positive])
        neg = text.isin([str(v).lower() for v in negative])
    else:
        numeric = pd.to_numeric(values, errors="coerce")
        if not numeric.dropna().isin([0, 1]).all() or numeric.isna().any():
            raise DataError(
                f"{source}: column {column!r} holds {sorted(values.astype(str).unique())[:6]}; "
                "give positive and negative values (e.g. positive: [alzheimer], "
                "negative: [control])"
            )
        pos, neg = numeric == 1, numeric == 0
    for name, mask, wanted in (
        ("positive", pos, positive or [1]),
        ("negative", neg, negative or [0]),
    ):
        if not mask.any():
            raise DataError(
                f"{source}: no row of the {name} class ({list(wanted)}) "
                f"in column {column!r}, which holds {sorted(values.astype(str).unique())[:6]}"
            )
    return pos.to_numpy().astype(np.int64), (pos | neg).to_numpy()
