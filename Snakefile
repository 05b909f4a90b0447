# y-Aware contrastive learning on 3D brain MRI: the workflow's table of contents.
from snakemake.utils import min_version

min_version("9.0")

from yaware.workflow.config_file import check_yaml  # names the line of a YAML error

check_yaml("config/config.yaml")


configfile: "config/config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/pretrain.smk"
include: "rules/features.smk"
include: "rules/evaluate.smk"
include: "rules/figures.smk"
include: "rules/openbhb.smk"


rule all:
    default_target: True
    input:
        get_final_output(),
