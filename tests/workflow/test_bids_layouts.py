"""A BIDS dataset without sessions, ids with their sub- prefix, through `data` and pretraining.

CAT12 writes its mri/ and report/ folders next to the T1w it segments, so a BIDS dataset
with no ses- level gives sub-<id>/anat/mri/mwp1sub-<id>_T1w.nii; BIDS tables write the id
as "sub-<id>". Both are the common case on public datasets, as are T1w names with more
entities than the table names (acq-, rec-, run-) and tables that point at each map.
"""

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from tests.workflow.helpers import TINY_EXPERIMENT, make_workdir, snakemake
from tests.workflow.test_cat12_faults import SHAPE, VOXEL_MM, _affine, _brain, _report

N_GOOD = 24


def _write_sessionless(root, subject: str, data: np.ndarray, entities: str = "", iqr=2.1):
    anat = root / f"sub-{subject}" / "anat"
    (anat / "mri").mkdir(parents=True, exist_ok=True)
    image = anat / "mri" / f"mwp1sub-{subject}{entities}_T1w.nii"
    nib.save(nib.Nifti1Image(data, _affine()), image)
    _report(anat / "report" / f"cat_sub-{subject}{entities}_T1w.xml", 2.0, iqr)
    return image


def _pretraining_cohorts(root, tables: dict) -> dict:
    """A config of real pretraining cohorts (name -> participants table) over one CAT12 tree."""
    cohorts = {
        name: {
            "role": "pretrain",
            "voxel_mm": VOXEL_MM,
            "participants": str(table),
            "cat12_root": str(root),
        }
        for name, table in tables.items()
    }
    return {
        "synthetic": {"cohorts": {}},
        "cohorts": cohorts,
        "qc": {"corr_voxel_mm": VOXEL_MM},
        "conversion": {"voxel_mm": VOXEL_MM},
    }


@pytest.fixture(scope="module")
def bids_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("bids")
    root = base / "derivatives" / "cat12"
    rng = np.random.default_rng(3)
    for i in range(N_GOOD):
        _write_sessionless(root, f"{i:02d}", _brain(rng))
    # A subject whose scans sit in session folders: the table needs a session column.
    anat = root / "sub-90" / "ses-1" / "anat"
    (anat / "mri").mkdir(parents=True)
    nib.save(nib.Nifti1Image(_brain(rng), _affine()), anat / "mri" / "mwp1sub-90_ses-1_T1w.nii")
    # The only map of its subject, with an acq- entity: used, with its own report (IQR 3.3).
    _write_sessionless(root, "acq", _brain(rng), "_acq-mprage", iqr=3.3)
    # Two runs and no run column: which one is meant is the user's call.
    for run in (1, 2):
        _write_sessionless(root, "runs", _brain(rng), f"_run-{run}")
    # A path column pointing at a map in another tree; its report lies beside it.
    elsewhere = _write_sessionless(base / "other", "x", _brain(rng), "_rec-norm", iqr=3.7)
    # ... and at a map CAT12 made from a file with no BIDS name (T1.nii): cat_T1.xml.
    plain = base / "plain" / "mri" / "mwp1T1.nii"
    plain.parent.mkdir(parents=True)
    nib.save(nib.Nifti1Image(_brain(rng), _affine()), plain)
    _report(base / "plain" / "report" / "cat_T1.xml", 2.0, 3.9)
    # Ids as BIDS writes them, and a few without the prefix; "01" repeats "sub-01".
    ids = [f"sub-{i:02d}" if i % 4 else f"{i:02d}" for i in range(N_GOOD)]
    ids += ["sub-90", "01", "sub-acq", "sub-runs", "sub-bypath", "sub-plain"]
    table = pd.DataFrame({"participant_id": ids, "age": 20.0 + 2 * np.arange(len(ids))})
    table["path"] = ""
    table.loc[table["participant_id"] == "sub-bypath", "path"] = str(elsewhere)
    table.loc[table["participant_id"] == "sub-plain", "path"] = "plain/mri/mwp1T1.nii"  # relative
    table.to_csv(base / "participants.tsv", sep="\t", index=False)
    config = {
        "synthetic": {"cohorts": {}},
        "cohorts": {
            "bids": {
                "role": "pretrain",
                "participants": str(base / "participants.tsv"),
                "cat12_root": str(root),
                "voxel_mm": VOXEL_MM,
            }
        },
        "qc": {"corr_voxel_mm": VOXEL_MM},
        "conversion": {"voxel_mm": VOXEL_MM},
        "splits": {"val_fraction": 0.25},
        "pretraining": {
            "methods": {"yaware": {"sigma": [5.0]}},
            "encoder": "tinycnn",
            "epochs": 1,
            "batch_size": 6,
        },
    }
    workdir = make_workdir(base / "work", config)
    done = snakemake(workdir, "--cores", "2", f"results/pretrain/{TINY_EXPERIMENT}/best.pt")
    assert done.returncode == 0, done.stderr[-3000:]
    return workdir


