# Config validation, the cohort table and input helpers. No torch import here: it would
# slow every DAG build.
import os
from pathlib import Path

from snakemake.utils import validate

from yaware.workflow.experiments import (
    PCA_NAME,
    SCRATCH_NAME,
    UNREAD_SETTINGS,
    experiments,
    random_encoder_name,
)
from yaware.workflow.fingerprint import code_fingerprint
from yaware.data.finite import check_finite_numbers
from yaware.data.grid import cat12_grid, check_fits_encoder
from yaware.workflow.rule_params import SPEED_ONLY, job_settings, order_free

validate(config, schema="../config/schema.yaml")
# An infinite QC threshold turns that check off; nothing else may be NaN or infinite.
check_finite_numbers(
    config, "config", infinite_ok=("qc.ncr_max", "qc.iqr_max", "qc.corr_mean_min")
)

PACKAGE = Path(workflow.basedir) / "yaware"
# The qc job's keys; the rest of the qc section sets how the metrics are measured.
QC_THRESHOLDS = ("ncr_max", "iqr_max", "corr_mean_min")

# The check that no held-out scan is a copy of a training one. The evaluation waits for it
# (``ancient``: adding a cohort reruns the check, not every probe and fine-tuning).
SHARED_SCANS = "results/checks/shared_scans.tsv"


def build_cohorts(config):
    """Every cohort by name: the synthetic ones (written by the workflow) and the real ones."""
    cohorts = {}
    for name, spec in config["synthetic"]["cohorts"].items():
        task = None
        if spec["role"] == "evaluate":
            task = {
                "label": "diagnosis",
                "positive": [spec["diagnosis"]],
                "negative": ["control"],
            }
        cohorts[name] = {
            "role": spec["role"],
            "participants": f"results/synth/{name}/participants.tsv",
            "cat12_root": f"results/synth/{name}/cat12",
            "voxel_mm": config["synthetic"]["voxel_mm"],
            "task": task,
            "synthetic": True,
        }
    for name, spec in config["cohorts"].items():
        # "~/data/..." as a shell would read it; Snakemake and Python take "~" literally.
        if ("cat12_root" in spec) == ("array" in spec):
            raise ValueError(
                f"cohorts.{name}: set one of cat12_root (a CAT12 derivatives folder) and "
                "array (a .npy of maps, one per row of the participants table)"
            )
        source = "array" if "array" in spec else "cat12_root"
        spec = {
            **spec,
            "participants": os.path.expanduser(spec["participants"]),
            source: os.path.expanduser(spec[source]),
        }
        if name in cohorts:
            raise ValueError(f"cohort {name!r} is both synthetic and real: rename one")
        if spec["role"] == "evaluate" and "task" not in spec:
            raise ValueError(
                f"cohorts.{name}: an evaluation cohort needs a task: {{label, positive, negative}}"
            )
        if not Path(spec["participants"]).is_file():
            raise ValueError(
                f"cohorts.{name}.participants: {spec['participants']} is not a file; point "
                "it at the cohort's participants table (participants.tsv)"
            )
        if source == "cat12_root" and not Path(spec["cat12_root"]).is_dir():
            raise ValueError(
                f"cohorts.{name}.cat12_root: {spec['cat12_root']} is not a folder; point it "
                "at the CAT12 derivatives, the folder that holds the sub-* folders"
            )
        if spec["role"] == "evaluate":
            check_task(name, spec)
        elif name in (config["pretraining"]["cohorts"] or [name]):
            check_pretraining_label(name, spec, config)
        if source == "array":
            check_array(name, spec)
        else:
            check_cat12_root(name, spec)
        cohorts[name] = {**spec, "task": spec.get("task"), "synthetic": False}
    if not cohorts:
        raise ValueError("no cohort: set synthetic.cohorts or cohorts in the config")
    return cohorts


