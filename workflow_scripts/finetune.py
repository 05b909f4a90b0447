"""Snakemake script of rule finetune: fine-tune (or train from scratch) on one draw."""

from yaware.train.finetune import run_finetune
from yaware.workflow.logged import run_logged

run_logged(
    snakemake.log[0],
    run_finetune,
    inputs=dict(snakemake.input.items()),
    outputs=dict(snakemake.output.items()),
    n_target=snakemake.params.n_target,
    repeat=snakemake.params.repeat,
    task=snakemake.params.task,
    encoder=snakemake.params.encoder,
    trust=snakemake.params.trust,
    settings=snakemake.params.settings,
    seed=snakemake.params.seed,
    split_seed=snakemake.params.split_seed,
    cohort=snakemake.params.cohort,
    threads=snakemake.threads,
)
