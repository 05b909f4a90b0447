"""The whole workflow on a tiny config: outputs, consistency, reruns, the paper config."""

import re
import shutil
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from tests.conftest import zscored_representations
from tests.workflow.helpers import REPO, make_workdir, planned_jobs, snakemake
from yaware.evaluate.probes import DEFAULT_CS
from yaware.models import build_model
from yaware.models.checkpoint import read_checkpoint, save_checkpoint

TINY = {
    "synthetic": {
        "voxel_mm": 6.0,
        "cohorts": {
            "bhb": {"role": "pretrain", "n_subjects": 36, "n_sites": 3, "age_range": [20, 85]},
            "adni": {
                "role": "evaluate",
                "n_subjects": 44,
                "n_sites": 2,
                "diagnosis": "alzheimer",
                "age_mean": 75,
                "age_sd": 6,
                "age_range": [55, 95],
            },
            "scz": {
                "role": "evaluate",
                "n_subjects": 44,
                "n_sites": 2,
                "diagnosis": "schizophrenia",
                "age_mean": 35,
                "age_sd": 10,
                "age_range": [18, 65],
            },
        },
    },
    "qc": {"corr_voxel_mm": 6.0},
    "conversion": {"voxel_mm": 6.0},
    "splits": {"n_target": [10, 16], "repeats": 2, "val_fraction": 0.2},
    "pretraining": {
        "methods": {
            "simclr": {},
            "yaware": {"sigma": [5.0]},
            "age_supervision": {},
            "model_genesis": {},
        },
        "encoder": "tinycnn",
        "epochs": 2,
        "batch_size": 16,
        "lr": 1.0e-3,
    },
    "features": {"pca_components": 8},
    "probes": {"inner_folds": 2},
    "fine_tuning": {"n_target": [10], "repeats": 1, "epochs": 1, "batch_size": 4},
}

MODELS = [
    "simclr_cutout_tinycnn_seed0",
    "yaware-sigma5_cutout_tinycnn_seed0",
    "age_supervision_cutout_tinycnn_seed0",
    "model_genesis_none_tinycnn_seed0",
    "released",
    "ours",
    "random_tinycnn_seed0",
    "pca",
]


EXTERNAL_SEEDS = {"released": 0, "ours": 1, "medicalnet": 10}


def _made_elsewhere(encoder: str, seed: int) -> torch.nn.Module:
    """A network as another tool trained it: seeded weights, batch norms off their start."""
    torch.manual_seed(seed)
    model = build_model(encoder)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm3d):
            module.running_mean.uniform_(-0.2, 0.2)
    return model


def _independent_features(model: torch.nn.Module, data: Path) -> np.ndarray:
    """What the features job must write, from a forward pass made here."""
    return zscored_representations(model.eval(), np.load(data))


def _checkpoints_made_elsewhere(folder) -> dict:
    """Two external_models: one in the original's released layout (DataParallel keys, no
    record of its encoder, so the config names it), one of ours that records its encoder."""
    folder.mkdir()
    external = {}
    for name in ("released", "ours"):
        model = _made_elsewhere("tinycnn", EXTERNAL_SEEDS[name])
        path = folder / f"{name}.pth"
        if name == "released":
            state = {f"module.{k}": v for k, v in model.state_dict().items()}
            save_checkpoint(path, {"epoch": 99, "model": state, "optimizer": {}})
            # "canonical" holds "nan", which the Markdown summary once cut out of every cell.
            label = "Released canonical"
            external[name] = {"checkpoint": str(path), "encoder": "tinycnn", "label": label}
        else:
            save_checkpoint(path, {"model": model.state_dict(), "meta": {"encoder": "tinycnn"}})
            external[name] = {"checkpoint": str(path)}
    return external


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    external = _checkpoints_made_elsewhere(root / "elsewhere")
    workdir = make_workdir(root / "work", TINY | {"external_models": external})
    done = snakemake(workdir, "--cores", "2")
    assert done.returncode == 0, done.stderr[-4000:]
    return workdir


def test_one_auc_row_per_method_task_n_target_and_repeat(run):
    linear = pd.read_csv(run / "results/tables/linear_probe.csv")
    keys = ["model", "task", "n_target", "repeat"]
    assert not linear.duplicated(keys).any()
    expected = {
        (m, t, n, r)
        for m in MODELS
        for t in ("AD vs CTL", "SCZ vs CTL")
        for n in (10, 16)
        for r in (0, 1)
    }
    assert set(map(tuple, linear[keys].to_numpy().tolist())) == expected
    assert linear["auc"].between(0, 1).all() and linear["balanced_accuracy"].between(0, 1).all()
    assert set(linear.loc[linear["kind"] == "floor", "model"]) == {"random_tinycnn_seed0", "pca"}
    # C is one of the grid's values, whatever shape scikit-learn gives C_ (an array before
    # 1.10, a scalar after), and the probes fit without scikit-learn's deprecation warnings.
    assert np.isclose(linear["C"].to_numpy()[:, None], np.array(DEFAULT_CS)).any(1).all()
    logs = list((run / "results/logs").glob("*_probe/**/*.log"))
    assert len(logs) == len(MODELS) * 3  # 2 tasks and the age and site probes
    for log in logs:
        assert "FutureWarning" not in log.read_text(), log
    age = pd.read_csv(run / "results/tables/age_site.csv")
    assert set(age["model"]) == set(MODELS)
    assert (age["age_mae"] > 0).all() and age["site_balanced_accuracy"].between(0, 1).all()
    finetune = pd.read_csv(run / "results/tables/finetune.csv")
    # (4 pretrained + 2 external + scratch) x 2 tasks, N_target 10, 1 draw
    assert len(finetune) == 7 * 2
    assert finetune["auc"].between(0, 1).all()


