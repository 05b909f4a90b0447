"""Resuming a pretraining: what a resumed run may change, and its state restored."""

from pathlib import Path
from typing import Any

from yaware.errors import CheckpointError
from yaware.train import distributed
from yaware.train.common import restore_rng
from yaware.train.config import PretrainConfig, to_dict
from yaware.workflow.experiments import UNREAD_SETTINGS

# What a resumed run may change: where and how fast it runs, how long it trains, and where
# its files are (data staged on another disk for each attempt). Every other setting made
# the weights of the first epochs, so a change would mix two runs in one.
MAY_CHANGE_ON_RESUME = frozenset(
    {
        "out_dir",
        "epochs",
        "num_workers",
        "device",
        "memory_efficient",
        "compile",
        "train_data",
        "train_table",
        "val_data",
        "val_table",
        "train_split",
        "val_split",
    }
)


def check_resumable(path: Path, checkpoint: dict[str, Any], cfg: PretrainConfig) -> None:
    """Refuse to resume a run made with other settings, naming each one."""
    recorded = checkpoint.get("meta", {}).get("config", {})
    current = to_dict(cfg)
    ignored = MAY_CHANGE_ON_RESUME | set(UNREAD_SETTINGS[cfg.method])
    changed = [
        key
        for key in current
        if key not in ignored and key in recorded and recorded[key] != current[key]
    ]
    if changed:
        was = ", ".join(f"{key}={recorded[key]!r}" for key in changed)
        now = ", ".join(f"{key}={current[key]!r}" for key in changed)
        raise CheckpointError(
            f"{path} was written with {was} but the config now says {now}; use another "
            "out_dir, or drop --resume to train again from the start"
        )


def restore(checkpoint: dict[str, Any], run: Any) -> dict[str, Any]:
    run.model.load_state_dict(checkpoint["model"])
    run.optimizer.load_state_dict(checkpoint["optimizer"])
    run.scheduler.load_state_dict(checkpoint["scheduler"])
    run.policy.load_state_dict(_rank_state(checkpoint, "policy"))
    run.extras.load_state_dict(checkpoint.get("extras") or {})
    if run.corruption is not None:
        run.corruption.load_state_dict(_rank_state(checkpoint, "corruption"))
    restore_rng(checkpoint["rng"])
    return {key: checkpoint[key] for key in ("epoch", "step", "partial", "history", "best")}


def _rank_state(checkpoint: dict[str, Any], key: str) -> Any:
    """This rank's saved stream of ``key`` when the run had as many ranks, else rank 0's."""
    states = checkpoint.get(f"{key}_ranks") or [checkpoint[key]]
    if len(states) == distributed.world_size():
        return states[distributed.rank()]
    return checkpoint[key]
