# Representations: every scan of a cohort, once per model, reused by every probe. One job
# per (model, cohort): a new cohort adds its own jobs and re-extracts no other cohort.


rule features:
    input:
        unpack(get_features_inputs),
    output:
        "results/features/{model}/{cohort}.npy",
    log:
        "results/logs/features/{model}/{cohort}.log",
    benchmark:
        "results/benchmarks/features/{model}/{cohort}.tsv"
    wildcard_constraints:
        model=one_of(PLAN.neural_models),
        cohort=one_of(PLAN.feature_cohorts),
    conda:
        "../envs/yaware.yaml"
    threads: config["features"]["threads"]
    # A DenseNet121 pass over BHB-10K at 1.5 mm takes hours on a few CPU cores and
    # minutes on a GPU; slurm/config.yaml asks for one.
    resources:
        gpu=1,
        mem_mb=4000,
        runtime=120,
    params:
        encoder=lambda wc: PLAN.encoder_of(wc.model),
        trust=lambda wc: PLAN.trusted(wc.model),
        seed=lambda wc: MODELS[wc.model]["seed"],
        settings=job_settings(
            config["features"],
            leave_out=("pca_components", "random_encoder", "pca"),
            unrecorded=(*SPEED_ONLY, "batch_size"),
        ),
        code=code_version("features"),
    script:
        "../workflow_scripts/features.py"


rule pca_fit:
    input:
        **get_pretraining_inputs(),
    output:
        "results/features/pca/fit.npz",
    log:
        "results/logs/pca_fit/pca.log",
    benchmark:
        "results/benchmarks/pca_fit/pca.tsv"
    conda:
        "../envs/yaware.yaml"
    threads: config["features"]["threads"]
    # IncrementalPCA's batches need about 11 GB at 1.5 mm (783k grey-matter voxels),
    # whatever the number of scans; a few MB at the default 6 mm.
    resources:
        mem_mb=lambda wc, attempt: 16000 * attempt,
        runtime=360,
    params:
        components=config["features"]["pca_components"],
        code=code_version("pca_fit"),
    script:
        "../workflow_scripts/pca_fit.py"


rule pca_features:
    input:
        fit="results/features/pca/fit.npz",
        data="results/data/{cohort}/data.npy",
    output:
        "results/features/pca/{cohort}.npy",
    log:
        "results/logs/features/pca/{cohort}.log",
    benchmark:
        "results/benchmarks/features/pca/{cohort}.tsv"
    wildcard_constraints:
        cohort=one_of(PLAN.feature_cohorts),
    conda:
        "../envs/yaware.yaml"
    threads: config["features"]["threads"]
    # A batch of 256 scans at 1.5 mm: 2.2 GB of voxels, 0.8 GB of components.
    resources:
        mem_mb=lambda wc, attempt: 8000 * attempt,
        runtime=60,
    params:
        code=code_version("pca_features"),
    script:
        "../workflow_scripts/pca_features.py"
