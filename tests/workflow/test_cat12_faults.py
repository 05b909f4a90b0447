"""A CAT12 tree built by hand here (not by the simulator), with faults, through `data`."""

import gzip
import shutil
import unicodedata

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml

from tests.workflow.helpers import make_workdir, planned_jobs, snakemake

VOXEL_MM = 6.0
SHAPE = (31, 37, 31)


def _affine(voxel: float = VOXEL_MM) -> np.ndarray:
    affine = np.diag([-voxel, voxel, voxel, 1.0])
    affine[:3, 3] = [90.0, -126.0, -72.0]
    return affine


def _brain(rng: np.random.Generator, shape=SHAPE) -> np.ndarray:
    """An ellipsoidal shell of 'grey matter' with per-subject texture."""
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij"))
    radius = np.sqrt((grid**2).sum(0))
    shell = np.exp(-(((radius - 0.6) / 0.15) ** 2))
    return (shell * (0.8 + 0.05 * rng.standard_normal(shape))).clip(0).astype(np.float32)


def _report(path, ncr: float, iqr: float, tiv: float | None = 1500.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    measures = "" if tiv is None else f"<vol_TIV>{tiv}</vol_TIV>"
    path.write_text(
        "<?xml version='1.0'?><S><qualityratings>"
        f"<NCR>{ncr}</NCR><ICR>2.0</ICR><IQR>{iqr}</IQR></qualityratings>"
        f"<subjectmeasures>{measures}</subjectmeasures></S>"
    )


def _write_scan(root, subject, data, ext=".nii.gz", ncr=2.0, iqr=2.1, affine=None, prefix=""):
    anat = root / f"sub-{subject}" / "ses-1" / "anat"
    image = anat / "mri" / f"mwp1{prefix}sub-{subject}_ses-1_T1w{ext}"
    image.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, _affine() if affine is None else affine), image)
    _report(anat / "report" / f"cat_{prefix}sub-{subject}_ses-1_T1w.xml", ncr, iqr)
    return image