def test_checkpoints_made_elsewhere_are_probed_and_fine_tuned(run):
    external = yaml.safe_load((run / "config/config.yaml").read_text())["external_models"]
    for name in external:
        # The workflow's representation is the network's, whatever its key layout.
        model = _made_elsewhere("tinycnn", EXTERNAL_SEEDS[name])
        for cohort in ("bhb", "adni"):
            expected = _independent_features(model, run / f"results/data/{cohort}/data.npy")
            saved = np.load(run / f"results/features/{name}/{cohort}.npy")
            np.testing.assert_allclose(saved, expected, rtol=1e-5, atol=1e-6)
    linear = pd.read_csv(run / "results/tables/linear_probe.csv")
    rows = linear[linear["kind"] == "external"]
    assert set(rows["model"]) == {"released", "ours"} and set(rows["method"]) == {"external"}
    assert set(rows["label"]) == {"Released canonical", "ours"}  # the label, else the name
    finetune = pd.read_csv(run / "results/tables/finetune.csv")
    tuned = finetune[finetune["init"].isin(["released", "ours"])]
    assert len(tuned) == 2 * 2 and set(tuned["init_kind"]) == {"pretrained"}
    assert set(tuned["label"]) == {"fine-tuned Released canonical", "fine-tuned ours"}
    log = (run / "results/logs/finetune/released/adni/n10_r0.log").read_text()
    assert "released.pth" in log  # the fine-tuning loaded that checkpoint
    summary = pd.read_csv(run / "results/tables/summary.csv")
    assert {"Released canonical", "fine-tuned Released canonical"} <= set(summary["label"])
    assert "| Released canonical |" in (run / "results/tables/summary.md").read_text()


def test_cpu_training_jobs_keep_freed_memory(run):
    logs = sorted((run / "results/logs/pretrain").glob("*.log"))
    logs += sorted((run / "results/logs/finetune").rglob("*.log"))
    assert len(logs) > 4
    for log in logs:  # yaware.train.allocator: glibc keeps freed blocks for the next step
        text = log.read_text()
        assert "glibc malloc keeps freed blocks" in text, log
        # The default TinyCNN trains in channels-last on the CPU (train.common.memory_format).
        assert "batches on cpu: torch.channels_last_3d" in text, log


def test_an_external_model_named_like_a_workflow_model_is_refused(tmp_path):
    external = {"pca": {"checkpoint": str(tmp_path / "x.pth")}}
    workdir = make_workdir(tmp_path / "work", TINY | {"external_models": external})
    done = snakemake(workdir, "-n")
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "external_models.pca: the workflow already names a model 'pca'" in output


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        (["SimCLR"], "external_models.a: its label 'SimCLR' is that of 'simclr_cutout_tinycnn"),
        (["Fully supervised"], "its label 'Fully supervised' is that of 'scratch' too"),
        (["mine", "mine"], "external_models.a: its label 'mine' is that of 'b' too"),
    ],
)
def test_an_external_model_labelled_like_another_model_is_refused(tmp_path, labels, expected):
    """The tables, figures and paired differences tell models apart by label."""
    checkpoint = tmp_path / "x.pth"
    save_checkpoint(checkpoint, {"model": build_model("tinycnn").state_dict()})
    external = {
        name: {"checkpoint": str(checkpoint), "encoder": "tinycnn", "label": label}
        for name, label in zip("ab", labels, strict=False)
    }
    workdir = make_workdir(tmp_path / "work", TINY | {"external_models": external})
    done = snakemake(workdir, "-n")
    assert done.returncode != 0
    assert expected in done.stdout + done.stderr


def test_the_seeds_of_a_method_share_its_label_beside_an_external_model(tmp_path):
    """Two seeds of SimCLR are one label, pooled in the tables: no clash."""
    checkpoint = tmp_path / "x.pth"
    save_checkpoint(checkpoint, {"model": build_model("tinycnn").state_dict()})
    external = {"a": {"checkpoint": str(checkpoint), "encoder": "tinycnn", "label": "mine"}}
    pretraining = TINY["pretraining"] | {"seeds": [0, 1]}
    config = TINY | {"pretraining": pretraining, "external_models": external}
    done = snakemake(make_workdir(tmp_path / "work", config), "-n")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "simclr_cutout_tinycnn_seed1" in done.stdout


