"""Snakemake script: the training draws (N_target x repeat) of one evaluation cohort."""

from yaware.data.participants import read_table
from yaware.data.splits import task_pool, training_draws
from yaware.io import save_table
from yaware.workflow.logged import run_logged


def main(participants: str, split: str, draws: str, name: str, task: dict, settings: dict) -> None:
    pool = task_pool(participants, read_table(split), task)
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
