# The paper's figures, each drawn from a table or feature file the workflow wrote.


rule figure_auc:
    input:
        linear="results/tables/linear_probe.csv",
        finetune="results/tables/finetune.csv",
    output:
        report(
            "results/figures/fig1_auc_vs_n_target.png",
            caption="../report/fig1.rst",
            category="Figures",
        ),
    log:
        "results/logs/figures/fig1.log",
    conda:
        "../envs/yaware.yaml"
    params:
        code=code_version("figure_auc"),
        panels=[(c, PLAN.task_name(c)) for c in EVALUATION_COHORTS],
        config=config,
    script:
        "../workflow_scripts/figure_auc.py"


rule figure_umap:
    input:
        unpack(get_umap_inputs),
    output:
        report(
            "results/figures/fig2_umap.png",
            caption="../report/fig2.rst",
            category="Figures",
        ),
    log:
        "results/logs/figures/fig2.log",
    benchmark:
        "results/benchmarks/figures/fig2_umap.tsv"
    conda:
        "../envs/yaware.yaml"
    params:
        code=code_version("figure_umap"),
        titles=[MODELS[m]["label"] for m in PLAN.umap_models],
        task=lambda wc: order_free(COHORTS[PLAN.umap_cohort]["task"]),
        settings=order_free(config["figures"]),
        cohort=PLAN.umap_cohort,
        pretraining=job_settings(config["pretraining"]),
    script:
        "../workflow_scripts/figure_umap.py"


rule figure_sigma:
    input:
        linear="results/tables/linear_probe.csv",
        age_site="results/tables/age_site.csv",
    output:
        report(
            "results/figures/fig3_sigma.png",
            caption="../report/fig3.rst",
            category="Figures",
        ),
    log:
        "results/logs/figures/fig3.log",
    conda:
        "../envs/yaware.yaml"
    params:
        code=code_version("figure_sigma"),
        config=config,
    script:
        "../workflow_scripts/figure_sigma.py"


rule figure_age_curve:
    input:
        metrics=[f"results/pretrain/{e}/metrics.csv" for e in EXPERIMENTS],
        floors=[f"results/probes/{m}/age_site.json" for m in PLAN.floor_models],
    output:
        report(
            "results/figures/fig4_age_mae_by_epoch.png",
            caption="../report/fig4.rst",
            category="Figures",
        ),
    log:
        "results/logs/figures/fig4.log",
    conda:
        "../envs/yaware.yaml"
    params:
        code=code_version("figure_age_curve"),
        labels=[MODELS[e]["label"] for e in EXPERIMENTS],
        seeds=[EXPERIMENTS[e].seed for e in EXPERIMENTS],
        floor_labels=[MODELS[m]["label"] for m in PLAN.floor_models],
        pretraining=job_settings(config["pretraining"]),
    script:
        "../workflow_scripts/figure_age_curve.py"
