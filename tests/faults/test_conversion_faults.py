"""Conversion: killed half way through Snakemake, maps that overflow float16, maps changed
since QC."""

import os
import signal

import numpy as np
import pandas as pd

from tests.workflow.helpers import make_workdir, snakemake, start_snakemake, wait_until
from tests.workflow.test_cat12_faults import VOXEL_MM, _brain, _write_scan

COHORT = {
    "synthetic": {
        "voxel_mm": 3.0,
        "cohorts": {"bhb": {"role": "pretrain", "n_subjects": 150, "n_sites": 2}},
    },
    "qc": {"corr_voxel_mm": 6.0},
    "conversion": {"voxel_mm": 3.0, "threads": 1},
}
DATA = "results/data/bhb"
SMALL_COHORT = {
    "synthetic": {
        "voxel_mm": 6.0,
        "cohorts": {"bhb": {"role": "pretrain", "n_subjects": 30, "n_sites": 2}},
    },
    "qc": {"corr_voxel_mm": 6.0},
    "conversion": {"voxel_mm": 6.0},
}


def test_conversion_killed_half_way_leaves_nothing_finished_and_reruns_identically(tmp_path):
    reference = make_workdir(tmp_path / "reference", COHORT)
    done = snakemake(reference, "--cores", "2", f"{DATA}/data.npy")
    assert done.returncode == 0, done.stderr[-2000:]

    workdir = make_workdir(tmp_path / "killed", COHORT)
    # Everything before the conversion first, so the kill lands inside it.
    assert snakemake(workdir, "--cores", "2", "results/qc/bhb/qc.tsv").returncode == 0
    process = start_snakemake(workdir, "--cores", "2", f"{DATA}/data.npy")
    out = workdir / DATA
    wait_until(lambda: any(out.glob(".data.npy.*.tmp")), process, "the conversion wrote")
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (out / "data.npy").exists()  # only the temporary file was being written
    assert any(out.glob(".data.npy.*.tmp"))

    assert snakemake(workdir, "--unlock").returncode == 0
    rerun = snakemake(workdir, "--cores", "2", "--rerun-incomplete", f"{DATA}/data.npy")
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert (out / "data.npy").read_bytes() == (reference / DATA / "data.npy").read_bytes()
    assert (out / "participants.tsv").read_bytes() == (
        reference / DATA / "participants.tsv"
    ).read_bytes()
    assert not any(out.glob(".data.npy.*.tmp"))  # the leftover was cleaned up


def test_maps_that_overflow_float16_stop_the_conversion_with_the_file_named(tmp_path):
    root = tmp_path / "cat12"
    rng = np.random.default_rng(1)
    for i in range(5):
        _write_scan(root, f"s{i}", _brain(rng))
    # A good map whose TIV in the table is off by a unit: scaled to the reference TIV
    # (1500 / 0.01), its values overflow float16. (A map of raw intensities, a T1 in place
    # of the grey-matter map, is excluded earlier, by QC: tests/workflow/test_cat12_faults.)
    _write_scan(root, "raw", _brain(rng))
    names = [f"s{i}" for i in range(5)] + ["raw"]
    (tmp_path / "participants.tsv").write_text(
        "participant_id\tsession\tage\ttiv\n"
        + "".join(f"{n}\t1\t{40 + k}\t{0.01 if n == 'raw' else ''}\n" for k, n in enumerate(names))
    )
    config = {
        "synthetic": {"cohorts": {}},
        "cohorts": {
            "hand": {
                "role": "pretrain",
                "participants": str(tmp_path / "participants.tsv"),
                "cat12_root": str(root),
                "voxel_mm": VOXEL_MM,
            }
        },
        "qc": {"corr_voxel_mm": VOXEL_MM},
        "conversion": {"voxel_mm": VOXEL_MM, "dtype": "float16"},
    }
    workdir = make_workdir(tmp_path / "work", config)
    done = snakemake(workdir, "--cores", "2", "results/data/hand/data.npy")
    assert done.returncode != 0
    log = (workdir / "results/logs/convert/hand.log").read_text()
    assert "mwp1sub-raw_ses-1_T1w.nii.gz" in log and "overflow float16; use float32" in log
    assert "Traceback" not in log
    assert not (workdir / "results/data/hand/data.npy").exists()


def test_a_map_that_changes_between_qc_and_conversion_is_named(tmp_path):
    # Snakemake tracks the participants table, not each map: a map rewritten or removed on
    # a shared file system after QC reaches the conversion.
    workdir = make_workdir(tmp_path, SMALL_COHORT)
    assert snakemake(workdir, "--cores", "2", "results/qc/bhb/qc.tsv").returncode == 0
    qc = pd.read_csv(workdir / "results/qc/bhb/qc.tsv", sep="\t")
    changed = qc.loc[qc["qc"] == 1, "path"].iloc[3]  # relative to the working directory
    (workdir / changed).write_bytes((workdir / changed).read_bytes()[:200])  # truncated since
    done = snakemake(workdir, "--cores", "2", f"{DATA}/data.npy")
    assert done.returncode != 0
    log = (workdir / "results/logs/convert/bhb.log").read_text()
    assert f"{changed}: unreadable NIfTI" in log and "rerun QC" in log and "Traceback" not in log
    assert not (workdir / DATA).exists() or not any((workdir / DATA).iterdir())


def test_a_pass_list_that_names_other_scans_stops_the_conversion(tmp_path):
    """passed.tsv names each passing scan by its row in the metrics and by its ids: a list
    edited by hand, or copied from another QC run, would convert other maps than it names."""
    workdir = make_workdir(tmp_path, SMALL_COHORT)
    passed_path = workdir / "results/qc/bhb/passed.tsv"
    assert snakemake(workdir, "--cores", "2", str(passed_path.relative_to(workdir))).returncode == 0
    passed = pd.read_csv(passed_path, sep="\t", dtype=str, keep_default_na=False)
    assert len(passed) > 3 and passed["row"].astype(int).is_monotonic_increasing
    edited = passed.copy()
    edited.loc[2, "row"] = passed.loc[3, "row"]  # names scan 2, points at scan 3's row
    edited.to_csv(passed_path, sep="\t", index=False)
    done = snakemake(workdir, "--cores", "2", f"{DATA}/data.npy")
    assert done.returncode != 0
    log = (workdir / "results/logs/convert/bhb.log").read_text()
    named = f"{passed.loc[2, 'participant_id']} ses-{passed.loc[2, 'session']}"
    measured = f"{passed.loc[3, 'participant_id']} ses-{passed.loc[3, 'session']}"
    row = passed.loc[3, "row"]
    assert f"passed.tsv: row {row} names {named} where the QC metrics have {measured}" in log
    assert "snakemake --forcerun qc" in log and "Traceback" not in log
    assert not (workdir / DATA / "data.npy").exists()
