"""The weights inside a checkpoint, whoever wrote it, and loading them into an encoder.

A bare state dict, or one under ``model``, ``state_dict`` (PyTorch Lightning) or any other
one key (``model_state_dict``, PyTorch's tutorial checkpoint), is found, without the
``module.`` prefixes of DataParallel/DDP or ``_orig_mod.`` of ``torch.compile``; an encoder
nested in a larger module (``encoder.features.*``, ``model.backbone.features.*``) is found
by its ``features.*`` keys. MONAI's DenseNet names each dense layer's modules
``denselayerN.layers.norm1`` (its ``Sequential``); they are read as the original's
``denselayerN.norm1``. A ResNet saved without ``features.`` (MedicalNet's files: ``conv1``,
``bn1``, ``layer1``-``layer4``) has its trunk read under it. A checkpoint that records no
encoder is recognised from its layer names (:mod:`yaware.models.recognise`).
"""

import logging
import re
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from yaware.errors import CheckpointError
from yaware.models.checkpoint import WRAPPER_PREFIXES
from yaware.models.recognise import RESNET_CONV, recognise_encoder

log = logging.getLogger(__name__)

HEAD_PREFIXES = ("hidden_representation.", "head_projection.")
CLASSIFIER_PREFIXES = ("classifier.",)
# Below this fraction of the backbone's tensors found in the checkpoint, loading fails:
# a mismatch of names must never silently leave a randomly initialised encoder.
MIN_MATCH_FRACTION = 0.9
# MONAI's DenseNet (monai.networks.nets.DenseNet121): the same layers as the original's, with
# each dense layer's modules in a Sequential named "layers".
MONAI_DENSE_LAYER = re.compile(r"(denselayer\d+)\.layers\.")
# A ResNet trunk saved without "features." (MedicalNet's, MONAI's ResNet): the first of its
# names in a key, after any prefix of an enclosing module.
PLAIN_RESNET_TRUNK = re.compile(r"^((?:\w+\.)*?)(conv1|bn1|layer[1-4])\.")
# Backbone tensors a checkpoint may lack: a classifier's final batch norm (new when an
# encoder is fine-tuned) and the batch counters that torch before 0.4.1 did not save.
MAY_BE_MISSING = re.compile(r"^features\.norm5\.|\.num_batches_tracked$")


