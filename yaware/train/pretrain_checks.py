"""What a pretraining checks of its folder and sets before it trains: a run it would
replace, a checkpoint past its end, and sets or labels that make its records mislead."""

import logging
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import ConcatDataset, Dataset

from yaware.data.qc_metrics import MAX_AGE_YEARS
from yaware.errors import CheckpointError, OutputError
from yaware.train.common import effective_batch
from yaware.train.config import PretrainConfig, as_list

log = logging.getLogger(__name__)

# What a run writes in its folder besides config.yaml.
RUN_FILES = ("last.pt", "best.pt", ".best.pt", "metrics.csv")
# Methods whose loss reads the label.
LABELLED = (
    "yaware",
    "age_supervision",
    "threshold",
    "expw",
    "rank_n_contrast",
    "decoupled_uniformity",
)


def check_out_dir(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to start over a folder that holds a run unless told to; with ``overwrite``,
    remove that run's files first, so none of them outlives the new run's start."""
    held = [name for name in RUN_FILES if (out / name).exists()]
    if not held or resume:
        return
    if not overwrite:
        raise OutputError(
            f"{out} holds a run ({', '.join(held)}): pass --resume to continue it, or "
            "--overwrite to start it over and replace its files; or give another out_dir"
        )
    for name in held:
        (out / name).unlink()
    log.warning("--overwrite: removed %s of the earlier run in %s", ", ".join(held), out)


def check_resume_epochs(last: Path, checkpoint: dict[str, Any], epochs: int) -> None:
    """Refuse to resume a run already past ``epochs``: it would train nothing and its
    records would claim a shorter run."""
    trained = int(checkpoint.get("epoch", 0))
    if trained > epochs:
        raise CheckpointError(
            f"{last} holds epoch {trained}, past epochs: {epochs}: the run is already past "
            "that point and nothing would be trained. Set epochs to "
            f"{trained} or more to go on, or use another out_dir for a shorter run"
        )


def _parts(dataset: Dataset | None) -> list:
    if dataset is None:
        return []
    return list(dataset.datasets) if isinstance(dataset, ConcatDataset) else [dataset]


def _shared_scans(train: Dataset, val: Dataset | None) -> int:
    """How many validation rows are training rows (the same row of the same file)."""
    rows = {(p.array.path.resolve(), int(i)) for p in _parts(train) for i in p.indices}
    return sum((p.array.path.resolve(), int(i)) in rows for p in _parts(val) for i in p.indices)


def check_sets(cfg: PretrainConfig, train: Dataset, val: Dataset | None) -> dict[str, Any]:
    """Warn where the sets make the run's records mislead; returns what the checkpoint
    records of it: the effective batch and what best.pt is chosen on."""
    batch = effective_batch(cfg, len(train))
    chosen_on = "validation loss"
    n_val = 0 if val is None else len(val)
    if n_val < 2:
        chosen_on = "training loss"
        if val is not None:
            log.warning(
                "the validation set holds %d scan; a contrastive loss needs two: best.pt is "
                "chosen on the training loss",
                n_val,
            )
    elif shared := _shared_scans(train, val):
        chosen_on = f"validation loss ({shared} of {n_val} validation scans are training scans)"
        log.warning(
            "%d of the %d validation scans are training scans (the training files given as "
            "validation?): best.pt is chosen on a loss of scans it trained on",
            shared,
            n_val,
        )
    if cfg.method in LABELLED:
        _check_labels(cfg, train)
    return batch | {"best_chosen_on": chosen_on}


def _check_labels(cfg: PretrainConfig, train: Dataset) -> None:
    """Warn of labels that make the method meaningless: all equal, or ages beyond any
    human's (as QC flags them in the workflow)."""
    labels = np.concatenate(
        [np.asarray(p.labels, float)[p.indices].reshape(len(p.indices), -1) for p in _parts(train)]
    )
    for column, values in zip(as_list(cfg.label), labels.T, strict=False):
        if np.ptp(values) == 0:
            log.warning(
                "every training scan has %s %g: %s then learns nothing from it (y-Aware "
                "becomes SimCLR); check the label column",
                column,
                values[0],
                cfg.method,
            )
        if column.startswith("age") and (values.max() > MAX_AGE_YEARS or values.min() < 0):
            log.warning(
                "%s ranges from %g to %g: not plausible ages in years (0 to %d); a typo, or "
                "another unit (months, days)?",
                column,
                values.min(),
                values.max(),
                MAX_AGE_YEARS,
            )
