"""The data stages through Snakemake: simulation, QC, conversion, splits."""

import hashlib
import json
import shutil
import xml.etree.ElementTree as ET

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml

from tests.workflow.helpers import REPO, make_workdir, planned_jobs, snakemake

TINY = {
    "synthetic": {
        "voxel_mm": 6.0,
        "seed": 1,
        "cohorts": {
            "bhb": {
                "role": "pretrain",
                "n_subjects": 30,
                "n_sites": 3,
                "age_range": [20, 80],
                "qc_failure_rate": 0.1,
                "second_session_rate": 0.2,
            },
            "adni": {
                "role": "evaluate",
                "n_subjects": 36,
                "n_sites": 2,
                "diagnosis": "alzheimer",
                "age_mean": 75,
                "age_sd": 6,
                "age_range": [55, 95],
                "qc_failure_rate": 0.1,
            },
        },
    },
    "qc": {"corr_voxel_mm": 6.0},
    "conversion": {"voxel_mm": 6.0},
    "splits": {"n_target": [6, 10], "repeats": 2, "val_fraction": 0.2},
}


def read(path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", dtype={"participant_id": str, "session": str})


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    workdir = make_workdir(tmp_path_factory.mktemp("wf"), TINY)
    done = snakemake(workdir, "--cores", "2", "data")
    assert done.returncode == 0, done.stderr[-3000:]
    return workdir


def test_array_rows_are_the_passing_scans_with_nibabel_values(tiny_run):
    for cohort in ("bhb", "adni"):
        participants = read(tiny_run / f"results/synth/{cohort}/participants.tsv")
        qc = read(tiny_run / f"results/qc/{cohort}/qc.tsv")
        data = np.load(tiny_run / f"results/data/{cohort}/data.npy")
        aligned = read(tiny_run / f"results/data/{cohort}/participants.tsv")
        passing = qc[qc["qc"] == 1]
        assert len(qc) == len(participants)
        assert data.shape == (len(passing), 1, 31, 37, 31) and data.dtype == np.float32
        assert list(aligned["participant_id"]) == list(passing["participant_id"])
        assert list(aligned["session"]) == list(passing["session"])
        for k in (0, len(passing) // 2, len(passing) - 1):
            row = passing.iloc[k]
            anat = (
                tiny_run
                / f"results/synth/{cohort}/cat12/sub-{row.participant_id}/ses-{row.session}/anat"
            )
            image = nib.load(
                anat / "mri" / f"mwp1sub-{row.participant_id}_ses-{row.session}_T1w.nii.gz"
            )
            report = ET.parse(
                anat / "report" / f"cat_sub-{row.participant_id}_ses-{row.session}_T1w.xml"
            )
            tiv = float(report.getroot().find("subjectmeasures/vol_TIV").text)
            expected = image.get_fdata() * 1500.0 / tiv
            np.testing.assert_allclose(data[k, 0], expected, rtol=1e-5, atol=1e-6)


def test_planted_failures_are_excluded_with_their_reasons(tiny_run):
    expected = {"noise": "NCR", "misregistration": "corr_mean", "wrong_tissue": "corr_mean"}
    for cohort in ("bhb", "adni"):
        truth = read(tiny_run / f"results/synth/{cohort}/truth.tsv").fillna("")
        qc = read(tiny_run / f"results/qc/{cohort}/qc.tsv")
        qc["reason"] = qc["reason"].fillna("")
        assert 0 < (truth["planted_failure"] != "").sum() < len(truth) * 0.2
        for planted, row in zip(truth["planted_failure"], qc.itertuples(), strict=True):
            if planted:
                assert row.qc == 0 and expected[planted] in row.reason, (planted, row.reason)
            else:
                assert row.qc == 1, row.reason
        # The planted failures are in no table a user reads as data.
        assert "planted_failure" not in read(tiny_run / f"results/synth/{cohort}/participants.tsv")


def test_manifest_records_shape_grid_and_checksums(tiny_run):
    manifest = json.loads((tiny_run / "results/data/adni/manifest.json").read_text())
    data = np.load(tiny_run / "results/data/adni/data.npy", mmap_mode="r")
    assert manifest["shape"] == list(data.shape)
    assert manifest["grid"]["voxel_mm"] == 6.0 and manifest["settings"]["tiv_scaling"] is True
    source = manifest["sources"][3]
    path = tiny_run / source["path"]  # relative to the workflow's working directory
    assert hashlib.sha256(path.read_bytes()).hexdigest() == source["sha256"]
    voxels = np.asarray(nib.load(path).dataobj, dtype=np.float32)  # stored on the grid
    digest = hashlib.sha256(repr(voxels.shape).encode() + voxels.tobytes())
    assert digest.hexdigest() == source["voxels_sha256"]


def test_splits_never_share_a_subject(tiny_run):
    bhb = read(tiny_run / "results/splits/bhb/split.tsv")
    sides = bhb.groupby("participant_id")["split"].nunique()
    assert (sides == 1).all() and set(bhb["split"]) == {"train", "val"}
    assert len(bhb) == len(read(tiny_run / "results/data/bhb/participants.tsv"))
    adni = read(tiny_run / "results/splits/adni/split.tsv")
    assert adni["participant_id"].is_unique  # one scan per subject for evaluation
    draws = read(tiny_run / "results/splits/adni/draws.tsv")
    table = read(tiny_run / "results/data/adni/participants.tsv").drop_duplicates("participant_id")
    diagnosis = dict(zip(table["participant_id"], table["diagnosis"], strict=True))
    train = set(adni.loc[adni["split"] == "train", "participant_id"])
    test = set(adni.loc[adni["split"] == "test", "participant_id"])
    assert train and test and not train & test
    assert {diagnosis[s] for s in test} == {"alzheimer", "control"}
    for (n_target, _), draw in draws.groupby(["n_target", "repeat"]):
        assert len(draw) == n_target and draw["participant_id"].is_unique
        assert set(draw["participant_id"]) <= train
        assert {diagnosis[s] for s in draw["participant_id"]} == {"alzheimer", "control"}
    assert sorted(draws.groupby(["n_target", "repeat"]).size().index) == [
        (6, 0),
        (6, 1),
        (10, 0),
        (10, 1),
    ]


@pytest.mark.parametrize(("cohort", "label"), [("bhb", None), ("adni", "diagnosis")])
def test_split_arguments_record_how_the_sides_compare(tiny_run, cohort, label):
    """split_args.json holds each side's subjects, age and counts, as split.tsv and the
    table give them, and a p-value per column of each side against train."""
    balance = json.loads((tiny_run / f"results/splits/{cohort}/split_args.json").read_text())[
        "balance"
    ]
    split = read(tiny_run / f"results/splits/{cohort}/split.tsv")
    table = read(tiny_run / f"results/data/{cohort}/participants.tsv")
    subjects = split.merge(table, on=["participant_id", "session"])
    subjects = subjects.sort_values(["participant_id", "session"]).drop_duplicates("participant_id")
    other = "val" if cohort == "bhb" else "test"
    assert set(balance["sides"]) == {"train", other}
    for name, side in subjects.groupby("split"):
        summary = balance["sides"][name]
        assert summary["n_subjects"] == len(side)
        assert summary["age_mean"] == pytest.approx(side["age"].mean())
        assert summary["sex_counts"] == side["sex"].value_counts().to_dict()
        if label:
            assert summary[f"{label}_counts"] == side[label].value_counts().to_dict()
    tests = balance["against_train"][other]
    assert set(tests) == {"age_p", "sex_p", "site_p"} | ({f"{label}_p"} if label else set())
    assert all(0 <= p <= 1 for p in tests.values())


def test_qc_figure_is_a_png(tiny_run):
    figure = (tiny_run / "results/qc/bhb/qc.png").read_bytes()
    assert figure.startswith(b"\x89PNG") and len(figure) > 5000


def test_only_what_changed_reruns(tiny_run, tmp_path):
    def counts_with(override: dict) -> dict[str, int]:
        path = tmp_path / "override.yaml"
        path.write_text(yaml.safe_dump(override))
        return planned_jobs(tiny_run, "data", "--configfile", str(path))

    def plan_with(override: dict) -> set[str]:
        return set(counts_with(override))

    assert planned_jobs(tiny_run, "data") == {}
    # The draws' settings: the draws only; the splits, and what was trained on them, stay
    # (before, a new N_target or repeat remade every split and so retrained every encoder).
    assert plan_with({"splits": {"repeats": 3}}) == {"draws", "data"}
    assert plan_with({"splits": {"n_target": [6, 8, 10]}}) == {"draws", "data"}
    # An evaluation split's setting: that cohort's split and draws, not the pretraining
    # cohort's split; the check of scans shared across sides.
    assert counts_with({"splits": {"test_fraction": 0.3}}) == {
        "split": 1,
        "draws": 1,
        "shared_scans": 1,
        "data": 1,
    }
    # A pretraining split's setting: that split only (its cohort has no draws).
    assert counts_with({"splits": {"val_fraction": 0.3}}) == {
        "split": 1,
        "shared_scans": 1,
        "data": 1,
    }
    # A QC threshold: the thresholds, conversion and splits; no map is read again for the
    # metrics, and the simulation stays.
    data_stages = {"qc", "convert", "split", "draws", "shared_scans", "data"}
    assert plan_with({"qc": {"ncr_max": 4.0}}) == data_stages
    # How the metrics are measured: the metrics too.
    measured = {"qc_metrics", *data_stages}
    assert plan_with({"qc": {"corr_voxel_mm": 12.0}}) == measured
    # A disease's brain-age gap: the simulation of the cohorts with that disease and what
    # follows; another disease's gap changes no cohort here.
    gaps = {"alzheimer": 12.0, "schizophrenia": 5.5, "bipolar": 1.5}
    assert counts_with({"synthetic": {"brain_age_gap": gaps}}) == {
        "synth_cohort": 1,
        **{rule: 1 for rule in ("qc_metrics", "qc", "convert", "split", "draws")},
        "shared_scans": 1,
        "data": 1,
    }
    gaps = {"alzheimer": 10.0, "schizophrenia": 8.0, "bipolar": 1.5}
    assert counts_with({"synthetic": {"brain_age_gap": gaps}}) == {}
    # The simulation's settings: everything of that cohort (a pretraining one: no draws).
    bhb = TINY["synthetic"]["cohorts"]["bhb"] | {"n_sites": 4}
    everything = {"synth_cohort", *measured} - {"draws"}
    assert plan_with({"synthetic": {"cohorts": {"bhb": bhb}}}) == everything


def test_a_qc_threshold_reconverts_only_the_cohorts_whose_pass_list_it_changes(tiny_run, tmp_path):
    """docs/reruns.md's way to try a threshold: `--until qc`, then the run. A threshold that
    excludes no other scan leaves every pass list byte-identical and reruns nothing more; one
    that excludes one more scan reconverts that scan's cohort only. Before, any threshold
    reran every cohort's QC over its maps, its conversion and all that follows."""
    work = tmp_path / "work"
    shutil.copytree(tiny_run, work, symlinks=True)
    cohorts = ("bhb", "adni")
    passing = pd.concat(
        [read(work / f"results/qc/{c}/qc.tsv").assign(cohort=c) for c in cohorts]
    ).query("qc == 1")
    highest = passing.sort_values("NCR", ascending=False)
    top, second = highest["NCR"].iloc[0], highest["NCR"].iloc[1]
    assert top > second
    passed_before = {c: (work / f"results/qc/{c}/passed.tsv").read_bytes() for c in cohorts}

    def try_threshold(ncr_max: float) -> dict[str, int]:
        override = tmp_path / "override.yaml"
        override.write_text(yaml.safe_dump({"qc": {"ncr_max": float(ncr_max)}}))
        done = snakemake(
            work, "--cores", "2", "data", "--until", "qc", "--configfile", str(override)
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return planned_jobs(work, "data", "--configfile", str(override))

    # Between the passing scans' highest NCR and the default 4.5: the same scans pass.
    assert try_threshold((top + 4.5) / 2) == {}
    for cohort in cohorts:
        assert (work / f"results/qc/{cohort}/passed.tsv").read_bytes() == passed_before[cohort]
    # Between the two highest: the scan with the highest NCR goes, and only its cohort.
    changed = highest["cohort"].iloc[0]
    scan = tuple(highest[["participant_id", "session"]].iloc[0])
    plan = try_threshold((top + second) / 2)
    qc = read(work / f"results/qc/{changed}/qc.tsv").set_index(["participant_id", "session"])
    assert qc.loc[scan, "qc"] == 0
    draws = {"draws": 1} if changed == "adni" else {}
    assert plan == {"convert": 1, "split": 1, **draws, "shared_scans": 1, "data": 1}
    done = snakemake(work, "--cores", "2", "data", "--configfile", str(tmp_path / "override.yaml"))
    assert done.returncode == 0, done.stderr[-3000:]
    rows = read(work / f"results/data/{changed}/participants.tsv")
    converted = set(zip(rows["participant_id"], rows["session"], strict=True))
    assert scan not in converted
    assert len(converted) == (passing["cohort"] == changed).sum() - 1


def test_a_real_cohorts_task_or_n_target_reruns_no_qc_or_conversion(tiny_run, tmp_path):
    """A data stage's params hold the keys of its cohort that it reads. Before, each held
    the whole cohort: a cohort's own n_target list reran its QC, conversion and split, and
    its task its QC and conversion."""
    synth = tiny_run / "results/synth/adni"
    healthy = {
        "role": "pretrain",
        "voxel_mm": 6.0,
        "participants": str(tiny_run / "results/synth/bhb/participants.tsv"),
        "cat12_root": str(tiny_run / "results/synth/bhb/cat12"),
    }
    task = {"label": "diagnosis", "positive": ["alzheimer"], "negative": ["control"]}
    ad = {
        "role": "evaluate",
        "voxel_mm": 6.0,
        "participants": str(synth / "participants.tsv"),
        "cat12_root": str(synth / "cat12"),
        "task": task,
        "n_target": [6],
    }
    config = {key: TINY[key] for key in ("qc", "conversion", "splits")}
    workdir = make_workdir(
        tmp_path, config | {"synthetic": {"cohorts": {}}, "cohorts": {"healthy": healthy, "ad": ad}}
    )
    done = snakemake(workdir, "--cores", "2", "data")
    assert done.returncode == 0, done.stderr[-3000:]

    def plan_with(changed: dict) -> set[str]:
        path = tmp_path / "override.yaml"
        path.write_text(yaml.safe_dump({"cohorts": {"healthy": healthy, "ad": ad | changed}}))
        return set(planned_jobs(workdir, "data", "--configfile", str(path)))

    assert plan_with({"n_target": [6, 8]}) == {"draws", "data"}
    by_sex = {"label": "sex", "positive": ["M"], "negative": ["F"]}
    assert plan_with({"task": by_sex}) == {"split", "draws", "shared_scans", "data"}


def test_a_mistyped_key_is_named(tmp_path):
    workdir = make_workdir(tmp_path, TINY | {"splitz": {}})
    done = snakemake(workdir, "-n", "data")
    assert done.returncode != 0 and "'splitz' was unexpected" in done.stdout + done.stderr


def test_a_cohort_whose_table_or_cat12_folder_is_not_there_is_named_before_any_job(tmp_path):
    (tmp_path / "participants.tsv").write_text("participant_id\tage\n01\t30\n")
    (tmp_path / "cat12").mkdir()
    for key, value, message in (
        ("participants", "tabel.tsv", "cohorts.mine.participants: tabel.tsv is not a file"),
        ("cat12_root", "derivatives/cat12", "cohorts.mine.cat12_root: derivatives/cat12 is not a"),
    ):
        cohort = {"role": "pretrain", "participants": "participants.tsv", "cat12_root": "cat12"}
        config = TINY | {"synthetic": {"cohorts": {}}, "cohorts": {"mine": cohort | {key: value}}}
        workdir = make_workdir(tmp_path, config)
        done = snakemake(workdir, "-n", "data")
        output = done.stdout + done.stderr
        assert done.returncode != 0 and message in output, output[-1500:]
        assert not (workdir / "results").exists()


@pytest.mark.parametrize("name", ["my bhb", "site/a", "..", "adni(2)"])
def test_a_cohort_name_that_cannot_be_a_folder_is_refused(tmp_path, name):
    cohorts = {name: {"role": "pretrain", "n_subjects": 40}}
    workdir = make_workdir(tmp_path, TINY | {"synthetic": {"voxel_mm": 6.0, "cohorts": cohorts}})
    done = snakemake(workdir, "-n", "data")
    output = done.stdout + done.stderr
    assert done.returncode != 0 and f"{name!r} does not match" in output, output[-1500:]
    assert not (workdir / "results").exists()


def test_cat12_grid_simulation_and_resampled_conversion(tmp_path):
    from nilearn import image as nimage

    config = {
        "synthetic": {
            "voxel_mm": 1.5,
            "cohorts": {
                "bhb": {
                    "role": "pretrain",
                    "n_subjects": 4,
                    "qc_failure_rate": 0.0,
                    "second_session_rate": 0.0,
                }
            },
        },
        "conversion": {"voxel_mm": 3.0},
        "splits": {"val_fraction": 0.5},
    }
    workdir = make_workdir(tmp_path, config)
    done = snakemake(workdir, "--cores", "2", "data")
    assert done.returncode == 0, done.stderr[-3000:]
    maps = sorted((workdir / "results/synth/bhb/cat12").glob("sub-*/ses-*/anat/mri/mwp1*.nii.gz"))
    first = nib.load(maps[0])
    assert first.shape == (121, 145, 121)
    np.testing.assert_allclose(
        first.affine, [[-1.5, 0, 0, 90], [0, 1.5, 0, -126], [0, 0, 1.5, -72], [0, 0, 0, 1]]
    )
    data = np.load(workdir / "results/data/bhb/data.npy")
    assert data.shape == (4, 1, 61, 73, 61)
    # Against nilearn's own resampling of the same map onto the 3 mm CAT12 box.
    tiv = read(workdir / "results/data/bhb/participants.tsv")["tiv"].iloc[0]
    target = np.diag([-3.0, 3.0, 3.0, 1.0])
    target[:3, 3] = [90, -126, -72]
    reference = nimage.resample_img(
        first,
        target_affine=target,
        target_shape=(61, 73, 61),
        interpolation="linear",
        force_resample=True,
        copy_header=True,
    )
    expected = reference.get_fdata() * 1500 / tiv
    assert np.corrcoef(expected.ravel(), data[0, 0].ravel())[0, 1] > 0.98
    assert data[0, 0].sum() == pytest.approx(expected.sum(), rel=0.02)


def test_workflow_lint_and_format_are_clean():
    done = snakemake(REPO, "--lint")
    assert done.returncode == 0, done.stdout
    import subprocess
    import sys

    fmt = subprocess.run(
        [sys.executable, "-m", "snakefmt", "--check", "Snakefile", "rules"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert fmt.returncode == 0, fmt.stderr


def test_whole_sites_can_be_held_out(tiny_run, tmp_path):
    workdir = tmp_path / "copy"
    shutil.copytree(tiny_run, workdir, symlinks=True)
    (tmp_path / "sites.yaml").write_text(
        yaml.safe_dump({"splits": {"external_sites": {"adni": ["adni-site2"]}}})
    )
    done = snakemake(
        workdir,
        "--cores",
        "1",
        "results/splits/adni/draws.tsv",
        "--configfile",
        str(tmp_path / "sites.yaml"),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    split = read(workdir / "results/splits/adni/split.tsv")
    table = read(workdir / "results/data/adni/participants.tsv").drop_duplicates("participant_id")
    site = dict(zip(table["participant_id"], table["site"], strict=True))
    external = split[split["split"] == "external"]["participant_id"]
    assert len(external) and all(site[s] == "adni-site2" for s in external)
    assert all(
        site[s] != "adni-site2" for s in split[split["split"] != "external"]["participant_id"]
    )
    draws = read(workdir / "results/splits/adni/draws.tsv")
    assert set(draws["participant_id"]).isdisjoint(external)


def test_held_out_sites_are_scored_by_probes_and_fine_tuning(tiny_run, tmp_path):
    """splits.external_sites: the probes and the fine-tuned models that the internal test
    set scores are scored on the whole held-out sites too, and the summary says so."""
    workdir = tmp_path / "copy"
    shutil.copytree(tiny_run, workdir, symlinks=True)
    settings = {
        "splits": {"external_sites": {"adni": ["adni-site2"]}},
        "pretraining": {
            "methods": {"simclr": {}},
            "seeds": [0],
            "encoder": "tinycnn",
            "epochs": 1,
            "batch_size": 8,
        },
        "fine_tuning": {"n_target": [6], "repeats": 1, "seeds": [0], "epochs": 1},
    }
    (tmp_path / "sites.yaml").write_text(yaml.safe_dump(settings))
    target, options = "results/tables/summary.csv", ("--configfile", str(tmp_path / "sites.yaml"))
    done = snakemake(workdir, "--cores", "2", target, *options)
    assert done.returncode == 0, done.stderr[-3000:]
    split = read(workdir / "results/splits/adni/split.tsv")
    n_external = int((split["split"] == "external").sum())
    linear = pd.read_csv(workdir / "results/tables/linear_probe.csv")
    assert (linear["n_external"] == n_external).all() and n_external > 0
    assert linear["external_auc"].between(0, 1).all()
    assert not np.allclose(linear["external_auc"], linear["auc"])  # another set of subjects
    finetune = pd.read_csv(workdir / "results/tables/finetune.csv")
    assert (finetune["n_external"] == n_external).all()
    assert finetune["external_auc"].between(0, 1).all()
    run = workdir / "results/finetune/scratch/adni/n6_r0"
    predictions = pd.read_csv(run / "external_predictions.csv", dtype={"participant_id": str})
    external = split.loc[split["split"] == "external", "participant_id"]
    assert set(predictions["participant_id"]) == set(external)
    summary = pd.read_csv(workdir / "results/tables/summary.csv")
    held_out = summary[summary["evaluation"].str.endswith("external sites")]
    assert set(held_out["evaluation"]) == {
        "linear probe, external sites",
        "fine-tuning, external sites",
    }
    probe_rows = held_out[held_out["evaluation"] == "linear probe, external sites"]
    mean = linear.groupby(["label", "n_target"])["external_auc"].mean()
    assert len(probe_rows) == len(mean)
    for row in probe_rows.itertuples():
        assert row.auc_mean == pytest.approx(mean[(row.label, row.n_target)])
    # The paired differences on the held-out sites are those of the external AUCs.
    comparisons = pd.read_csv(workdir / "results/tables/comparisons.csv")
    tuned = comparisons[comparisons["evaluation"] == "fine-tuning, external sites"].iloc[0]
    external_auc = finetune.set_index("label")["external_auc"]
    assert (tuned["label"], tuned["baseline"]) == ("fine-tuned SimCLR", "Fully supervised")
    expected = external_auc["fine-tuned SimCLR"] - external_auc["Fully supervised"]
    assert tuned["diff_mean"] == pytest.approx(expected)