def test_sessionless_scans_are_found_and_converted_with_their_ids(bids_run):
    qc = pd.read_csv(bids_run / "results/qc/bids/qc.tsv", sep="\t", dtype=str)
    passing = qc[qc["qc"] == "1"]
    assert len(passing) == N_GOOD + 3
    # Each id is kept as the table wrote it, and found in the sub-<id>/anat layout.
    plain = passing[~passing["participant_id"].isin(["sub-acq", "sub-bypath", "sub-plain"])]
    for subject, path in zip(plain["participant_id"], plain["path"], strict=True):
        bare = subject.removeprefix("sub-")
        assert path.endswith(f"sub-{bare}/anat/mri/mwp1sub-{bare}_T1w.nii"), (subject, path)
    data = np.load(bids_run / "results/data/bids/data.npy")
    table = pd.read_csv(bids_run / "results/data/bids/participants.tsv", sep="\t", dtype=str)
    assert data.shape == (N_GOOD + 3, 1, *SHAPE)
    assert list(table["participant_id"]) == list(passing["participant_id"])
    first = nib.load(passing["path"].iloc[0]).get_fdata()
    np.testing.assert_allclose(data[0, 0], first, rtol=1e-5, atol=1e-6)


def test_the_same_scan_under_two_spellings_is_a_duplicate(bids_run):
    qc = pd.read_csv(bids_run / "results/qc/bids/qc.tsv", sep="\t", dtype=str)
    rows = qc[qc["participant_id"].isin(["sub-01", "01"])]
    assert list(rows["participant_id"]) == ["sub-01", "01"]
    assert list(rows["qc"]) == ["1", "0"] and "duplicated" in rows["reason"].iloc[1]


def test_a_subject_with_session_folders_asks_for_a_session_column(bids_run):
    qc = pd.read_csv(bids_run / "results/qc/bids/qc.tsv", sep="\t", dtype=str)
    reason = qc.loc[qc["participant_id"] == "sub-90", "reason"].iloc[0]
    assert "session folders ['ses-1']" in reason
    assert "add a 'session' column (BIDS: 'session_id')" in reason


