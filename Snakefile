# y-Aware contrastive learning on 3D brain MRI: the workflow's table of contents.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"


wildcard_constraints:
    cohort="|".join(COHORTS),
    synthetic="|".join(SYNTHETIC) or "^$",


include: "rules/data.smk"


rule all:
    default_target: True
    input:
        get_final_output(),
