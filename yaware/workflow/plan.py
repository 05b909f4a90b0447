"""The workflow's plan: every cohort, experiment, model and job a config asks for.

``plan(config)`` is pure (no Snakemake, no file read, no torch), so a test can check what a
config plans without running Snakemake; ``rules/common.smk`` builds one ``PLAN`` from the
validated config and reads everything from it. The checks that read files on disk are in
:mod:`yaware.workflow.checks`.
"""

import os
from dataclasses import dataclass
from functools import cached_property

from yaware.workflow.cohorts import OPENBHB_TABLE, cohorts_of
from yaware.workflow.experiments import (
    METHOD_SETTINGS,
    PCA_NAME,
    SCRATCH_NAME,
    UNREAD_SETTINGS,
    Experiment,
    experiments,
    random_encoder_name,
)
from yaware.workflow.representations import (
    check_external_labels,
    finetune_starts,
    probed_models,
)
from yaware.workflow.rule_params import SPEED_ONLY, JobSettings, job_settings, order_free

# The check that no held-out scan is a copy of a training one.
SHARED_SCANS = "results/checks/shared_scans.tsv"
# The qc job's keys; the rest of the qc section sets how the metrics are measured.
QC_THRESHOLDS = ("ncr_max", "iqr_max", "corr_mean_min")
TASK_ABBREVIATIONS = {
    "alzheimer": "AD",
    "schizophrenia": "SCZ",
    "bipolar": "BD",
    "control": "CTL",
    "accelerated_ageing": "AGEING",
    "regional_atrophy": "REGIONAL",
}
# The simulator's controls with known ground truth: which control each diagnosis is, and
# its brain-age gap where the config's synthetic.brain_age_gap does not name it.
CONTROLS = {"accelerated_ageing": "positive control", "regional_atrophy": "negative control"}
CONTROL_GAPS = {"accelerated_ageing": 10.0, "regional_atrophy": 0.0}


@dataclass(frozen=True)
class FinetuneJob:
    """One fine-tuning job: a start (a pretrained experiment, an external model or scratch)
    trained on one draw of one evaluation cohort."""

    init: str
    cohort: str
    n_target: int
    repeat: int

    @property
    def folder(self) -> str:
        return f"results/finetune/{self.init}/{self.cohort}/n{self.n_target}_r{self.repeat}"

    @property
    def metrics(self) -> str:
        return f"{self.folder}/test_metrics.json"


