"""Reading and writing checkpoints, and loading encoder weights with a report.

Layout written and read: ``{"epoch": int, "model": state_dict, "optimizer": state_dict,
...}`` (the original repository's), optionally with ``module.`` prefixes from
DataParallel/DDP or ``_orig_mod.`` from ``torch.compile``; a bare state dict, or one under
``state_dict`` (PyTorch Lightning) or any other one key (``model_state_dict``, PyTorch's
tutorial checkpoint), is read too, and an encoder nested in a larger module
(``encoder.features.*``, ``model.backbone.features.*``) is found by its ``features.*`` keys.
MONAI's DenseNet names each dense layer's modules ``denselayerN.layers.norm1`` (its
``Sequential``); they are read as the original's ``denselayerN.norm1``. A ResNet saved
without ``features.`` (MedicalNet's files: ``conv1``, ``bn1``, ``layer1``-``layer4``) has its
trunk read under it.
Our own checkpoints add ``"meta"`` with the encoder's name; for others the encoder is
recognised from the layer names (:mod:`yaware.models.recognise`).
safetensors files are read by their content; a whole pickled module or a TorchScript
archive carries code and is read only when trusted, for its state dict.
"""

import logging
import os
import pickle
import pickletools
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from yaware.errors import CheckpointError
from yaware.io import write_atomic
from yaware.models.recognise import RESNET_CONV, recognise_encoder

log = logging.getLogger(__name__)

# Keys of the projection head (encoder mode) and of the classifier.
HEAD_PREFIXES = ("hidden_representation.", "head_projection.")
CLASSIFIER_PREFIXES = ("classifier.",)
# Below this fraction of the backbone's tensors found in the checkpoint, loading fails:
# a mismatch of names must never silently leave a randomly initialised encoder.
MIN_MATCH_FRACTION = 0.9
# Prefixes that wrappers add to every key: DataParallel/DDP and torch.compile.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
# The weights-only reader refusing a named class or function (a file cut short inside
# the name makes it refuse "GLOBAL ." instead).
REFUSED_CLASS = re.compile(r"Unsupported global: GLOBAL [A-Za-z_][\w.]*[A-Za-z0-9_] ")
# MONAI's DenseNet (monai.networks.nets.DenseNet121): the same layers as the original's, with
# each dense layer's modules in a Sequential named "layers".
MONAI_DENSE_LAYER = re.compile(r"(denselayer\d+)\.layers\.")
# A ResNet trunk saved without "features." (MedicalNet's, MONAI's ResNet): the first of its
# names in a key, after any prefix of an enclosing module.
PLAIN_RESNET_TRUNK = re.compile(r"^((?:\w+\.)*?)(conv1|bn1|layer[1-4])\.")
# Backbone tensors a checkpoint may lack: a classifier's final batch norm (new when an
# encoder is fine-tuned) and the batch counters that torch before 0.4.1 did not save.
MAY_BE_MISSING = re.compile(r"^features\.norm5\.|\.num_batches_tracked$")


def portable_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """``module``'s state dict with contiguous tensors, whatever layout it trained in
    (channels-last weights would make safetensors' save_file and other tools refuse it)."""
    return {key: value.contiguous() for key, value in module.state_dict().items()}


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Write ``payload`` (epoch, model, optimizer, meta, ...) atomically with torch.save."""
    write_atomic(path, lambda handle: torch.save(payload, handle))


def read_checkpoint(path: str | os.PathLike, trust: bool = False) -> Any:
    """Read a checkpoint on the CPU.

    Only tensors and plain containers are unpickled (``weights_only=True``) unless
    ``trust`` is set: a checkpoint from an unknown source can carry code.

    Raises:
        CheckpointError: missing, truncated or foreign file, or a pickle carrying objects.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; check the path")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty; the file was not fully written")
    if path.suffix == ".safetensors" or _looks_like_safetensors(path):
        return _read_safetensors(path)
    if _is_torchscript(path):
        if not trust:
            raise CheckpointError(
                f"checkpoint {path} is a TorchScript archive (torch.jit.save): it carries code, "
                "so it is refused. If you trust its source, pass --trust-checkpoint "
                "(trust=True); its weights are then used."
            )
        try:
            return torch.jit.load(path, map_location="cpu")
        except RuntimeError as err:
            raise CheckpointError(
                f"checkpoint {path}: the TorchScript archive cannot be read "
                f"({str(err).splitlines()[0]}). Re-download or re-create it."
            ) from err
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as err:
        # The weights-only reader refuses a class ("Unsupported global") or an opcode it
        # lacks (an old pickle protocol): a whole pickle it would not run. Anything else
        # (random bytes, a text file) is not a pickle at all, and trusting it cannot help.
        refused_opcode = "Unsupported operand" in str(err) and _starts_with_a_whole_pickle(path)
        if REFUSED_CLASS.search(str(err)) or refused_opcode:
            raise CheckpointError(
                f"checkpoint {path} holds Python objects beyond tensors and plain "
                "containers (or is a pickle of a protocol torch's safe reader lacks), and "
                "loading it could run code. Refused. If you trust its source, pass "
                f"--trust-checkpoint (trust=True). Detail: {_detail(err)}"
            ) from err
        raise _unreadable(path, err) from err
    except Exception as err:  # torch.load's many ways of failing on a foreign file
        raise _unreadable(path, err) from err


