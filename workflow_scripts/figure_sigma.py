"""Snakemake script: Figure 3, AUC and age MAE against sigma (0 = SimCLR)."""

import pandas as pd

from yaware.evaluate.captions import describe_pretraining
from yaware.evaluate.plots import sigma_effect
from yaware.workflow.logged import run_logged


def main(linear: str, age_site: str, out: str, config: dict) -> None:
    caption = f"{describe_pretraining(config['pretraining'])}; data: {linear}, {age_site}"
    sigma_effect(pd.read_csv(linear), pd.read_csv(age_site), out, caption)


run_logged(
    snakemake.log[0],
    main,
    snakemake.input.linear,
    snakemake.input.age_site,
    snakemake.output[0],
    snakemake.params.config,
)
