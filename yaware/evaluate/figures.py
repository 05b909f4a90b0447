"""The figure jobs: the paper's Figures 1 to 3, each drawn from files the workflow wrote,
with a caption that names the pretraining and those files."""

import json
from pathlib import Path

import numpy as np
import pandas as pd

from yaware.data.labels import binary_labels
from yaware.data.participants import read_table
from yaware.evaluate.captions import describe_pretraining, describe_umap
from yaware.evaluate.plots import age_mae_by_epoch, auc_vs_n_target, sigma_effect, umap_panels


def run_figure_auc(
    linear: str, finetune: str, out: str, panels: list[tuple[str, str]], config: dict
) -> None:
    """Figure 1: test AUC against N_target, one panel per (evaluation cohort, task)."""
    caption = (
        f"Linear probes of frozen representations; {describe_pretraining(config['pretraining'])}"
        f"; data: {linear}, {finetune}"
    )
    auc_vs_n_target(pd.read_csv(linear), pd.read_csv(finetune), panels, out, caption)


def run_figure_sigma(linear: str, age_site: str, out: str, config: dict) -> None:
    """Figure 3: AUC and age MAE against sigma (0 = SimCLR)."""
    caption = f"{describe_pretraining(config['pretraining'])}; data: {linear}, {age_site}"
    sigma_effect(pd.read_csv(linear), pd.read_csv(age_site), out, caption)


def run_figure_age_curve(
    metrics: list[str],
    labels: list[str],
    seeds: list[int],
    floors: dict[str, str],
    out: str,
    pretraining: dict,
) -> None:
    """Figure 4: the validation age probe of every pretraining, epoch by epoch (each job's
    metrics.csv), beside the floors' final age probe (their age_site.json, by label)."""
    curves = pd.concat(
        [
            pd.read_csv(path)[["epoch", "val_age_mae"]].assign(label=label, seed=seed)
            for path, label, seed in zip(metrics, labels, seeds, strict=True)
        ],
        ignore_index=True,
    )
    floor_rows = pd.DataFrame(
        [{"label": label, **json.loads(Path(path).read_text())} for label, path in floors.items()]
    )
    caption = (
        "Ridge probe of age on a fixed subset of the training scans' representations, scored "
        f"on the validation scans after each epoch; {describe_pretraining(pretraining)}; "
        f"data: results/pretrain/<experiment>/metrics.csv of {len(metrics)} runs; floors: "
        f"{', '.join(floors.values())}"
    )
    age_mae_by_epoch(curves, floor_rows, out, caption)


def run_figure_umap(
    features: list[str],
    participants: str,
    out: str,
    titles: list[str],
    task: dict,
    settings: dict,
    cohort: str,
    pretraining: dict,
) -> None:
    """Figure 2: a UMAP of one evaluation cohort's representations per model."""
    import umap

    table = read_table(participants)
    _, in_task = binary_labels(
        table, task["label"], task["positive"], task["negative"], participants
    )
    embeddings = []
    for path in features:
        reducer = umap.UMAP(
            n_neighbors=settings["umap_neighbors"],
            min_dist=settings["umap_min_dist"],
            random_state=0,
            n_jobs=1,  # what a seeded UMAP runs on anyway; said here, it does not warn
        )
        embeddings.append(reducer.fit_transform(np.load(path)[in_task]))
    rows = table[in_task]
    ages = rows["age"].to_numpy(float)
    caption = (
        f"{describe_umap(cohort, pretraining, settings, list(ages))}; "
        f"features: {', '.join(features)}"
    )
    labels = rows[task["label"]].astype(str).to_numpy()
    umap_panels(embeddings, titles, labels, ages, out, caption)