def test_bids_session_id_column_names_the_sessions(tmp_path):
    """A table with BIDS's ``session_id`` column (as in sessions.tsv, and tables merged from
    them) is read as the session column: each scan is found in its ses- folder, the sessions
    stay as written ("01", not 1), and a subject's sessions stay on one side of the split.
    Before, every scan was looked for outside its session folder and excluded."""
    root = tmp_path / "cat12"
    rng = np.random.default_rng(8)
    rows = []
    for i in range(16):
        for session in ("01", "02"):
            anat = root / f"sub-{i:02d}" / f"ses-{session}" / "anat"
            (anat / "mri").mkdir(parents=True)
            image = anat / "mri" / f"mwp1sub-{i:02d}_ses-{session}_T1w.nii"
            nib.save(nib.Nifti1Image(_brain(rng), _affine()), image)
            _report(anat / "report" / f"cat_sub-{i:02d}_ses-{session}_T1w.xml", 2.0, 2.1)
            # Half the rows write the session with BIDS's ses- prefix.
            label = f"ses-{session}" if i % 2 else session
            rows.append({"participant_id": f"sub-{i:02d}", "session_id": label, "age": 30 + i})
    table = pd.DataFrame(rows)
    table.to_csv(tmp_path / "participants.tsv", sep="\t", index=False)
    config = _pretraining_cohorts(root, {"long": tmp_path / "participants.tsv"})
    config["splits"] = {"val_fraction": 0.25}
    workdir = make_workdir(tmp_path / "work", config)
    done = snakemake(workdir, "--cores", "2", "results/splits/long/split.tsv")
    assert done.returncode == 0, done.stderr[-3000:]
    qc = pd.read_csv(workdir / "results/qc/long/qc.tsv", sep="\t", dtype=str)
    assert list(qc["qc"]) == ["1"] * len(table), qc["reason"].tolist()
    assert list(qc["session"]) == list(table["session_id"])
    for subject, session, path in zip(qc["participant_id"], qc["session"], qc["path"], strict=True):
        bare = session.removeprefix("ses-")
        assert path.endswith(f"{subject}/ses-{bare}/anat/mri/mwp1{subject}_ses-{bare}_T1w.nii")
    converted = pd.read_csv(workdir / "results/data/long/participants.tsv", sep="\t", dtype=str)
    assert list(converted["session"]) == list(table["session_id"])
    assert np.load(workdir / "results/data/long/data.npy").shape == (len(table), 1, *SHAPE)
    split = pd.read_csv(workdir / "results/splits/long/split.tsv", sep="\t", dtype=str)
    sides = split.groupby("participant_id")["split"].nunique()
    assert len(split) == len(table) and (sides == 1).all()
    assert set(split["split"]) == {"train", "val"}


def test_a_table_with_decimal_commas_stops_the_conversion_with_the_fix(tmp_path):
    """Ages as a European spreadsheet writes them, as DICOM headers do ("045Y", "006M"), and
    binned or capped as open-access tables do ("26-30", "89+"): every scan is excluded
    with the value and the fix, and the conversion says why none passed instead of only that
    none did."""
    root = tmp_path / "cat12"
    rng = np.random.default_rng(5)
    ids = [f"{i:02d}" for i in range(10)]
    for subject in ids:
        _write_sessionless(root, subject, _brain(rng))
    ages = [f"{40 + i},5" for i in range(5)] + ["", "045Y", "006M", "26-30", "89+"]
    table = pd.DataFrame({"participant_id": ids, "age": ages})
    table.to_csv(tmp_path / "participants.tsv", sep="\t", index=False)
    config = _pretraining_cohorts(root, {"eu": tmp_path / "participants.tsv"})
    workdir = make_workdir(tmp_path / "work", config)
    done = snakemake(workdir, "--cores", "1", "results/data/eu/data.npy")
    assert done.returncode != 0
    qc = pd.read_csv(workdir / "results/qc/eu/qc.tsv", sep="\t", dtype=str)
    comma = "age is not a number: '{0},5' has a decimal comma, write {0}.5"
    dicom = "age is not a number: '{}' is a DICOM age string, write {} (years)"
    assert list(qc["reason"]) == [
        *(comma.format(40 + i) for i in range(5)),
        "age is missing",
        dicom.format("045Y", 45),
        dicom.format("006M", 0.5),
        "age is not a number: '26-30' is a range (a bin, as in HCP's open-access table): "
        "write the exact value, or the middle, 28, if the bin's width is precise enough for you",
        "age is not a number: '89+' is only a lower bound (a de-identified age, as BIDS writes "
        "89+): write the exact value, or leave the scan out",
    ]
    log = (workdir / "results/logs/convert/eu.log").read_text()
    assert f"none of its 10 scans passed QC (1 x {comma.format(40)}; " in log
    assert "Traceback" not in log
    assert not (workdir / "results/data/eu/data.npy").exists()


