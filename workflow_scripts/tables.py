"""Snakemake script of rule tables: every probe and fine-tuning result in tidy tables."""

from yaware.evaluate.tables import run_tables
from yaware.workflow.logged import run_logged

run_logged(
    snakemake.log[0],
    run_tables,
    inputs={k: list(v) for k, v in snakemake.input.items()},
    outputs=dict(snakemake.output.items()),
    models=snakemake.params.models,
    linear=snakemake.params.linear,
    finetune=snakemake.params.finetune,
    tasks=snakemake.params.tasks,
    inits=snakemake.params.inits,
    config=snakemake.params.config,
    controls=snakemake.params.controls,
    quality=snakemake.params.quality,
)
