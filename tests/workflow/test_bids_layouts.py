"""A BIDS dataset without sessions, ids with their sub- prefix, through `data` and pretraining.

CAT12 writes its mri/ and report/ folders next to the T1w it segments, so a BIDS dataset
with no ses- level gives sub-<id>/anat/mri/mwp1sub-<id>_T1w.nii; BIDS tables write the id
as "sub-<id>". Both are the common case on public datasets.
"""

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from tests.workflow.helpers import TINY_EXPERIMENT, make_workdir, snakemake
from tests.workflow.test_cat12_faults import SHAPE, VOXEL_MM, _affine, _brain, _report

N_GOOD = 24


def _write_sessionless(root, subject: str, data: np.ndarray) -> None:
    anat = root / f"sub-{subject}" / "anat"
    (anat / "mri").mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, _affine()), anat / "mri" / f"mwp1sub-{subject}_T1w.nii")
    _report(anat / "report" / f"cat_sub-{subject}_T1w.xml", 2.0, 2.1)


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
    # Ids as BIDS writes them, and a few without the prefix; "01" repeats "sub-01".
    ids = [f"sub-{i:02d}" if i % 4 else f"{i:02d}" for i in range(N_GOOD)] + ["sub-90", "01"]
    table = pd.DataFrame({"participant_id": ids, "age": 20.0 + 2 * np.arange(len(ids))})
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
    assert len(passing) == N_GOOD
    # Each id is kept as the table wrote it, and found in the sub-<id>/anat layout.
    for subject, path in zip(passing["participant_id"], passing["path"], strict=True):
        bare = subject.removeprefix("sub-")
        assert path.endswith(f"sub-{bare}/anat/mri/mwp1sub-{bare}_T1w.nii"), (subject, path)
    data = np.load(bids_run / "results/data/bids/data.npy")
    table = pd.read_csv(bids_run / "results/data/bids/participants.tsv", sep="\t", dtype=str)
    assert data.shape == (N_GOOD, 1, *SHAPE)
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
    assert "session folders ['ses-1']" in reason and "add a 'session' column" in reason


def test_pretraining_runs_on_the_sessionless_cohort(bids_run):
    metrics = pd.read_csv(bids_run / f"results/pretrain/{TINY_EXPERIMENT}/metrics.csv")
    assert len(metrics) == 1
    assert np.isfinite(metrics[["train_loss", "val_loss"]].to_numpy()).all()
    split = pd.read_csv(bids_run / "results/splits/bids/split.tsv", sep="\t", dtype=str)
    assert set(split["split"]) >= {"train", "val"} and len(split) == N_GOOD
