"""Snakemake script of rule alignment_uniformity: one model's alignment and uniformity."""

from yaware.evaluate.alignment_uniformity import run_alignment_uniformity
from yaware.workflow.logged import run_logged

run_logged(
    snakemake.log[0],
    run_alignment_uniformity,
    inputs={k: list(snakemake.input[k]) for k in ("data", "participants", "split")},
    output=snakemake.output[0],
    checkpoint=snakemake.input.get("checkpoint"),
    encoder=snakemake.params.encoder,
    trust=snakemake.params.trust,
    seed=snakemake.params.seed,
    augmentation=snakemake.params.augmentation,
    threads=snakemake.threads,
)