def check_array(name, spec):
    """An array cohort's maps against its grid and its table, before any job: reads the
    array's header only."""
    from yaware.errors import DataError
    from yaware.data.participants import ID_COLUMN, missing_column, read_table
    from yaware.data.qc import open_map_array

    if not Path(spec["array"]).is_file():
        raise ValueError(
            f"cohorts.{name}.array: {spec['array']} is not a file; point it at the .npy of "
            "the cohort's maps"
        )
    try:
        table = read_table(spec["participants"])
    except DataError:
        table = None  # the table's own checks name what is wrong with it
    if table is not None and ID_COLUMN not in table.columns:
        # The original repository's metadata.csv has none; the splits group by subject.
        fix = (
            "add one, the subject of each map (the splits keep a subject's scans on one "
            "side; number the rows if each is a subject of its own)"
        )
        error = missing_column(table, ID_COLUMN, spec["participants"], fix)
        raise ValueError(f"cohorts.{name}.participants: {error}")
    rows = None if table is None else len(table)
    try:
        open_map_array(spec["array"], cat12_grid(spec["voxel_mm"]), rows)
    except DataError as err:
        raise ValueError(f"cohorts.{name}.array: {err}") from None


def check_cat12_root(name, spec):
    """A real cohort's CAT12 folder holds its subjects' folders, unless the table points
    at every map: a root set one level off (derivatives/ for derivatives/cat12/, or a
    subject's folder) would otherwise exclude every scan after QC read the table."""
    from yaware.data.cat12 import root_problem
    from yaware.errors import DataError
    from yaware.data.participants import read_table

    problem = root_problem(spec["cat12_root"])
    if not problem:
        return
    try:
        paths = read_table(spec["participants"]).get("path")
    except DataError:
        paths = None  # the table's own checks name what is wrong with it
    if (
        paths is None
        or paths.isna().any()
        or (paths.astype(str).str.strip() == "").any()
    ):
        raise ValueError(f"cohorts.{name}.cat12_root: {problem}")


def check_task(name, spec):
    """A real evaluation cohort's task against its table, before any job: a typo in the
    label or a class would otherwise surface at the split, after QC and the conversion.
    """
    from yaware.errors import DataError
    from yaware.data.labels import binary_labels
    from yaware.data.participants import read_table

    task = spec["task"]
    try:
        table = read_table(spec["participants"])
        binary_labels(
            table,
            task["label"],
            task["positive"],
            task["negative"],
            spec["participants"],
        )
    except DataError as err:
        raise ValueError(f"cohorts.{name}.task: {err}") from None


def check_pretraining_label(name, spec, config):
    """The kernel's label against a real pretraining cohort's table, before any job. QC
    excludes scans without `pretrain_label` (age by default); a `pretraining.label` other
    than it, absent or missing for some scans, would otherwise stop every pretraining job
    after QC and the conversion.
    """
    from yaware.errors import DataError
    from yaware.data.participants import check_label_column, missing_column, read_table

    label, required = config["pretraining"]["label"], config["pretrain_label"]
    source = f"cohorts.{name}.participants ({spec['participants']})"
    try:
        table = read_table(spec["participants"])
    except DataError as err:
        raise ValueError(f"cohorts.{name}.participants: {err}") from None
    if label not in table.columns:
        fix = "set pretraining.label to one of them"
        raise ValueError(str(missing_column(table, label, source, fix)))
    if label != required:
        try:
            check_label_column(table, label, source)
        except DataError as err:
            raise ValueError(
                f"{err} Or set pretrain_label: {label}, and QC excludes those scans with "
                "their reason."
            ) from None


COHORTS = build_cohorts(config)
SYNTHETIC = [name for name, spec in COHORTS.items() if spec["synthetic"]]


def pretrain_cohorts(config):
    """The pretraining cohorts, pooled into one training set."""
    candidates = [name for name, spec in COHORTS.items() if spec["role"] == "pretrain"]
    chosen = config["pretraining"]["cohorts"] or candidates
    unknown = sorted(set(chosen) - set(candidates))
    if unknown:
        raise ValueError(
            f"pretraining.cohorts: {unknown} are not pretraining cohorts {candidates}"
        )
    if not chosen:
        raise ValueError("no pretraining cohort: give one cohort the role pretrain")
    return chosen


def task_name(name):
    """The task of an evaluation cohort as figures show it, e.g. 'AD vs CTL'."""
    names = {
        "alzheimer": "AD",
        "schizophrenia": "SCZ",
        "bipolar": "BD",
        "control": "CTL",
    }
    task = COHORTS[name]["task"]

    def side(values):
        return "+".join(names.get(str(v), str(v)) for v in values)

    return f"{side(task['positive'])} vs {side(task['negative'])}"


