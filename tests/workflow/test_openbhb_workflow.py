"""An OpenBHB cohort through Snakemake, on a replica at the real layout and shapes:
pretraining on its official train split only, the challenge's metrics of every model and
floor, QC's faults, the config check, and config/openbhb.yaml's plan."""

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.openbhb_replica import make_replica
from tests.workflow.helpers import REPO, TINY_AD_COHORT, make_workdir, planned_jobs, snakemake

EXPERIMENT = "yaware-sigma5_cutout_tinycnn_seed0"


def _config(root, **cohort) -> dict:
    return {
        "synthetic": {
            "voxel_mm": 6.0,
            "cohorts": {
                "adni": TINY_AD_COHORT | {"n_subjects": 30},
            },
        },
        "cohorts": {"openbhb": {"role": "pretrain", "openbhb_root": str(root), **cohort}},
        "qc": {"corr_voxel_mm": 6.0},
        "conversion": {"voxel_mm": 6.0},
        "splits": {"n_target": [6], "repeats": 1, "val_fraction": 0.2},
        "pretraining": {
            "methods": {"yaware": {"sigma": [5.0]}},
            "encoder": "tinycnn",
            "epochs": 1,
            "batch_size": 8,
        },
        "features": {"pca_components": 4},
        "probes": {"inner_folds": 2},
        "fine_tuning": {"enabled": False},
    }


def _ids(path) -> set[str]:
    return set(pd.read_csv(path, sep="\t", dtype={"participant_id": str})["participant_id"])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    base = tmp_path_factory.mktemp("openbhb_run")
    table = make_replica(base / "openbhb")
    workdir = make_workdir(base / "work", _config(base / "openbhb", openbhb_roi_floor=True))
    done = snakemake(workdir, "--cores", "2", "results/tables/summary.md")
    assert done.returncode == 0, done.stderr[-4000:]
    return workdir, table.assign(participant_id=table["participant_id"].astype(str))


def test_pretraining_reads_the_official_train_split_only(run):
    workdir, table = run
    official = dict(zip(table["participant_id"], table["split"], strict=True))
    out = workdir / "results/pretrain" / EXPERIMENT
    trained, validated = _ids(out / "train_rows_0.tsv"), _ids(out / "val_rows_0.tsv")
    assert trained and validated and not trained & validated
    assert {official[i] for i in trained | validated} == {"train"}
    passed = _ids(workdir / "results/data/openbhb/participants.tsv")
    assert trained | validated == {i for i in passed if official[i] == "train"}
    assert any(official[i] == "external_test" for i in passed)  # converted, never trained on


def test_openbhb_csv_scores_every_model_and_floor_on_both_test_splits(run):
    workdir, table = run
    scores = pd.read_csv(workdir / "results/tables/openbhb.csv")
    assert set(scores["model"]) == {EXPERIMENT, "random_tinycnn_seed0", "pca", "roi"}
    metrics = scores[["mae_internal", "mae_external", "site_bacc", "score"]].to_numpy()
    assert np.isfinite(metrics).all() and (metrics > 0).all()
    counts = table["split"].value_counts()
    assert (scores["n_internal"] == counts["internal_test"]).all()
    assert (scores["n_external"] == counts["external_test"]).all()
    assert np.allclose(scores["score"], scores["site_bacc"] ** 0.3 * scores["mae_external"])
    summary = (workdir / "results/tables/summary.md").read_text()
    assert "OpenBHB challenge metrics" in summary and "ROI volumes" in summary


def test_qc_names_a_missing_map_a_missing_folder_and_a_wrong_shape(tmp_path):
    root = tmp_path / "openbhb"
    table = make_replica(root, seed=1, roi=False)
    ids = table["participant_id"].astype(str)
    maps = [next(root.glob(f"*/derivatives/sub-{ids[i]}/ses-1/*_T1w.npy")) for i in (0, 1)]
    maps[0].unlink()
    np.save(maps[1], np.zeros((1, 120, 145, 121), np.float32))
    table.loc[len(table)] = table.iloc[2].to_dict() | {"participant_id": 123}  # no folder
    table["participant_id"] = table["participant_id"].astype(float)  # written as "1234.0"
    table.to_csv(root / "participants.tsv", sep="\t", index=False)
    workdir = make_workdir(tmp_path / "work", _config(root))
    done = snakemake(workdir, "--cores", "2", "results/data/openbhb/participants.tsv")
    assert done.returncode == 0, done.stderr[-4000:]
    metrics = pd.read_csv(
        workdir / "results/qc/openbhb/metrics.tsv", sep="\t", dtype={"participant_id": str}
    ).set_index("participant_id")
    fetch = f"yaware openbhb-download --root {root}"
    assert (
        "missing file" in metrics.loc[ids[0], "problem"] and fetch in metrics.loc[ids[0], "problem"]
    )
    assert "shape (1, 120, 145, 121)" in metrics.loc[ids[1], "problem"]
    assert "no folder" in metrics.loc["123", "problem"] and fetch in metrics.loc["123", "problem"]
    converted = _ids(workdir / "results/data/openbhb/participants.tsv")
    assert converted == set(ids[2:])  # the integer ids, as folders name them


def test_a_missing_copy_stops_the_plan_with_the_command_to_fetch_it(tmp_path):
    workdir = make_workdir(tmp_path / "work", _config(tmp_path / "nowhere"))
    done = snakemake(workdir, "-n")
    output = done.stdout + done.stderr
    assert done.returncode != 0 and "cohorts.openbhb.openbhb_root" in output
    assert f"yaware openbhb-download --root {tmp_path / 'nowhere'}" in output
    # Asked to fetch it, the plan starts with the fetch (no network is used to plan).
    workdir = make_workdir(tmp_path / "fetch", _config(tmp_path / "nowhere", openbhb_download=True))
    assert planned_jobs(workdir, "results/data/openbhb/data.npy")["openbhb_index"] == 1


def test_openbhb_config_plans_over_placeholder_tables(tmp_path):
    config = yaml.safe_load((REPO / "config/openbhb.yaml").read_text())
    assert config["cohorts"]["openbhb"]["openbhb_root"]
    for name, cohort in config["cohorts"].items():
        if "participants" not in cohort:
            continue
        table = tmp_path / cohort["participants"]
        table.parent.mkdir(parents=True)
        task = cohort["task"]
        rows = pd.DataFrame({"participant_id": [f"{name}1", f"{name}2"], "session": "1"})
        rows[task["label"]] = [task["positive"][0], task["negative"][0]]
        rows.to_csv(table, sep="\t", index=False)
        (tmp_path / cohort["cat12_root"] / f"sub-{name}1").mkdir(parents=True)
    plan = planned_jobs(make_workdir(tmp_path, config))
    assert plan["openbhb_index"] == plan["openbhb_roi"] == plan["openbhb_metrics"] == 1
    assert plan["pretrain"] == 4 and plan["qc_metrics"] == 4
