"""Run configurations: dataclasses read from YAML and checked before any work starts.

Each error names the config file and the key, and says what to write instead: an unknown
key gets the closest known one ("did you mean"), a wrong type the expected one, a missing
input file its path.
"""

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from yaware.augment import POLICIES
from yaware.data.finite import check_finite_numbers
from yaware.errors import ConfigError
from yaware.losses import KERNEL_LOSSES
from yaware.losses.bandwidth import RULES as BANDWIDTH_RULES
from yaware.losses.kernels import check_kernel_spec
from yaware.losses.yaware_infonce import NORMALISATIONS
from yaware.models import ENCODERS
from yaware.run_folder import expand_path, folder_hint

LOSS_VARIANTS = tuple(KERNEL_LOSSES)
PRETRAIN_METHODS = (
    "yaware",
    "simclr",
    "age_supervision",
    "model_genesis",
    "threshold",
    "expw",
    "rank_n_contrast",
    "decoupled_uniformity",
)
# The methods whose loss weighs pairs by a kernel on the label (sigma required); decoupled
# uniformity's kernel prior is optional (sigma None: none).
KERNEL_METHODS = ("yaware", "threshold", "expw")
SCHEDULES = ("none", "cosine")
PRECISIONS = ("auto", "bf16", "fp32")
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class TrainingOptions:
    """Options shared by pretraining and fine-tuning."""

    out_dir: str = ""
    encoder: str = "densenet121"
    batch_size: int = 64
    epochs: int = 100
    lr: float = 1e-4
    weight_decay: float = 5e-5
    schedule: str = "none"
    warmup_epochs: int = 0
    seed: int = 0
    num_workers: int = 0
    device: str = "auto"
    precision: str = "auto"
    memory_efficient: bool = False
    augmentation: str = "all_tf"


@dataclass
class PretrainConfig(TrainingOptions):
    """``yaware pretrain``: contrastive pretraining of an encoder with its projection head.

    ``train_split`` / ``val_split`` optionally name tables (participant_id[, session]) that
    select rows of ``train_data``; without ``val_data`` the validation rows come from the
    training array too. Lists of arrays, tables and splits (one each per cohort) pool
    several cohorts into one training set (e.g. BHB-10K's 13 studies).
    """

    train_data: str | list[str] = ""
    train_table: str | list[str] = ""
    val_data: str | None = None
    val_table: str | None = None
    train_split: str | list[str] | None = None
    val_split: str | list[str] | None = None
    label: str | list[str] = "age"
    method: str = "yaware"
    sigma: float | list[float] | str | None = 5.0
    temperature: float = 0.1
    kernel: str | list[str] = "gaussian"
    normalisation: str = "row"
    loss_variant: str = "yaware"
    prior_lambda: float = 0.01
    sync_batchnorm: bool = False
    compile: bool = False


@dataclass
class FinetuneConfig(TrainingOptions):
    """``yaware finetune``: a classifier trained from pretrained encoder weights or scratch.

    ``label`` is the diagnosis column; rows whose value is in ``positive`` are class 1, in
    ``negative`` class 0, other rows are left out. Numeric 0/1 labels need neither.
    ``external_split`` names rows of the test array (else the training one) from sites held
    out whole; the kept model is scored on them too (``external_*`` in test_metrics.json).
    """

    train_data: str = ""
    train_table: str = ""
    val_data: str | None = None
    val_table: str | None = None
    test_data: str | None = None
    test_table: str | None = None
    train_split: str | None = None
    val_split: str | None = None
    test_split: str | None = None
    external_split: str | None = None
    label: str = "diagnosis"
    positive: list[str | float] = field(default_factory=list)
    negative: list[str | float] = field(default_factory=list)
    pretrained: str | None = None
    trust_checkpoint: bool = False
    class_weights: str = "balanced"
    batch_size: int = 8
    augmentation: str = "none"


C = TypeVar("C", bound=TrainingOptions)

# The keys that name files or folders: ``~`` and ``$VARIABLES`` in them are expanded.
PATH_KEYS = (
    "out_dir",
    "train_data",
    "train_table",
    "val_data",
    "val_table",
    "test_data",
    "test_table",
    "train_split",
    "val_split",
    "test_split",
    "external_split",
    "pretrained",
)


def _expanded(mapping: dict[str, Any]) -> dict[str, Any]:
    """``mapping`` with ``~`` and ``$VARIABLES`` expanded in every path it names."""

    def expand(value: Any) -> Any:
        if isinstance(value, str):
            return expand_path(value)
        if isinstance(value, list):
            return [expand(v) for v in value]
        return value

    return {key: expand(v) if key in PATH_KEYS else v for key, v in mapping.items()}


def _matches(value: Any, annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if origin is list:
        (item,) = typing.get_args(annotation)
        return isinstance(value, list) and all(_matches(v, item) for v in value)
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, annotation)


def _type_name(annotation: Any) -> str:
    return str(annotation).replace("typing.", "").replace("<class '", "").replace("'>", "")


