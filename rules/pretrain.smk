# Pretraining: one job per experiment (method x sigma x seed), on the pretraining cohort.


rule pretrain:
    input:
        **get_pretraining_inputs(),
    output:
        best="results/pretrain/{experiment}/best.pt",
        metrics="results/pretrain/{experiment}/metrics.csv",
        curve=report(
            "results/pretrain/{experiment}/loss.png",
            caption="../report/loss.rst",
            category="Pretraining",
        ),
    log:
        "results/logs/pretrain/{experiment}.log",
    benchmark:
        "results/benchmarks/pretrain/{experiment}.tsv"
    conda:
        "../envs/yaware.yaml"
    threads: PRETRAINING["threads"]
    # What the demo needs; slurm/config.yaml asks a cluster for GPUs (and may give several:
    # the job then runs one process per GPU).
    resources:
        gpu=1,
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=120,
    params:
        experiment=lambda wc: order_free(vars(EXPERIMENTS[wc.experiment])),
        settings=lambda wc: PLAN.pretrain_settings(wc.experiment),
        code=code_version("pretrain"),
    script:
        "../workflow_scripts/pretrain.py"