def _medicalnet_file(path: Path) -> dict:
    """An external model as MedicalNet releases its ResNets: the trunk alone, under
    'state_dict' with DataParallel's prefix and without ``features.``, no encoder recorded."""
    model = _made_elsewhere("medicalnet_resnet10", EXTERNAL_SEEDS["medicalnet"])
    trunk = {
        f"module.{k.removeprefix('features.')}": v
        for k, v in model.state_dict().items()
        if k.startswith("features.")
    }
    torch.save({"state_dict": trunk}, path)
    return {"checkpoint": str(path), "label": "MedicalNet ResNet-10"}


def test_models_made_elsewhere_are_evaluated_without_pretraining_any(tmp_path):
    """`pretraining.methods: {}` with external models: the released checkpoint and a
    MedicalNet ResNet (whose encoder no config names: read from its layers) probed and
    fine-tuned on a cohort beside the floors and training from scratch, no encoder
    pretrained (the schema refused an empty methods). The sigma figure, with no sigma to
    plot, is not drawn; the summary says what was pretrained. With no external model
    either, the config check says there is nothing to evaluate."""
    external = _checkpoints_made_elsewhere(tmp_path / "elsewhere")
    medicalnet = _medicalnet_file(tmp_path / "elsewhere" / "resnet_10_23dataset.pth")
    synthetic = TINY["synthetic"] | {
        "cohorts": {
            "bhb": TINY["synthetic"]["cohorts"]["bhb"],
            "adni": TINY["synthetic"]["cohorts"]["adni"],
        }
    }
    config = TINY | {
        "synthetic": synthetic,
        "pretraining": TINY["pretraining"] | {"methods": {}},
        "external_models": {"released": external["released"], "medicalnet": medicalnet},
    }
    workdir = make_workdir(tmp_path / "work", config)
    done = snakemake(workdir, "--cores", "2")
    assert done.returncode == 0, done.stderr[-4000:]
    linear = pd.read_csv(workdir / "results/tables/linear_probe.csv")
    assert set(linear["model"]) == {"released", "medicalnet", "random_tinycnn_seed0", "pca"}
    assert "MedicalNet ResNet-10" in set(linear["label"])
    finetune = pd.read_csv(workdir / "results/tables/finetune.csv")
    assert set(finetune["init"]) == {"released", "medicalnet", "scratch"}
    model = _made_elsewhere("medicalnet_resnet10", EXTERNAL_SEEDS["medicalnet"])
    for cohort in ("bhb", "adni"):
        saved = np.load(workdir / f"results/features/medicalnet/{cohort}.npy")
        expected = _independent_features(model, workdir / f"results/data/{cohort}/data.npy")
        assert saved.shape[1] == 512
        np.testing.assert_allclose(saved, expected, rtol=1e-5, atol=1e-6)
    log = (workdir / "results/logs/finetune/medicalnet/adni/n10_r0.log").read_text()
    assert (
        "resnet_10_23dataset.pth records no encoder; its layers are those of medicalnet_resnet10"
        in log
    )
    assert "a ResNet trunk named as MedicalNet's" in log and "0 missing" in log
    assert not (workdir / "results/pretrain").exists()
    figures = sorted(p.name for p in (workdir / "results/figures").iterdir())
    assert figures == ["fig1_auc_vs_n_target.png"]
    summary = (workdir / "results/tables/summary.md").read_text()
    assert "Pretraining: none (models made elsewhere only);" in summary
    make_workdir(workdir, config | {"external_models": {}})
    done = snakemake(workdir, "-n")
    assert done.returncode != 0
    assert (
        "pretraining.methods is empty and there are no external_models: no encoder to "
        "evaluate; name a method, or the checkpoint of one made elsewhere"
    ) in done.stdout + done.stderr


def test_summary_is_mean_and_spread_of_the_tidy_table(run):
    linear = pd.read_csv(run / "results/tables/linear_probe.csv")
    summary = pd.read_csv(run / "results/tables/summary.csv")
    row = summary[
        (summary["evaluation"] == "linear probe")
        & (summary["label"] == "SimCLR")
        & (summary["task"] == "AD vs CTL")
        & (summary["n_target"] == 16)
    ].iloc[0]
    draws = linear[
        (linear["label"] == "SimCLR") & (linear["task"] == "AD vs CTL") & (linear["n_target"] == 16)
    ]
    assert row["auc_mean"] == pytest.approx(draws["auc"].mean())
    assert row["auc_sd"] == pytest.approx(draws["auc"].std())
    markdown = (run / "results/tables/summary.md").read_text()
    assert "Age and site probes" in markdown
    # One seed: every spread is undefined, and shows as a blank cell, never "nan".
    cells = [cell.strip() for line in markdown.splitlines() for cell in line.split("|")]
    assert "nan" not in cells