def test_bids_n_a_in_session_and_run_columns_means_none(tmp_path):
    """BIDS writes a missing value "n/a". A table with subjects scanned in sessions and
    subjects without (sessionless layout), "n/a" in their session and in every run: each
    scan is found where CAT12 wrote it. Before, "n/a" was taken as a session label (refused
    as unsafe, for its "/") and as a run (mwp1sub-01_ses-1_run-n/a_T1w.nii looked for)."""
    root = tmp_path / "cat12"
    rng = np.random.default_rng(9)
    rows = []
    for i in range(8):
        subject = f"{i:02d}"
        if i % 2:
            anat = root / f"sub-{subject}" / "ses-1" / "anat"
            (anat / "mri").mkdir(parents=True)
            nib.save(
                nib.Nifti1Image(_brain(rng), _affine()),
                anat / "mri" / f"mwp1sub-{subject}_ses-1_T1w.nii",
            )
            _report(anat / "report" / f"cat_sub-{subject}_ses-1_T1w.xml", 2.0, 2.1)
        else:
            _write_sessionless(root, subject, _brain(rng))
        session = "1" if i % 2 else ("n/a" if i % 4 else "N/A")
        rows.append({"participant_id": f"sub-{subject}", "session": session, "run": "n/a"})
    table = pd.DataFrame(rows).assign(age=40.0)
    table.to_csv(tmp_path / "participants.tsv", sep="\t", index=False)
    workdir = make_workdir(
        tmp_path / "work", _pretraining_cohorts(root, {"mixed": tmp_path / "participants.tsv"})
    )
    done = snakemake(workdir, "--cores", "2", "results/data/mixed/data.npy")
    assert done.returncode == 0, done.stderr[-3000:]
    qc = read_as_text(workdir / "results/qc/mixed/qc.tsv")
    assert list(qc["qc"]) == ["1"] * len(table), qc["reason"].tolist()
    for i, path in enumerate(qc["path"]):
        subject = f"sub-{i:02d}"
        where = (
            f"{subject}/ses-1/anat/mri/mwp1{subject}_ses-1"
            if i % 2
            else f"{subject}/anat/mri/mwp1{subject}"
        )
        assert path.endswith(f"{where}_T1w.nii"), path
    converted = read_as_text(workdir / "results/data/mixed/participants.tsv")
    assert list(converted["session"]) == ["", "1"] * 4 and set(converted["run"]) == {""}
    assert np.load(workdir / "results/data/mixed/data.npy").shape == (len(table), 1, *SHAPE)


def read_as_text(path):
    """A table the workflow wrote, every cell as text, empty cells as ''."""
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)


