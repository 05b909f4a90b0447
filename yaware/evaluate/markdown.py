"""Markdown of result tables: a frame as a table, and the summary file around it."""

import os

import pandas as pd

from yaware.io import write_atomic


def markdown_table(frame: pd.DataFrame) -> str:
    """A frame as Markdown; an undefined value (a spread over one seed) is a blank cell, as
    in the AUC table, not "nan"."""
    return (
        frame.astype(object)
        .where(frame.notna(), None)
        .to_markdown(index=False, floatfmt=".3f", missingval="")
    )


def markdown(
    frame: pd.DataFrame, path: str | os.PathLike, title: str, note: str, tail: str = ""
) -> None:
    """A Markdown table with mean +- sd cells, after ``note`` and before ``tail``."""
    lines = [f"# {title}", "", note, ""]
    columns = list(frame.columns)
    lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in frame.itertuples(index=False):
        cells = [
            "" if v is None or pd.isna(v) else f"{v:.3f}" if isinstance(v, float) else str(v)
            for v in row
        ]
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n" + (f"\n{tail}\n" if tail else "")
    write_atomic(path, lambda handle: handle.write(text.encode()))