def _detail(err: Exception) -> str:
    """The line of ``err``'s message that says what went wrong (torch's weights-only
    errors open with a paragraph on torch.load's defaults)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    for line in lines:
        if line.startswith(("Unsupported", "WeightsUnpickler error: Unsupported")):
            line = line.removeprefix("WeightsUnpickler error: ").split(". Please use")[0]
            return f"{type(err).__name__}: {line}"
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__


def _unreadable(path: Path, err: Exception) -> CheckpointError:
    with open(path, "rb") as handle:
        head = handle.read(64).lstrip().lower()
    if head.startswith(b"version https://git-lfs"):
        what = (
            "it is a Git LFS pointer, a small text file standing for the weights, not the "
            "weights themselves. Fetch them with `git lfs pull` in the repository it came "
            "from, or download the file itself"
        )
    elif head.startswith((b"<!doctype html", b"<html", b"<?xml", b"{")):
        what = (
            "it is a web page or a JSON/XML text, not a checkpoint: the download failed or "
            "asked for a login. Download it again"
        )
    else:
        what = "it is truncated, corrupted or not a torch checkpoint. Re-download or re-create it"
    return CheckpointError(f"checkpoint {path} cannot be read: {what} ({_detail(err)}).")


def _starts_with_a_whole_pickle(path: Path) -> bool:
    """Whether ``path`` opens with a complete pickle (read as opcodes, nothing run):
    what torch.save wrote before its zip format (it holds several, one after another)."""
    with open(path, "rb") as handle:
        try:
            return any(op.name == "STOP" for op, _, _ in pickletools.genops(handle))
        except Exception:  # pickletools' errors on bytes that are no pickle: ValueError and more
            return False


def _is_torchscript(path: Path) -> bool:
    """torch.jit.save writes a zip like torch.save's, with the module's code and constants."""
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.split("/")[-1] == "constants.pkl" for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _looks_like_safetensors(path: Path) -> bool:
    """safetensors: an 8-byte little-endian header length, then the JSON header."""
    with open(path, "rb") as handle:
        head = handle.read(9)
    if len(head) < 9 or head[8:9] != b"{":
        return False
    return 8 + int.from_bytes(head[:8], "little") <= path.stat().st_size


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """A safetensors file's tensors (tensors only: no code, so no trust needed), whatever
    its name; torch.load reads them only when named .safetensors, and only in recent torch."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path, device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(
            f"checkpoint {path} cannot be read as safetensors: it is truncated or corrupted "
            f"({str(err).splitlines()[0]}). Re-download or re-create it."
        ) from err


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
    broken = [
        f"{k} ({int((~v.isfinite()).sum())} of {v.numel()})"
        for k, v in keep.items()
        if k in target and v.is_floating_point() and not bool(v.isfinite().all())
    ]
    if broken:
        raise CheckpointError(
            f"{source} holds NaN or infinite weights in {len(broken)} tensors, e.g. "
            f"{broken[:3]}: the run that wrote it diverged. Use an earlier checkpoint "
            "(best.pt) or rerun the pretraining with a lower learning rate. Nothing was loaded."
        )
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
