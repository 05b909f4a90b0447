"""Held-out evaluation scans that are copies of training scans (a leak), through Snakemake."""

import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from tests.workflow.helpers import make_workdir, snakemake
from yaware.data.shared_scans import shared_scans

VOXEL_MM = 6.0
TASK = {"label": "diagnosis", "positive": ["alzheimer"], "negative": ["control"]}


def _simulated_trees(folder: Path) -> Path:
    """CAT12 trees of a healthy and an AD cohort, written by the workflow's simulator."""
    cohorts = {
        "bhb": {"role": "pretrain", "n_subjects": 16, "n_sites": 2, "qc_failure_rate": 0.0},
        "adni": {
            "role": "evaluate",
            "n_subjects": 24,
            "n_sites": 2,
            "diagnosis": "alzheimer",
            "qc_failure_rate": 0.0,
        },
    }
    workdir = make_workdir(folder, {"synthetic": {"voxel_mm": VOXEL_MM, "cohorts": cohorts}})
    targets = [f"results/synth/{name}/participants.tsv" for name in cohorts]
    done = snakemake(workdir, "--cores", "2", *targets)
    assert done.returncode == 0, done.stderr[-2000:]
    return workdir / "results" / "synth"


def _real_cohorts(synth: Path, folder: Path, on_leak: str) -> dict:
    """The trees as real cohorts; the healthy table also lists every AD-cohort scan, by
    path (a control or patient study folded into the pretraining set by mistake)."""
    folder.mkdir(parents=True, exist_ok=True)
    adni = pd.read_csv(synth / "adni/participants.tsv", sep="\t", dtype=str)
    maps = [
        synth / f"adni/cat12/sub-{p}/ses-{s}/anat/mri/mwp1sub-{p}_ses-{s}_T1w.nii.gz"
        for p, s in zip(adni["participant_id"], adni["session"], strict=True)
    ]
    assert all(path.is_file() for path in maps)
    healthy = pd.read_csv(synth / "bhb/participants.tsv", sep="\t", dtype=str).assign(path="")
    copies = adni.drop(columns="diagnosis").assign(path=[str(path) for path in maps])
    pd.concat([healthy, copies]).to_csv(folder / "healthy.tsv", sep="\t", index=False)
    return {
        "synthetic": {"cohorts": {}},
        "cohorts": {
            "healthy": {
                "role": "pretrain",
                "voxel_mm": VOXEL_MM,
                "participants": str(folder / "healthy.tsv"),
                "cat12_root": str(synth / "bhb/cat12"),
            },
            "ad": {
                "role": "evaluate",
                "voxel_mm": VOXEL_MM,
                "participants": str(synth / "adni/participants.tsv"),
                "cat12_root": str(synth / "adni/cat12"),
                "task": TASK,
            },
        },
        "qc": {"corr_voxel_mm": VOXEL_MM},
        "conversion": {"voxel_mm": VOXEL_MM},
        "splits": {"n_target": [4], "repeats": 1},
        "checks": {"shared_scans": on_leak},
    }


def test_evaluation_scans_inside_the_pretraining_cohort_stop_the_workflow(tmp_path):
    synth = _simulated_trees(tmp_path / "sim")
    workdir = make_workdir(tmp_path / "run", _real_cohorts(synth, tmp_path / "tables", "error"))
    done = snakemake(workdir, "--cores", "2", "data")
    assert done.returncode != 0
    log = (workdir / "results/logs/checks/shared_scans.log").read_text()
    assert "held-out evaluation scans are identical voxel for voxel to pretraining scans" in log
    assert "set checks.shared_scans: warn to go on" in log and "Traceback" not in log
    assert not (workdir / "results/checks/shared_scans.tsv").exists()

    # Told to go on, the workflow lists every copy, and marks the held-out ones as leaks.
    workdir = make_workdir(workdir, _real_cohorts(synth, tmp_path / "tables", "warn"))
    done = snakemake(workdir, "--cores", "2", "data")
    assert done.returncode == 0, done.stderr[-2000:]
    assert (
        "held-out evaluation scans are identical voxel for voxel"
        in (workdir / "results/logs/checks/shared_scans.log").read_text()
    )
    shared = pd.read_csv(workdir / "results/checks/shared_scans.tsv", sep="\t", dtype=str)
    split = pd.read_csv(workdir / "results/splits/ad/split.tsv", sep="\t", dtype=str)
    converted = pd.read_csv(workdir / "results/data/ad/participants.tsv", sep="\t", dtype=str)
    # Every AD scan has its copy in the healthy cohort.
    assert len(shared) == 2 * len(converted)
    assert set(shared.groupby("voxels_sha256")["cohort"].agg(frozenset)) == {
        frozenset({"healthy", "ad"})
    }
    held_out = set(split.loc[split["split"] == "test", "participant_id"])
    leaking = shared[(shared["leak"] == "True") & (shared["cohort"] == "ad")]
    assert set(leaking["participant_id"]) == held_out
    # The copies of the AD cohort's training pool and later sessions are shared, not leaks.
    assert (
        not shared[(shared["cohort"] == "ad") & ~shared["participant_id"].isin(held_out)]["leak"]
        .eq("True")
        .any()
    )


