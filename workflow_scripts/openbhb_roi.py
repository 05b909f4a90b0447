"""Snakemake script of rule openbhb_roi: one OpenBHB cohort's ROI volumes (a floor)."""

from yaware.evaluate.openbhb_metrics import run_openbhb_roi
from yaware.workflow.logged import run_logged

run_logged(
    snakemake.log[0],
    run_openbhb_roi,
    participants=snakemake.input.participants,
    output=snakemake.output[0],
    root=snakemake.params.root,
)
