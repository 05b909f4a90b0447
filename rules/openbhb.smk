# OpenBHB cohorts: the copy indexed (fetched first when asked), the ROI floor, and the
# challenge's metrics of every model on the official test splits.


rule openbhb_index:
    input:
        get_openbhb_table,
    output:
        "results/openbhb/{cohort}/participants.tsv",
    log:
        "results/logs/openbhb_index/{cohort}.log",
    wildcard_constraints:
        cohort=one_of(PLAN.openbhb_cohorts),
    conda:
        "../envs/yaware.yaml"
    resources:
        mem_mb=1000,
        runtime=lambda wc: 600 if COHORTS[wc.cohort].get("openbhb_download") else 10,
    params:
        cohort=get_cohort_keys(*OPENBHB_KEYS),
        code=code_version("openbhb_index"),
    script:
        "../workflow_scripts/openbhb_index.py"


rule openbhb_roi:
    input:
        participants="results/data/{cohort}/participants.tsv",
    output:
        "results/openbhb/{cohort}/roi.npy",
    log:
        "results/logs/openbhb_roi/{cohort}.log",
    wildcard_constraints:
        cohort=one_of(PLAN.openbhb_cohorts),
    conda:
        "../envs/yaware.yaml"
    resources:
        mem_mb=1000,
        runtime=30,
    params:
        root=lambda wc: COHORTS[wc.cohort]["openbhb_root"],
        code=code_version("openbhb_roi"),
    script:
        "../workflow_scripts/openbhb_roi.py"


rule openbhb_metrics:
    input:
        features=[
            f"results/features/{m}/{c}.npy"
            for m in MODELS
            for c in PLAN.openbhb_scored
        ],
        participants=[f"results/data/{c}/participants.tsv" for c in PLAN.openbhb_scored],
        splits=[f"results/splits/{c}/split.tsv" for c in PLAN.openbhb_scored],
        roi=[f"results/openbhb/{c}/roi.npy" for c in OPENBHB_ROI_COHORTS],
    output:
        OPENBHB_TABLE,
    log:
        "results/logs/openbhb_metrics.log",
    conda:
        "../envs/yaware.yaml"
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        pairs=[(m, c) for m in MODELS for c in PLAN.openbhb_scored],
        cohorts=PLAN.openbhb_scored,
        roi_cohorts=OPENBHB_ROI_COHORTS,
        models=MODELS,
        label=PRETRAINING["label"],
        code=code_version("openbhb_metrics"),
    script:
        "../workflow_scripts/openbhb_metrics.py"