def test_paired_differences_are_taken_draw_by_draw_from_the_tidy_tables(run):
    """comparisons.csv: each label minus the baselines (default: scratch, then SimCLR), on
    the same draws; a row recomputed here from linear_probe.csv."""
    comparisons = pd.read_csv(run / "results/tables/comparisons.csv")
    linear = pd.read_csv(run / "results/tables/linear_probe.csv")

    def draws(label):
        rows = linear[
            (linear["label"] == label)
            & (linear["task"] == "SCZ vs CTL")
            & (linear["n_target"] == 10)
        ]
        return rows.set_index("repeat")["auc"]

    row = comparisons[
        (comparisons["evaluation"] == "linear probe")
        & (comparisons["label"] == "y-Aware (sigma=5)")
        & (comparisons["task"] == "SCZ vs CTL")
        & (comparisons["n_target"] == 10)
    ].iloc[0]
    diff = draws("y-Aware (sigma=5)") - draws("SimCLR")
    assert row["baseline"] == "SimCLR"
    assert (row["n_pairs"], row["n_seeds"]) == (2, 1)
    assert row["diff_mean"] == pytest.approx(diff.mean())
    assert row["p_better"] == pytest.approx(((diff > 0) + 0.5 * (diff == 0)).mean())
    assert np.isnan(row["ci_low"])  # one pretraining seed: no interval
    # Every label of the linear probe but the baseline, on every task and N_target.
    probed = comparisons[comparisons["evaluation"] == "linear probe"]
    assert len(probed) == (linear["label"].nunique() - 1) * 2 * 2
    tuned = comparisons[comparisons["evaluation"] == "fine-tuning"]
    pairs = set(zip(tuned["label"], tuned["baseline"], strict=True))
    assert ("fine-tuned SimCLR", "Fully supervised") in pairs
    assert ("Fully supervised", "fine-tuned SimCLR") not in pairs
    markdown = (run / "results/tables/summary.md").read_text()
    assert "## Paired differences against the baselines" in markdown
    row = r"\| fine-tuning +\| adni +\| AD vs CTL +\| +10 \| fine-tuned SimCLR +\|"
    assert re.search(row, markdown)


def test_the_summary_states_the_pretraining_setup_that_made_it(run):
    """A reader of summary.md must know which run made it, the y-Aware kernel and the
    temperature included: before, a run with another kernel wrote the same note."""
    markdown = (run / "results/tables/summary.md").read_text()
    assert (
        "Pretraining: tinycnn, cutout, 2 epochs, seeds [0], temperature 0.1, "
        "y-Aware: gaussian kernel on age;" in markdown
    )


def test_figures_are_non_empty_pngs(run):
    for name in ("fig1_auc_vs_n_target", "fig2_umap", "fig3_sigma", "fig4_age_mae_by_epoch"):
        data = (run / f"results/figures/{name}.png").read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 10_000, name
    for model in MODELS[:4]:
        assert (run / f"results/pretrain/{model}/loss.png").stat().st_size > 5_000
        metrics = pd.read_csv(run / f"results/pretrain/{model}/metrics.csv")
        assert len(metrics) == 2 and metrics["val_age_mae"].between(0, 80).all()  # Figure 4's
        assert list((run / f"results/pretrain/{model}").glob("events.out.tfevents.*"))


def test_report_gathers_the_figures(run):
    done = snakemake(run, "--report", "results/report.html")
    assert done.returncode == 0, done.stderr[-2000:]
    html = (run / "results/report.html").read_text(errors="replace")
    assert "fig1_auc_vs_n_target.png" in html and "summary.csv" in html


def _plan_with(run, tmp_path, override: dict, *extra: str) -> dict[str, int]:
    path = tmp_path / "override.yaml"
    path.write_text(yaml.safe_dump(override))
    return planned_jobs(run, "--configfile", str(path), *extra)


def test_adding_a_sigma_adds_only_its_experiment(run, tmp_path):
    assert planned_jobs(run) == {}
    plan = _plan_with(
        run, tmp_path, {"pretraining": {"methods": {"simclr": {}, "yaware": {"sigma": [5.0, 8.0]}}}}
    )
    assert plan["pretrain"] == 1 and plan["age_site_probe"] == 1
    # the new encoder on each cohort (features), on each task (probes, fine-tuning)
    assert plan["features"] == 3 and plan["linear_probe"] == 2 and plan["finetune"] == 2
    assert {"qc_metrics", "qc", "convert", "split", "synth_cohort", "pca_fit"}.isdisjoint(plan)


YAWARE, SIMCLR = "yaware-sigma5_cutout_tinycnn_seed0", "simclr_cutout_tinycnn_seed0"
AGE, GENESIS = "age_supervision_cutout_tinycnn_seed0", "model_genesis_none_tinycnn_seed0"


@pytest.mark.parametrize(
    ("setting", "retrained"),
    [
        ({"kernel": "cauchy"}, {YAWARE}),
        ({"temperature": 0.2}, {YAWARE, SIMCLR}),
        ({"label": "age_at_scan"}, {YAWARE, AGE}),
        ({"lr": 2.0e-3}, {YAWARE, SIMCLR, AGE, GENESIS}),
        # New experiments, by name; Model Genesis augments nothing and stays as it was.
        (
            {"augmentation": "all_tf"},
            {name.replace("cutout", "all_tf") for name in (YAWARE, SIMCLR, AGE)},
        ),
    ],
)
def test_a_pretraining_setting_retrains_only_the_methods_that_read_it(
    run, tmp_path, setting, retrained
):
    """y-Aware reads the kernel; SimCLR's NT-Xent reads the temperature and neither the
    kernel nor the label; Age supervision reads the label; Model Genesis none of the three,
    nor the augmentation. Before, any of them retrained all four encoders."""
    done = snakemake(run, "-n", "--configfile", str(_override(tmp_path, setting)))
    assert done.returncode == 0, done.stderr[-3000:]
    assert set(re.findall(r"output: results/pretrain/([^/]+)/best\.pt", done.stdout)) == retrained


