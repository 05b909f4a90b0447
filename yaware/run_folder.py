"""What a command may do to the files already there: a run folder held by one run at a
time, and no output written over a file the command did not make or an input it reads."""

import contextlib
import fcntl
import os
import socket
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from yaware.errors import OutputError
from yaware.io import make_folder

LOCK_NAME = ".yaware.lock"


def expand_path(path: str) -> str:
    """``~`` and ``$VARIABLES`` expanded, as a shell would (and the workflow does)."""
    return os.path.expandvars(os.path.expanduser(path))


def folder_hint(folder: str | Path) -> str:
    """What to give instead of a folder where a file is wanted: a run's checkpoints, if
    it holds them."""
    kept = [Path(folder) / n for n in ("best.pt", "last.pt") if (Path(folder) / n).exists()]
    if kept:
        return (
            f"give a file in it: {' or '.join(map(str, kept))} (best.pt: the epoch of lowest "
            "validation loss; last.pt: the last epoch)"
        )
    return "give the file's path, not its folder's"


@contextlib.contextmanager
def locked_folder(folder: str | os.PathLike, command: str) -> Iterator[Path]:
    """Hold ``folder`` for one run: a second run into it is refused with a message naming
    the first (its command, pid, host and start). The lock is a POSIX record lock on
    ``.yaware.lock``, which the system drops when its process dies, also over NFS."""
    folder = make_folder(folder)
    path = folder / LOCK_NAME
    handle = open(path, "a+")  # noqa: SIM115 (held open for the lock's lifetime)
    try:
        fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise OutputError(
            f"{folder} is in use by {holder} (lock file {path}). Two runs into one folder "
            "would mix their files: wait for that run to end, or give this one another "
            "out_dir"
        ) from None
    since = time.strftime("%Y-%m-%d %H:%M:%S")
    handle.seek(0)
    handle.truncate()
    handle.write(f"yaware {command} (pid {os.getpid()} on {socket.gethostname()}, since {since})")
    handle.flush()
    try:
        yield folder
    finally:
        path.unlink(missing_ok=True)
        handle.close()


def refuse_overwrite(paths: Iterable[str | os.PathLike], flag: str = "--overwrite") -> None:
    """Refuse outputs that exist already, naming them and ``flag``."""
    there = [str(p) for p in paths if Path(p).exists()]
    if there:
        raise OutputError(
            f"{', '.join(there)} exist(s) already and would be replaced; pass {flag} to "
            "replace them, or choose another output"
        )


def refuse_input_as_output(output: str | os.PathLike, inputs: dict[str, str]) -> None:
    """Refuse an output that is one of the command's inputs (the same file by any path)."""
    out = Path(output)
    for option, path in inputs.items():
        same = out.resolve() == Path(path).resolve()
        if not same and out.exists() and Path(path).exists():
            same = out.samefile(path)
        if same:
            raise OutputError(
                f"the output {output} is the input {option} {path}: writing it would destroy "
                "the input; give the output another name"
            )
