"""Snakemake script of rule openbhb_index: an OpenBHB copy as this pipeline's table."""

from yaware.data.openbhb import run_openbhb_index
from yaware.workflow.logged import run_logged

cohort = snakemake.params.cohort
run_logged(
    snakemake.log[0],
    run_openbhb_index,
    root=cohort["openbhb_root"],
    output=snakemake.output[0],
    download=bool(cohort["openbhb_download"]),
    roi=bool(cohort["openbhb_roi_floor"]),
)