def test_a_pretraining_rerun_for_changed_data_trains_anew(run, tmp_path):
    """Snakemake reruns a finished pretraining when its data change (here a new
    validation fraction moves scans between the splits). The job must train on the new
    split: its weights are then those of the same job run in an empty folder. Before, it
    resumed the finished last.pt it had left, trained no step, and published the old
    weights as the new result."""
    override = tmp_path / "override.yaml"
    override.write_text(yaml.safe_dump({"splits": {"val_fraction": 0.3}}))
    target = f"results/pretrain/{YAWARE}/best.pt"
    rerun, fresh = tmp_path / "rerun", tmp_path / "fresh"
    for work in (rerun, fresh):
        shutil.copytree(run, work)
    shutil.rmtree(fresh / "results" / "pretrain" / YAWARE)
    for work in (rerun, fresh):
        done = snakemake(work, target, "--cores", "2", "--configfile", str(override))
        assert done.returncode == 0, done.stderr[-3000:]
    old = read_checkpoint(run / target)["model"]
    new = read_checkpoint(rerun / target)["model"]
    reference = read_checkpoint(fresh / target)["model"]
    assert not torch.equal(old["features.conv0.weight"], new["features.conv0.weight"])
    for key, value in reference.items():
        assert torch.equal(value, new[key]), key
    log = (rerun / "results" / "logs" / "pretrain" / f"{YAWARE}.log").read_text()
    assert "starting over" in log


def _override(tmp_path, pretraining: dict):
    path = tmp_path / "override.yaml"
    path.write_text(yaml.safe_dump({"pretraining": pretraining}))
    return path


def test_a_probe_setting_reruns_probes_and_figures_only(run, tmp_path):
    plan = _plan_with(run, tmp_path, {"probes": {"inner_folds": 3}})
    # The age and site probes read no probe setting.
    assert set(plan) == {"linear_probe", "tables", "figure_auc", "figure_sigma", "all"}
    assert plan["linear_probe"] == len(MODELS) * 2


def test_adding_a_cohort_adds_its_own_jobs_and_redoes_none_for_the_others(run, tmp_path):
    """A new evaluation cohort needs each model's features of it, each model's probe and
    fine-tuning on its task, and new tables. Before, one features job per model wrote every
    cohort's features, and one probe job per model probed every task: a new cohort re-ran
    every model over every cohort (hours on BHB-10K) and every probe."""
    cohorts = dict(TINY["synthetic"]["cohorts"])
    cohorts["bd"] = cohorts["scz"] | {"diagnosis": "bipolar"}
    plan = _plan_with(run, tmp_path, {"synthetic": {"cohorts": cohorts}})
    neural = [m for m in MODELS if m != "pca"]
    for rule in ("synth_cohort", "qc_metrics", "qc", "convert", "split", "draws"):
        assert plan[rule] == 1, rule
    assert plan["features"] == len(neural) and plan["pca_features"] == 1
    assert plan["linear_probe"] == len(MODELS)
    # (4 pretrained + 2 external + scratch) on the new task
    assert plan["finetune"] == 7
    assert {"pretrain", "pca_fit", "age_site_probe"}.isdisjoint(plan)


def test_a_new_n_target_adds_its_draws_and_jobs_and_retrains_no_encoder(run, tmp_path):
    """N_target is the paper's x axis. Before, the draws were made by the split job, whose
    split the pretraining reads: a new N_target remade every split and so retrained every
    encoder, refitted the PCA and reran every fine-tuning."""
    plan = _plan_with(
        run, tmp_path, {"splits": {"n_target": [10, 12, 16]}, "fine_tuning": {"n_target": [10, 12]}}
    )
    assert {"split", "pretrain", "features", "pca_fit", "shared_scans"}.isdisjoint(plan)
    assert {"pca_features", "age_site_probe"}.isdisjoint(plan)
    assert plan["draws"] == 2 and plan["linear_probe"] == len(MODELS) * 2
    done = list((run / "results/finetune").glob("*/*/n10_r0/test_metrics.json"))
    assert plan["finetune"] == len(done)  # the same starts at N_target 12 only


def test_each_fine_tuning_trains_on_the_draw_the_probes_use(run):
    """A fine-tuning job makes its draw itself (so that new draws rerun none of it), with
    the function the draws job uses: the rows must be the same."""
    jobs = sorted((run / "results/finetune").glob("*/*/n*_r*/train_rows.tsv"))
    assert jobs
    for rows in jobs:
        cohort, job = rows.parent.parent.name, rows.parent.name
        n_target, repeat = (int(part[1:]) for part in job.split("_"))
        draws = pd.read_csv(run / f"results/splits/{cohort}/draws.tsv", sep="\t", dtype=str)
        draw = draws[(draws["n_target"] == str(n_target)) & (draws["repeat"] == str(repeat))]
        trained = pd.read_csv(rows, sep="\t", dtype=str)
        assert len(trained) == n_target
        key = ["participant_id", "session"]
        assert trained[key].values.tolist() == draw[key].values.tolist(), rows


