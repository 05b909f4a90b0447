"""Which workflow job the checkpoints kept in a folder belong to.

A pretraining job resumes from the ``last.pt`` it left when it was stopped (a Slurm time
limit, a killed workflow, a retry). Snakemake also reruns a finished job when its data,
settings or code change, and the folder then holds the finished checkpoint of the old
job: resuming it would train no step and publish the old weights as the new result. So
the job records what it is before it trains, and a rerun keeps the checkpoints only when
that record is its own.
"""

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from yaware.io import write_atomic
from yaware.workflow.rule_params import JobSettings

JOB_FILE = "job.json"

log = logging.getLogger(__name__)


def job_identity(params: Mapping[str, Any], inputs: Iterable[str]) -> dict[str, Any]:
    """The job's params as Snakemake records them (each key's repr; a
    :class:`JobSettings` leaves out its unrecorded keys, the speed settings) and each
    input's size and modification time: a rewritten input (a new conversion, a new split)
    is another job's input even when its bytes came out the same, as it is to Snakemake."""
    files = {}
    for path in sorted(set(inputs)):
        stat = Path(path).stat()
        files[path] = [stat.st_size, stat.st_mtime_ns]
    return {"params": {key: _recorded(value) for key, value in params.items()}, "inputs": files}


def _recorded(value: Any) -> Any:
    if isinstance(value, JobSettings):
        return {k: repr(v) for k, v in value.items() if k not in value.unrecorded}
    if isinstance(value, dict):
        return {str(k): repr(v) for k, v in value.items()}
    return repr(value)


def keep_if_same_job(folder: Path, job: dict[str, Any], checkpoints: Sequence[str]) -> bool:
    """Delete ``checkpoints`` in ``folder`` unless its record names ``job``, then record
    ``job`` there. Returns whether they were kept."""
    record = folder / JOB_FILE
    kept = [folder / name for name in checkpoints if (folder / name).exists()]
    recorded = _read(record)
    same = recorded == job
    if kept and not same:
        log.info(
            "%s: made by another job (%s); starting over",
            ", ".join(str(path) for path in kept),
            _difference(recorded, job),
        )
        for path in kept:
            path.unlink()
    if not same:
        folder.mkdir(parents=True, exist_ok=True)
        text = json.dumps(job, indent=1, sort_keys=True) + "\n"
        write_atomic(record, lambda handle: handle.write(text.encode()))
    return same and bool(kept)


def _read(record: Path) -> dict[str, Any] | None:
    try:
        return json.loads(record.read_text())
    except (OSError, ValueError):
        return None


def _difference(recorded: dict[str, Any] | None, job: dict[str, Any]) -> str:
    if recorded is None:
        return f"no readable {JOB_FILE} says which"
    return "changed: " + ", ".join(_changed(recorded, job))


def _changed(old: Any, new: Any, prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two records."""
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return [] if old == new else [prefix.rstrip(".") or "record"]
    changed = []
    for key in sorted({*old, *new}):
        changed += _changed(old.get(key), new.get(key), f"{prefix}{key}.")
    return changed
