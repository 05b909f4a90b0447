"""Evaluation settings a cohort cannot satisfy, caught by the split stage through Snakemake."""

import math
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from tests.workflow.helpers import make_workdir, planned_jobs, snakemake


def _config(adni: dict, splits: dict) -> dict:
    return {
        "synthetic": {
            "voxel_mm": 6.0,
            "cohorts": {
                "bhb": {"role": "pretrain", "n_subjects": 8, "n_sites": 1},  # never built here
                "adni": {
                    "role": "evaluate",
                    "n_subjects": 30,
                    "n_sites": 2,
                    "diagnosis": "alzheimer",
                    "qc_failure_rate": 0.0,
                    **adni,
                },
            },
        },
        "qc": {"corr_voxel_mm": 6.0},
        "conversion": {"voxel_mm": 6.0},
        "splits": splits,
    }


@pytest.mark.parametrize(
    ("adni", "splits", "message"),
    [
        ({"patient_fraction": 0.0}, {"n_target": [10]}, "no row of the positive class"),
        (
            {"n_subjects": 16, "patient_fraction": 0.2},
            {"n_target": [4]},
            "adni's task: 1 subject of class ['alzheimer'] (first sessions, outside held-out "
            "sites); a test AUC needs one in the test set and the training draws another",
        ),
    ],
    ids=["positive_class_absent", "one_patient"],
)
def test_the_split_stage_refuses_with_the_setting_named(tmp_path, adni, splits, message):
    workdir = make_workdir(tmp_path, _config(adni, splits))
    done = snakemake(workdir, "--cores", "2", "results/splits/adni/split.tsv")
    assert done.returncode != 0
    log = (workdir / "results/logs/split/adni.log").read_text()
    assert message in log, log[-2000:]
    assert "Traceback" not in log
    assert not (workdir / "results/splits/adni/split.tsv").exists()


def test_an_n_target_larger_than_the_pool_stops_the_draws_with_the_setting_named(tmp_path):
    """The draws are made apart from the split (a new N_target leaves the split as it was),
    so the split is written and the draws job refuses."""
    workdir = make_workdir(tmp_path, _config({}, {"n_target": [500]}))
    done = snakemake(workdir, "--cores", "2", "results/splits/adni/draws.tsv")
    assert done.returncode != 0
    log = (workdir / "results/logs/draws/adni.log").read_text()
    assert "splits.n_target: 500 exceeds the" in log and "training subjects of adni" in log, log
    assert "Traceback" not in log
    assert (workdir / "results/splits/adni/split.tsv").exists()
    assert not (workdir / "results/splits/adni/draws.tsv").exists()


@pytest.mark.parametrize(
    ("models", "key"),
    [
        ({"pretraining": {"encoder": "densenet121"}}, "pretraining.encoder"),
        (
            {
                "pretraining": {"encoder": "tinycnn"},
                "external_models": {"old": {"checkpoint": "old.pth", "encoder": "densenet121"}},
            },
            "external_models.old.encoder",
        ),
    ],
    ids=["pretraining", "external_model"],
)
def test_a_grid_too_small_for_an_encoder_stops_the_workflow_before_any_job(tmp_path, models, key):
    """conversion.voxel_mm 8 gives 23x28x23 scans; DenseNet121 needs 29 voxels per axis."""
    config = _config({}, {}) | {"conversion": {"voxel_mm": 8.0}} | models
    workdir = make_workdir(tmp_path, config)
    (tmp_path / "old.pth").touch()  # the config check wants the external checkpoint there
    done = snakemake(workdir, "-n")
    assert done.returncode != 0
    assert (
        f"conversion.voxel_mm 8.0 (for {key}): scans of 23x28x23 voxels are too small for "
        "encoder densenet121, which needs at least 29 voxels along each axis"
        in done.stdout
        + done.stderr
    ), (done.stdout + done.stderr)[-2000:]
    # At 6 mm (31x37x31) the same encoders are planned.
    config["conversion"]["voxel_mm"] = 6.0
    assert snakemake(make_workdir(tmp_path, config), "-n").returncode == 0


