"""Training you can watch: each pretraining epoch's validation age probe, and every
epoch's numbers as TensorBoard event files beside ``metrics.csv``
(``tensorboard --logdir results/pretrain``)."""

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from yaware.augment.transforms import ZScore

# Training scans the per-epoch probe fits on: evenly spaced over the set, the same each
# epoch. The workflow's age_site_probe fits on every training scan of the final encoder.
PROBE_TRAIN_SCANS = 512
PROBE_BATCH = 32
EVENT_FILES = "events.out.tfevents.*"


@torch.no_grad()
def _representations(
    model: nn.Module, dataset: Dataset, rows: np.ndarray, device: torch.device, layout
) -> tuple[np.ndarray, np.ndarray]:
    """The encoder's representation of the z-scored scans ``rows`` and their first label."""
    zscore, features, labels = ZScore(), [], []
    for start in range(0, len(rows), PROBE_BATCH):
        items = [dataset[int(i)] for i in rows[start : start + PROBE_BATCH]]
        x = torch.stack([x for x, _ in items]).to(device).float().contiguous(memory_format=layout)
        features.append(model.representation(zscore.apply(x, {})).float().cpu().numpy())
        labels += [float(np.asarray(y, dtype=float).reshape(-1)[0]) for _, y in items]
    return np.concatenate(features), np.asarray(labels)


def validation_age_mae(
    model: nn.Module, train: Dataset, val: Dataset | None, device: torch.device, layout
) -> float | None:
    """MAE of a ridge probe of the (first) proxy label, age by default: fitted on up to
    ``PROBE_TRAIN_SCANS`` training scans' representations, scored on the validation scans.
    None without a validation set of two scans or more."""
    if val is None or len(val) < 2:
        return None
    rows = np.unique(np.linspace(0, len(train) - 1, min(len(train), PROBE_TRAIN_SCANS)).astype(int))
    from yaware.evaluate.probes import age_probe  # scikit-learn: only when a run probes

    was_training = model.training
    model.eval()
    try:
        train_x, train_y = _representations(model, train, rows, device, layout)
        val_x, val_y = _representations(model, val, np.arange(len(val)), device, layout)
    finally:
        model.train(was_training)
    if not (np.isfinite(train_x).all() and np.isfinite(val_x).all()):
        return None  # a diverged encoder: the epoch's finite-loss check names it
    return age_probe(train_x, train_y, val_x, val_y)["age_mae"]


class EventLog:
    """TensorBoard scalars of each epoch's row, under ``<stage>/<key>``, in ``folder``.
    The event file is opened with the first row, after that epoch's checkpoint is written,
    so a run that fails before it leaves no file."""

    def __init__(self, folder: Path, stage: str, fresh: bool) -> None:
        self.folder, self.stage, self.fresh = folder, stage, fresh
        self.writer = None

    def add(self, row: dict[str, Any]) -> None:
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter  # imports tensorboard: ~1 s

            if self.fresh:  # a run started over: the earlier run's curves are not this one's
                for old in self.folder.glob(EVENT_FILES):
                    old.unlink()
            self.writer = SummaryWriter(log_dir=str(self.folder))
        for key, value in row.items():
            if key != "epoch" and isinstance(value, int | float):
                self.writer.add_scalar(f"{self.stage}/{key}", float(value), int(row["epoch"]))
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
