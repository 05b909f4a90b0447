# Representations: every scan of every cohort, once per model, reused by every probe.


rule features:
    input:
        unpack(features_inputs),
    output:
        expand("results/features/{{model}}/{cohort}.npy", cohort=FEATURE_COHORTS),
    log:
        "results/logs/features/{model}.log",
    benchmark:
        "results/benchmarks/features/{model}.tsv"
    wildcard_constraints:
        model="|".join(NEURAL_MODELS) or "^$",
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
        cohorts=FEATURE_COHORTS,
        encoder=lambda wc: encoder_of(wc.model),
        trust=lambda wc: trusted(wc.model),
        seed=lambda wc: MODELS[wc.model]["seed"],
        settings=job_settings(
            config["features"],
            leave_out=("pca_components", "random_encoder", "pca"),
            unrecorded=(*SPEED_ONLY, "batch_size"),
        ),
        code=code_version("features"),
    script:
        "../workflow_scripts/features.py"


rule pca_features:
    input:
        data=expand("results/data/{cohort}/data.npy", cohort=FEATURE_COHORTS),
        participants=expand(
            "results/data/{cohort}/participants.tsv", cohort=PRETRAIN_COHORTS
        ),
        split=expand("results/splits/{cohort}/split.tsv", cohort=PRETRAIN_COHORTS),
    output:
        expand("results/features/pca/{cohort}.npy", cohort=FEATURE_COHORTS),
    log:
        "results/logs/features/pca.log",
    benchmark:
        "results/benchmarks/features/pca.tsv"
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
        code=code_version("pca_features"),
    script:
        "../workflow_scripts/pca_features.py"
