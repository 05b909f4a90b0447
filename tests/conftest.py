"""Shared fixtures: a small generated cohort and config writers."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from yaware.toy import write_toy_cohort

TOY_SHAPE = (16, 20, 16)


@pytest.fixture(scope="session")
def toy_cohort(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("toy")
    write_toy_cohort(folder, n=30, shape=TOY_SHAPE, seed=0)
    return folder


def write_config(path: Path, **keys) -> Path:
    path.write_text(yaml.safe_dump(keys))
    return path


def pretrain_keys(cohort: Path, out: Path, **overrides) -> dict:
    keys = {
        "train_data": str(cohort / "train.npy"),
        "train_table": str(cohort / "train.tsv"),
        "val_data": str(cohort / "val.npy"),
        "val_table": str(cohort / "val.tsv"),
        "out_dir": str(out),
        "encoder": "tinycnn",
        "augmentation": "all_tf",
        "batch_size": 8,
        "epochs": 2,
        "lr": 1e-3,
    }
    return keys | overrides


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """The installed command's entry point, in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "yaware.cli", *args], capture_output=True, text=True, timeout=600
    )