PRETRAINING = config["pretraining"]
PRETRAIN_COHORTS = pretrain_cohorts(config)
EVALUATION_COHORTS = [
    name for name, spec in COHORTS.items() if spec["role"] == "evaluate"
]
FEATURE_COHORTS = [*PRETRAIN_COHORTS, *EVALUATION_COHORTS]


def check_held_out_cohorts(config):
    """Sites are held out of evaluation cohorts only; another name would be ignored."""
    unknown = sorted(set(config["splits"]["external_sites"]) - set(EVALUATION_COHORTS))
    if unknown:
        raise ValueError(
            f"splits.external_sites: {unknown} are not evaluation cohorts "
            f"{EVALUATION_COHORTS}; sites are held out of an evaluation cohort's splits"
        )


check_held_out_cohorts(config)
EXPERIMENTS = {e.name: e for e in experiments(PRETRAINING)}


def pretrain_settings(wildcards):
    """An experiment's pretraining settings, with what its method never reads (and the
    speed settings) out of the record: a new kernel retrains no SimCLR, Age supervision or
    Model Genesis encoder, a new temperature no Age supervision or Model Genesis one."""
    unread = UNREAD_SETTINGS[EXPERIMENTS[wildcards.experiment].method]
    return job_settings(
        PRETRAINING, leave_out=("methods", "seeds"), unrecorded=(*SPEED_ONLY, *unread)
    )


def external_models(config):
    """Checkpoints made elsewhere, by name; a name must not be one the workflow makes."""
    taken = {*EXPERIMENTS, PCA_NAME, SCRATCH_NAME, random_encoder_name(PRETRAINING)}
    external = {
        name: {**spec, "checkpoint": os.path.expanduser(spec["checkpoint"])}
        for name, spec in config["external_models"].items()
    }
    for name, spec in external.items():
        if name in taken:
            raise ValueError(
                f"external_models.{name}: the workflow already names a model {name!r}; "
                "choose another name"
            )
        # Checked here: Snakemake plans no job for a missing input that older results
        # stand in for, so a mistyped path would silently leave the model out.
        if not Path(spec["checkpoint"]).is_file():
            raise ValueError(
                f"external_models.{name}.checkpoint: {spec['checkpoint']} is not a file; "
                "point it at the checkpoint (a path relative to the working directory, or "
                "an absolute one)"
            )
    return {
        name: {
            "checkpoint": spec["checkpoint"],
            "encoder": spec.get("encoder"),
            "label": spec.get("label") or name,
            "trust": spec.get("trust", False),
        }
        for name, spec in external.items()
    }


EXTERNAL = external_models(config)
if not EXPERIMENTS and not EXTERNAL:
    raise ValueError(
        "pretraining.methods is empty and there are no external_models: no encoder to "
        "evaluate; name a method, or the checkpoint of one made elsewhere"
    )


def check_grid_fits_encoders(config):
    """Stop before any job when the training grid is smaller than an encoder takes."""
    voxel_mm = config["conversion"]["voxel_mm"]
    encoders = {"pretraining.encoder": PRETRAINING["encoder"]}
    for name, spec in EXTERNAL.items():
        if spec["encoder"]:
            encoders[f"external_models.{name}.encoder"] = spec["encoder"]
    for key, encoder in encoders.items():
        source = f"conversion.voxel_mm {voxel_mm} (for {key})"
        check_fits_encoder(encoder, (1, *cat12_grid(voxel_mm).shape), source)


check_grid_fits_encoders(config)


def build_models():
    """Every representation that is probed: the pretrained experiments and the floors."""
    models = {
        name: {
            "model": name,
            "label": e.label,
            "method": e.method,
            "sigma": e.sigma or 0.0,
            "seed": e.seed,
            "kind": "pretrained",
        }
        for name, e in EXPERIMENTS.items()
    }
    for name, spec in EXTERNAL.items():
        models[name] = {
            "model": name,
            "label": spec["label"],
            "method": "external",
            "sigma": float("nan"),
            "seed": 0,
            "kind": "external",
        }
    if config["features"]["random_encoder"]:
        name = random_encoder_name(PRETRAINING)
        models[name] = {
            "model": name,
            "label": "Random encoder",
            "method": "random",
            "sigma": float("nan"),
            "seed": PRETRAINING["seeds"][0],
            "kind": "floor",
        }
    if config["features"]["pca"]:
        models[PCA_NAME] = {
            "model": PCA_NAME,
            "label": "PCA of voxels",
            "method": "pca",
            "sigma": float("nan"),
            "seed": 0,
            "kind": "floor",
        }
    return models