def test_a_folder_cat12_segmented_whole_is_read_by_its_bids_names(tmp_path):
    """CAT12 run on one folder of BIDS-named T1w files writes <root>/mri/ and
    <root>/report/, no sub-* folders: each scan is found there by its name (with or
    without session, the 'u' prefix, .nii.gz, other entities). A scan that is not there
    is excluded without a hint about subject folders the layout does not have. Before,
    the config check refused the root (no sub-* folder), and QC excluded every scan."""
    root = tmp_path / "T1w"
    rng = np.random.default_rng(10)
    names = {
        "01": ("1", "sub-01_ses-1_T1w", ".nii"),
        "02": ("", "sub-02_T1w", ".nii.gz"),
        "03": ("1", "usub-03_ses-1_T1w", ".nii"),
        "04": ("2", "sub-04_ses-2_acq-mprage_T1w", ".nii"),
    }
    for subject, (_, stem, ext) in names.items():
        (root / "mri").mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(_brain(rng), _affine()), root / "mri" / f"mwp1{stem}{ext}")
        _report(root / "report" / f"cat_{stem}.xml", 2.0, 2.0 + int(subject) / 10)
        (root / f"{stem}.nii").touch()  # CAT12's input, beside its outputs
    rows = [{"participant_id": s, "session": ses, "age": 40.0} for s, (ses, _, _) in names.items()]
    rows.append({"participant_id": "05", "session": "1", "age": 40.0})  # not segmented
    pd.DataFrame(rows).to_csv(tmp_path / "participants.tsv", sep="\t", index=False)
    workdir = make_workdir(
        tmp_path / "work", _pretraining_cohorts(root, {"flat": tmp_path / "participants.tsv"})
    )
    done = snakemake(workdir, "--cores", "2", "results/data/flat/data.npy")
    assert done.returncode == 0, done.stderr[-3000:]
    qc = read_as_text(workdir / "results/qc/flat/qc.tsv")
    assert list(qc["qc"]) == ["1", "1", "1", "1", "0"], qc["reason"].tolist()
    for subject, (_, stem, ext) in names.items():
        row = qc[qc["participant_id"] == subject].iloc[0]
        assert row["path"] == str(root / "mri" / f"mwp1{stem}{ext}")
        assert float(row["IQR"]) == 2.0 + int(subject) / 10  # its own report
    assert qc["reason"].iloc[4] == (
        f"no mwp1 map in {root / 'mri'} or {root} (looked for mwp1[u|r]sub-05_ses-1_T1w.nii[.gz])"
    )
    assert np.load(workdir / "results/data/flat/data.npy").shape == (4, 1, *SHAPE)


def test_table_headers_from_a_spreadsheet_are_read_or_named_with_the_fix(tmp_path):
    """Headers padded with spaces (" participant_id", "age ") are read as their names; a
    header in another case ("Age") stops the config check, before any job, with the rename
    that fixes it (it stopped the cohort's QC job, after the DAG was built)."""
    root = tmp_path / "cat12"
    rng = np.random.default_rng(6)
    ids = [f"{i:02d}" for i in range(4)]
    for subject in ids:
        _write_sessionless(root, subject, _brain(rng))
    for name, header in (
        ("padded", [" participant_id", "age "]),
        ("cased", ["participant_id", "Age"]),
    ):
        table = pd.DataFrame({header[0]: ids, header[1]: [30.0, 41.5, 52.0, 63.0]})
        table.to_csv(tmp_path / f"{name}.tsv", sep="\t", index=False)
    tables = {name: tmp_path / f"{name}.tsv" for name in ("padded", "cased")}
    workdir = make_workdir(tmp_path / "work", _pretraining_cohorts(root, tables))
    done = snakemake(workdir, "--cores", "1", "results/qc/padded/qc.tsv")
    output = done.stdout + done.stderr
    assert done.returncode != 0 and "Job stats" not in output
    fix = "no 'age' column; the table has ['participant_id', 'Age']: rename 'Age' to 'age'"
    assert f"cohorts.cased.participants ({tables['cased']}): {fix}" in output, output[-2000:]
    assert not (workdir / "results").exists()
    del tables["cased"]
    workdir = make_workdir(tmp_path / "work", _pretraining_cohorts(root, tables))
    done = snakemake(workdir, "--cores", "1", "results/qc/padded/qc.tsv")
    assert done.returncode == 0, done.stderr[-2000:]
    qc = pd.read_csv(workdir / "results/qc/padded/qc.tsv", sep="\t", dtype=str)
    assert list(qc["participant_id"]) == ids and list(qc["qc"]) == ["1"] * 4