@pytest.fixture(scope="module")
def faulty_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("cat12")
    root = base / "derivatives" / "cat12"
    rng = np.random.default_rng(0)
    subjects = []
    for i in range(8):  # good scans, both extensions and the brainprep 'u' prefix
        name = f"good{i}"
        _write_scan(
            root,
            name,
            _brain(rng),
            ext=".nii" if i % 3 == 0 else ".nii.gz",
            prefix="u" if i == 1 else "",
        )
        subjects.append(name)
    truncated = _write_scan(root, "trunc", _brain(rng))
    truncated.write_bytes(truncated.read_bytes()[:300])
    nan = _brain(rng)
    nan[10, 10, 10] = np.nan
    _write_scan(root, "nan", nan)
    _write_scan(root, "shape", _brain(rng, (30, 37, 31)))
    _write_scan(root, "badiqr", _brain(rng), ncr=5.2, iqr=6.0)
    _write_scan(root, "zeros", np.zeros(SHAPE, np.float32))
    shifted = _affine()
    shifted[0, 3] += 30.0  # 30 mm off the template's origin
    _write_scan(root, "shifted", _brain(rng), affine=shifted)
    (root / "sub-notgz" / "ses-1" / "anat" / "mri").mkdir(parents=True)
    (root / "sub-notgz" / "ses-1" / "anat" / "mri" / "mwp1sub-notgz_ses-1_T1w.nii.gz").write_bytes(
        gzip.compress(b"not a nifti")
    )
    _report(root / "sub-notgz" / "ses-1" / "anat" / "report" / "cat_sub-notgz_ses-1_T1w.xml", 2, 2)
    four_d = np.stack([_brain(rng), _brain(rng)], axis=-1)
    _write_scan(root, "fourd", four_d)
    # A map with trailing axes of length 1 (X, Y, Z, 1, 1), as SPM and some converters
    # write them: one 3-D map, read as such.
    singleton = _brain(rng)
    np.save(base / "singleton-values.npy", singleton)
    _write_scan(root, "singleton", singleton[..., None, None])
    _write_scan(root, "noreport", _brain(rng))
    (root / "sub-noreport/ses-1/anat/report/cat_sub-noreport_ses-1_T1w.xml").unlink()
    _write_scan(root, "empty", _brain(rng)).write_bytes(b"")
    _write_scan(root, "voxel", _brain(rng), affine=_affine(5.0))
    # A map on CAT12's box at 9 mm: the cohort's voxel_mm is what is wrong.
    _write_scan(root, "coarser", _brain(rng, (21, 25, 21)), affine=_affine(9.0))
    # The cohort's voxels on a smaller bounding box (12 mm in from each side).
    inner = _affine()
    inner[:3, 3] = [78.0, -114.0, -60.0]
    _write_scan(root, "bbox", _brain(rng, (27, 33, 27)), affine=inner)
    _write_scan(root, "agetypo", _brain(rng))  # a good map; its age is 450 in the table
    # A good map whose report has no vol_TIV (and the table no tiv): unusable only while
    # the conversion scales by TIV.
    _write_scan(root, "notiv", _brain(rng))
    _report(root / "sub-notiv/ses-1/anat/report/cat_sub-notiv_ses-1_T1w.xml", 2.0, 2.1, tiv=None)
    # A report without its quality marks (cut short, or another tool's XML under its
    # name), and one that is no XML at all.
    _write_scan(root, "nomarks", _brain(rng))
    (root / "sub-nomarks/ses-1/anat/report/cat_sub-nomarks_ses-1_T1w.xml").write_text(
        "<?xml version='1.0'?><S><subjectmeasures><vol_TIV>1500</vol_TIV></subjectmeasures></S>"
    )
    _write_scan(root, "badxml", _brain(rng))
    (root / "sub-badxml/ses-1/anat/report/cat_sub-badxml_ses-1_T1w.xml").write_text(
        "<?xml version='1.0'?><S><qualityratings><NCR>2.0</NC"
    )
    # int16 storage with a scaling slope, as some converters write maps: read as floats.
    scaled = nib.Nifti1Image(np.round(_brain(rng) * 1000).astype(np.int16), _affine())
    scaled.header.set_slope_inter(0.001, 0.0)
    nib.save(scaled, _write_scan(root, "intscaled", _brain(rng)))
    # A symlinked map (a shared store), and a link whose target is gone.
    elsewhere = base / "store" / "map.nii.gz"
    elsewhere.parent.mkdir()
    nib.save(nib.Nifti1Image(_brain(rng), _affine()), elsewhere)
    linked = _write_scan(root, "linked", _brain(rng))
    linked.unlink()
    linked.symlink_to(elsewhere)
    dangling = _write_scan(root, "dangling", _brain(rng))
    dangling.unlink()
    dangling.symlink_to(base / "store" / "gone.nii.gz")
    _write_scan(root, "unlisted", _brain(rng))  # a folder with no table row
    _write_scan(root, "rawt1", _brain(rng) * 1000)  # raw intensities, no grey-matter map
    # Folder and file names decomposed (NFD, as macOS writes them), the table's id composed.
    _write_scan(root, unicodedata.normalize("NFD", "Zoë"), _brain(rng))
    # Folders that disagree with the table's session "1": ses-01, and no session level.
    _write_scan(root, "sesname", _brain(rng))
    (root / "sub-sesname" / "ses-1").rename(root / "sub-sesname" / "ses-01")
    _write_scan(root, "nosessions", _brain(rng))
    (root / "sub-nosessions" / "ses-1" / "anat").rename(root / "sub-nosessions" / "anat")
    (root / "sub-nosessions" / "ses-1").rmdir()
    # The same map saved in RAS+ voxel order (x flipped), and with x and y swapped as well.
    for name, reorder in (("canonical", None), ("swapped", (1, 0, 2))):
        template_order = _brain(rng)
        np.save(base / f"{name}-template-order.npy", template_order)
        path = _write_scan(root, name, template_order)
        image = nib.as_closest_canonical(nib.load(path))
        if reorder:
            data = np.ascontiguousarray(image.get_fdata(dtype=np.float32).transpose(reorder))
            image = nib.Nifti1Image(data, image.affine[:, [*reorder, 3]])
        nib.save(image, path.with_name(f"reoriented-{name}.nii.gz"))
        (path.parent / f"reoriented-{name}.nii.gz").replace(path)
    names = [
        *subjects,
        "trunc",
        "nan",
        "shape",
        "badiqr",
        "missing",
        "zeros",
        "shifted",
        "notgz",
        "fourd",
        "singleton",
        "noreport",
        "empty",
        "voxel",
        "coarser",
        "bbox",
        "agetypo",
        "notiv",
        "nomarks",
        "badxml",
        "intscaled",
        "linked",
        "dangling",
        "good2",
        "../evil",
        "canonical",
        "swapped",
        "sesname",
        "nosessions",
        unicodedata.normalize("NFC", "Zoë"),
        "rawt1",
    ]
    table = pd.DataFrame(
        {"participant_id": names, "session": "1", "age": 40 + np.arange(len(names)), "sex": "F"}
    )
    table.loc[table["participant_id"] == "good3", "age"] = np.nan
    table.loc[table["participant_id"] == "agetypo", "age"] = 450
    table.to_csv(base / "participants.tsv", sep="\t", index=False)
    config = {
        "synthetic": {"cohorts": {}},
        "cohorts": {
            "hand": {
                "role": "pretrain",
                "participants": str(base / "participants.tsv"),
                "cat12_root": str(root),
                "voxel_mm": VOXEL_MM,
            }
        },
        "qc": {"corr_voxel_mm": VOXEL_MM},
        "conversion": {"voxel_mm": VOXEL_MM},
        "splits": {"val_fraction": 0.34},
    }
    workdir = make_workdir(base / "work", config)
    done = snakemake(workdir, "--cores", "2", "data")
    assert done.returncode == 0, done.stderr[-3000:]
    return workdir


