"""Snakemake script of rule age_site_probe: age and site probes of one model."""

from yaware.evaluate.tasks import run_age_site_probe
from yaware.workflow.logged import run_logged

run_logged(
    snakemake.log[0],
    run_age_site_probe,
    features=list(snakemake.input.features),
    participants=list(snakemake.input.participants),
    splits=list(snakemake.input.splits),
    output=snakemake.output[0],
    label=snakemake.params.label,
)