def test_ids_a_spreadsheet_changed_are_named_with_the_folder_they_mean(tmp_path):
    """Ids that lost their leading zeros ("1" for sub-001, as a spreadsheet reads them) or
    their case are excluded with the folder that exists; the others pass."""
    root = tmp_path / "cat12"
    rng = np.random.default_rng(7)
    for subject in ("001", "002", "ABC", "010", "7"):
        _write_sessionless(root, subject, _brain(rng))
    ids = ["1", "002", "abc", "sub-010", "007"]
    table = pd.DataFrame({"participant_id": ids, "age": 40.0})
    table.to_csv(tmp_path / "participants.tsv", sep="\t", index=False)
    config = _pretraining_cohorts(root, {"ids": tmp_path / "participants.tsv"})
    workdir = make_workdir(tmp_path / "work", config)
    done = snakemake(workdir, "--cores", "1", "results/qc/ids/qc.tsv")
    assert done.returncode == 0, done.stderr[-3000:]
    qc = pd.read_csv(workdir / "results/qc/ids/qc.tsv", sep="\t", dtype=str, keep_default_na=False)
    reasons = dict(zip(qc["participant_id"], qc["reason"], strict=True))
    assert reasons["1"].endswith(
        f"there is no folder sub-1 under {root}, but there is sub-001: the table's ids lost "
        "their leading zeros (a spreadsheet read them as numbers); write them as the folders do"
    )
    assert reasons["abc"].endswith("but there is sub-ABC: ids are case-sensitive")
    # Zeros the folders do not have: no spreadsheet to blame.
    assert reasons["007"].endswith("but there is sub-7: write the ids as the folders do")
    assert list(qc["qc"]) == ["0", "1", "0", "1", "0"]


def test_pretraining_runs_on_the_sessionless_cohort(bids_run):
    metrics = pd.read_csv(bids_run / f"results/pretrain/{TINY_EXPERIMENT}/metrics.csv")
    assert len(metrics) == 1
    assert np.isfinite(metrics[["train_loss", "val_loss"]].to_numpy()).all()
    split = pd.read_csv(bids_run / "results/splits/bids/split.tsv", sep="\t", dtype=str)
    assert set(split["split"]) >= {"train", "val"} and len(split) == N_GOOD + 3


def test_a_map_with_more_entities_is_used_with_its_own_report(bids_run):
    qc = pd.read_csv(bids_run / "results/qc/bids/qc.tsv", sep="\t", dtype=str).set_index(
        "participant_id"
    )
    assert qc.loc["sub-acq", "qc"] == "1"
    assert qc.loc["sub-acq", "path"].endswith("sub-acq/anat/mri/mwp1sub-acq_acq-mprage_T1w.nii")
    assert float(qc.loc["sub-acq", "IQR"]) == 3.3  # from cat_sub-acq_acq-mprage_T1w.xml
    # A path column's map: its report is the one beside it, not searched under cat12_root.
    assert qc.loc["sub-bypath", "qc"] == "1"
    assert qc.loc["sub-bypath", "path"].endswith("mwp1sub-x_rec-norm_T1w.nii")
    assert float(qc.loc["sub-bypath", "IQR"]) == 3.7
    assert qc.loc["sub-plain", "qc"] == "1" and float(qc.loc["sub-plain", "IQR"]) == 3.9


def test_two_runs_without_a_run_column_are_not_guessed(bids_run):
    qc = pd.read_csv(bids_run / "results/qc/bids/qc.tsv", sep="\t", dtype=str).set_index(
        "participant_id"
    )
    reason = qc.loc["sub-runs", "reason"]
    assert qc.loc["sub-runs", "qc"] == "0"
    assert "mwp1sub-runs_run-1_T1w.nii" in reason and "mwp1sub-runs_run-2_T1w.nii" in reason
    assert "'run' column" in reason


