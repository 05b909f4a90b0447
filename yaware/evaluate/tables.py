"""The tables job: tidy CSVs gathered from every probe and fine-tuning job, the paired
differences, and the mean +- sd summary beside the paper's published values (read by eye
from its figure, on real data)."""

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from yaware.data.participants import read_table
from yaware.evaluate.comparisons import paired_differences, with_q_values
from yaware.evaluate.controls import control_section
from yaware.evaluate.markdown import markdown
from yaware.evaluate.openbhb_metrics import openbhb_section
from yaware.evaluate.paper import PAPER_AUC, PAPER_METHOD
from yaware.evaluate.summary import summary_note, summary_tail
from yaware.evaluate.tasks import EXTERNAL_COLUMNS
from yaware.io import save_table


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


FINETUNE_COLUMNS = [
    "init",
    "init_kind",
    "method",
    "sigma",
    "seed",
    "label",
    "cohort",
    "task",
    "n_target",
    "repeat",
    "n",
    "auc",
    "balanced_accuracy",
]


def finetune_rows(
    jobs: Sequence[Mapping], paths: Sequence[str], tasks: Mapping, inits: Mapping
) -> pd.DataFrame:
    """One row per fine-tuning job (``init``, ``cohort``, ``n_target``, ``repeat``) with its
    test metrics; ``inits``: method, sigma, seed and label of each start, scratch too."""
    rows = []
    for job, path in zip(jobs, paths, strict=True):
        start = inits[job["init"]]
        rows.append(
            {
                "init": job["init"],
                "init_kind": "scratch" if start["method"] == "scratch" else "pretrained",
                **{key: start[key] for key in ("method", "sigma", "seed", "label")},
                "cohort": job["cohort"],
                "task": tasks[job["cohort"]],
                "n_target": int(job["n_target"]),
                "repeat": int(job["repeat"]),
                **json.loads(Path(path).read_text()),
            }
        )
    columns = list(FINETUNE_COLUMNS)
    if any("external_auc" in row for row in rows):  # splits.external_sites
        columns += EXTERNAL_COLUMNS
    return pd.DataFrame(rows, columns=columns)


def compare(linear: pd.DataFrame, finetune: pd.DataFrame, settings: dict) -> pd.DataFrame:
    """Each label minus each baseline's, paired on draw and seed, in every evaluation."""
    evaluations = [(linear, "auc", "linear probe"), (finetune, "auc", "fine-tuning")]
    evaluations += [  # splits.external_sites
        (frame, "external_auc", f"{name}, external sites")
        for frame, _, name in evaluations[:2]
        if "external_auc" in frame
    ]
    tables = [
        paired_differences(frame, value, settings["baselines"], name, settings["confidence"])
        for frame, value, name in evaluations
    ]
    return with_q_values(pd.concat(tables, ignore_index=True))


SUMMARY_KEYS = ["label", "method", "kind", "cohort", "task", "n_target"]


def summary_table(linear: pd.DataFrame, finetune: pd.DataFrame) -> pd.DataFrame:
    """Mean and sd of the AUC by label, cohort, task and N_target in every evaluation, with the
    paper's value where task and N_target match (fine-tuning: training from scratch only)."""
    keys = SUMMARY_KEYS
    tuned_frame = finetune.rename(columns={"init_kind": "kind"})
    probe = with_paper(summarise(linear, keys, "auc")).assign(evaluation="linear probe")
    tuned = summarise(tuned_frame, keys, "auc").assign(evaluation="fine-tuning")
    tuned = with_paper(tuned).assign(
        paper_auc=lambda t: t["paper_auc"].where(t["method"] == "scratch")
    )
    held_out = [  # splits.external_sites: the same models on whole sites held out
        summarise(frame, keys, "external_auc")
        .rename(columns=lambda c: c.replace("external_", ""))
        .assign(evaluation=f"{evaluation}, external sites", paper_auc=None)
        for frame, evaluation in ((linear, "linear probe"), (tuned_frame, "fine-tuning"))
        if "external_auc" in frame
    ]
    summary = pd.concat([probe, tuned, *held_out], ignore_index=True)
    return summary[["evaluation", *keys, "auc_mean", "auc_sd", "n", "paper_auc"]]


def run_tables(
    inputs: dict,
    outputs: dict,
    models: dict,
    linear: list,
    finetune: list,
    tasks: dict,
    inits: dict,
    config: dict,
    controls: dict | None = None,
    quality: list | None = None,
) -> None:
    """The tables job. ``linear``: the (model, cohort) of each probe file; ``finetune``: the
    job (init, cohort, n_target, repeat) of each fine-tuning file, in the inputs' order;
    ``controls``: 'positive control' or 'negative control' of each control cohort;
    ``quality``: the model of each alignment and uniformity file, joined to age_site.csv."""
    probed = gather_linear(
        [(model, path) for (model, _), path in zip(linear, inputs["linear"], strict=True)], models
    )
    age_site = gather_json(dict(zip(models, inputs["age_site"], strict=True)), models)
    if quality:
        measured = gather_json(dict(zip(quality, inputs["quality"], strict=True)), models)
        columns = ["model", "alignment", "uniformity"]
        age_site = age_site.merge(measured[columns], on="model", how="left")
    tuned = finetune_rows(finetune, inputs["finetune"], tasks, inits)
    save_table(outputs["linear"], probed)
    save_table(outputs["age_site"], age_site)
    save_table(outputs["finetune"], tuned)
    comparisons = compare(probed, tuned, config["comparisons"])
    save_table(outputs["comparisons"], comparisons)
    summary = summary_table(probed, tuned)
    save_table(outputs["summary"], summary)
    note = summary_note(age_site, config)
    methods = dict(zip(probed["label"], probed["method"], strict=True))
    controls_text = control_section(comparisons, methods, controls or {})
    openbhb = [openbhb_section(read_table(path)) for path in inputs.get("openbhb", [])]
    tail = "\n\n".join(
        t for t in (controls_text, summary_tail(comparisons, config["comparisons"]), *openbhb) if t
    )
    markdown(summary, outputs["markdown"], "Results", note, tail=tail)
