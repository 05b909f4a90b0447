# Config validation, the cohort table and input helpers. No torch import here: it would
# slow every DAG build.
import hashlib
from pathlib import Path

from snakemake.utils import validate

validate(config, schema="../config/schema.yaml")

PACKAGE = Path(workflow.basedir) / "yaware"


def build_cohorts(config):
    """Every cohort by name: the synthetic ones (written by the workflow) and the real ones."""
    cohorts = {}
    for name, spec in config["synthetic"]["cohorts"].items():
        task = None
        if spec["role"] == "evaluate":
            task = {
                "label": "diagnosis",
                "positive": [spec["diagnosis"]],
                "negative": ["control"],
            }
        cohorts[name] = {
            "role": spec["role"],
            "participants": f"results/synth/{name}/participants.tsv",
            "cat12_root": f"results/synth/{name}/cat12",
            "voxel_mm": config["synthetic"]["voxel_mm"],
            "task": task,
            "synthetic": True,
        }
    for name, spec in config["cohorts"].items():
        if name in cohorts:
            raise ValueError(f"cohort {name!r} is both synthetic and real: rename one")
        if spec["role"] == "evaluate" and "task" not in spec:
            raise ValueError(
                f"cohorts.{name}: an evaluation cohort needs a task: {{label, positive, negative}}"
            )
        cohorts[name] = {**spec, "task": spec.get("task"), "synthetic": False}
    if not cohorts:
        raise ValueError("no cohort: set synthetic.cohorts or cohorts in the config")
    return cohorts


COHORTS = build_cohorts(config)
SYNTHETIC = [name for name, spec in COHORTS.items() if spec["synthetic"]]


def code_version(*modules):
    """Fingerprint of the yaware modules behind a step, used as a params value; editing the code
    reruns the rule and what follows (Snakemake does not track package edits itself)."""
    digest = hashlib.sha256()
    for module in modules:
        digest.update((PACKAGE / f"{module}.py").read_bytes())
    return digest.hexdigest()[:16]


def cohort(wildcards):
    return COHORTS[wildcards.cohort]


def get_participants(wildcards):
    return COHORTS[wildcards.cohort]["participants"]


def data_outputs():
    return expand(
        [
            "results/data/{cohort}/data.npy",
            "results/splits/{cohort}/split.tsv",
            "results/qc/{cohort}/qc.png",
        ],
        cohort=COHORTS,
    )


def get_final_output():
    return data_outputs()
