"""Snakemake script: linear probes of one model on every task; age and site probes."""

import pandas as pd

from yaware.evaluate import probe_age_and_site, probe_task
from yaware.io import save_json, save_table
from yaware.tables import EXTERNAL_COLUMNS
from yaware.workflow import run_logged

COLUMNS = ["cohort", "task", "n_target", "repeat", "n_test", "auc", "balanced_accuracy", "C"]


def main(
    inputs: dict,
    outputs: dict,
    cohorts: list[str],
    evaluation: list[str],
    pretraining: list[str],
    tasks: dict,
    label: str,
    probe: dict,
) -> None:
    frames = []
    draws = dict(zip(evaluation, inputs["draws"], strict=True))
    for i, cohort in enumerate(cohorts):
        if cohort not in tasks:
            continue
        frame = probe_task(
            inputs["features"][i],
            inputs["participants"][i],
            inputs["splits"][i],
            draws[cohort],
            tasks[cohort],
            probe,
        )
        frames.append(frame.assign(cohort=cohort, task=tasks[cohort]["name"]))
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
    table = table[COLUMNS + [c for c in EXTERNAL_COLUMNS if c in table]]
    save_table(outputs["linear"], table)
    pooled = [cohorts.index(c) for c in pretraining]
    files = [[inputs[kind][i] for i in pooled] for kind in ("features", "participants", "splits")]
    save_json(outputs["age_site"], probe_age_and_site(*files, label))


run_logged(
    snakemake.log[0],
    main,
    {k: list(snakemake.input[k]) for k in ("features", "participants", "splits", "draws")},
    dict(snakemake.output.items()),
    snakemake.params.cohorts,
    snakemake.params.evaluation,
    snakemake.params.pretraining,
    snakemake.params.tasks,
    snakemake.params.label,
    snakemake.params.probe,
)