@dataclass(frozen=True)
class Plan:
    """What a config asks the workflow to make (see :func:`plan`)."""

    config: dict
    cohorts: dict[str, dict]
    pretrain_cohorts: list[str]
    evaluation_cohorts: list[str]
    experiments: dict[str, Experiment]
    external: dict[str, dict]
    models: dict[str, dict]
    finetune_inits: dict[str, dict]

    @cached_property
    def finetune_jobs(self) -> list[FinetuneJob]:
        """Every fine-tuning job: each start on each drawn N_target and repeat chosen."""
        return _finetune_jobs(self)

    @property
    def synthetic(self) -> list[str]:
        return [name for name, spec in self.cohorts.items() if spec["synthetic"]]

    @property
    def feature_cohorts(self) -> list[str]:
        return [*self.pretrain_cohorts, *self.evaluation_cohorts]

    @property
    def neural_models(self) -> list[str]:
        return [name for name in self.models if name != PCA_NAME]

    @property
    def quality_models(self) -> list[str]:
        """The models whose alignment and uniformity are measured (opt-in)."""
        return self.neural_models if self.config["representation_quality"]["enabled"] else []

    @property
    def floor_models(self) -> list[str]:
        """The representations no pretraining made (PCA of the voxels, random encoders)."""
        return [name for name, spec in self.models.items() if spec["kind"] == "floor"]

    @property
    def pretraining(self) -> dict:
        return self.config["pretraining"]

    def task_name(self, cohort: str) -> str:
        """The task of an evaluation cohort as figures show it, e.g. 'AD vs CTL'."""
        task = self.cohorts[cohort]["task"]

        def side(values: list) -> str:
            return "+".join(TASK_ABBREVIATIONS.get(str(v), str(v)) for v in values)

        name = f"{side(task['positive'])} vs {side(task['negative'])}"
        return f"{name} ({control})" if (control := self.control_of(cohort)) else name

    def control_of(self, cohort: str) -> str:
        """'positive control' or 'negative control' for a simulated control cohort, else ''."""
        return CONTROLS.get(str(self.cohorts[cohort].get("diagnosis")), "")

    def n_targets(self, cohort: str) -> list[int]:
        return self.cohorts[cohort].get("n_target") or self.config["splits"]["n_target"]

    def checkpoint_of(self, model: str) -> str | None:
        """The checkpoint a model's weights come from; None for the random encoder."""
        if model in self.experiments:
            return f"results/pretrain/{model}/best.pt"
        if model in self.external:
            return self.external[model]["checkpoint"]
        return None

    def encoder_of(self, model: str) -> str | None:
        """The encoder to build for a model; None: the one its checkpoint records."""
        if model in self.external:
            return self.external[model]["encoder"]
        return self.pretraining["encoder"]

    def trusted(self, model: str) -> bool:
        return model in self.external and self.external[model]["trust"]

    # Each job's params hold only what decides its outputs (yaware.workflow.rule_params).

    def pretrain_settings(self, experiment: str) -> JobSettings:
        """An experiment's pretraining settings, with what its method never reads (and the
        speed settings) out of the record: a new kernel retrains no SimCLR, Age supervision
        or Model Genesis encoder, a new temperature no Age supervision or Model Genesis one.
        """
        method = self.experiments[experiment].method
        options = self.pretraining["methods"][method]
        own = {key: options[key] for key in METHOD_SETTINGS if key in options}
        return job_settings(
            self.pretraining | own,
            leave_out=("methods", "seeds"),
            unrecorded=(*SPEED_ONLY, *UNREAD_SETTINGS[method]),
        )

    def split_settings(self, cohort: str) -> dict:
        """The split settings that decide a cohort's split: a pretraining cohort's
        validation fold, an evaluation cohort's test fold and held-out sites. The draws'
        settings are the draws rule's, so that a new N_target retrains nothing."""
        splits = self.config["splits"]
        if self.cohorts[cohort]["role"] == "pretrain":
            return order_free({k: splits[k] for k in ("seed", "val_fraction", "age_bins")})
        values = {k: splits[k] for k in ("seed", "test_fraction", "age_bins")}
        values["external_sites"] = splits["external_sites"].get(cohort, [])
        return order_free(values)

    def draw_settings(self, cohort: str) -> dict:
        splits = self.config["splits"]
        values = {"seed": splits["seed"], "repeats": splits["repeats"]}
        return order_free(values | {"n_target": self.n_targets(cohort)})

    def brain_age_gap(self, synthetic: str) -> dict:
        """The brain-age gap a synthetic cohort's scans read: its diagnosis's, none for
        healthy controls. Another disease's gap then resimulates no cohort without that
        disease (and so retrains nothing pretrained on healthy scans)."""
        diagnosis = self.config["synthetic"]["cohorts"][synthetic].get("diagnosis")
        gaps = CONTROL_GAPS | self.config["synthetic"]["brain_age_gap"]
        return order_free({diagnosis: gaps[diagnosis]} if diagnosis in gaps else {})

    def cohort_keys(self, cohort: str, keys: tuple[str, ...]) -> dict:
        """The keys of a cohort a data stage reads: a cohort's task or own N_target list
        then reruns no QC or conversion, and its N_target list no split."""
        spec = self.cohorts[cohort]
        return order_free({key: spec.get(key) for key in keys})

    @property
    def umap_models(self) -> list[str]:
        """SimCLR and the first y-Aware experiment of the first seed, when both are run."""
        first: dict[str, str] = {}
        for name, e in self.experiments.items():
            first.setdefault(e.method, name)
        if not {"simclr", "yaware"} <= set(first):
            return []
        return [first["simclr"], first["yaware"]]

    @property
    def umap_cohort(self) -> str | None:
        """Figure 2's cohort: configured, else the AD cohort, else the first evaluation one."""
        chosen = self.config["figures"]["umap_cohort"]
        if chosen:
            return chosen
        ad = [
            c
            for c in self.evaluation_cohorts
            if "alzheimer" in map(str, self.cohorts[c]["task"]["positive"])
        ]
        return (ad or self.evaluation_cohorts or [None])[0]

    def data_outputs(self) -> list[str]:
        per_cohort = [
            path
            for cohort in self.cohorts
            for path in (
                f"results/data/{cohort}/data.npy",
                f"results/splits/{cohort}/split.tsv",
                f"results/qc/{cohort}/qc.png",
            )
        ]
        draws = [f"results/splits/{c}/draws.tsv" for c in self.evaluation_cohorts]
        return [*per_cohort, *draws, SHARED_SCANS]

    def evaluation_outputs(self) -> list[str]:
        if not self.evaluation_cohorts:
            return [f"results/probes/{model}/age_site.json" for model in self.models]
        figures = ["results/figures/fig1_auc_vs_n_target.png"]
        if self.experiments:  # the validation age probe of each epoch
            figures.append("results/figures/fig4_age_mae_by_epoch.png")
        if {"yaware", "simclr"} & {e.method for e in self.experiments.values()}:
            figures.append("results/figures/fig3_sigma.png")  # AUC and age MAE against sigma
        if self.umap_models:
            figures.append("results/figures/fig2_umap.png")
        return [*figures, "results/tables/summary.md"]

    @property
    def openbhb_cohorts(self) -> list[str]:
        """The cohorts read from an OpenBHB copy."""
        return [c for c, spec in self.cohorts.items() if spec.get("openbhb_root")]

    @property
    def openbhb_scored(self) -> list[str]:
        """The OpenBHB cohorts pooled for pretraining: scored on their official tests."""
        return [c for c in self.openbhb_cohorts if c in self.pretrain_cohorts]

    @property
    def openbhb_tables(self) -> list[str]:
        return [OPENBHB_TABLE] if self.openbhb_scored else []

    def final_targets(self) -> list[str]:
        return [*self.data_outputs(), *self.evaluation_outputs(), *self.openbhb_tables]