def test_every_draw_keeps_a_rare_class(tmp_path):
    """About 8 % patients: a draw of 6 expects half a patient. scikit-learn's stratified
    draw could then take controls only, and the split job stopped; each draw now holds
    both classes, as many patients as the pool's share gives (at least one)."""
    config = _config({"n_subjects": 80, "patient_fraction": 0.08}, {"n_target": [6], "repeats": 8})
    workdir = make_workdir(tmp_path, config)
    done = snakemake(workdir, "--cores", "2", "results/splits/adni/draws.tsv")
    assert done.returncode == 0, done.stderr[-2000:]
    table = pd.read_csv(workdir / "results/data/adni/participants.tsv", sep="\t", dtype=str)
    diagnosis = dict(zip(table["participant_id"], table["diagnosis"], strict=False))
    draws = pd.read_csv(workdir / "results/splits/adni/draws.tsv", sep="\t", dtype=str)
    assert draws.groupby("repeat").ngroups == 8
    for _, draw in draws.groupby("repeat"):
        classes = [diagnosis[s] for s in draw["participant_id"]]
        assert len(classes) == 6 and set(classes) == {"alzheimer", "control"}, classes


def test_a_class_too_rare_for_a_stratified_fold_is_still_in_the_test_set(tmp_path):
    """4 patients of 20, a 25 % test set (4 folds) stratified by diagnosis, site and sex:
    the fold held controls only, and every test AUC came out undefined (blank in the
    tables). A patient now moves into the test set and a control back into the pool."""
    config = _config({"n_subjects": 20, "patient_fraction": 0.25}, {"n_target": [4], "repeats": 1})
    workdir = make_workdir(tmp_path, config)
    done = snakemake(workdir, "--cores", "2", "results/splits/adni/draws.tsv")
    assert done.returncode == 0, done.stderr[-2000:]
    table = pd.read_csv(workdir / "results/data/adni/participants.tsv", sep="\t", dtype=str)
    split = pd.read_csv(workdir / "results/splits/adni/split.tsv", sep="\t", dtype=str)
    sides = split.merge(table, on=["participant_id", "session"]).groupby("split")["diagnosis"]
    counts = sides.value_counts().unstack(fill_value=0)
    assert counts.loc["test", "alzheimer"] >= 1 and counts.loc["test", "control"] >= 1, counts
    assert counts.loc["train", "alzheimer"] >= 1 and counts.loc["train", "control"] >= 1, counts
    assert counts.loc["test"].sum() == 5  # the fold's size: a quarter of 20 subjects


@pytest.mark.parametrize(
    ("task", "message"),
    [
        (
            {"label": "diagnosis", "positive": ["AD"], "negative": ["CN"]},
            "cohorts.mine.task: {table}: no 'diagnosis' column; the table has "
            "['participant_id', 'age', 'dx']: set the task's label to one of them",
        ),
        (
            {"label": "dx", "positive": ["alzheimer"], "negative": ["CN"]},
            "cohorts.mine.task: {table}: no row of the positive class (['alzheimer']) in "
            "column 'dx', which holds ['AD', 'CN']",
        ),
    ],
    ids=["label_column_absent", "class_absent"],
)
def test_a_real_cohorts_task_is_checked_against_its_table_before_any_job(tmp_path, task, message):
    """A typo in the task would otherwise surface at the split job, after QC and the
    conversion of every scan (hours on a real cohort)."""
    table = tmp_path / "participants.tsv"
    table.write_text("participant_id\tage\tdx\n01\t70\tAD\n02\t71\tCN\n")
    (tmp_path / "cat12").mkdir()
    cohort = {"role": "evaluate", "participants": str(table), "cat12_root": str(tmp_path / "cat12")}
    config = _config({}, {}) | {"cohorts": {"mine": cohort | {"task": task}}}
    workdir = make_workdir(tmp_path / "work", config)
    done = snakemake(workdir, "-n")
    output = done.stdout + done.stderr
    assert done.returncode != 0 and message.format(table=table) in output, output[-2000:]
    assert not (workdir / "results").exists()


@pytest.mark.parametrize(
    ("fine_tuning", "message"),
    [
        ({"n_target": [30]}, "fine_tuning.n_target: [30] are drawn for no evaluation cohort"),
        ({"seeds": [1]}, "fine_tuning.seeds: [1] are not among pretraining.seeds [0]"),
    ],
    ids=["n_target", "seeds"],
)
def test_fine_tuning_what_the_workflow_does_not_make_is_refused(tmp_path, fine_tuning, message):
    """Before, no fine-tuning job (or only from scratch) was planned, silently."""
    config = _config({}, {"n_target": [10, 20]}) | {"fine_tuning": fine_tuning}
    config["pretraining"] = {"seeds": [0]}
    done = snakemake(make_workdir(tmp_path, config), "-n")
    output = done.stdout + done.stderr
    assert done.returncode != 0 and message in output, output[-2000:]
    config["fine_tuning"] = {"n_target": [20], "seeds": [0]}  # drawn and pretrained: planned
    assert snakemake(make_workdir(tmp_path, config), "-n").returncode == 0


