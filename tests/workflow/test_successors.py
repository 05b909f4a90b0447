"""y-Aware's successors through Snakemake on the tiny config: each method pretrains with
its own loss and settings, and is probed and fine-tuned like any other."""

import math
import re

import pandas as pd
import pytest
import yaml

from tests.workflow.helpers import REPO, TINY_AD_COHORT, make_workdir, planned_jobs, snakemake

SUCCESSORS = {
    "threshold": {"sigma": [5.0]},
    "expw": {"sigma": ["scott"]},  # a bandwidth rule, computed on the training labels
    "rank_n_contrast": {},
    "decoupled_uniformity": {"sigma": [5.0]},
}
EXPERIMENTS = {
    "threshold-sigma5_cutout_tinycnn_seed0": "Threshold (sigma=5)",
    "expw-sigmascott_cutout_tinycnn_seed0": "ExpW (sigma=scott)",
    "rank_n_contrast_cutout_tinycnn_seed0": "Rank-N-Contrast",
    "decoupled_uniformity-sigma5_cutout_tinycnn_seed0": "Decoupled uniformity (sigma=5)",
}
CONFIG = {
    "synthetic": {
        "voxel_mm": 6.0,
        "cohorts": {
            "bhb": {"role": "pretrain", "n_subjects": 36, "n_sites": 3, "age_range": [20, 85]},
            "adni": TINY_AD_COHORT,
        },
    },
    "qc": {"corr_voxel_mm": 6.0},
    "conversion": {"voxel_mm": 6.0},
    "splits": {"n_target": [10], "repeats": 1, "val_fraction": 0.2},
    "pretraining": {
        # The default's methods are off: only the successors, each with its defaults.
        "methods": SUCCESSORS | {"simclr": None, "yaware": None},
        "encoder": "tinycnn",
        "epochs": 1,
        "batch_size": 8,
    },
    "features": {"pca": False, "random_encoder": False},
    "probes": {"inner_folds": 2},
    "fine_tuning": {"n_target": [10], "repeats": 1, "epochs": 1, "batch_size": 4},
    "comparisons": {"baselines": ["scratch", "threshold"]},
    "representation_quality": {"enabled": True},
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    workdir = make_workdir(tmp_path_factory.mktemp("successors"), CONFIG)
    done = snakemake(workdir, "--cores", "2", "results/tables/summary.md")
    assert done.returncode == 0, done.stderr[-4000:]
    return workdir


def test_each_successor_pretrains_with_its_own_loss_and_settings(run):
    for experiment in EXPERIMENTS:
        folder = run / "results/pretrain" / experiment
        metrics = pd.read_csv(folder / "metrics.csv")
        assert all(math.isfinite(v) for v in metrics["train_loss"]), experiment
        config = yaml.safe_load((folder / "config.yaml").read_text())
        assert config["method"] == experiment.split("_cutout")[0].split("-sigma")[0]
    rnc = yaml.safe_load(
        (run / "results/pretrain/rank_n_contrast_cutout_tinycnn_seed0/config.yaml").read_text()
    )
    assert rnc["temperature"] == 2.0  # its own, not pretraining.temperature (0.1)
    du = yaml.safe_load(
        (
            run / "results/pretrain/decoupled_uniformity-sigma5_cutout_tinycnn_seed0/config.yaml"
        ).read_text()
    )
    assert du["sigma"] == 5.0 and du["prior_lambda"] == 0.01


def test_a_bandwidth_rule_is_computed_on_the_training_labels(run):
    folder = run / "results/pretrain/expw-sigmascott_cutout_tinycnn_seed0"
    rows = pd.read_csv(folder / "train_rows_0.tsv", sep="\t", dtype=str)
    table = pd.read_csv(run / "results/data/bhb/participants.tsv", sep="\t", dtype=str)
    ages = rows.merge(table, on=["participant_id", "session"])["age"].astype(float)
    assert len(ages) == len(rows) > 10
    expected = ages.std(ddof=1) * len(ages) ** (-1 / 5)  # Scott's factor for d = 1
    config = yaml.safe_load((folder / "config.yaml").read_text())
    assert config["sigma"] == pytest.approx(expected, rel=1e-9)


def test_each_successor_is_probed_fine_tuned_and_compared(run):
    linear = pd.read_csv(run / "results/tables/linear_probe.csv")
    labels = set(EXPERIMENTS.values())
    assert labels <= set(linear["label"])
    tuned = pd.read_csv(run / "results/tables/finetune.csv")
    assert {f"fine-tuned {label}" for label in labels} <= set(tuned["label"])
    comparisons = pd.read_csv(run / "results/tables/comparisons.csv")
    assert "Threshold (sigma=5)" in set(comparisons["baseline"])


def test_alignment_and_uniformity_join_the_age_and_site_probes(run):
    age_site = pd.read_csv(run / "results/tables/age_site.csv").set_index("label")
    for label in EXPERIMENTS.values():
        alignment, uniformity = age_site.loc[label, ["alignment", "uniformity"]]
        assert 0 <= alignment <= 4  # squared distance of two points of the unit sphere
        assert -8 <= uniformity <= 0  # log of a mean of exp(-2 d^2), d^2 in [0, 4]
    summary = (run / "results/tables/summary.md").read_text()
    assert "alignment_mean" in summary and "uniformity_mean" in summary


def test_the_successors_config_runs_every_method_under_one_budget(tmp_path):
    default = yaml.safe_load((REPO / "config/config.yaml").read_text())
    successors = REPO / "config/successors.yaml"
    methods = yaml.safe_load(successors.read_text())["pretraining"]["methods"]
    assert set(SUCCESSORS) | {"simclr", "yaware"} <= set(methods)
    workdir = make_workdir(tmp_path, default)
    plan = planned_jobs(workdir, "--configfile", str(successors))
    seeds = len(default["pretraining"]["seeds"])
    assert plan["pretrain"] == len(methods) * seeds  # one sigma each
    assert plan["alignment_uniformity"] == plan["pretrain"] + 1  # and the random encoder
    done = snakemake(workdir, "-n", "--configfile", str(successors))
    planned = set(re.findall(r"experiment=(\S+)", done.stdout))
    for method in SUCCESSORS:  # the default's encoder and augmentation, every seed
        named = {
            e for e in planned if re.fullmatch(rf"{method}(-sigma5)?_cutout_tinycnn_seed\d", e)
        }
        assert len(named) == seeds, (method, planned)
