"""Snakemake script: Figure 2, UMAP of one evaluation cohort's representations."""

import numpy as np
import umap

from yaware.data.labels import binary_labels
from yaware.data.participants import read_table
from yaware.evaluate.captions import describe_umap
from yaware.evaluate.plots import umap_panels
from yaware.workflow.logged import run_logged


def main(
    features: list[str],
    participants: str,
    out: str,
    titles: list[str],
    task: dict,
    settings: dict,
    cohort: str,
    pretraining: dict,
) -> None:
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
    umap_panels(embeddings, titles, rows[task["label"]].astype(str).to_numpy(), ages, out, caption)


run_logged(
    snakemake.log[0],
    main,
    list(snakemake.input.features),
    snakemake.input.participants,
    snakemake.output[0],
    snakemake.params.titles,
    snakemake.params.task,
    snakemake.params.settings,
    snakemake.params.cohort,
    snakemake.params.pretraining,
)