def test_an_external_checkpoint_that_is_not_there_is_named_before_any_job(tmp_path):
    """A mistyped checkpoint path. Where earlier results exist, Snakemake would plan no job
    for the model and let the old tables stand; the config check names the path instead."""
    external = {"old": {"checkpoint": "models/old.pth", "encoder": "tinycnn"}}
    config = _config({}, {}) | {"external_models": external}
    workdir = make_workdir(tmp_path, config)
    done = snakemake(workdir, "-n")
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "external_models.old.checkpoint: models/old.pth is not a file" in output, output[-2000:]
    (workdir / "models").mkdir()
    (workdir / "models/old.pth").touch()
    assert snakemake(workdir, "-n").returncode == 0


def test_paths_under_the_home_folder_may_be_written_with_a_tilde(tmp_path, monkeypatch):
    """`~/data/...`, as a user writes it in a shell. Python and Snakemake take `~` as a
    folder's name, so the config check refused the cohort and the checkpoint as missing."""
    home = tmp_path / "home"
    (home / "data/cat12/sub-01").mkdir(parents=True)
    (home / "data/participants.tsv").write_text("participant_id\tage\nsub-01\t40\n")
    (home / "models").mkdir()
    (home / "models/old.pth").touch()
    monkeypatch.setenv("HOME", str(home))
    mine = {
        "role": "pretrain",
        "participants": "~/data/participants.tsv",
        "cat12_root": "~/data/cat12",
        "voxel_mm": 6.0,
    }
    external = {"old": {"checkpoint": "~/models/old.pth", "encoder": "tinycnn"}}
    config = _config({}, {}) | {"cohorts": {"mine": mine}, "external_models": external}
    workdir = make_workdir(tmp_path / "work", config)
    assert planned_jobs(workdir, "results/qc/mine/metrics.tsv") == {"qc_metrics": 1}
    assert planned_jobs(workdir, "results/features/old/adni.npy")["features"] == 1


def test_a_kernel_label_that_a_pretraining_table_lacks_is_named_before_any_job(tmp_path):
    """QC excludes the scans without `pretrain_label` (age); a `pretraining.label` of
    another column, absent or missing for a scan, stopped every pretraining job after QC and
    the conversion. The config check names the column, the scan and the setting to change."""
    cohort = tmp_path / "mine"
    (cohort / "sub-01").mkdir(parents=True)
    participants = cohort / "participants.tsv"
    participants.write_text(
        "participant_id\tage\tbmi\nsub-01\t40\t22.5\nsub-02\t51\tn/a\nsub-03\t63\t27.1\n"
    )
    mine = {"role": "pretrain", "participants": str(participants), "cat12_root": str(cohort)}

    def check(config: dict) -> tuple[int, str]:
        base = _config({}, {}) | {"cohorts": {"mine": mine}}
        done = snakemake(make_workdir(tmp_path / "work", base | config), "-n")
        return done.returncode, done.stdout + done.stderr

    status, output = check({"pretraining": {"label": "BMI"}})
    assert status != 0 and "Job stats" not in output
    columns = "no 'BMI' column; the table has ['participant_id', 'age', 'bmi']: set pretraining"
    assert f"{columns}.label to one of them ('bmi' differs only in case)" in output, output[-2000:]
    status, output = check({"pretraining": {"label": "bmi"}})
    assert status != 0 and "Job stats" not in output
    assert "column 'bmi' has 1 missing or non-numeric values" in output, output[-2000:]
    assert "participants ['sub-02']" in output and "set pretrain_label: bmi" in output
    status, output = check({"pretraining": {"label": "bmi"}, "pretrain_label": "bmi"})
    assert status == 0, output[-2000:]
    # A pretraining cohort left out of pretraining.cohorts: its labels are never read.
    status, output = check({"pretraining": {"label": "bmi", "cohorts": ["bhb"]}})
    assert status == 0, output[-2000:]
    # A table a spreadsheet saved as Latin-1: named with its line, as the evaluation
    # cohorts' tables are, rather than at the first QC job.
    participants.write_bytes("participant_id\tage\nsub-01\t40\nsub-ä\t51\n".encode("latin-1"))
    status, output = check({})
    assert status != 0 and "Job stats" not in output
    assert "cohorts.mine.participants: " in output and "is not UTF-8 text (line 3)" in output


