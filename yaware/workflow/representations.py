"""The models a plan evaluates: every probed representation (pretrained experiments,
external checkpoints, the floors) and every fine-tuning start, as the tables name them."""

from yaware.workflow.experiments import PCA_NAME, SCRATCH_NAME, Experiment, random_encoder_name


def _model(name: str, label: str, method: str, sigma: float, seed: int, kind: str) -> dict:
    return {
        "model": name,
        "label": label,
        "method": method,
        "sigma": sigma,
        "seed": seed,
        "kind": kind,
    }


def probed_models(config: dict, planned: dict[str, Experiment], external: dict) -> dict[str, dict]:
    """Every representation that is probed: the pretrained experiments and the floors."""
    nan = float("nan")
    models = {
        name: _model(name, e.label, e.method, _sigma_value(e.sigma), e.seed, "pretrained")
        for name, e in planned.items()
    }
    for name, spec in external.items():
        models[name] = _model(name, spec["label"], "external", nan, 0, "external")
    pretraining = config["pretraining"]
    if config["features"]["random_encoder"]:
        name = random_encoder_name(pretraining)
        seed = pretraining["seeds"][0]
        models[name] = _model(name, "Random encoder", "random", nan, seed, "floor")
    if config["features"]["pca"]:
        models[PCA_NAME] = _model(PCA_NAME, "PCA of voxels", "pca", nan, 0, "floor")
    return models


def _sigma_value(sigma: float | str | None) -> float:
    """The tables' sigma: none (0) without a kernel, NaN for a rule (its value is the
    pretraining's, in the run's config.yaml)."""
    if isinstance(sigma, str):
        return float("nan")
    return sigma or 0.0


def finetune_starts(planned: dict[str, Experiment], external: dict) -> dict[str, dict]:
    """How the tables name each fine-tuning start (training from scratch included):
    method, sigma, pretraining seed and label."""
    inits = {
        name: {
            "method": e.method,
            "sigma": e.sigma,
            "seed": e.seed,
            "label": f"fine-tuned {e.label}",
        }
        for name, e in planned.items()
    }
    for name, spec in external.items():
        label = f"fine-tuned {spec['label']}"
        inits[name] = {"method": "external", "sigma": None, "seed": None, "label": label}
    inits[SCRATCH_NAME] = {
        "method": "scratch",
        "sigma": None,
        "seed": None,
        "label": "Fully supervised",
    }
    return inits


def check_external_labels(models: dict[str, dict], external: dict) -> None:
    """The tables, figures and paired differences tell models apart by label (a method's
    seeds share one, and are pooled): an external model's label, the user's to choose, must
    be no other model's."""
    for name in external:
        label = models[name]["label"]
        others = [o for o, spec in models.items() if o != name and spec["label"] == label]
        if others:
            raise ValueError(
                f"external_models.{name}: its label {label!r} is that of {others[0]!r} too, "
                "and the tables and figures would pool the two; give it another label"
            )