def test_speed_settings_and_the_choice_of_fine_tuning_jobs_rerun_no_job_done(run, tmp_path):
    """Threads, loader workers, torch.compile, gradient checkpointing and the feature
    batch size set a job's speed or memory, and fine_tuning's n_target, repeats and seeds
    choose which jobs there are: before, a change to any of them was a change of every
    job's params, and adding an N_target to fine-tuning, or more threads on a cluster,
    reran every job."""
    speed = {section: {"threads": 1} for section in ("qc", "conversion", "features")}
    speed["pretraining"] = {"threads": 1, "num_workers": 2, "compile": True}
    speed["pretraining"] |= {"memory_efficient": True}
    speed["features"] |= {"batch_size": 4}
    fine_tuning = {"threads": 1, "n_target": [10, 16], "seeds": [0]}
    plan = _plan_with(run, tmp_path, speed | {"fine_tuning": fine_tuning})
    assert set(plan) == {"finetune", "tables", "figure_auc", "figure_sigma", "all"}
    done = list((run / "results/finetune").glob("*/*/n10_r0/test_metrics.json"))
    assert done and plan["finetune"] == len(done)  # the same jobs at N_target 16 only


COLLECTIONS = {("synthetic", "cohorts"), ("pretraining", "methods"), ("external_models",)}


def _keys_reversed(value, path=()):
    """The config with every setting's keys in reverse order; cohorts, methods and models
    (whose order the tables and figures show) as they were."""
    if not isinstance(value, dict):
        return value
    keys = list(value) if path in COLLECTIONS else list(reversed(value))
    return {key: _keys_reversed(value[key], (*path, key)) for key in keys}


def test_the_same_config_with_its_keys_reordered_retrains_nothing(run, tmp_path):
    """Snakemake records a rule's params by their repr, which follows the order of a
    dict's keys: a config rewritten by a tool that sorts keys, or with a default spelled
    out, reran every job from the simulation on. Now only the tables and figures, which
    print the config, are redrawn."""
    work = tmp_path / "work"
    shutil.copytree(run, work)
    config = yaml.safe_load((work / "config/config.yaml").read_text())
    reordered = _keys_reversed(config)
    assert list(reordered["pretraining"]) != list(config["pretraining"])
    (work / "config/config.yaml").write_text(yaml.safe_dump(reordered, sort_keys=False))
    assert set(planned_jobs(work)) <= {"tables", "figure_auc", "figure_sigma", "all"}


