"""yaware.workflow.plan without Snakemake: what a config plans, checked against the config's
own arithmetic and against Snakemake's dry run of the same config."""

import copy
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

from yaware.workflow.plan import plan

REPO = Path(__file__).resolve().parents[2]


def _config(**changes) -> dict:
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node = config
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    validate(config, str(REPO / "config" / "schema.yaml"))
    return config


def test_the_default_plan_follows_from_the_config():
    config = _config()
    planned = plan(config)
    methods = config["pretraining"]["methods"]
    per_seed = sum(len((m or {}).get("sigma") or [None]) for m in methods.values())
    seeds = config["pretraining"]["seeds"]
    assert len(planned.experiments) == per_seed * len(seeds)
    evaluation = [n for n, c in config["synthetic"]["cohorts"].items() if c["role"] == "evaluate"]
    assert planned.evaluation_cohorts == evaluation
    assert planned.pretrain_cohorts == ["bhb"]
    # The floors beside the experiments.
    assert len(planned.models) == len(planned.experiments) + 2
    assert {m["kind"] for m in planned.models.values()} == {"pretrained", "floor"}
    tuning = config["fine_tuning"]
    starts = per_seed * len(tuning["seeds"]) + 1  # and training from scratch
    expected = len(evaluation) * starts * len(tuning["n_target"]) * tuning["repeats"]
    assert len(planned.finetune_jobs) == expected
    assert planned.task_name("adni") == "AD vs CTL"
    assert planned.umap_cohort == "adni"
    assert "results/tables/summary.md" in planned.final_targets()


def test_the_plan_is_what_snakemake_runs():
    """Snakemake's dry run of the default config plans, rule by rule, the jobs the plan
    names: one pretraining per experiment, one features job per neural model and cohort,
    one fine-tuning per planned job."""
    planned = plan(_config())
    done = subprocess.run(
        [str(Path(sys.executable).with_name("snakemake")), "-n", "--forceall", "--cores", "1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", done.stdout, re.M))
    assert int(counts["pretrain"]) == len(planned.experiments)
    features = len(planned.neural_models) * len(planned.feature_cohorts)
    assert int(counts["features"]) == features
    assert int(counts["finetune"]) == len(planned.finetune_jobs)
    assert int(counts["linear_probe"]) == len(planned.models) * len(planned.evaluation_cohorts)


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"fine_tuning.n_target": [7]}, "fine_tuning.n_target"),
        ({"fine_tuning.seeds": [9]}, "fine_tuning.seeds"),
        ({"figures.umap_cohort": "nowhere"}, "figures.umap_cohort"),
        ({"splits.external_sites": {"bhb": ["1"]}}, "splits.external_sites"),
        ({"pretraining.cohorts": ["adni"]}, "pretraining.cohorts"),
        ({"pretraining.methods": {}}, "pretraining.methods"),
        ({"pretraining.warmup_epochs": 3, "pretraining.epochs": 3}, "pretraining.warmup_epochs"),
        (
            {"cohorts": {"x": {"role": "evaluate", "participants": "p.tsv", "cat12_root": "c"}}},
            "needs a task",
        ),
        (
            {"cohorts": {"bhb": {"role": "pretrain", "participants": "p", "cat12_root": "c"}}},
            "both synthetic and real",
        ),
    ],
)
def test_a_config_that_contradicts_itself_is_named(changes, named):
    config = _config(**copy.deepcopy(changes))
    with pytest.raises(ValueError, match=re.escape(named)):
        plan(config)


def test_planning_reads_no_file(tmp_path, monkeypatch):
    """A real cohort's paths need not exist to be planned (the file checks are
    yaware.workflow.checks'): the plan is pure."""
    monkeypatch.chdir(tmp_path)
    real = {"role": "evaluate", "participants": "~/t.tsv", "array": "~/m.npy"}
    real["task"] = {"label": "dx", "positive": ["AD"], "negative": ["CN"]}
    planned = plan(_config(**{"cohorts": {"oasis": real}}))
    assert planned.cohorts["oasis"]["array"] == str(Path("~/m.npy").expanduser())
    assert "oasis" in planned.evaluation_cohorts
    assert planned.task_name("oasis") == "AD vs CN"


def test_control_cohorts_are_named_marked_and_aged_by_their_own_gap():
    """A config whose brain_age_gap names the diseases only (as config/config.yaml's did)
    still ages the positive control by its gap; the negative control is not aged."""
    cohorts = _config()["synthetic"]["cohorts"] | {
        "ageing": {"role": "evaluate", "n_subjects": 40, "diagnosis": "accelerated_ageing"},
        "regional": {"role": "evaluate", "n_subjects": 40, "diagnosis": "regional_atrophy"},
    }
    planned = plan(
        _config(**{"synthetic.cohorts": cohorts, "synthetic.brain_age_gap": {"alzheimer": 10.0}})
    )
    assert planned.task_name("ageing") == "AGEING vs CTL (positive control)"
    assert planned.task_name("regional") == "REGIONAL vs CTL (negative control)"
    assert planned.control_of("adni") == "" and planned.task_name("adni") == "AD vs CTL"
    assert planned.brain_age_gap("ageing") == {"accelerated_ageing": 10.0}
    assert planned.brain_age_gap("regional") == {"regional_atrophy": 0.0}
    assert planned.brain_age_gap("adni") == {"alzheimer": 10.0}


def test_the_default_run_holds_both_controls():
    """The default config plans a positive and a negative control beside the disease
    tasks, each marked as such, with its recipe's brain-age gap."""
    config = _config()
    validate(config, str(REPO / "config" / "schema.yaml"))
    planned = plan(config)
    assert planned.evaluation_cohorts[-2:] == ["ageing_control", "regional_control"]
    assert [c for c in planned.evaluation_cohorts if planned.control_of(c)] == [
        "ageing_control",
        "regional_control",
    ]
    assert planned.task_name("ageing_control") == "AGEING vs CTL (positive control)"
    assert planned.task_name("regional_control") == "REGIONAL vs CTL (negative control)"
    assert planned.brain_age_gap("ageing_control") == {"accelerated_ageing": 10.0}
    assert planned.brain_age_gap("regional_control") == {"regional_atrophy": 0.0}