EXPECTED = {
    "trunc": "unreadable NIfTI",
    "notgz": "unreadable NIfTI",
    "nan": "NaN or infinite",
    "shape": "shape (30, 37, 31) differs",
    "badiqr": "IQR 6.00 >= 4.5",
    "missing": "no mwp1 map in",
    "sesname": "the subject's session folders are ['ses-01']: check the 'session' column",
    "nosessions": "sub-nosessions has no session folders: leave its 'session' empty",
    "zeros": "all voxels are zero",
    "shifted": "affine is not the template space",
    "fourd": "4-D",
    "noreport": "missing CAT12 report",
    "empty": "unreadable NIfTI",
    "voxel": "voxel size (5.0, 5.0, 5.0) mm, expected 6.0 mm",
    "coarser": "shape (21, 25, 21) differs from the grid's (31, 37, 31): the map is on "
    "CAT12's 9 mm grid; set the cohort's voxel_mm: 9",
    "bbox": "shape (27, 33, 27) differs from the grid's (31, 37, 31): its 6 mm voxels cover "
    "x -78 to 78, y -114 to 78, z -60 to 96 mm, CAT12's box x -90 to 90, y -126 to 90, "
    "z -72 to 108 mm; the map was written with another bounding box",
    "dangling": "is a link to",
    "good3": "age is missing",
    "agetypo": "age 450 is not a plausible age in years (0 to 120): a typo, or another unit?",
    "notiv": "no TIV in the table or the report (needed for TIV scaling)",
    "nomarks": "report lacks NCR or IQR marks",
    "badxml": "unreadable report cat_sub-badxml_ses-1_T1w.xml (",
    "../evil": "unsafe participant_id",
    "rawt1": "not a grey-matter density map (0 to about 1.5)",
}


def test_every_fault_is_excluded_with_its_reason(faulty_run):
    qc = pd.read_csv(
        faulty_run / "results/qc/hand/qc.tsv", sep="\t", dtype=str, keep_default_na=False
    )
    qc["reason"] = qc["reason"].fillna("")
    for subject, reason in EXPECTED.items():
        row = qc[qc["participant_id"] == subject].iloc[0]
        assert row["qc"] == "0" and reason in row["reason"], (subject, row["reason"])
    duplicated = qc[qc["participant_id"] == "good2"]
    assert list(duplicated["qc"]) == ["1", "0"] and "duplicated" in duplicated["reason"].iloc[1]
    passing = qc[qc["qc"] == "1"]
    good = [f"good{i}" for i in range(8) if i != 3]
    expected = [*good, "intscaled", "linked", "canonical", "swapped", "singleton", "Zoë"]
    assert sorted(passing["participant_id"]) == sorted(expected)
    assert "unlisted" not in set(qc["participant_id"])
    shape = qc.loc[qc["participant_id"] == "shape", "reason"].iloc[0]
    assert "voxel_mm" not in shape  # 30x37x31 is no CAT12 grid: no voxel_mm to suggest
    assert "cover x -84 to 90, y -126 to 90, z -72 to 108 mm" in shape  # one slice short
    missing = qc.loc[qc["participant_id"] == "missing", "reason"].iloc[0]
    assert "there is no folder sub-missing under" in missing


