# Data stages, one job per cohort: simulation (synthetic cohorts), QC, conversion, splits.


rule synth_cohort:
    output:
        participants="results/synth/{synthetic}/participants.tsv",
        truth="results/synth/{synthetic}/truth.tsv",
    log:
        "results/logs/synth_cohort/{synthetic}.log",
    benchmark:
        "results/benchmarks/synth_cohort/{synthetic}.tsv"
    conda:
        "../envs/yaware.yaml"
    threads: config["synthetic"]["threads"]
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        spec=lambda wc: order_free(config["synthetic"]["cohorts"][wc.synthetic]),
        voxel_mm=config["synthetic"]["voxel_mm"],
        seed=config["synthetic"]["seed"],
        brain_age_gap=lambda wc: PLAN.brain_age_gap(wc.synthetic),
        name=lambda wc: wc.synthetic,
        code=code_version("synth_cohort"),
    script:
        "../workflow_scripts/synth_cohort.py"


# QC in two jobs: the metrics read every map (the costly part), the thresholds then only
# read the metrics. The conversion reads the pass list, which is byte-identical when a new
# threshold excludes no other scan: run `--until qc` after changing one, and the next run
# reconverts only the cohorts whose pass list changed (Snakemake's checksum of inputs).
rule qc_metrics:
    input:
        participants=get_participants,
        array=get_array,
    output:
        metrics="results/qc/{cohort}/metrics.tsv",
    log:
        "results/logs/qc_metrics/{cohort}.log",
    benchmark:
        "results/benchmarks/qc_metrics/{cohort}.tsv"
    conda:
        "../envs/yaware.yaml"
    threads: config["qc"]["threads"]
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        name=lambda wc: wc.cohort,
        cohort=get_cohort_keys("role", "cat12_root", "voxel_mm", "openbhb_root"),
        settings=job_settings(config["qc"], leave_out=QC_THRESHOLDS),
        label=config["pretrain_label"],
        code=code_version("qc_metrics"),
    script:
        "../workflow_scripts/qc_metrics.py"


rule qc:
    input:
        metrics="results/qc/{cohort}/metrics.tsv",
    output:
        table="results/qc/{cohort}/qc.tsv",
        passed="results/qc/{cohort}/passed.tsv",
        figure=report(
            "results/qc/{cohort}/qc.png",
            caption="../report/qc.rst",
            category="Data",
            subcategory="{cohort}",
        ),
    log:
        "results/logs/qc/{cohort}.log",
    benchmark:
        "results/benchmarks/qc/{cohort}.tsv"
    conda:
        "../envs/yaware.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        name=lambda wc: wc.cohort,
        thresholds={key: config["qc"][key] for key in QC_THRESHOLDS},
        require_tiv=config["conversion"]["tiv_scaling"],
        code=code_version("qc"),
    script:
        "../workflow_scripts/qc.py"


rule convert:
    input:
        metrics="results/qc/{cohort}/metrics.tsv",
        passed="results/qc/{cohort}/passed.tsv",
        participants=get_participants,
        array=get_array,
    output:
        data="results/data/{cohort}/data.npy",
        participants="results/data/{cohort}/participants.tsv",
        manifest="results/data/{cohort}/manifest.json",
    log:
        "results/logs/convert/{cohort}.log",
    benchmark:
        "results/benchmarks/convert/{cohort}.tsv"
    conda:
        "../envs/yaware.yaml"
    threads: config["conversion"]["threads"]
    resources:
        mem_mb=2000,
        runtime=120,
    params:
        cohort=get_cohort_keys("voxel_mm"),
        settings=job_settings(config["conversion"]),
        code=code_version("convert"),
    script:
        "../workflow_scripts/convert.py"


rule split:
    input:
        participants="results/data/{cohort}/participants.tsv",
    output:
        split="results/splits/{cohort}/split.tsv",
        arguments="results/splits/{cohort}/split_args.json",
    log:
        "results/logs/split/{cohort}.log",
    conda:
        "../envs/yaware.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        name=lambda wc: wc.cohort,
        cohort=get_cohort_keys("role", "task", "openbhb_root"),
        settings=lambda wc: PLAN.split_settings(wc.cohort),
        code=code_version("split"),
    script:
        "../workflow_scripts/split.py"


# The training draws of an evaluation cohort, apart from its split: adding an N_target or a
# repeat makes new draws, and leaves the split, and what was trained on it, as it was.
rule draws:
    input:
        participants="results/data/{cohort}/participants.tsv",
        split="results/splits/{cohort}/split.tsv",
    output:
        draws="results/splits/{cohort}/draws.tsv",
    log:
        "results/logs/draws/{cohort}.log",
    wildcard_constraints:
        cohort=one_of(EVALUATION_COHORTS),
    conda:
        "../envs/yaware.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        name=lambda wc: wc.cohort,
        task=lambda wc: order_free(COHORTS[wc.cohort]["task"]),
        settings=lambda wc: PLAN.draw_settings(wc.cohort),
        code=code_version("draws"),
    script:
        "../workflow_scripts/draws.py"


rule shared_scans:
    input:
        manifests=expand("results/data/{cohort}/manifest.json", cohort=COHORTS),
        splits=expand("results/splits/{cohort}/split.tsv", cohort=COHORTS),
    output:
        "results/checks/shared_scans.tsv",
    log:
        "results/logs/checks/shared_scans.log",
    conda:
        "../envs/yaware.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        cohorts=order_free({c: COHORTS[c]["role"] for c in COHORTS}),
        on_leak=config["checks"]["shared_scans"],
        code=code_version("shared_scans"),
    script:
        "../workflow_scripts/shared_scans.py"


rule data:
    input:
        PLAN.data_outputs(),