def test_sites_held_out_of_a_cohort_that_is_not_an_evaluation_cohort_are_refused(tmp_path):
    """A misspelt cohort in splits.external_sites was ignored: no site held out, silently."""
    config = _config({}, {"external_sites": {"adnii": ["site1"]}})
    done = snakemake(make_workdir(tmp_path, config), "-n")
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "splits.external_sites: ['adnii'] are not evaluation cohorts ['adni']" in output, output[
        -2000:
    ]


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"pretraining": {"lr": math.nan}}, "pretraining.lr: .nan"),
        ({"splits": {"val_fraction": math.nan}}, "splits.val_fraction: .nan"),
        (
            {"pretraining": {"methods": {"yaware": {"sigma": [2.0, math.inf]}}}},
            "pretraining.methods.yaware.sigma[1]: .inf",
        ),
    ],
    ids=["nan_learning_rate", "nan_fraction", "infinite_sigma"],
)
def test_a_number_that_is_nan_or_infinite_is_named_before_any_job(tmp_path, settings, named):
    """YAML reads .nan and .inf as numbers: they pass the schema's types, and NaN passes every
    bound (it compares false), so a NaN learning rate would reach the training."""
    done = snakemake(make_workdir(tmp_path, _config({}, {}) | settings), "-n")
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert f"{named}: not a finite number" in output, output[-2000:]


def test_an_infinite_qc_threshold_turns_its_check_off(tmp_path):
    adni = {"qc_failure_rate": 0.3}
    target = "results/qc/adni/qc.tsv"

    def reasons(qc: dict) -> pd.Series:
        workdir = make_workdir(tmp_path, _config(adni, {}) | {"qc": {"corr_voxel_mm": 6.0, **qc}})
        done = snakemake(workdir, "--cores", "2", target)
        assert done.returncode == 0, done.stderr[-2000:]
        return pd.read_csv(workdir / target, sep="\t")["reason"].fillna("")

    with_marks = reasons({})
    assert with_marks.str.contains("NCR|IQR").any()  # the planted failures are there
    without = reasons({"ncr_max": math.inf, "iqr_max": math.inf})
    assert not without.str.contains("NCR|IQR").any()


def test_a_cat12_root_one_level_off_is_named_with_the_folder_meant(tmp_path):
    """cat12_root set to the folder above the subjects (derivatives/ for derivatives/cat12/)
    or to a subject's folder: the config check names the folder that holds the subjects,
    before any job (before: QC excluded every scan, `no mwp1 map`, then the conversion
    stopped). A table whose every row has a path needs no subjects' folders."""
    derivatives = tmp_path / "derivatives"
    (derivatives / "cat12-12.8_vbm" / "sub-01" / "ses-1" / "anat").mkdir(parents=True)
    (tmp_path / "empty").mkdir()
    table = tmp_path / "participants.tsv"
    table.write_text("participant_id\tsession\tage\nsub-01\t1\t40\n")
    meant = derivatives / "cat12-12.8_vbm"
    cases = {
        derivatives: f"{derivatives} holds no sub-* folder, but {meant} does: set cat12_root: "
        f"{meant}",
        meant / "sub-01" / "ses-1": f"{meant / 'sub-01' / 'ses-1'} is inside the subject "
        f"folder sub-01: set cat12_root: {meant}",
        tmp_path / "empty": f"{tmp_path / 'empty'} holds no sub-* folder; point cat12_root at "
        "the folder that holds them (or give every row of the table a path)",
    }
    for root, message in cases.items():
        mine = {"role": "pretrain", "participants": str(table), "cat12_root": str(root)}
        workdir = make_workdir(tmp_path / "work", _config({}, {}) | {"cohorts": {"mine": mine}})
        done = snakemake(workdir, "-n", "results/qc/mine/metrics.tsv")
        output = done.stdout + done.stderr
        assert done.returncode != 0 and "Job stats" not in output
        assert f"cohorts.mine.cat12_root: {message}" in output, output[-2000:]
    # Every row with a path: the root's folders are not needed.
    table.write_text(f"participant_id\tsession\tage\tpath\nsub-01\t1\t40\t{meant}/x.nii\n")
    assert planned_jobs(workdir, "results/qc/mine/metrics.tsv") == {"qc_metrics": 1}