def _scans(cohort: str, role: str, rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    """(participant_id, split, voxels_sha256) rows of one cohort."""
    frame = pd.DataFrame(rows, columns=["participant_id", "split", "voxels_sha256"])
    return frame.assign(session="1", path="m.nii", map=pd.NA, cohort=cohort, role=role)


def test_which_copies_leak():
    """A held-out scan leaks through a pretraining copy (train or val) or a copy in its own
    cohort's pool; two tasks on one study (AD and MCI cohorts sharing controls) only share."""
    leaks = shared_scans(
        [
            _scans("pre", "pretrain", [("p1", "train", "a"), ("p2", "val", "b")]),
            _scans("ad", "evaluate", [("c1", "test", "a"), ("c2", "test", "b")]),
            _scans("ad", "evaluate", [("c3", "test", "c"), ("c4", "train", "c")]),
            _scans("ad", "evaluate", [("c5", "test", "d"), ("c6", "external", "e")]),
            _scans("mci", "evaluate", [("c5", "train", "d"), ("c6", "train", "e")]),
            _scans("mci", "evaluate", [("c7", "unused", "f"), ("c8", "train", "g")]),
            _scans("pre", "pretrain", [("c7", "train", "f")]),
        ]
    )
    by_hash = leaks.groupby("voxels_sha256")["leak"].all().to_dict()
    assert by_hash == {"a": True, "b": True, "c": True, "d": False, "e": False, "f": False}


def test_copies_held_in_an_array_are_found_by_their_voxels(tmp_path):
    """The healthy cohort as the original's data.npy and table, whose rows include every AD
    scan's voxels: the same scans as the AD cohort's NIfTI files, held in other bytes."""
    synth = _simulated_trees(tmp_path / "sim")
    tables = {name: read_ids(synth / f"{name}/participants.tsv") for name in ("bhb", "adni")}
    table = pd.concat([tables["bhb"], tables["adni"].drop(columns="diagnosis")], ignore_index=True)
    copies = range(len(tables["bhb"]), len(table))  # the array's rows that hold AD scans
    cohort_of = ["bhb"] * len(tables["bhb"]) + ["adni"] * len(tables["adni"])
    maps = [
        nib.load(
            synth / f"{cohort}/cat12/sub-{p}/ses-{s}/anat/mri/mwp1sub-{p}_ses-{s}_T1w.nii.gz"
        ).get_fdata()
        for cohort, p, s in zip(cohort_of, table["participant_id"], table["session"], strict=True)
    ]
    folder = tmp_path / "tables"
    folder.mkdir()
    np.save(folder / "healthy.npy", np.stack(maps)[:, None].astype(np.float32))
    table.to_csv(folder / "healthy.tsv", sep="\t", index=False)
    config = _real_cohorts(synth, folder / "unused", "error")
    config["cohorts"]["healthy"] = {
        "role": "pretrain",
        "voxel_mm": VOXEL_MM,
        "participants": str(folder / "healthy.tsv"),
        "array": str(folder / "healthy.npy"),
    }
    config["conversion"]["tiv_scaling"] = False  # an array cohort's table has no TIV here
    workdir = make_workdir(tmp_path / "run", config)
    done = snakemake(workdir, "--cores", "2", "data")
    assert done.returncode != 0
    log = (workdir / "results/logs/checks/shared_scans.log").read_text()
    assert "held-out evaluation scans are identical voxel for voxel to pretraining" in log
    assert f"(train: {folder / 'healthy.npy'}, map " in log and "_T1w.nii.gz)" in log

    config["checks"]["shared_scans"] = "warn"
    workdir = make_workdir(workdir, config)
    done = snakemake(workdir, "--cores", "2", "data")
    assert done.returncode == 0, done.stderr[-2000:]
    shared = read_ids(workdir / "results/checks/shared_scans.tsv")
    converted = read_ids(workdir / "results/data/ad/participants.tsv")
    assert len(shared) == 2 * len(converted)
    # Each AD scan is paired with the array row that holds its voxels, and no other.
    pairs = {}
    for _, group in shared.groupby("voxels_sha256"):
        ad, healthy = (group[group["cohort"] == c].squeeze() for c in ("ad", "healthy"))
        pairs[ad["participant_id"], ad["session"]] = int(healthy["map"])
    assert pairs == {tuple(table.loc[row, ["participant_id", "session"]]): row for row in copies}
    # The bytes differ: a hash of the files and rows would have found none of these copies.
    manifests = [
        json.loads((workdir / f"results/data/{c}/manifest.json").read_text())["sources"]
        for c in ("healthy", "ad")
    ]
    rows = {hashlib.sha256(row.tobytes()).hexdigest() for row in np.load(folder / "healthy.npy")}
    assert not rows & {s["sha256"] for s in manifests[1]}

    # A manifest of an earlier conversion (kept by --touch) names the fix.
    manifest = workdir / "results/data/ad/manifest.json"
    earlier = json.loads(manifest.read_text())
    earlier["sources"] = [
        {k: v for k, v in s.items() if k != "voxels_sha256"} for s in manifests[1]
    ]
    manifest.write_text(json.dumps(earlier))
    done = snakemake(workdir, "--cores", "2", "data")
    assert done.returncode != 0
    log = (workdir / "results/logs/checks/shared_scans.log").read_text()
    assert f"{manifest.relative_to(workdir)} has no voxels_sha256 of its maps" in log
    assert "snakemake --forcerun results/data/ad/data.npy" in log and "Traceback" not in log


def read_ids(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", dtype={"participant_id": str, "session": str})
