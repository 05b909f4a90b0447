"""Snakemake script: the training draws (N_target x repeat) of one evaluation cohort."""

from yaware.io import save_table
from yaware.labels import binary_labels
from yaware.participants import read_table
from yaware.splits import training_draws, training_pool
from yaware.workflow import run_logged


def main(participants: str, split: str, draws: str, name: str, task: dict, settings: dict) -> None:
    table = read_table(participants)
    labels, in_task = binary_labels(
        table, task["label"], task["positive"], task["negative"], participants
    )
    pool = training_pool(table[in_task], labels[in_task], read_table(split))
    save_table(
        draws,
        training_draws(pool, settings["n_target"], settings["repeats"], settings["seed"], name),
    )


run_logged(
    snakemake.log[0],
    main,
    snakemake.input.participants,
    snakemake.input.split,
    snakemake.output.draws,
    snakemake.wildcards.cohort,
    snakemake.params.task,
    snakemake.params.settings,
)
