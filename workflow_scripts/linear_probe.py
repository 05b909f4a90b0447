"""Snakemake script: linear probes of one model on one evaluation cohort's task."""

from yaware.evaluate.tasks import EXTERNAL_COLUMNS, probe_task
from yaware.io import save_table
from yaware.workflow.logged import run_logged

COLUMNS = ["cohort", "task", "n_target", "repeat", "n_test", "auc", "balanced_accuracy", "C"]


def main(inputs: dict, output: str, cohort: str, task: dict, probe: dict) -> None:
    table = probe_task(
        inputs["features"], inputs["participants"], inputs["split"], inputs["draws"], task, probe
    ).assign(cohort=cohort, task=task["name"])
    save_table(output, table[COLUMNS + [c for c in EXTERNAL_COLUMNS if c in table]])


run_logged(
    snakemake.log[0],
    main,
    {k: snakemake.input[k] for k in ("features", "participants", "split", "draws")},
    snakemake.output[0],
    snakemake.wildcards.cohort,
    snakemake.params.task,
    snakemake.params.probe,
)
