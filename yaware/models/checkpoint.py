"""Reading and writing checkpoint files: our format, PyTorch's pickles (weights only unless
trusted), safetensors and TorchScript archives, each refused with a message that names the
file and the fix. What a checkpoint's weights are, and loading them into an encoder, is
:mod:`yaware.models.weights`.

Our own checkpoints are ``{"epoch": int, "model": state_dict, "optimizer": state_dict,
"meta": {...}, ...}`` (the original repository's layout, with ``"meta"`` naming the
encoder). safetensors files are read by their content; a whole pickled module or a
TorchScript archive carries code and is read only when trusted, for its state dict.
"""

import logging
import os
import pickle
import pickletools
import re
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from yaware.errors import CheckpointError
from yaware.io import write_atomic
from yaware.run_folder import folder_hint

log = logging.getLogger(__name__)

# Keys of the projection head (encoder mode) and of the classifier.
# Prefixes that wrappers add to every key: DataParallel/DDP and torch.compile.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
# The weights-only reader refusing a named class or function (a file cut short inside
# the name makes it refuse "GLOBAL ." instead).
REFUSED_CLASS = re.compile(r"Unsupported global: GLOBAL [A-Za-z_][\w.]*[A-Za-z0-9_] ")


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
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder; {folder_hint(path)}")
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
