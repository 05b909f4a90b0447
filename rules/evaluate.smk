# Evaluation: linear, age and site probes of every model; fine-tuning; result tables.


rule probe:
    input:
        features=expand(
            "results/features/{{model}}/{cohort}.npy", cohort=FEATURE_COHORTS
        ),
        participants=expand(
            "results/data/{cohort}/participants.tsv", cohort=FEATURE_COHORTS
        ),
        splits=expand("results/splits/{cohort}/split.tsv", cohort=FEATURE_COHORTS),
        draws=expand("results/splits/{cohort}/draws.tsv", cohort=EVALUATION_COHORTS),
        checked=ancient(SHARED_SCANS),
    output:
        linear="results/probes/{model}/linear.csv",
        age_site="results/probes/{model}/age_site.json",
    log:
        "results/logs/probe/{model}.log",
    benchmark:
        "results/benchmarks/probe/{model}.tsv"
    conda:
        "../envs/yaware.yaml"
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        cohorts=FEATURE_COHORTS,
        evaluation=EVALUATION_COHORTS,
        pretraining=PRETRAIN_COHORTS,
        tasks=order_free(
            {
                c: {**COHORTS[c]["task"], "name": task_name(c)}
                for c in EVALUATION_COHORTS
            }
        ),
        label=PRETRAINING["label"],
        probe=order_free(config["probes"]),
        code=code_version("probe"),
    script:
        "../workflow_scripts/probe.py"


rule finetune:
    input:
        unpack(finetune_inputs),
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
        encoder=lambda wc: encoder_of(wc.init),
        trust=lambda wc: trusted(wc.init),
        settings=job_settings(
            config["fine_tuning"],
            leave_out=("enabled", "n_target", "repeats", "seeds"),
        ),
        seed=lambda wc: int(wc.repeat),
        split_seed=config["splits"]["seed"],
        code=code_version("finetune"),
    script:
        "../workflow_scripts/finetune.py"


rule tables:
    input:
        linear=expand("results/probes/{model}/linear.csv", model=MODELS),
        age_site=expand("results/probes/{model}/age_site.json", model=MODELS),
        finetune=finetune_jobs(),
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
    log:
        "results/logs/tables.log",
    conda:
        "../envs/yaware.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        models=MODELS,
        tasks={c: task_name(c) for c in EVALUATION_COHORTS},
        inits=finetune_inits(),
        config=config,
        code=code_version("tables"),
    script:
        "../workflow_scripts/tables.py"