def test_only_the_good_scans_are_converted(faulty_run):
    data = np.load(faulty_run / "results/data/hand/data.npy")
    table = pd.read_csv(faulty_run / "results/data/hand/participants.tsv", sep="\t")
    assert data.shape == (13, 1, *SHAPE) and len(table) == 13
    assert np.isfinite(data).all()


def test_scaled_integer_and_symlinked_maps_are_read_as_their_values(faulty_run):
    root = faulty_run.parent / "derivatives" / "cat12"
    data = np.load(faulty_run / "results/data/hand/data.npy")
    table = pd.read_csv(faulty_run / "results/data/hand/participants.tsv", sep="\t", dtype=str)
    for subject in ("intscaled", "linked"):
        image = root / f"sub-{subject}/ses-1/anat/mri/mwp1sub-{subject}_ses-1_T1w.nii.gz"
        expected = np.asarray(nib.load(image).get_fdata(), np.float32)
        row = table.index[table["participant_id"] == subject][0]
        # TIV 1500 in the report: the TIV scaling leaves the values as they are.
        np.testing.assert_allclose(data[row, 0], expected, rtol=1e-5, atol=1e-6)
    assert data[table.index[table["participant_id"] == "intscaled"][0]].max() > 0.5


def test_a_map_with_trailing_singleton_axes_is_read_as_its_3d_values(faulty_run):
    data = np.load(faulty_run / "results/data/hand/data.npy")
    table = pd.read_csv(faulty_run / "results/data/hand/participants.tsv", sep="\t", dtype=str)
    row = table.index[table["participant_id"] == "singleton"][0]
    expected = np.load(faulty_run.parent / "singleton-values.npy")
    np.testing.assert_allclose(data[row, 0], expected, rtol=1e-5, atol=1e-6)


def test_subject_folders_without_a_table_row_are_reported(faulty_run):
    log = (faulty_run / "results/logs/qc_metrics/hand.log").read_text()
    assert "1 subject folder(s)" in log and "have no row in" in log and "unlisted" in log


def test_maps_in_another_voxel_order_are_reoriented_to_the_template(faulty_run):
    root = faulty_run.parent / "derivatives" / "cat12"
    data = np.load(faulty_run / "results/data/hand/data.npy")
    table = pd.read_csv(faulty_run / "results/data/hand/participants.tsv", sep="\t", dtype=str)
    for subject in ("canonical", "swapped"):
        image = nib.load(root / f"sub-{subject}/ses-1/anat/mri/mwp1sub-{subject}_ses-1_T1w.nii.gz")
        assert image.affine[0, 0] == 0 or image.affine[0, 0] > 0  # not the template's order
        row = table.index[table["participant_id"] == subject][0]
        template_order = np.load(faulty_run.parent / f"{subject}-template-order.npy")
        np.testing.assert_allclose(data[row, 0], template_order, rtol=1e-5, atol=1e-6)


def test_turning_tiv_scaling_off_rereads_no_map_and_lets_a_scan_without_tiv_pass(
    faulty_run, tmp_path
):
    """Whether a scan needs a TIV is the thresholds' call, not the metrics': turning the
    scaling off reruns the cheap `qc` job, not the reading of every map. Before, the
    setting was a param of `qc_metrics`."""
    work = tmp_path / "work"
    shutil.copytree(faulty_run, work, symlinks=True)
    override = tmp_path / "override.yaml"
    override.write_text(yaml.safe_dump({"conversion": {"tiv_scaling": False}}))
    until_qc = ("data", "--until", "qc", "--configfile", str(override))
    assert planned_jobs(work, *until_qc) == {"qc": 1}
    done = snakemake(work, "--cores", "2", *until_qc)
    assert done.returncode == 0, done.stderr[-3000:]
    qc = pd.read_csv(work / "results/qc/hand/qc.tsv", sep="\t", keep_default_na=False)
    notiv = qc[qc["participant_id"] == "notiv"].iloc[0]
    assert notiv["qc"] == 1 and notiv["reason"] == ""
    passed = pd.read_csv(work / "results/qc/hand/passed.tsv", sep="\t", dtype=str)
    assert "notiv" in set(passed["participant_id"])
