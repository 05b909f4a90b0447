# Validate the config, build the plan (yaware/workflow/plan.py) and give the rules their
# input functions and params. No torch import here: it would slow every DAG build.
from pathlib import Path

from snakemake.utils import validate

from yaware.workflow.checks import check_cohort_files, check_finite, check_model_files
from yaware.workflow.experiments import SCRATCH_NAME, leave_out_null_methods
from yaware.workflow.fingerprint import code_fingerprint
from yaware.workflow.cohorts import OPENBHB_KEYS, OPENBHB_TABLE
from yaware.workflow.plan import QC_THRESHOLDS, SHARED_SCANS, cohorts_of, plan
from yaware.workflow.rule_params import SPEED_ONLY, job_settings, order_free

validate(config, schema="../config/schema.yaml")
leave_out_null_methods(config)
check_finite(config)
check_cohort_files(cohorts_of(config), config)
PLAN = plan(config)
check_model_files(PLAN)

COHORTS = PLAN.cohorts
EXPERIMENTS = PLAN.experiments
MODELS = PLAN.models
PRETRAINING = PLAN.pretraining
PRETRAIN_COHORTS = PLAN.pretrain_cohorts
EVALUATION_COHORTS = PLAN.evaluation_cohorts
OPENBHB_ROI_COHORTS = [
    c for c in PLAN.openbhb_scored if COHORTS[c].get("openbhb_roi_floor")
]


def code_version(script):
    """Fingerprint of the yaware modules workflow_scripts/<script>.py imports (transitively),
    as a params value: editing that code reruns the rule and what follows (Snakemake does
    not track package edits itself)."""
    base = Path(workflow.basedir)
    return code_fingerprint(base / "workflow_scripts" / f"{script}.py", base / "yaware")


def one_of(names):
    """A wildcard constraint that matches exactly ``names`` (nothing when there are none)."""
    return "|".join(names) or "^$"


def get_participants(wildcards):
    return COHORTS[wildcards.cohort]["participants"]


def get_openbhb_table(wildcards):
    """An OpenBHB copy's participants.tsv; none when the job fetches what is missing."""
    spec = COHORTS[wildcards.cohort]
    return [] if spec.get("openbhb_download") else spec["openbhb_table"]


def get_array(wildcards):
    """An array cohort's maps; none for a CAT12 cohort, whose maps QC finds."""
    return COHORTS[wildcards.cohort].get("array") or []


def get_cohort_keys(*keys):
    """A data stage's params: the keys of its cohort it reads."""
    return lambda wildcards: PLAN.cohort_keys(wildcards.cohort, keys)


def get_features_inputs(wildcards):
    inputs = {"data": f"results/data/{wildcards.cohort}/data.npy"}
    if PLAN.checkpoint_of(wildcards.model):
        inputs["checkpoint"] = PLAN.checkpoint_of(wildcards.model)
    return inputs


def get_finetune_inputs(wildcards):
    cohort = wildcards.cohort
    inputs = {
        "data": f"results/data/{cohort}/data.npy",
        "participants": f"results/data/{cohort}/participants.tsv",
        # No draws table and no leak check: a job makes its own draw from the split, so
        # new N_targets rerun no fine-tuning done, and the leak check guards the tables.
        "split": f"results/splits/{cohort}/split.tsv",
    }
    if PLAN.checkpoint_of(wildcards.init):
        inputs["checkpoint"] = PLAN.checkpoint_of(wildcards.init)
    return inputs


def get_pretraining_inputs():
    """The pooled pretraining cohorts' arrays, tables and splits (no wildcard)."""
    return {
        "data": [f"results/data/{c}/data.npy" for c in PRETRAIN_COHORTS],
        "participants": [
            f"results/data/{c}/participants.tsv" for c in PRETRAIN_COHORTS
        ],
        "split": [f"results/splits/{c}/split.tsv" for c in PRETRAIN_COHORTS],
    }


def get_quality_inputs(wildcards):
    """What the alignment and uniformity of a model read: its checkpoint, if any, and the
    pretraining cohorts (their validation scans)."""
    inputs = get_pretraining_inputs()
    if PLAN.checkpoint_of(wildcards.model):
        inputs["checkpoint"] = PLAN.checkpoint_of(wildcards.model)
    return inputs


def get_umap_inputs(wildcards):
    cohort = PLAN.umap_cohort
    return {
        "features": [f"results/features/{m}/{cohort}.npy" for m in PLAN.umap_models],
        "participants": f"results/data/{cohort}/participants.tsv",
    }


def get_final_output():
    return PLAN.final_targets()


wildcard_constraints:
    cohort=one_of(COHORTS),
    synthetic=one_of(PLAN.synthetic),
    experiment=one_of(EXPERIMENTS),
    init=one_of([*EXPERIMENTS, *PLAN.external, SCRATCH_NAME]),
    model=one_of(MODELS),
    n_target=r"\d+",
    repeat=r"\d+",
