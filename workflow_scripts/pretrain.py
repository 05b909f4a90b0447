"""Snakemake script of rule pretrain: one pretraining experiment."""

from yaware.train.pretrain_job import run_pretrain
from yaware.workflow.logged import run_logged

run_logged(
    snakemake.log[0],
    run_pretrain,
    inputs={k: list(v) for k, v in snakemake.input.items()},
    outputs=dict(snakemake.output.items()),
    params=dict(snakemake.params.items()),
    threads=snakemake.threads,
    gpus=int(snakemake.resources.get("gpu", 1)),
    nodes=int(snakemake.resources.get("nodes", 1)),
    log_path=snakemake.log[0],
)