def state_dict_of(checkpoint: Any, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The model state dict inside a checkpoint, wrappers' key prefixes removed.

    Found at the top level, under 'model' or 'state_dict', else under the one key (or
    key of a key) that holds a state dict: 'model_state_dict' (PyTorch's tutorial),
    'net', and so on. Several there ('student' and 'teacher') are refused by name, never
    chosen silently. A whole pickled module (``torch.save(model)``, alone or as a value;
    read only with trust) gives its state dict."""
    if isinstance(checkpoint, nn.Module):
        checkpoint = checkpoint.state_dict()
    elif isinstance(checkpoint, dict):
        checkpoint = {
            k: v.state_dict() if isinstance(v, nn.Module) else v for k, v in checkpoint.items()
        }
    if not isinstance(checkpoint, dict) or not checkpoint:
        raise CheckpointError(f"{source}: no model state dict found (expected key 'model')")
    candidates = [checkpoint.get("model"), checkpoint.get("state_dict"), checkpoint]
    state = next((c for c in candidates if _is_state_dict(c)), None)
    if state is None:
        state = _the_one_state_dict_within(checkpoint, source)
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    stripped = {}
    for key, value in tensors.items():
        while key.startswith(WRAPPER_PREFIXES):
            key = key.split(".", 1)[1]
        stripped[key] = value
    return stripped


def _is_state_dict(candidate: Any) -> bool:
    """A module's state dict: tensors under dotted names (an optimizer's per-parameter
    state, ``{"exp_avg": tensor, ...}``, has no dots)."""
    return isinstance(candidate, dict) and any(
        isinstance(k, str) and "." in k and isinstance(v, torch.Tensor)
        for k, v in candidate.items()
    )


def _the_one_state_dict_within(checkpoint: dict, source: str) -> dict:
    """The state dict under one key of ``checkpoint`` or one key of such a key."""
    found: dict[tuple, dict] = {}
    for key, value in checkpoint.items():
        if _is_state_dict(value):
            found[(key,)] = value
        elif isinstance(value, dict):
            found |= {(key, k): v for k, v in value.items() if _is_state_dict(v)}
    where = {path: "".join(f"[{k!r}]" for k in path) for path in found}
    if len(found) == 1:
        ((path, state),) = found.items()
        log.info("%s: the weights are under %s", source, where[path])
        return state
    if found:
        first = next(iter(where.values()))
        raise CheckpointError(
            f"{source} holds {len(found)} sets of weights, under {', '.join(where.values())}: "
            f"save the one to use alone, e.g. torch.save(torch.load({source!r}){first}, "
            "'encoder.pt'), and pass that file"
        )
    raise CheckpointError(
        f"{source}: no model state dict found: no key holds tensors under layer names "
        f"(its keys: {[str(k) for k in list(checkpoint)[:8]]})"
    )


def _nested_encoder(
    state: dict[str, torch.Tensor], backbone: list[str], source: str
) -> dict[str, torch.Tensor]:
    """``state`` with the prefix before ``features.`` that finds most of ``backbone`` removed
    (``state`` itself when its keys are plain)."""
    prefixes = {k[: k.index("features.")] for k in state if "features." in k}
    wanted = set(backbone)

    def found(prefix: str) -> int:
        return sum(k[len(prefix) :] in wanted for k in state if k.startswith(prefix))

    ranked = sorted(prefixes | {""}, key=lambda p: (-found(p), p))
    best = ranked[0]
    if not best or found(best) <= found(""):
        return state
    others = [p for p in ranked[1:] if found(p) == found(best)]
    log.info(
        "%s: the encoder sits under %r%s",
        source,
        best,
        f" (another one under {others}; loaded the first)" if others else "",
    )
    return {k[len(best) :]: v for k, v in state.items() if k.startswith(best)}


def _original_dense_layer_names(
    state: dict[str, torch.Tensor], source: str
) -> dict[str, torch.Tensor]:
    """``state`` with MONAI's ``denselayerN.layers.*`` keys named as the original's."""
    renamed = {MONAI_DENSE_LAYER.sub(r"\1.", k): v for k, v in state.items()}
    if len(renamed) == len(state) and renamed.keys() != state.keys():
        log.info("%s: dense layers named as MONAI's DenseNet (denselayerN.layers.*)", source)
        return renamed
    return state


def _resnet_trunk_under_features(
    state: dict[str, torch.Tensor], source: str
) -> dict[str, torch.Tensor]:
    """``state`` with a ResNet trunk saved without ``features.`` (``conv1``, ``bn1``,
    ``layer1``-``layer4``, as MedicalNet and MONAI name them) moved under it."""
    if any("features." in k for k in state) or not any(RESNET_CONV.search(k) for k in state):
        return state
    log.info("%s: a ResNet trunk named as MedicalNet's (conv1, bn1, layer1-4)", source)
    return {PLAIN_RESNET_TRUNK.sub(r"\1features.\2.", k, count=1): v for k, v in state.items()}


def holds_final_norm(state: dict[str, torch.Tensor]) -> bool:
    """Whether a DenseNet's state dict ends its trunk with ``features.norm5`` (a classifier's,
    or MONAI's): its representation is taken after that batch norm."""
    return any(k.endswith("features.norm5.weight") for k in state)


def recorded_encoder(checkpoint: Any) -> str | None:
    """The encoder a checkpoint records (ours do, under ``meta``), or None."""
    if isinstance(checkpoint, dict):
        meta = checkpoint.get("meta")
        if isinstance(meta, dict) and isinstance(meta.get("encoder"), str):
            return meta["encoder"]
    return None


def encoder_name_of(
    checkpoint: Any, default: str = "densenet121", source: str = "checkpoint"
) -> str:
    """The encoder a checkpoint records; else the one its layer names are those of (the
    released file, MONAI's and MedicalNet's record none); else ``default``."""
    recorded = recorded_encoder(checkpoint)
    if recorded:
        return recorded
    return encoder_of_weights(state_dict_of(checkpoint, source), default, source)


def encoder_of_weights(
    state: dict[str, torch.Tensor], default: str = "densenet121", source: str = "checkpoint"
) -> str:
    """The encoder whose layer names ``state`` holds, else ``default``."""
    recognised = recognise_encoder(state)
    if recognised:
        log.info("%s records no encoder; its layers are those of %s", source, recognised)
    return recognised or default


def trained_shape_of(checkpoint: Any) -> tuple[int, int, int] | None:
    """The scan shape (X, Y, Z) a checkpoint's encoder was trained on, if it records one
    (ours do; the released checkpoint does not)."""
    meta = checkpoint.get("meta") if isinstance(checkpoint, dict) else None
    recorded = meta.get("input_shape") if isinstance(meta, dict) else None
    if not isinstance(recorded, list | tuple) or len(recorded) < 3:
        return None
    return tuple(int(s) for s in recorded[-3:])  # type: ignore[return-value]


def warn_if_trained_on_another_grid(
    trained: tuple[int, ...] | None, shape: tuple[int, ...], checkpoint_path: str, data_path: str
) -> None:
    """Log a warning when scans of ``shape`` (X, Y, Z) are not what the encoder was trained
    on (``trained``; None: unknown): its representations are only meaningful on that grid."""
    if trained is not None and tuple(trained) != tuple(shape):
        log.warning(
            "%s holds scans of %s voxels, but the encoder of %s was trained on %s: its "
            "representations are only meaningful on the grid it was trained on; convert the "
            "scans at the same voxel size (conversion.voxel_mm)",
            data_path,
            "x".join(map(str, shape)),
            checkpoint_path,
            "x".join(map(str, trained)),
        )


@dataclass
class LoadReport:
    """What :func:`load_encoder_weights` did."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"loaded {len(self.loaded)} tensors; {len(self.missing)} missing (kept as "
            f"initialised): {self.missing[:5]}; {len(self.unexpected)} unused: "
            f"{self.unexpected[:5]}"
        )


def load_encoder_weights(
    model: nn.Module,
    state: dict[str, torch.Tensor],
    include_head: bool = False,
    source: str = "checkpoint",
) -> LoadReport:
    """Copy the backbone (``features.*``) and, if asked, the projection head into ``model``.

    Raises:
        CheckpointError: a tensor's shape differs (another architecture), fewer than
            90 % of the model's backbone tensors are found (names do not match), or a
            weight is NaN or infinite.
    """
    target = model.state_dict()
    state = _original_dense_layer_names(state, source)
    state = _resnet_trunk_under_features(state, source)
    state = _nested_encoder(state, [k for k in target if k.startswith("features.")], source)
    wanted = HEAD_PREFIXES if include_head else ()
    keep = {k: v for k, v in state.items() if k.startswith("features.") or k.startswith(wanted)}
    mismatched = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(target[k].shape)}"
        for k, v in keep.items()
        if k in target and target[k].shape != v.shape
    ]
    _refuse_other_input_channels(keep, target, source)
    if mismatched:
        raise CheckpointError(
            f"{source} does not fit this encoder ({len(mismatched)} tensors differ in shape, "
            f"e.g. {mismatched[:3]}); it holds another architecture: choose the matching "
            "--encoder"
        )
    backbone = [k for k in target if k.startswith("features.")]
    found = [k for k in backbone if k in keep]
    if len(found) < MIN_MATCH_FRACTION * len(backbone):
        raise CheckpointError(
            f"{source}: only {len(found)} of the encoder's {len(backbone)} backbone tensors "
            f"are in the checkpoint (its keys look like {list(state)[:3]}); it was saved from "
            "another architecture or naming scheme. Nothing was loaded."
        )
    _refuse_another_variant(keep, target, backbone, source, getattr(model, "encoder_name", ""))
    _refuse_non_finite(keep, target, source)
    report = LoadReport(
        loaded=[k for k in keep if k in target],
        missing=[k for k in target if k not in keep and not k.startswith(CLASSIFIER_PREFIXES)],
        unexpected=[k for k in state if k not in target],
    )
    if not include_head:
        report.missing = [k for k in report.missing if not k.startswith(HEAD_PREFIXES)]
    merged = {**target, **{k: keep[k] for k in report.loaded}}
    model.load_state_dict(merged)
    log.info("%s: %s", source, report.summary())
    return report


def _refuse_non_finite(
    state: dict[str, torch.Tensor], target: dict[str, torch.Tensor], source: str
) -> None:
    broken = [
        f"{k} ({int((~v.isfinite()).sum())} of {v.numel()})"
        for k, v in state.items()
        if k in target and v.is_floating_point() and not bool(v.isfinite().all())
    ]
    if broken:
        raise CheckpointError(
            f"{source} holds NaN or infinite weights in {len(broken)} tensors, e.g. "
            f"{broken[:3]}: the run that wrote it diverged. Use an earlier checkpoint "
            "(best.pt) or rerun the pretraining with a lower learning rate. Nothing was loaded."
        )


def _refuse_another_variant(
    state: dict[str, torch.Tensor],
    target: dict[str, torch.Tensor],
    backbone: list[str],
    source: str,
    encoder: str,
) -> None:
    """Names the backbone tensors that one side has and the other lacks, once the names
    match: a variant of the architecture (another shortcut, a bias), whose missing layers
    would stay random and whose extra ones would be dropped from the network it computed."""
    missing = [k for k in backbone if k not in state and not MAY_BE_MISSING.search(k)]
    extra = [k for k in state if k.startswith("features.") and k not in target]
    if not missing and not extra:
        return
    what = []
    if missing:
        what.append(f"lacks {len(missing)} of the encoder's backbone tensors, e.g. {missing[:3]}")
    if extra:
        what.append(f"holds {len(extra)} backbone tensors the encoder has not, e.g. {extra[:3]}")
    hint = (
        " A bias in a ResNet's shortcut is MONAI's ResNet with bias_downsample=True (its "
        "default), whose stem stride the weights do not record: it is not read here."
        if any(k.endswith("downsample.0.bias") for k in extra)
        else " Choose the encoder it was trained as (--encoder, external_models.<name>.encoder)."
    )
    raise CheckpointError(
        f"{source} {' and '.join(what)} ({encoder or 'this encoder'}): it was saved from a "
        f"variant of that architecture (another shortcut, a layer more or less). Nothing was "
        f"loaded.{hint}"
    )


def _refuse_other_input_channels(
    state: dict[str, torch.Tensor], target: dict[str, torch.Tensor], source: str
) -> None:
    """A checkpoint whose first convolution takes another number of input channels (an
    encoder trained on grey and white matter stacked, say) is named as such: every other
    tensor fits, so "another architecture" would mislead."""
    first = next((k for k, v in target.items() if k.startswith("features.") and v.ndim == 5), None)
    if first is None or first not in state:
        return
    theirs, ours = state[first].shape, target[first].shape
    if (
        len(theirs) == len(ours)
        and theirs[1] != ours[1]
        and theirs[:1] + theirs[2:] == ours[:1] + ours[2:]
    ):
        raise CheckpointError(
            f"{source}: its first convolution ({first}) takes {theirs[1]} input channels; "
            f"the encoders here take {ours[1]}, the grey-matter map. It was trained on other "
            "inputs (grey and white matter stacked, say) and cannot encode these scans. "
            "Nothing was loaded."
        )
