"""Snakemake script: Figure 1, test AUC against N_target per task."""

import pandas as pd

from yaware.evaluate.captions import describe_pretraining
from yaware.evaluate.plots import auc_vs_n_target
from yaware.workflow.logged import run_logged


def main(linear: str, finetune: str, out: str, tasks: list[str], config: dict) -> None:
    caption = (
        f"Linear probes of frozen representations; {describe_pretraining(config['pretraining'])}"
        f"; data: {linear}, {finetune}"
    )
    auc_vs_n_target(pd.read_csv(linear), pd.read_csv(finetune), tasks, out, caption)


run_logged(
    snakemake.log[0],
    main,
    snakemake.input.linear,
    snakemake.input.finetune,
    snakemake.output[0],
    snakemake.params.tasks,
    snakemake.params.config,
)