def test_cat12_layouts_without_subfolders_and_longitudinal_maps_are_read(tmp_path):
    """CAT12.8 on a BIDS tree (or with its subfolders option off) writes the map and its
    report into anat/ itself; its longitudinal pipeline names them mwp1r/cat_r. Both are
    found and converted; a scan with only other CAT12 outputs is excluded with what it has."""
    root = tmp_path / "cat12"
    rng = np.random.default_rng(8)
    flat = [f"flat{i}" for i in range(5)]
    for i, subject in enumerate(flat):
        anat = root / f"sub-{subject}" / "ses-1" / "anat"
        anat.mkdir(parents=True)
        name = f"sub-{subject}_ses-1_T1w"
        nib.save(nib.Nifti1Image(_brain(rng), _affine()), anat / f"mwp1{name}.nii")
        _report(anat / f"cat_{name}.xml", 2.0, 2.0 + i / 10)
    # Longitudinal, with subfolders: the realigned input's map and report.
    anat = root / "sub-long" / "ses-2" / "anat"
    (anat / "mri").mkdir(parents=True)
    nib.save(nib.Nifti1Image(_brain(rng), _affine()), anat / "mri/mwp1rsub-long_ses-2_T1w.nii")
    _report(anat / "report/cat_rsub-long_ses-2_T1w.xml", 2.0, 3.4)
    # Flat, with an entity the table does not name.
    anat = root / "sub-acq" / "ses-1" / "anat"
    anat.mkdir(parents=True)
    nib.save(nib.Nifti1Image(_brain(rng), _affine()), anat / "mwp1sub-acq_ses-1_acq-fast_T1w.nii")
    _report(anat / "cat_sub-acq_ses-1_acq-fast_T1w.xml", 2.0, 3.2)
    # Only the unmodulated and the smoothed maps of the scan.
    anat = root / "sub-wp1" / "ses-1" / "anat" / "mri"
    anat.mkdir(parents=True)
    for output in ("wp1", "s8mwp1"):
        nib.save(nib.Nifti1Image(_brain(rng), _affine()), anat / f"{output}sub-wp1_ses-1_T1w.nii")
    # The same map in both places: which one is meant is the user's call.
    anat = root / "sub-both" / "ses-1" / "anat"
    (anat / "mri").mkdir(parents=True)
    for folder in (anat, anat / "mri"):
        nib.save(nib.Nifti1Image(_brain(rng), _affine()), folder / "mwp1sub-both_ses-1_T1w.nii")
    ids = [*flat, "long", "acq", "wp1", "both"]
    table = pd.DataFrame(
        {
            "participant_id": ids,
            "session": ["2" if s == "long" else "1" for s in ids],
            "age": 30.0 + np.arange(len(ids)),
        }
    )
    table.to_csv(tmp_path / "participants.tsv", sep="\t", index=False)
    config = _pretraining_cohorts(root, {"cat128": tmp_path / "participants.tsv"})
    workdir = make_workdir(tmp_path / "work", config)
    done = snakemake(workdir, "--cores", "1", "results/data/cat128/data.npy")
    assert done.returncode == 0, done.stderr[-3000:]
    qc = pd.read_csv(workdir / "results/qc/cat128/qc.tsv", sep="\t", dtype=str).set_index(
        "participant_id"
    )
    for i, subject in enumerate(flat):
        assert qc.loc[subject, "qc"] == "1", qc.loc[subject, "reason"]
        assert qc.loc[subject, "path"].endswith(f"ses-1/anat/mwp1sub-{subject}_ses-1_T1w.nii")
        assert float(qc.loc[subject, "IQR"]) == pytest.approx(2.0 + i / 10)  # its own report
    assert qc.loc["long", "path"].endswith("anat/mri/mwp1rsub-long_ses-2_T1w.nii")
    assert qc.loc["long", "qc"] == "1" and float(qc.loc["long", "IQR"]) == 3.4
    assert qc.loc["acq", "qc"] == "1" and float(qc.loc["acq", "IQR"]) == 3.2
    assert qc.loc["wp1", "qc"] == "0"
    assert (
        "CAT12 wrote s8mwp1sub-wp1_ses-1_T1w.nii (smoothed grey matter (the pipeline takes it "
        "unsmoothed)); wp1sub-wp1_ses-1_T1w.nii (grey matter not modulated), but the pipeline "
        "reads the modulated, normalised grey matter"
    ) in qc.loc["wp1", "reason"]
    assert qc.loc["both", "qc"] == "0"
    assert (
        "several maps for one scan: ['mri/mwp1sub-both_ses-1_T1w.nii', "
        "'mwp1sub-both_ses-1_T1w.nii']"
    ) in qc.loc["both", "reason"]
    data = np.load(workdir / "results/data/cat128/data.npy")
    converted = pd.read_csv(workdir / "results/data/cat128/participants.tsv", sep="\t", dtype=str)
    assert list(converted["participant_id"]) == [*flat, "long", "acq"]
    source = nib.load(qc.loc["long", "path"]).get_fdata()
    np.testing.assert_allclose(data[len(flat), 0], source, rtol=1e-5, atol=1e-6)


