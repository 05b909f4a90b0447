"""Rule parameters recorded the same whatever the order of the config's keys.

Snakemake reruns a job when the ``repr`` of one of its params changes, and a dict's repr
follows the order of its keys: the same config with its keys in another order (written
out by a tool that sorts them, a default spelled out, a key moved) reran every job.
"""

from typing import Any


class OrderFreeDict(dict):
    """A dict whose repr lists keys sorted, at every depth; iteration keeps its order."""

    def __repr__(self) -> str:
        return repr(_sorted(self))


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _sorted(value[key]) for key in sorted(value, key=str)}
    if isinstance(value, list | tuple):
        return type(value)(_sorted(item) for item in value)
    return value


def order_free(value: Any) -> Any:
    """``value`` as an :class:`OrderFreeDict` when it is a dict, else unchanged."""
    return OrderFreeDict(value) if isinstance(value, dict) else value


# Settings that decide how fast a job runs, or in how much memory, and change its results
# by float rounding at most: more threads or loader workers on a cluster, torch.compile,
# gradient checkpointing.
SPEED_ONLY = ("threads", "num_workers", "compile", "memory_efficient")


class JobSettings(OrderFreeDict):
    """One job's settings: the job reads them all, but Snakemake's record of its params
    (the repr) leaves out ``unrecorded``, so a change to those reruns no job already done."""

    def __init__(self, values: dict, unrecorded: tuple[str, ...]) -> None:
        super().__init__(values)
        self.unrecorded = unrecorded

    def __repr__(self) -> str:
        return repr(_sorted({k: v for k, v in self.items() if k not in self.unrecorded}))


def job_settings(
    section: dict, leave_out: tuple[str, ...] = (), unrecorded: tuple[str, ...] = SPEED_ONLY
) -> JobSettings:
    """A config section as one job's params, without ``leave_out`` (keys that choose which
    jobs there are: each job has its own wildcards) and with ``unrecorded`` (keys that
    cannot change its results: speed settings, or what its method never uses) out of its
    record."""
    values = {k: v for k, v in section.items() if k not in leave_out}
    return JobSettings(values, unrecorded)
