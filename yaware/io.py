"""Atomic file writes: write beside the target, fsync, then rename over it.

A process killed half way leaves at most a ``.tmp`` file, never a target that looks complete.
"""

import contextlib
import errno
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from yaware.errors import OutputError


def _umask() -> int:
    current = os.umask(0o022)  # reading the umask means setting it; at import, one thread
    os.umask(current)
    return current


UMASK = _umask()


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it to ``target`` on success.

    Raises:
        OutputError: the folder or the file could not be written (full disk, quota,
            permissions, a file-size limit); the temporary file is removed.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as err:
        raise _output_error(target, err) from err
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as handle:
            os.fsync(handle.fileno())
        # mkstemp makes the file private (0600); an output gets the mode any new file would.
        os.chmod(tmp_path, 0o666 & ~UMASK)
        os.replace(tmp_path, target)
    except (OSError, RuntimeError) as err:  # torch.save reports a failed write as RuntimeError
        about_another_file = getattr(err, "filename", None) not in (None, tmp, str(target))
        if isinstance(err, OutputError) or about_another_file:  # e.g. an input that vanished
            raise
        raise _output_error(target, err) from err
    finally:
        tmp_path.unlink(missing_ok=True)


def output_path_problem(target: str | os.PathLike) -> str:
    """Why no file can be written at ``target`` whatever the disk holds ("" if none): it
    is a folder, or a folder above it is a file. Commands check it before their work."""
    target = Path(target)
    if target.is_dir():
        return f"{target} is a folder; give the output a file name in it"
    if blocking := _file_in_the_way(target.parent):
        return f"cannot write {target}: {blocking} is a file, not a folder; choose another path"
    return ""


def make_folder(path: str | os.PathLike) -> Path:
    """``mkdir -p`` of an output folder; an OutputError that names what is in the way."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        if blocking := _file_in_the_way(path):
            raise OutputError(
                f"cannot make the folder {path}: {blocking} is a file, not a folder; "
                "choose another path"
            ) from err
        raise _output_error(path, err) from err
    return path


def _file_in_the_way(folder: Path) -> Path | None:
    """The file that stands where ``folder`` or a folder above it should be, if any."""
    existing = _existing_parent(folder)
    return existing if existing.exists() and not existing.is_dir() else None


def _output_error(target: Path, err: Exception) -> OutputError:
    if problem := output_path_problem(target):
        return OutputError(problem)
    detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    folder = _existing_parent(target.parent)
    code = getattr(err, "errno", None)
    if code == errno.EROFS:
        why = (
            f"{folder} is on a read-only file system (mounted read-only): write the outputs "
            "on a writable one"
        )
    elif code in (errno.EACCES, errno.EPERM):
        why = (
            f"you may not write in {folder} ({_owner_and_mode(folder)}): ask for write access "
            "there, or write the outputs elsewhere"
        )
    else:
        try:
            free = f"{shutil.disk_usage(folder).free / 1e9:.1f} GB free there"
        except OSError:
            free = "free space unknown"
        why = (
            f"{free}. If the disk is full or over quota, free space or write the outputs elsewhere"
        )
    return OutputError(f"writing {target} failed ({detail}); {why}. Nothing partial was left.")


def _owner_and_mode(folder: Path) -> str:
    """``folder``'s owner and mode, as ``owner root, mode drwxr-xr-x``."""
    try:
        mode = stat.filemode(folder.stat().st_mode)
        owner = folder.owner()
    except KeyError:  # a user id with no name here (a container, NFS)
        owner = str(folder.stat().st_uid)
    except (OSError, NotImplementedError):
        return "permissions unknown"
    return f"owner {owner}, mode {mode}"


def _existing_parent(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def publish(source: str | os.PathLike, target: str | os.PathLike) -> None:
    """Make ``target`` a copy of ``source``, atomically: a hard link where the file system
    allows one (no bytes copied), else a full copy."""
    with atomic_path(target) as tmp:
        tmp.unlink()
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)


def write_atomic(target: str | os.PathLike, writer: Callable[[IO[bytes]], Any]) -> None:
    """Call ``writer(handle)`` on a temporary binary file, then rename it to ``target``."""
    with atomic_path(target) as tmp, open(tmp, "wb") as handle:
        writer(handle)


def save_npy(target: str | os.PathLike, array: np.ndarray) -> None:
    write_atomic(target, lambda handle: np.save(handle, array))


def save_table(target: str | os.PathLike, table: pd.DataFrame) -> None:
    """Write a table as TSV (``.tsv``) or CSV (anything else), atomically."""
    sep = "\t" if str(target).endswith(".tsv") else ","
    write_atomic(target, lambda handle: handle.write(table.to_csv(sep=sep, index=False).encode()))


def save_json(target: str | os.PathLike, obj: Any) -> None:
    text = json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n"
    write_atomic(target, lambda handle: handle.write(text.encode()))