def plan(config: dict) -> Plan:
    """The plan of a validated config (schema defaults filled in). Raises ValueError naming
    the key for a config that contradicts itself; reads no file."""
    cohorts = cohorts_of(config)
    pretrain_cohorts = _pretrain_cohorts(config, cohorts)
    evaluation = [name for name, spec in cohorts.items() if spec["role"] == "evaluate"]
    _check_held_out_cohorts(config, evaluation)
    pretraining = config["pretraining"]
    if 0 < pretraining["warmup_epochs"] >= pretraining["epochs"]:
        raise ValueError(
            f"pretraining.warmup_epochs {pretraining['warmup_epochs']} >= epochs "
            f"{pretraining['epochs']}: the learning rate would never reach lr; make "
            "warmup_epochs smaller than epochs"
        )
    planned = {e.name: e for e in experiments(pretraining)}
    external = _external_models(config, planned)
    if not planned and not external:
        raise ValueError(
            "pretraining.methods is empty and there are no external_models: no encoder to "
            "evaluate; name a method, or the checkpoint of one made elsewhere"
        )
    models = probed_models(config, planned, external)
    inits = finetune_starts(planned, external)
    # Training from scratch stands beside the probed models in the first figure.
    check_external_labels({**models, SCRATCH_NAME: inits[SCRATCH_NAME]}, external)
    chosen = config["figures"]["umap_cohort"]
    if chosen and chosen not in evaluation:
        raise ValueError(f"figures.umap_cohort: {chosen!r} is not among {evaluation}")
    result = Plan(config, cohorts, pretrain_cohorts, evaluation, planned, external, models, inits)
    result.finetune_jobs  # noqa: B018  (its settings' errors are named now, not at a rule)
    return result


