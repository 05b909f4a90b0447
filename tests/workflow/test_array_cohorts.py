"""Cohorts given as one array of maps and its table (the original repository's data.npy),
through Snakemake: QC of each map, the conversion, and the config check's faults."""

import json

import numpy as np
import pandas as pd
import pytest

from tests.workflow.helpers import make_workdir, planned_jobs, snakemake

SOURCE = {
    "synthetic": {
        "voxel_mm": 6.0,
        "seed": 2,
        "cohorts": {
            "bhb": {"role": "pretrain", "n_subjects": 24, "n_sites": 2, "age_range": [20, 80]},
            "adni": {
                "role": "evaluate",
                "n_subjects": 30,
                "n_sites": 2,
                "diagnosis": "alzheimer",
                "age_mean": 75,
                "age_sd": 6,
                "age_range": [55, 95],
            },
        },
    },
    "qc": {"corr_voxel_mm": 6.0},
    "conversion": {"voxel_mm": 6.0},
    "splits": {"n_target": [6], "repeats": 1, "val_fraction": 0.2},
}
TASK = {"label": "diagnosis", "positive": ["alzheimer"], "negative": ["control"]}


def read(path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", dtype={"participant_id": str, "session": str})


@pytest.fixture(scope="module")
def arrays(tmp_path_factory):
    """Two converted cohorts of a synthetic run, as a user of the original has them: a
    data.npy of TIV-scaled maps and a table whose row i describes map i."""
    root = tmp_path_factory.mktemp("arrays")
    workdir = make_workdir(root / "source", SOURCE)
    done = snakemake(
        workdir, "--cores", "2", "results/data/bhb/data.npy", "results/data/adni/data.npy"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return {cohort: workdir / f"results/data/{cohort}" for cohort in ("bhb", "adni")}


def _config(cohorts: dict) -> dict:
    # The maps are TIV-scaled already, as the original's arrays are.
    return {**SOURCE, "synthetic": {"voxel_mm": 6.0, "cohorts": {}}, "cohorts": cohorts} | {
        "conversion": {"voxel_mm": 6.0, "tiv_scaling": False}
    }


def test_an_array_cohort_is_checked_map_by_map_and_converted_row_for_row(arrays, tmp_path):
    maps = np.load(arrays["adni"] / "data.npy")  # (N, 1, X, Y, Z)
    table = read(arrays["adni"] / "participants.tsv")
    broken = maps.copy()
    broken[3, 0, 10, 10, 10] = np.nan
    broken[7] *= 1000  # a map saved scaled, as integer storage often is
    np.save(tmp_path / "adni.npy", broken[:, 0])  # (N, X, Y, Z) is read too
    table["NCR"], table["IQR"] = 2.0, 2.0
    table.loc[5, "NCR"] = 5.1  # brainprep's qc.tsv columns, with a poor mark
    table.to_csv(tmp_path / "adni.tsv", sep="\t", index=False)
    cohorts = {
        "pre": {
            "role": "pretrain",
            "participants": str(arrays["bhb"] / "participants.tsv"),
            "array": str(arrays["bhb"] / "data.npy"),
            "voxel_mm": 6.0,
        },
        "eval": {
            "role": "evaluate",
            "participants": str(tmp_path / "adni.tsv"),
            "array": str(tmp_path / "adni.npy"),
            "voxel_mm": 6.0,
            "task": TASK,
        },
    }
    workdir = make_workdir(tmp_path / "work", _config(cohorts))
    done = snakemake(workdir, "--cores", "2", "data")
    assert done.returncode == 0, done.stderr[-3000:]

    qc = read(workdir / "results/qc/eval/qc.tsv")
    assert qc.loc[3, "reason"] == "map 3 of the array: 1 voxels are NaN or infinite"
    assert qc.loc[5, "reason"] == "NCR 5.10 >= 4.5"
    assert qc.loc[7, "reason"].startswith("map 7 of the array: voxels up to ")
    assert "not a grey-matter density map (0 to about 1.5)" in qc.loc[7, "reason"]
    assert qc["qc"].sum() == len(table) - 3
    kept = [i for i in range(len(table)) if i not in (3, 5, 7)]
    data = np.load(workdir / "results/data/eval/data.npy")
    np.testing.assert_array_equal(data, maps[kept])  # same grid, no scaling: the same values
    aligned = read(workdir / "results/data/eval/participants.tsv")
    assert aligned["participant_id"].tolist() == table["participant_id"].iloc[kept].tolist()
    manifest = json.loads((workdir / "results/data/eval/manifest.json").read_text())
    assert [source["map"] for source in manifest["sources"]] == kept
    # Without mark columns (the bhb table) the thresholds on marks do not apply.
    pre = read(workdir / "results/qc/pre/qc.tsv")
    assert pre["qc"].all() and pre["NCR"].isna().all()
    np.testing.assert_array_equal(
        np.load(workdir / "results/data/pre/data.npy"), np.load(arrays["bhb"] / "data.npy")
    )
    split = read(workdir / "results/splits/eval/split.tsv")
    assert set(split["split"]) == {"train", "test"}
    # The array is the QC's input: new maps rerun its QC and what follows, not the other's.
    broken[0, 0, 12, 12, 12] = np.inf
    np.save(tmp_path / "adni.npy", broken[:, 0])
    planned = planned_jobs(workdir, "data")
    assert planned["qc_metrics"] == 1 and planned["convert"] == 1
    # Converted alone, against the old QC, the map that turned bad stops it by name.
    target = "results/data/eval/data.npy"
    alone = ("--forcerun", "convert", "--allowed-rules", "convert")
    done = snakemake(workdir, target, "--cores", "1", *alone)
    assert done.returncode != 0
    assert "adni.npy, map 0: 1 voxels are NaN or infinite; the map passed QC" in done.stderr
    # Snakemake removed the old output before the job; the job leaves no half-written one.
    assert not any((workdir / "results/data/eval").glob("*data.npy*"))


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("rows", "holds {n} maps but its participants table has {m} rows; row i of the table"),
        (
            "grid",
            "not the shape of CAT12's 3 mm grid (61, 73, 61); they are on CAT12's 6 mm "
            "grid: set the cohort's voxel_mm: 6",
        ),
        (
            "both",
            "cohorts.eval: set participants and one of cat12_root (a CAT12 derivatives folder)",
        ),
        ("missing", "cohorts.eval.array: nowhere.npy is not a file"),
        ("not npy", "not a readable .npy array"),
        ("no ids", "no 'participant_id' column; the table has ['age', 'diagnosis']: add one"),
        (
            "int16",
            "maps stored as int16; grey-matter densities are fractions (0 to about 1.5), so "
            "integer maps were scaled (often by 1000). Save them as floats in their unit, e.g. "
            "np.save(out, np.load(path).astype(np.float32) / 1000)",
        ),
    ],
)
def test_an_array_cohort_that_does_not_fit_is_named_before_any_job(
    arrays, tmp_path, fault, expected
):
    table = read(arrays["adni"] / "participants.tsv")
    expected = expected.format(n=len(table), m=len(table) - 1)
    if fault == "rows":
        table = table.iloc[:-1]
    if fault == "no ids":  # as the original repository's metadata.csv
        table = table[["age", "diagnosis"]]
    table.to_csv(tmp_path / "adni.tsv", sep="\t", index=False)
    spec = {
        "role": "evaluate",
        "participants": str(tmp_path / "adni.tsv"),
        "array": str(arrays["adni"] / "data.npy"),
        "voxel_mm": 3.0 if fault == "grid" else 6.0,
        "task": TASK,
    }
    if fault == "both":
        spec["cat12_root"] = str(tmp_path)
    if fault == "missing":
        spec["array"] = "nowhere.npy"
    if fault == "not npy":
        spec["array"] = str(tmp_path / "adni.tsv")
    if fault == "int16":  # as some tools save maps: scaled by 1000
        maps = np.load(arrays["adni"] / "data.npy")
        np.save(tmp_path / "scaled.npy", np.round(maps * 1000).astype(np.int16))
        spec["array"] = str(tmp_path / "scaled.npy")
    workdir = make_workdir(tmp_path / "work", _config({"eval": spec}))
    done = snakemake(workdir, "-n")
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert expected in output
    assert "Traceback" not in output