def test_missing_sex_and_site_values_are_a_category_of_their_own_in_the_splits(tmp_path):
    """Real tables miss a sex or a site here and there. The splits stratify and test
    balance with them as "n/a" (pandas >= 3 keeps NaN through astype(str), which made the
    stratum codes -1 and the split job stop with a numpy traceback)."""
    root = tmp_path / "cat12"
    rng = np.random.default_rng(9)
    n = 16
    ids = [f"{i:02d}" for i in range(n)]
    for subject in ids:
        _write_sessionless(root, subject, _brain(rng))
    table = pd.DataFrame(
        {
            "participant_id": ids,
            "age": 30.0 + 2 * np.arange(n),
            "sex": ["F", "M"] * (n // 2),
            "site": [f"s{i % 3}" for i in range(n)],
            "diagnosis": ["control", "patient"] * (n // 2),
        }
    )
    table.loc[[1, 6], "sex"] = "n/a"
    table.loc[4, "site"] = ""
    table.to_csv(tmp_path / "participants.tsv", sep="\t", index=False)
    config = _pretraining_cohorts(root, {"pre": tmp_path / "participants.tsv"})
    config["cohorts"]["ev"] = config["cohorts"]["pre"] | {
        "role": "evaluate",
        "task": {"label": "diagnosis", "positive": ["patient"], "negative": ["control"]},
        "n_target": [4],
    }
    config["splits"] = {"val_fraction": 0.25, "repeats": 1}
    workdir = make_workdir(tmp_path / "work", config)
    targets = [f"results/splits/{c}/split.tsv" for c in ("pre", "ev")]
    done = snakemake(workdir, "--cores", "2", *targets)
    assert done.returncode == 0, done.stderr[-3000:]
    for cohort in ("pre", "ev"):
        split = pd.read_csv(workdir / f"results/splits/{cohort}/split.tsv", sep="\t", dtype=str)
        assert sorted(split["participant_id"]) == ids
        arguments = json.loads((workdir / f"results/splits/{cohort}/split_args.json").read_text())
        sides = arguments["balance"]["sides"]
        assert sum(side["sex_counts"].get("n/a", 0) for side in sides.values()) == 2
        assert sum(side["site_counts"].get("n/a", 0) for side in sides.values()) == 1


def test_a_cohort_with_one_readable_map_says_why_it_has_no_corr_mean(tmp_path):
    """corr_mean compares a map with the cohort's others: with one readable map there is
    nothing to compare, and the reason says so (before: 'corr_mean nan <= 0.5')."""
    root = tmp_path / "cat12"
    rng = np.random.default_rng(10)
    _write_sessionless(root, "01", _brain(rng))
    broken = _write_sessionless(root, "02", _brain(rng))
    broken.write_bytes(broken.read_bytes()[:200])
    table = pd.DataFrame({"participant_id": ["01", "02"], "age": [30.0, 40.0]})
    table.to_csv(tmp_path / "participants.tsv", sep="\t", index=False)
    workdir = make_workdir(
        tmp_path / "work", _pretraining_cohorts(root, {"one": tmp_path / "participants.tsv"})
    )
    done = snakemake(workdir, "--cores", "1", "results/qc/one/qc.tsv")
    assert done.returncode == 0, done.stderr[-3000:]
    qc = pd.read_csv(workdir / "results/qc/one/qc.tsv", sep="\t", dtype=str)
    reasons = dict(zip(qc["participant_id"], qc["reason"], strict=True))
    assert reasons["01"] == (
        "no corr_mean: it compares a map with the cohort's other readable maps, and there are 0"
    )
    assert reasons["02"].startswith("unreadable NIfTI")