def _pretrain_cohorts(config: dict, cohorts: dict[str, dict]) -> list[str]:
    """The pretraining cohorts, pooled into one training set."""
    candidates = [name for name, spec in cohorts.items() if spec["role"] == "pretrain"]
    chosen = config["pretraining"]["cohorts"] or candidates
    unknown = sorted(set(chosen) - set(candidates))
    if unknown:
        raise ValueError(f"pretraining.cohorts: {unknown} are not pretraining cohorts {candidates}")
    if not chosen:
        raise ValueError("no pretraining cohort: give one cohort the role pretrain")
    return chosen


def _check_held_out_cohorts(config: dict, evaluation: list[str]) -> None:
    """Sites are held out of evaluation cohorts only; another name would be ignored."""
    unknown = sorted(set(config["splits"]["external_sites"]) - set(evaluation))
    if unknown:
        raise ValueError(
            f"splits.external_sites: {unknown} are not evaluation cohorts "
            f"{evaluation}; sites are held out of an evaluation cohort's splits"
        )


def _external_models(config: dict, planned: dict[str, Experiment]) -> dict[str, dict]:
    """Checkpoints made elsewhere, by name; a name must not be one the workflow makes."""
    taken = {*planned, PCA_NAME, SCRATCH_NAME, random_encoder_name(config["pretraining"])}
    external = {}
    for name, spec in config["external_models"].items():
        if name in taken:
            raise ValueError(
                f"external_models.{name}: the workflow already names a model {name!r}; "
                "choose another name"
            )
        external[name] = {
            "checkpoint": os.path.expanduser(spec["checkpoint"]),
            "encoder": spec.get("encoder"),
            "label": spec.get("label") or name,
            "trust": spec.get("trust", False),
        }
    return external


def _finetune_jobs(plan: Plan) -> list[FinetuneJob]:
    config = plan.config
    settings = config["fine_tuning"]
    if not settings["enabled"] or not plan.evaluation_cohorts:
        return []
    repeats = min(settings["repeats"] or config["splits"]["repeats"], config["splits"]["repeats"])
    drawn = {cohort: plan.n_targets(cohort) for cohort in plan.evaluation_cohorts}
    # An N_target drawn for some cohorts only (a small cohort lacks the largest) is tuned
    # where it is drawn; one drawn for none is a mistake.
    undrawn = [n for n in settings["n_target"] or [] if not any(n in ns for ns in drawn.values())]
    if undrawn:
        raise ValueError(
            f"fine_tuning.n_target: {undrawn} are drawn for no evaluation cohort ({drawn}); "
            "fine-tuning trains on the splits' draws: add them to splits.n_target (or a "
            "cohort's n_target), or fine-tune at one of those"
        )
    seeds = settings["seeds"]
    unknown = sorted(set(seeds or []) - set(config["pretraining"]["seeds"]))
    if unknown:
        raise ValueError(
            f"fine_tuning.seeds: {unknown} are not among pretraining.seeds "
            f"{config['pretraining']['seeds']}; fine-tuning starts from those encoders"
        )
    inits = [n for n, e in plan.experiments.items() if seeds is None or e.seed in seeds]
    return [
        FinetuneJob(init, cohort, n, r)
        for cohort in plan.evaluation_cohorts
        for init in [*inits, *plan.external, SCRATCH_NAME]
        for n in [n for n in settings["n_target"] or drawn[cohort] if n in drawn[cohort]]
        for r in range(repeats)
    ]
