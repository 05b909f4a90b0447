"""Snakemake script of rule features: one model's representation of one cohort's scans."""

from yaware.evaluate.features import run_features
from yaware.workflow.logged import run_logged

run_logged(
    snakemake.log[0],
    run_features,
    data=snakemake.input.data,
    output=snakemake.output[0],
    checkpoint=snakemake.input.get("checkpoint"),
    encoder=snakemake.params.encoder,
    trust=snakemake.params.trust,
    seed=snakemake.params.seed,
    settings=snakemake.params.settings,
    threads=snakemake.threads,
)
