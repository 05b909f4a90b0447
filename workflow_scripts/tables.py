"""Snakemake script: gather every probe and fine-tuning result into tidy tables and a summary."""

import json
from pathlib import Path

import pandas as pd

from yaware.evaluate.captions import describe_pretraining
from yaware.evaluate.comparisons import paired_differences, with_q_values
from yaware.evaluate.tables import (
    gather_json,
    gather_linear,
    markdown,
    markdown_table,
    summarise,
    with_paper,
)
from yaware.evaluate.tasks import EXTERNAL_COLUMNS
from yaware.io import save_table
from yaware.workflow.logged import run_logged


def finetune_rows(paths: list[str], tasks: dict, inits: dict) -> pd.DataFrame:
    """``inits``: method, sigma, seed and label of each start, training from scratch too."""
    rows = []
    for path in paths:
        parts = Path(path).parts  # results/finetune/<init>/<cohort>/n<N>_r<R>/test_metrics.json
        init, cohort, draw = parts[-4], parts[-3], parts[-2]
        n_target, repeat = (int(v) for v in draw[1:].split("_r"))
        start = inits[init]
        rows.append(
            {
                "init": init,
                "init_kind": "scratch" if start["method"] == "scratch" else "pretrained",
                "method": start["method"],
                "sigma": start["sigma"],
                "seed": start["seed"],
                "label": start["label"],
                "cohort": cohort,
                "task": tasks[cohort],
                "n_target": n_target,
                "repeat": repeat,
                **json.loads(Path(path).read_text()),
            }
        )
    columns = [
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


def main(inputs: dict, outputs: dict, models: dict, tasks: dict, inits: dict, config: dict) -> None:
    names = list(models)
    # results/probes/<model>/linear/<cohort>.csv
    linear = gather_linear([(Path(path).parts[-3], path) for path in inputs["linear"]], models)
    age_site = gather_json(dict(zip(names, inputs["age_site"], strict=True)), models)
    finetune = finetune_rows(inputs["finetune"], tasks, inits)
    save_table(outputs["linear"], linear)
    save_table(outputs["age_site"], age_site)
    save_table(outputs["finetune"], finetune)
    comparisons = compare(linear, finetune, config["comparisons"])
    save_table(outputs["comparisons"], comparisons)
    keys = ["label", "method", "kind", "task", "n_target"]
    probe = with_paper(summarise(linear, keys, "auc")).assign(evaluation="linear probe")
    tuned = summarise(finetune.rename(columns={"init_kind": "kind"}), keys, "auc").assign(
        evaluation="fine-tuning"
    )
    tuned = with_paper(tuned).assign(
        paper_auc=lambda t: t["paper_auc"].where(t["method"] == "scratch")
    )
    held_out = [  # splits.external_sites: the same models on whole sites held out
        summarise(frame, keys, "external_auc")
        .rename(columns=lambda c: c.replace("external_", ""))
        .assign(evaluation=f"{evaluation}, external sites", paper_auc=None)
        for frame, evaluation in (
            (linear, "linear probe"),
            (finetune.rename(columns={"init_kind": "kind"}), "fine-tuning"),
        )
        if "external_auc" in frame
    ]
    summary = pd.concat([probe, tuned, *held_out], ignore_index=True)
    summary = summary[["evaluation", *keys, "auc_mean", "auc_sd", "n", "paper_auc"]]
    save_table(outputs["summary"], summary)
    columns = ("age_mae", "age_mae_constant", "site_balanced_accuracy", "site_chance")
    probes = [c for c in columns if c in age_site]
    age = age_site.groupby(["label", "method", "kind"], sort=False)[probes].agg(["mean", "std"])
    age.columns = [f"{name}_{stat.replace('std', 'sd')}" for name, stat in age.columns]
    age = age.reset_index().assign(seeds=age_site.groupby("label", sort=False).size().to_numpy())
    p, splits = config["pretraining"], config["splits"]
    note = (
        "Made by the workflow from results/tables/*.csv. Pretraining: "
        f"{describe_pretraining(p)}; probes over "
        f"{splits['repeats']} draws per N_target (split seed {splits['seed']}). auc_sd is the "
        "spread over draws (and seeds). paper_auc: the published value on real data, where "
        "task and N_target match.\n\n## Age and site probes (pretraining validation set; "
        "mean and sd over seeds; site chance level = 1 / number of sites)\n\n"
        + markdown_table(age)
        + "\n\n## AUC by method, task and N_target"
    )
    settings = config["comparisons"]
    paired = (
        "## Paired differences against the baselines\n\n"
        f"Each label's AUC minus a baseline's ({', '.join(settings['baselines'])}) on the "
        "same draws and pretraining seeds (results/tables/comparisons.csv). p_better: the "
        "fraction of pairs where the label scores higher. The "
        f"{settings['confidence'] * 100:g} % interval and p-value are a t over the per-seed means "
        "(the pretrainings are the independent runs; the draws share one test set): none "
        "with one seed or with equal per-seed means, and none includes the test set's own "
        "sampling error. q_value: "
        "Benjamini-Hochberg over every tested row.\n\n"
        + (
            markdown_table(comparisons)
            if len(comparisons)
            else "None of these baselines was evaluated in this run: set comparisons.baselines."
        )
    )
    markdown(summary, outputs["markdown"], "Results", note, tail=paired)


run_logged(
    snakemake.log[0],
    main,
    {k: list(v) for k, v in snakemake.input.items()},
    dict(snakemake.output.items()),
    snakemake.params.models,
    snakemake.params.tasks,
    snakemake.params.inits,
    snakemake.params.config,
)