def _write_xlsx(path, rows: list[list[str]]) -> None:
    """A minimal Office Open XML workbook (one sheet of inline strings), as a spreadsheet
    saves a table when "Save As" keeps its own format."""
    cells = "".join(
        f'<row r="{r}">'
        + "".join(f'<c t="inlineStr"><is><t>{value}</t></is></c>' for value in row)
        + "</row>"
        for r, row in enumerate(rows, start=1)
    )
    main = "http://schemas.openxmlformats.org"
    parts = {
        "[Content_Types].xml": f'<Types xmlns="{main}/package/2006/content-types">'
        '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
        'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>'
        '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-'
        'officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/'
        'sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.'
        'spreadsheetml.worksheet+xml"/></Types>',
        "_rels/.rels": f'<Relationships xmlns="{main}/package/2006/relationships">'
        f'<Relationship Id="r1" Type="{main}/officeDocument/2006/relationships/'
        'officeDocument" Target="xl/workbook.xml"/></Relationships>',
        "xl/workbook.xml": f'<workbook xmlns="{main}/spreadsheetml/2006/main" xmlns:r="'
        f'{main}/officeDocument/2006/relationships"><sheets><sheet name="participants" '
        'sheetId="1" r:id="r1"/></sheets></workbook>',
        "xl/_rels/workbook.xml.rels": f'<Relationships xmlns="{main}/package/2006/'
        f'relationships"><Relationship Id="r1" Type="{main}/officeDocument/2006/'
        'relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>',
        "xl/worksheets/sheet1.xml": f'<worksheet xmlns="{main}/spreadsheetml/2006/main">'
        f"<sheetData>{cells}</sheetData></worksheet>",
    }
    with zipfile.ZipFile(path, "w") as workbook:
        for name, text in parts.items():
            workbook.writestr(name, text)


def test_a_participants_workbook_is_named_with_how_to_export_it(tmp_path):
    """A table saved as an Excel workbook (.xlsx) and pointed at as the participants table:
    the config check names it before any job (before: `not UTF-8 text`, with an iconv line
    that cannot convert a zip archive)."""
    table = tmp_path / "participants.xlsx"
    _write_xlsx(table, [["participant_id", "age"], ["sub-01", "40"], ["sub-02", "51"]])
    (tmp_path / "cat12" / "sub-01").mkdir(parents=True)
    mine = {"role": "pretrain", "participants": str(table), "cat12_root": str(tmp_path / "cat12")}
    workdir = make_workdir(tmp_path / "work", _config({}, {}) | {"cohorts": {"mine": mine}})
    done = snakemake(workdir, "-n")
    output = done.stdout + done.stderr
    assert done.returncode != 0 and "Job stats" not in output
    assert (
        f"{table} is a spreadsheet workbook, not a text table: export it as tab-separated "
        "text (participants.tsv; 'Save As... Text (Tab delimited)'"
    ) in output, output[-2000:]
    assert "Traceback" not in output


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            ("  epochs: 15", "\tepochs: 15"),
            "found character '\\t' that cannot start any token; YAML indents with spaces, "
            "never tabs",
        ),
        (("  seeds: [0, 1]", "  seeds: [0, 1"), "expected ',' or ']', but got"),
    ],
    ids=["tab", "unclosed_bracket"],
)
def test_a_yaml_error_in_the_config_is_named_by_line(tmp_path, edit, message):
    """A tab or an unclosed bracket in config/config.yaml, as a hand edit leaves them:
    the line and column, before any job (Snakemake said only that the file is not valid
    JSON or YAML)."""
    text = (Path(__file__).parents[2] / "config/config.yaml").read_text()
    assert edit[0] in text
    lines = text.splitlines()
    line = next(i for i, t in enumerate(lines) if t.startswith(edit[0])) + 1
    (tmp_path / "config").mkdir()
    (tmp_path / "config/config.yaml").write_text(text.replace(edit[0], edit[1], 1))
    done = snakemake(tmp_path, "-n")
    output = done.stdout + done.stderr
    assert done.returncode != 0 and "Job stats" not in output
    # A tab is found where it stands; an unclosed bracket where the next key begins.
    where = f"line {line}, column 1" if "\t" in edit[1] else f"line {line + 1}, column "
    assert f"config/config.yaml, {where}" in output, output[-2000:]
    assert message in output


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty (or holds comments only): the workflow's settings go there"),
        ("# all commented out\n# synthetic:\n", "is empty (or holds comments only)"),
        ("- synthetic\n- pretraining\n", "holds a list, not a mapping of keys at the top level"),
    ],
    ids=["empty", "comments", "list"],
)
def test_an_empty_config_is_named_with_its_file(tmp_path, text, message):
    """An emptied config/config.yaml got Snakemake's "must be given as JSON or YAML with
    keys at top level", which names no file."""
    (tmp_path / "config").mkdir()
    (tmp_path / "config/config.yaml").write_text(text)
    done = snakemake(tmp_path, "-n")
    output = done.stdout + done.stderr
    assert done.returncode != 0 and "Job stats" not in output
    assert f"config/config.yaml {message}" in output, output[-2000:]
    assert "Traceback" not in output
