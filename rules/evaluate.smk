# Evaluation: linear probes of every model on every task, its age and site probes;
# fine-tuning; result tables.


rule linear_probe:
    input:
        features="results/features/{model}/{cohort}.npy",
        participants="results/data/{cohort}/participants.tsv",
        split="results/splits/{cohort}/split.tsv",
        draws="results/splits/{cohort}/draws.tsv",
    output:
        "results/probes/{model}/linear/{cohort}.csv",
    log:
        "results/logs/linear_probe/{model}/{cohort}.log",
    benchmark:
        "results/benchmarks/linear_probe/{model}/{cohort}.tsv"
    wildcard_constraints:
        cohort=one_of(EVALUATION_COHORTS),
    conda:
        "../envs/yaware.yaml"
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        task=lambda wc: order_free(
            {**COHORTS[wc.cohort]["task"], "name": PLAN.task_name(wc.cohort)}
        ),
        probe=order_free(config["probes"]),
        cohort=lambda wc: wc.cohort,
        code=code_version("linear_probe"),
    script:
        "../workflow_scripts/linear_probe.py"


rule age_site_probe:
    input:
        features=expand(
            "results/features/{{model}}/{cohort}.npy", cohort=PRETRAIN_COHORTS
        ),
        participants=expand(
            "results/data/{cohort}/participants.tsv", cohort=PRETRAIN_COHORTS
        ),
        splits=expand("results/splits/{cohort}/split.tsv", cohort=PRETRAIN_COHORTS),
    output:
        "results/probes/{model}/age_site.json",
    log:
        "results/logs/age_site_probe/{model}.log",
    benchmark:
        "results/benchmarks/age_site_probe/{model}.tsv"
    conda:
        "../envs/yaware.yaml"
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        label=PRETRAINING["label"],
        code=code_version("age_site_probe"),
    script:
        "../workflow_scripts/age_site_probe.py"


rule alignment_uniformity:
    input:
        unpack(get_quality_inputs),
    output:
        "results/probes/{model}/alignment_uniformity.json",
    log:
        "results/logs/alignment_uniformity/{model}.log",
    benchmark:
        "results/benchmarks/alignment_uniformity/{model}.tsv"
    wildcard_constraints:
        model=one_of(PLAN.neural_models),
    conda:
        "../envs/yaware.yaml"
    threads: config["features"]["threads"]
    resources:
        gpu=1,
        mem_mb=4000,
        runtime=60,
    params:
        encoder=lambda wc: PLAN.encoder_of(wc.model),
        trust=lambda wc: PLAN.trusted(wc.model),
        seed=lambda wc: MODELS[wc.model]["seed"],
        augmentation=PRETRAINING["augmentation"],
        code=code_version("alignment_uniformity"),
    script:
        "../workflow_scripts/alignment_uniformity.py"


rule finetune:
    input:
        unpack(get_finetune_inputs),
    output:
        metrics="results/finetune/{init}/{cohort}/n{n_target}_r{repeat}/test_metrics.json",
        predictions="results/finetune/{init}/{cohort}/n{n_target}_r{repeat}/predictions.csv",
    log:
        "results/logs/finetune/{init}/{cohort}/n{n_target}_r{repeat}.log",
    benchmark:
        "results/benchmarks/finetune/{init}/{cohort}/n{n_target}_r{repeat}.tsv"
    conda:
        "../envs/yaware.yaml"
    threads: config["fine_tuning"]["threads"]
    resources:
        gpu=1,
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=60,
    params:
        task=lambda wc: order_free(COHORTS[wc.cohort]["task"]),
        encoder=lambda wc: PLAN.encoder_of(wc.init),
        trust=lambda wc: PLAN.trusted(wc.init),
        settings=job_settings(
            config["fine_tuning"],
            leave_out=("enabled", "n_target", "repeats", "seeds"),
        ),
        seed=lambda wc: int(wc.repeat),
        n_target=lambda wc: int(wc.n_target),
        repeat=lambda wc: int(wc.repeat),
        split_seed=config["splits"]["seed"],
        cohort=lambda wc: wc.cohort,
        code=code_version("finetune"),
    script:
        "../workflow_scripts/finetune.py"


rule tables:
    input:
        linear=expand(
            "results/probes/{model}/linear/{cohort}.csv",
            model=MODELS,
            cohort=EVALUATION_COHORTS,
        ),
        age_site=expand("results/probes/{model}/age_site.json", model=MODELS),
        finetune=[job.metrics for job in PLAN.finetune_jobs],
        # The leak check guards the results here. As an ancient input of the probes, a
        # rerun of the check hid the probes' own reasons to rerun (docs/reruns.md).
        checked=[SHARED_SCANS],
        openbhb=PLAN.openbhb_tables,
        quality=[
            f"results/probes/{m}/alignment_uniformity.json"
            for m in PLAN.quality_models
        ],
    output:
        linear="results/tables/linear_probe.csv",
        age_site="results/tables/age_site.csv",
        finetune="results/tables/finetune.csv",
        summary=report(
            "results/tables/summary.csv",
            caption="../report/summary.rst",
            category="Results",
        ),
        markdown="results/tables/summary.md",
        comparisons=report(
            "results/tables/comparisons.csv",
            caption="../report/comparisons.rst",
            category="Results",
        ),
    log:
        "results/logs/tables.log",
    conda:
        "../envs/yaware.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        models=MODELS,
        linear=[(m, c) for m in MODELS for c in EVALUATION_COHORTS],
        finetune=[vars(job) for job in PLAN.finetune_jobs],
        tasks={c: PLAN.task_name(c) for c in EVALUATION_COHORTS},
        controls={
            c: PLAN.control_of(c) for c in EVALUATION_COHORTS if PLAN.control_of(c)
        },
        inits=PLAN.finetune_inits,
        quality=PLAN.quality_models,
        config=config,
        code=code_version("tables"),
    script:
        "../workflow_scripts/tables.py"
