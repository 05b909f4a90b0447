"""The training and validation sets of a pretraining: several cohorts pooled, each
subset to its split's rows, with the kernel's categorical labels coded alike in all."""

import dataclasses
import logging

import numpy as np
from torch.utils.data import ConcatDataset, Dataset

from yaware.data.dataset import ScanDataset
from yaware.data.participants import category_codes, read_table
from yaware.errors import ConfigError
from yaware.losses.bandwidth import rule_bandwidth
from yaware.train.common import split_indices
from yaware.train.config import PretrainConfig, as_list

log = logging.getLogger(__name__)


def pretraining_sets(cfg: PretrainConfig) -> tuple[Dataset, Dataset | None, tuple[int, ...]]:
    """Training and validation sets (several cohorts pooled) and the scans' shape."""
    arrays, tables = as_list(cfg.train_data), as_list(cfg.train_table)
    if len(arrays) != len(tables):
        raise ConfigError(
            f"train_data lists {len(arrays)} arrays but train_table {len(tables)} tables"
        )
    train_splits = as_list(cfg.train_split, len(arrays))
    val_splits = as_list(cfg.val_split, len(arrays))
    if len(train_splits) != len(arrays) or len(val_splits) != len(arrays):
        raise ConfigError("train_split and val_split need one table per training array")
    every_table = [*tables, *([cfg.val_table] if cfg.val_data and cfg.val_table else [])]
    labels = {"label": cfg.label, "categories": _category_codes(cfg, every_table)}
    train_parts, val_parts = [], []
    for array, table, train_split, val_split in zip(
        arrays, tables, train_splits, val_splits, strict=True
    ):
        train_parts.append(_subset(ScanDataset(array, table, **labels), train_split, table))
        if val_split and not cfg.val_data:
            val_parts.append(_subset(ScanDataset(array, table, **labels), val_split, table))
    if cfg.val_data:
        val_parts = [_subset(ScanDataset(cfg.val_data, cfg.val_table or "", **labels), None, "")]
    shapes = {part.shape for part in train_parts + val_parts}
    if len(shapes) != 1:
        raise ConfigError(
            f"the pooled arrays hold scans of different shapes {sorted(shapes)}; "
            "convert them to one grid"
        )
    train = train_parts[0] if len(train_parts) == 1 else ConcatDataset(train_parts)
    val = (val_parts[0] if len(val_parts) == 1 else ConcatDataset(val_parts)) if val_parts else None
    return train, val, shapes.pop()


def _category_codes(cfg: PretrainConfig, tables: list[str]) -> dict[str, dict[str, int]]:
    """Codes of the categories of each label column a categorical kernel reads (``M`` and
    ``F`` for sex), pooled over every table, so a category has one code in all of them."""
    columns = as_list(cfg.label)
    kernels = as_list(cfg.kernel, len(columns))
    categorical = [c for c, k in zip(columns, kernels, strict=False) if k == "categorical"]
    if not categorical:
        return {}
    frames = [read_table(table) for table in tables]
    return {c: category_codes([f[c] for f in frames if c in f]) for c in categorical}


def _subset(dataset: ScanDataset, split: str | None, source: str) -> ScanDataset:
    chosen = split_indices(dataset.table, split, source)
    if chosen is not None:
        dataset.indices = chosen
    return dataset


def training_labels(dataset: Dataset) -> np.ndarray:
    """The labels (N, k) of a dataset's rows (its parts pooled)."""
    parts = dataset.datasets if isinstance(dataset, ConcatDataset) else [dataset]
    return np.concatenate(
        [np.asarray(p.labels, float)[p.indices].reshape(len(p.indices), -1) for p in parts]
    )


def label_stats(dataset: Dataset) -> tuple[float, float]:
    parts = dataset.datasets if isinstance(dataset, ConcatDataset) else [dataset]
    labels = np.concatenate(
        [np.asarray(p.labels)[p.indices].reshape(len(p.indices), -1)[:, 0] for p in parts]
    )
    return float(labels.mean()), float(max(labels.std(), 1e-6))


def with_rule_bandwidth(cfg: PretrainConfig, train_set: Dataset) -> PretrainConfig:
    """``cfg`` with a sigma given as a rule (``scott``, ``silverman``) replaced by its value
    on the training labels, one per label dimension; ``cfg`` itself otherwise. The run's
    config.yaml and checkpoints then record the value (a resumed run computes the same)."""
    if not isinstance(cfg.sigma, str):
        return cfg
    sigma = rule_bandwidth(training_labels(train_set), cfg.sigma)
    log.info("sigma by %s's rule on %d training labels: %s", cfg.sigma, len(train_set), sigma)
    return dataclasses.replace(cfg, sigma=sigma[0] if len(sigma) == 1 else list(sigma))