def check_external_labels(models):
    """The tables, figures and paired differences tell models apart by label (a method's
    seeds share one, and are pooled): an external model's label, the user's to choose, must
    be no other model's."""
    for name in EXTERNAL:
        label = models[name]["label"]
        others = [
            o for o, spec in models.items() if o != name and spec["label"] == label
        ]
        if others:
            raise ValueError(
                f"external_models.{name}: its label {label!r} is that of {others[0]!r} too, "
                "and the tables and figures would pool the two; give it another label"
            )


MODELS = build_models()
NEURAL_MODELS = [name for name in MODELS if name != PCA_NAME]


def finetune_jobs():
    settings = config["fine_tuning"]
    if not settings["enabled"] or not EVALUATION_COHORTS:
        return []
    repeats = min(
        settings["repeats"] or config["splits"]["repeats"], config["splits"]["repeats"]
    )
    drawn = {cohort: n_targets_of(cohort) for cohort in EVALUATION_COHORTS}
    # An N_target drawn for some cohorts only (a small cohort lacks the largest) is tuned
    # where it is drawn; one drawn for none is a mistake.
    undrawn = [
        n
        for n in settings["n_target"] or []
        if not any(n in ns for ns in drawn.values())
    ]
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
    jobs = []
    for cohort in EVALUATION_COHORTS:
        chosen = [
            n for n in settings["n_target"] or drawn[cohort] if n in drawn[cohort]
        ]
        inits = [n for n, e in EXPERIMENTS.items() if seeds is None or e.seed in seeds]
        for init in [*inits, *EXTERNAL, SCRATCH_NAME]:
            for n in chosen:
                jobs += [
                    f"results/finetune/{init}/{cohort}/n{n}_r{r}/test_metrics.json"
                    for r in range(repeats)
                ]
    return jobs


def n_targets_of(cohort):
    return COHORTS[cohort].get("n_target") or config["splits"]["n_target"]


def checkpoint_of(model):
    """The checkpoint a model's weights come from; None for the random encoder."""
    if model in EXPERIMENTS:
        return f"results/pretrain/{model}/best.pt"
    if model in EXTERNAL:
        return EXTERNAL[model]["checkpoint"]
    return None


def encoder_of(model):
    """The encoder to build for a model; None: the one its checkpoint records."""
    if model in EXTERNAL:
        return EXTERNAL[model]["encoder"]
    return PRETRAINING["encoder"]


def trusted(model):
    return model in EXTERNAL and EXTERNAL[model]["trust"]


def features_inputs(wildcards):
    inputs = {"data": f"results/data/{wildcards.cohort}/data.npy"}
    if checkpoint_of(wildcards.model):
        inputs["checkpoint"] = checkpoint_of(wildcards.model)
    return inputs


def finetune_inputs(wildcards):
    inputs = {
        "data": f"results/data/{wildcards.cohort}/data.npy",
        "participants": f"results/data/{wildcards.cohort}/participants.tsv",
        "split": f"results/splits/{wildcards.cohort}/split.tsv",
        "checked": ancient(SHARED_SCANS),
    }
    if checkpoint_of(wildcards.init):
        inputs["checkpoint"] = checkpoint_of(wildcards.init)
    return inputs


def finetune_inits():
    """How the tables name each fine-tuning start (training from scratch included):
    method, sigma, pretraining seed and label."""
    inits = {
        name: {
            "method": e.method,
            "sigma": e.sigma,
            "seed": e.seed,
            "label": f"fine-tuned {e.label}",
        }
        for name, e in EXPERIMENTS.items()
    }
    for name, spec in EXTERNAL.items():
        label = f"fine-tuned {spec['label']}"
        inits[name] = {
            "method": "external",
            "sigma": None,
            "seed": None,
            "label": label,
        }
    inits[SCRATCH_NAME] = {
        "method": "scratch",
        "sigma": None,
        "seed": None,
        "label": "Fully supervised",
    }
    return inits


# Training from scratch stands beside the probed models in the first figure.
check_external_labels({**MODELS, SCRATCH_NAME: finetune_inits()[SCRATCH_NAME]})


