"""Snakemake script: subject-level splits of one converted cohort."""

from yaware.data.balance import split_balance
from yaware.data.labels import binary_labels
from yaware.data.participants import read_table
from yaware.data.splits import (
    SplitSettings,
    evaluation_sides,
    first_sessions,
    pretrain_split,
    split_arguments,
)
from yaware.io import save_json, save_table
from yaware.workflow.logged import run_logged


def main(participants: str, outputs: dict, name: str, cohort: dict, settings: dict) -> None:
    table = read_table(participants)
    split_settings = SplitSettings(**settings)
    if cohort["role"] == "pretrain":
        split = pretrain_split(table, split_settings)
    else:
        task = cohort["task"]
        labels, in_task = binary_labels(
            table, task["label"], task["positive"], task["negative"], participants
        )
        split = evaluation_sides(
            table[in_task],
            labels[in_task],
            split_settings,
            name,
            classes=(task.get("negative") or 0, task.get("positive") or 1),
        )
    subjects = first_sessions(split.merge(table, on=["participant_id", "session"]))
    label = cohort["task"]["label"] if cohort["role"] == "evaluate" else None
    balance = split_balance(subjects, subjects["split"], label=label, cohort=name)
    save_table(outputs["split"], split)
    save_json(
        outputs["arguments"],
        split_arguments(
            settings,
            cohort=name,
            role=cohort["role"],
            task=cohort.get("task"),
            source=participants,
            balance=balance,
        ),
    )


run_logged(
    snakemake.log[0],
    main,
    snakemake.input.participants,
    dict(snakemake.output.items()),
    snakemake.wildcards.cohort,
    snakemake.params.cohort,
    snakemake.params.settings,
)
