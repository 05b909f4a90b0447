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


# How fast a job runs, not what it computes (Snakemake's own ``threads`` is no param).
SPEED_ONLY = ("threads",)


def job_settings(section: dict, leave_out: tuple[str, ...] = ()) -> OrderFreeDict:
    """A config section as one job's params: without the keys that only set its speed, nor
    ``leave_out`` (keys that choose which jobs there are: each job has its own wildcards).
    A change to those keys then reruns no job already done."""
    return OrderFreeDict({k: v for k, v in section.items() if k not in (*SPEED_ONLY, *leave_out)})