def test_fine_tuning_off_still_gives_the_tables_and_figures(run, tmp_path):
    """fine_tuning.enabled: false leaves finetune.csv with its header only; the summary and
    figures come from the probes (before: the tables job stopped on the empty frame)."""
    work = tmp_path / "work"
    shutil.copytree(run, work, ignore=shutil.ignore_patterns("finetune", ".snakemake"))
    override = tmp_path / "override.yaml"
    override.write_text(yaml.safe_dump({"fine_tuning": {"enabled": False}}))
    done = snakemake(
        work,
        "--cores",
        "2",
        "--configfile",
        str(override),
        "--forcerun",
        "tables",
        "figure_auc",
        "figure_sigma",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    finetune = pd.read_csv(work / "results/tables/finetune.csv")
    assert finetune.empty and "auc" in finetune.columns
    summary = pd.read_csv(work / "results/tables/summary.csv")
    assert set(summary["evaluation"]) == {"linear probe"}
    assert len(summary) == len(
        pd.read_csv(run / "results/tables/summary.csv").query("evaluation == 'linear probe'")
    )
    for name in ("fig1_auc_vs_n_target", "fig3_sigma"):
        assert (work / f"results/figures/{name}.png").stat().st_mtime > (
            run / f"results/figures/{name}.png"
        ).stat().st_mtime


def _run_with_cohorts(run, work, cohorts: dict) -> None:
    """``run``'s workdir copied to ``work``, its config given ``cohorts``, run once."""
    shutil.copytree(run, work)
    config = yaml.safe_load((work / "config" / "config.yaml").read_text())
    config["synthetic"]["cohorts"] = cohorts
    make_workdir(work, config)
    done = snakemake(work, "--cores", "2")
    assert done.returncode == 0, done.stderr[-4000:]


def _panels_of(figure: Path, inches_per_panel: float, extra: int = 0) -> float:
    """How many panels a figure was drawn with, from its width in pixels (110 dpi)."""
    return mpimg.imread(figure).shape[1] / (inches_per_panel * 110) - extra


def test_dropping_a_cohort_leaves_no_table_or_figure_holding_it_after_one_run(run, tmp_path):
    """Dropping a cohort reruns the leak check, which then writes the same file. Snakemake
    marks every job below a job it reruns without asking their own reasons, and took an
    ancient input as no reason: the tables and figures kept the dropped cohort until a
    second run. One run must leave them true to the config."""
    cohorts = {k: v for k, v in TINY["synthetic"]["cohorts"].items() if k != "scz"}
    work = tmp_path / "work"
    _run_with_cohorts(run, work, cohorts)
    tables = work / "results" / "tables"
    for name in ("linear_probe", "finetune", "summary", "comparisons"):
        table = pd.read_csv(tables / f"{name}.csv")
        assert set(table["cohort"]) == {"adni"}, name
        assert set(table["task"]) == {"AD vs CTL"}, name
    assert "SCZ" not in (tables / "summary.md").read_text()
    figures = work / "results" / "figures"
    assert _panels_of(figures / "fig1_auc_vs_n_target.png", 4.6) == pytest.approx(1)
    assert _panels_of(figures / "fig3_sigma.png", 4.0, extra=1) == pytest.approx(1)
    assert planned_jobs(work) == {}


def test_two_cohorts_of_one_task_are_tabled_compared_and_drawn_apart(run, tmp_path):
    """Two AD cohorts (as ADNI and OASIS): the tables job stopped on 'labels must be
    unique'. Each cohort keeps its own rows, comparisons and figure panel."""
    cohorts = dict(TINY["synthetic"]["cohorts"])
    cohorts["oasis"] = cohorts["adni"] | {"n_subjects": 40, "age_mean": 72}
    work = tmp_path / "work"
    _run_with_cohorts(run, work, cohorts)
    tables = work / "results" / "tables"
    ad = {("adni", "AD vs CTL"), ("oasis", "AD vs CTL")}
    for name in ("linear_probe", "finetune", "summary", "comparisons"):
        table = pd.read_csv(tables / f"{name}.csv")
        pairs = set(zip(table["cohort"], table["task"], strict=True))
        assert pairs == ad | {("scz", "SCZ vs CTL")}, name
    comparisons = pd.read_csv(tables / "comparisons.csv")
    keys = ["evaluation", "cohort", "n_target", "label", "baseline"]
    assert not comparisons.duplicated(keys).any()
    adni, oasis = (comparisons[comparisons["cohort"] == c] for c in ("adni", "oasis"))
    assert len(adni) == len(oasis) > 0
    figure = work / "results" / "figures" / "fig1_auc_vs_n_target.png"
    assert _panels_of(figure, 4.6) == pytest.approx(3)


def test_control_cohorts_are_simulated_tabled_drawn_and_stated_in_the_summary(run, tmp_path):
    """The positive control (accelerated ageing alone, 10 years) and the negative control
    (AD's regional pattern alone): their ground truth in truth.tsv, their tasks marked in
    every table and panel, and the summary's statement of each."""
    cohorts = dict(TINY["synthetic"]["cohorts"])
    cohorts["ageing"] = cohorts["adni"] | {"diagnosis": "accelerated_ageing", "n_subjects": 40}
    cohorts["regional"] = cohorts["adni"] | {"diagnosis": "regional_atrophy", "n_subjects": 42}
    work = tmp_path / "work"
    _run_with_cohorts(run, work, cohorts)
    for cohort, gap in (("ageing", 10.0), ("regional", 0.0)):
        folder = work / "results" / "synth" / cohort
        truth = pd.read_csv(folder / "truth.tsv", sep="\t").merge(
            pd.read_csv(folder / "participants.tsv", sep="\t"), on=["participant_id", "session"]
        )
        patients = truth["diagnosis"] != "control"
        assert patients.any() and (~patients).any()
        aged = truth["brain_age"] - truth["age"]
        np.testing.assert_allclose(aged[patients], gap)
        np.testing.assert_allclose(aged[~patients], 0.0)
    linear = pd.read_csv(work / "results" / "tables" / "linear_probe.csv")
    tasks = dict(zip(linear["cohort"], linear["task"], strict=False))
    assert tasks["ageing"] == "AGEING vs CTL (positive control)"
    assert tasks["regional"] == "REGIONAL vs CTL (negative control)"
    summary = (work / "results" / "tables" / "summary.md").read_text()
    section = summary.split("## Controls with known ground truth")[1].split("## ")[0]
    assert "**ageing**, positive control: its patients differ by accelerated ageing alone" in (
        section
    )
    assert "y-Aware (sigma=5) minus SimCLR: " in section
    assert "Shown by" in section or "**Not shown: the representations do not carry" in section
    assert "**regional**, negative control" in section
    figure = work / "results" / "figures" / "fig1_auc_vs_n_target.png"
    assert _panels_of(figure, 4.6) == pytest.approx(4)


def _edited_repo(tmp_path, module: str) -> Path:
    """A copy of the workflow with ``yaware/<module>`` edited; its Snakefile."""
    copy = tmp_path / "repo"
    copy.mkdir()
    shutil.copy(REPO / "Snakefile", copy / "Snakefile")
    for part in ("rules", "workflow_scripts", "config", "report", "envs", "yaware"):
        shutil.copytree(REPO / part, copy / part, ignore=shutil.ignore_patterns("__pycache__"))
    with open(copy / "yaware" / module, "a") as handle:
        handle.write("\n# an edit\n")
    return copy / "Snakefile"


def _plan_after_editing(run, tmp_path, module: str) -> dict[str, int]:
    """The jobs a dry run plans after an edit of ``yaware/<module>`` in a copy of the repo."""
    snakefile = _edited_repo(tmp_path, module)
    return planned_jobs(run, "--rerun-triggers", "params", "input", "mtime", snakefile=snakefile)


def test_touch_keeps_a_finished_run_after_a_code_change(run, tmp_path):
    """docs/reruns.md's way to keep results after an update that changes none: `--touch`
    records the new code fingerprints, and nothing reruns."""
    work = tmp_path / "work"
    shutil.copytree(run, work)
    snakefile = _edited_repo(tmp_path, "data/participants.py")
    assert planned_jobs(work, snakefile=snakefile)["pretrain"] == 4
    done = snakemake(work, "--touch", "--cores", "1", snakefile=snakefile)
    assert done.returncode == 0, done.stderr[-2000:]
    assert planned_jobs(work, snakefile=snakefile) == {}


DATA_RULES = {"qc_metrics", "qc", "convert", "split", "synth_cohort"}


def test_editing_the_augmentations_reruns_training_not_the_data(run, tmp_path):
    plan = _plan_after_editing(run, tmp_path, "augment/policy.py")
    assert plan["pretrain"] == 4 and "finetune" in plan
    assert DATA_RULES.isdisjoint(plan)


def test_editing_a_module_imported_through_others_reruns_its_users(run, tmp_path):
    # The stem reaches pretraining only through models/__init__ -> tinycnn/densenet; a list
    # of modules kept by hand missed it.
    plan = _plan_after_editing(run, tmp_path, "models/stem.py")
    assert plan["pretrain"] == 4 and plan["features"] >= 4 and "finetune" in plan
    assert DATA_RULES.isdisjoint(plan)


def test_editing_the_array_reader_reruns_every_step_that_reads_arrays(run, tmp_path):
    plan = _plan_after_editing(run, tmp_path, "data/arrays.py")
    assert {"convert", "pretrain", "features", "pca_fit", "pca_features", "finetune"} <= set(plan)
    assert {"qc_metrics", "qc", "synth_cohort"}.isdisjoint(plan)


def test_editing_the_figures_reruns_the_figures_and_no_training(run, tmp_path):
    # The pretraining job drew its loss curve with yaware.evaluate.plots: any figure edit retrained
    # every encoder.
    plan = _plan_after_editing(run, tmp_path, "evaluate/plots.py")
    figures = ("figure_auc", "figure_umap", "figure_sigma", "figure_age_curve")
    assert plan == {**dict.fromkeys(figures, 1), "all": 1}


def test_editing_error_messages_reruns_nothing(run, tmp_path):
    assert _plan_after_editing(run, tmp_path, "errors.py") == {}


def test_the_evidence_config_plans_on_top_of_the_default(tmp_path):
    """``--configfile config/evidence.yaml`` over the default: y-Aware (sigma 5) and SimCLR
    only, one pretraining per seed (the methods set to null are left out), 300 or more
    test subjects per task, no fine-tuning."""
    default = yaml.safe_load((REPO / "config/config.yaml").read_text())
    evidence = yaml.safe_load((REPO / "config/evidence.yaml").read_text())
    seeds = evidence["pretraining"]["seeds"]
    workdir = make_workdir(tmp_path, default)
    plan = planned_jobs(workdir, "--configfile", str(REPO / "config/evidence.yaml"))
    assert len(seeds) >= 5 and plan["pretrain"] == 2 * len(seeds) and "finetune" not in plan
    tasks = 5  # three diseases, two controls
    assert plan["linear_probe"] == (2 * len(seeds) + 2) * tasks  # every encoder, two floors
    done = snakemake(workdir, "-n", "--configfile", str(REPO / "config/evidence.yaml"))
    experiments = set(re.findall(r"experiment=(\S+)", done.stdout))
    assert experiments == {
        f"{name}_cutout_tinycnn_seed{seed}"
        for name in ("simclr", "yaware-sigma5")
        for seed in seeds
    }
    for cohort in evidence["synthetic"]["cohorts"].values():  # QC leaves out about 3 %
        assert cohort["n_subjects"] * default["splits"]["test_fraction"] * 0.95 >= 300


def test_paper_config_plans_over_placeholder_tables(tmp_path):
    config = yaml.safe_load((REPO / "config/paper.yaml").read_text())
    for name, cohort in config["cohorts"].items():
        table = tmp_path / cohort["participants"]
        table.parent.mkdir(parents=True)
        rows = pd.DataFrame({"participant_id": [f"{name}1", f"{name}2"], "session": "1"})
        rows["age"] = 30.0
        if "task" in cohort:  # the config check reads the task's classes in the table
            task = cohort["task"]
            rows[task["label"]] = [task["positive"][0], task["negative"][0]]
        rows.to_csv(table, sep="\t", index=False)
        (tmp_path / cohort["cat12_root"] / f"sub-{name}1").mkdir(parents=True)
    workdir = make_workdir(tmp_path, config)
    plan = planned_jobs(workdir)
    assert plan["pretrain"] == 4 and plan["qc_metrics"] == plan["qc"] == 4
    assert plan["linear_probe"] == 6 * 3 and plan["age_site_probe"] == 6
    assert plan["features"] == 5 * 4 and plan["pca_features"] == 4  # every model, every cohort
    # (SimCLR, y-Aware, Age supervision, Model Genesis, scratch) x 3 tasks x 3 N_target x 5 draws
    assert plan["finetune"] == 5 * 3 * 3 * 5