def build_config(cls: type[C], mapping: dict[str, Any], source: str = "config") -> C:
    """Build and check a config dataclass from a mapping (e.g. a parsed YAML file)."""
    if not isinstance(mapping, dict):
        raise ConfigError(f"{source}: expected a mapping of keys to values")
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    for key, value in mapping.items():
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {known}"
            raise ConfigError(f"{source}: unknown key {key!r}{hint}")
        if not _matches(value, hints[key]):
            raise ConfigError(
                f"{source}: key {key!r} must be {_type_name(hints[key])}, got {value!r}"
            )
    check_finite_numbers(mapping, source)
    config = cls(**_expanded(mapping))
    _check_values(config, source)
    return config


def load_config(cls: type[C], path: str | Path) -> C:
    """Read a YAML config file and check it (see :func:`build_config`)."""
    path = Path(expand_path(str(path)))
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        mapping = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from err
    return build_config(cls, mapping, source=str(path))


def _choice(source: str, key: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ConfigError(f"{source}: {key} must be one of {list(choices)}, got {value!r}")


def _check_values(config: TrainingOptions, source: str) -> None:
    if not config.out_dir:
        raise ConfigError(f"{source}: out_dir is required (the folder for checkpoints)")
    for key in ("train_data", "train_table"):
        if not getattr(config, key):
            raise ConfigError(f"{source}: {key} is required")
    _choice(source, "encoder", config.encoder, tuple(ENCODERS))
    _choice(source, "schedule", config.schedule, SCHEDULES)
    _choice(source, "precision", config.precision, PRECISIONS)
    _choice(source, "device", config.device, DEVICES)
    _choice(source, "augmentation", config.augmentation, POLICIES)
    for key, low in (("epochs", 1), ("batch_size", 2), ("warmup_epochs", 0), ("num_workers", 0)):
        if getattr(config, key) < low:
            raise ConfigError(f"{source}: {key} must be >= {low}, got {getattr(config, key)}")
    if config.warmup_epochs and config.warmup_epochs >= config.epochs:
        raise ConfigError(
            f"{source}: warmup_epochs {config.warmup_epochs} >= epochs {config.epochs}: the "
            "learning rate would never reach lr (nor a cosine schedule decay); make "
            "warmup_epochs smaller than epochs"
        )
    for key in ("lr", "weight_decay"):
        if getattr(config, key) < 0 or (key == "lr" and config.lr == 0):
            raise ConfigError(f"{source}: {key} must be positive, got {getattr(config, key)}")
    if isinstance(config, PretrainConfig):
        _choice(source, "method", config.method, PRETRAIN_METHODS)
        _choice(source, "normalisation", config.normalisation, NORMALISATIONS)
        _choice(source, "loss_variant", config.loss_variant, LOSS_VARIANTS)
        if not config.temperature > 0:
            raise ConfigError(f"{source}: temperature must be > 0, got {config.temperature}")
        if config.method == "age_supervision" and not isinstance(config.label, str):
            raise ConfigError(f"{source}: age_supervision regresses one label; got {config.label}")
        if config.method in KERNEL_METHODS or (
            config.method == "decoupled_uniformity" and config.sigma is not None
        ):
            # A rule (scott, silverman) is checked here and resolved on the training labels.
            rule = isinstance(config.sigma, str)
            if rule and config.sigma not in BANDWIDTH_RULES:
                raise ConfigError(
                    f"{source}: sigma {config.sigma!r} is no bandwidth rule; give a number, "
                    f"one per label dimension, or one of {BANDWIDTH_RULES}"
                )
            try:
                check_kernel_spec(config.kernel, 1.0 if rule else config.sigma)
            except ConfigError as err:
                raise ConfigError(f"{source}: {err}") from None
    if isinstance(config, FinetuneConfig):
        _choice(source, "class_weights", config.class_weights, ("none", "balanced"))
        if bool(config.positive) != bool(config.negative):
            raise ConfigError(f"{source}: give both positive and negative label values, or neither")
    for key in ("train_data", "train_table", "val_data", "val_table", "train_split", "val_split"):
        _check_file(config, key, source)
    for key in ("test_data", "test_table", "test_split", "external_split", "pretrained"):
        _check_file(config, key, source)


def _check_file(config: TrainingOptions, key: str, source: str) -> None:
    value = getattr(config, key, None)
    for path in value if isinstance(value, list) else [value]:
        if path and Path(path).is_dir():
            raise ConfigError(f"{source}: {key} {path!r} is a folder; {folder_hint(path)}")
        if path and not Path(path).is_file():
            raise ConfigError(f"{source}: {key} {path!r} does not exist; check the path")


def as_list(value: str | list[str] | None, length: int | None = None) -> list:
    """A per-cohort list from a single value or a list (None repeated ``length`` times)."""
    if isinstance(value, list):
        return value
    return [value] * (length or 1)


def to_dict(config: TrainingOptions) -> dict[str, Any]:
    return dataclasses.asdict(config)