def test_blank_rows_at_the_end_of_a_table_are_left_out_by_name(arrays, tmp_path):
    """A spreadsheet export ends with rows of tabs: they were counted as rows (the array
    then 'held fewer maps than the table') or excluded as unsafe ids. They are left out,
    and the log names their lines."""
    table = read(arrays["adni"] / "participants.tsv")
    text = table.to_csv(sep="\t", index=False) + "\t" * (len(table.columns) - 1) + "\n" * 2
    (tmp_path / "adni.tsv").write_text(text + "\t\t\n")
    spec = {
        "role": "evaluate",
        "participants": str(tmp_path / "adni.tsv"),
        "array": str(arrays["adni"] / "data.npy"),
        "voxel_mm": 6.0,
        "task": TASK,
    }
    pre = {
        "role": "pretrain",
        "participants": str(arrays["bhb"] / "participants.tsv"),
        "array": str(arrays["bhb"] / "data.npy"),
        "voxel_mm": 6.0,
    }
    workdir = make_workdir(tmp_path / "work", _config({"pre": pre, "eval": spec}))
    done = snakemake(workdir, "--cores", "1", "results/qc/eval/qc.tsv")
    assert done.returncode == 0, done.stderr[-3000:]
    qc = read(workdir / "results/qc/eval/qc.tsv")
    assert len(qc) == len(table) and qc["qc"].all()
    first = len(table) + 2  # the header is line 1
    lines = ", ".join(str(n) for n in (first, first + 1, first + 2))
    log = (workdir / "results/logs/qc_metrics/eval.log").read_text()
    assert f"adni.tsv: 3 blank rows left out (lines {lines}: empty cells only)" in log
