"""Result tables: tidy CSVs gathered from every job, and the mean +- sd summary beside the
paper's published values (read by eye from its figure, on real data)."""

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from yaware.io import write_atomic

TASK_OF_DIAGNOSIS = {
    "alzheimer": "AD vs CTL",
    "schizophrenia": "SCZ vs CTL",
    "bipolar": "BD vs CTL",
}

# The paper's Figure (representation quality, linear probe; Fully sup. = trained from
# scratch): {task: {n_target: {method: AUC}}}.
PAPER_AUC = {
    "SCZ vs CTL": {
        100: {
            "y-Aware": 0.737,
            "SimCLR": 0.586,
            "Age sup.": 0.630,
            "Model Genesis": 0.599,
            "Fully sup.": 0.690,
        },
        300: {
            "y-Aware": 0.765,
            "SimCLR": 0.642,
            "Age sup.": 0.678,
            "Model Genesis": 0.685,
            "Fully sup.": 0.748,
        },
        500: {
            "y-Aware": 0.796,
            "SimCLR": 0.677,
            "Age sup.": 0.721,
            "Model Genesis": 0.721,
            "Fully sup.": 0.777,
        },
    },
    "BD vs CTL": {
        100: {
            "y-Aware": 0.590,
            "SimCLR": 0.563,
            "Age sup.": 0.571,
            "Model Genesis": 0.542,
            "Fully sup.": 0.593,
        },
        300: {
            "y-Aware": 0.648,
            "SimCLR": 0.580,
            "Age sup.": 0.595,
            "Model Genesis": 0.582,
            "Fully sup.": 0.630,
        },
        500: {
            "y-Aware": 0.663,
            "SimCLR": 0.605,
            "Age sup.": 0.626,
            "Model Genesis": 0.600,
            "Fully sup.": 0.658,
        },
    },
    "AD vs CTL": {
        100: {
            "y-Aware": 0.916,
            "SimCLR": 0.841,
            "Age sup.": 0.820,
            "Model Genesis": 0.886,
            "Fully sup.": 0.935,
        },
        200: {
            "y-Aware": 0.937,
            "SimCLR": 0.864,
            "Age sup.": 0.880,
            "Model Genesis": 0.909,
            "Fully sup.": 0.958,
        },
        300: {
            "y-Aware": 0.952,
            "SimCLR": 0.880,
            "Age sup.": 0.913,
            "Model Genesis": 0.909,
            "Fully sup.": 0.965,
        },
    },
}
PAPER_METHOD = {
    "yaware": "y-Aware",
    "simclr": "SimCLR",
    "age_supervision": "Age sup.",
    "model_genesis": "Model Genesis",
    "scratch": "Fully sup.",
}


def gather_linear(files: Sequence[tuple[str, str]], models: Mapping[str, Mapping]) -> pd.DataFrame:
    """Concatenate the probe tables, each a (model, path) pair, with the model's description
    columns."""
    frames = []
    for model, path in files:
        frame = pd.read_csv(path)
        for key, value in models[model].items():
            frame.insert(0, key, value)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def gather_json(files: Mapping[str, str], models: Mapping[str, Mapping]) -> pd.DataFrame:
    rows = []
    for model, path in files.items():
        rows.append({**models[model], **json.loads(Path(path).read_text())})
    return pd.DataFrame(rows)


def summarise(frame: pd.DataFrame, keys: Sequence[str], value: str) -> pd.DataFrame:
    stats = frame.groupby(list(keys), sort=False)[value].agg(["mean", "std", "count"]).reset_index()
    return stats.rename(columns={"mean": f"{value}_mean", "std": f"{value}_sd", "count": "n"})


def with_paper(summary: pd.DataFrame, method_column: str = "method") -> pd.DataFrame:
    def paper(row: pd.Series) -> float | None:
        method = PAPER_METHOD.get(row[method_column])
        return PAPER_AUC.get(row["task"], {}).get(int(row["n_target"]), {}).get(method)

    # Row by row, not DataFrame.apply: on no rows (fine-tuning off) apply returns a frame.
    values = [paper(row) for _, row in summary.iterrows()]
    return summary.assign(paper_auc=pd.Series(values, index=summary.index, dtype=float))


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