def code_version(script):
    """Fingerprint of the yaware modules workflow_scripts/<script>.py imports (transitively),
    used as a params value: editing that code reruns the rule and what follows (Snakemake does
    not track package edits itself)."""
    return code_fingerprint(
        Path(workflow.basedir) / "workflow_scripts" / f"{script}.py", PACKAGE
    )


def split_settings(wildcards):
    """The split settings that decide a cohort's split: a pretraining cohort's validation
    fold, an evaluation cohort's test fold and held-out sites. The draws' settings are the
    draws rule's, so that a new N_target retrains nothing."""
    splits = config["splits"]
    if COHORTS[wildcards.cohort]["role"] == "pretrain":
        return order_free({k: splits[k] for k in ("seed", "val_fraction", "age_bins")})
    values = {k: splits[k] for k in ("seed", "test_fraction", "age_bins")}
    values["external_sites"] = splits["external_sites"].get(wildcards.cohort, [])
    return order_free(values)


def draw_settings(wildcards):
    splits = config["splits"]
    values = {"seed": splits["seed"], "repeats": splits["repeats"]}
    return order_free(values | {"n_target": n_targets_of(wildcards.cohort)})


def brain_age_gap_of(wildcards):
    """The brain-age gap a synthetic cohort's scans read: its diagnosis's, none for healthy
    controls. Another disease's gap then resimulates no cohort without that disease (and
    so retrains nothing pretrained on healthy scans)."""
    diagnosis = config["synthetic"]["cohorts"][wildcards.synthetic].get("diagnosis")
    gaps = config["synthetic"]["brain_age_gap"]
    return order_free({diagnosis: gaps[diagnosis]} if diagnosis in gaps else {})


def cohort_keys(*keys):
    """A data stage's params: the keys of its cohort it reads. A cohort's task or own
    N_target list then reruns no QC or conversion, and its N_target list no split."""

    def picked(wildcards):
        spec = COHORTS[wildcards.cohort]
        return order_free({key: spec.get(key) for key in keys})

    return picked


def get_participants(wildcards):
    return COHORTS[wildcards.cohort]["participants"]


def get_array(wildcards):
    """An array cohort's maps; none for a CAT12 cohort, whose maps QC finds."""
    return COHORTS[wildcards.cohort].get("array") or []


def data_outputs():
    return [
        *expand(
            [
                "results/data/{cohort}/data.npy",
                "results/splits/{cohort}/split.tsv",
                "results/qc/{cohort}/qc.png",
            ],
            cohort=COHORTS,
        ),
        *expand("results/splits/{cohort}/draws.tsv", cohort=EVALUATION_COHORTS),
        SHARED_SCANS,
    ]


def evaluation_outputs():
    if not EVALUATION_COHORTS:
        return expand("results/probes/{model}/age_site.json", model=MODELS)
    figures = ["results/figures/fig1_auc_vs_n_target.png"]
    if {"yaware", "simclr"} & {e.method for e in EXPERIMENTS.values()}:
        figures.append(
            "results/figures/fig3_sigma.png"
        )  # AUC and age MAE against sigma
    if umap_models():
        figures.append("results/figures/fig2_umap.png")
    return [*figures, "results/tables/summary.md"]


def umap_models():
    """SimCLR and the first y-Aware experiment of the first seed, when both are run."""
    first = {}
    for name, e in EXPERIMENTS.items():
        first.setdefault(e.method, name)
    return (
        [first[m] for m in ("simclr", "yaware") if m in first]
        if {"simclr", "yaware"} <= set(first)
        else []
    )


def umap_cohort():
    """The cohort of Figure 2: configured, else the AD cohort, else the first evaluation one."""
    chosen = config["figures"]["umap_cohort"]
    if chosen:
        if chosen not in EVALUATION_COHORTS:
            raise ValueError(
                f"figures.umap_cohort: {chosen!r} is not among {EVALUATION_COHORTS}"
            )
        return chosen
    ad = [
        c
        for c in EVALUATION_COHORTS
        if "alzheimer" in map(str, COHORTS[c]["task"]["positive"])
    ]
    return (ad or EVALUATION_COHORTS or [None])[0]


def umap_inputs(wildcards):
    cohort = umap_cohort()
    return {
        "features": [
            f"results/features/{model}/{cohort}.npy" for model in umap_models()
        ],
        "participants": f"results/data/{cohort}/participants.tsv",
    }


def get_final_output():
    return [*data_outputs(), *evaluation_outputs()]
