"""Snakemake script: age and site probes of one model over the pretraining cohorts pooled."""

from yaware.evaluate.tasks import probe_age_and_site
from yaware.io import save_json
from yaware.workflow.logged import run_logged


def main(features: list[str], participants: list[str], splits: list[str], output: str, label: str):
    save_json(output, probe_age_and_site(features, participants, splits, label))


run_logged(
    snakemake.log[0],
    main,
    list(snakemake.input.features),
    list(snakemake.input.participants),
    list(snakemake.input.splits),
    snakemake.output[0],
    snakemake.params.label,
)
