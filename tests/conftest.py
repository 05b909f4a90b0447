"""Shared fixtures: a small generated cohort and config writers."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from yaware.data.toy import write_toy_cohort

TOY_SHAPE = (16, 20, 16)


def pytest_configure(config) -> None:
    """Under pytest-xdist each worker takes its share of the cores for torch, in process
    and in the interpreters it starts (OpenMP threads beyond the cores spin and stall)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        import torch  # here: the controlling process has no use for it

        share = max(1, (os.cpu_count() or 1) // workers)
        os.environ["OMP_NUM_THREADS"] = str(share)
        torch.set_num_threads(share)


@pytest.fixture(scope="session")
def toy_cohort(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("toy")
    write_toy_cohort(folder, n=30, shape=TOY_SHAPE, seed=0)
    return folder


def write_config(path: Path, **keys) -> Path:
    path.write_text(yaml.safe_dump(keys))
    return path


def _toy_sets(cohort: Path, *sides: str) -> dict:
    """``<side>_data`` and ``<side>_table`` keys of the toy cohort's training and
    validation arrays (the validation set again for any other side)."""
    files = {"train": "train", "val": "val", "test": "val"}
    keys = {}
    for side in sides:
        keys[f"{side}_data"] = str(cohort / f"{files[side]}.npy")
        keys[f"{side}_table"] = str(cohort / f"{files[side]}.tsv")
    return keys


def pretrain_keys(cohort: Path, out: Path, **overrides) -> dict:
    keys = {
        **_toy_sets(cohort, "train", "val"),
        "out_dir": str(out),
        "encoder": "tinycnn",
        "augmentation": "all_tf",
        "batch_size": 8,
        "epochs": 2,
        "lr": 1e-3,
    }
    return keys | overrides


def finetune_keys(cohort: Path, out: Path, **overrides) -> dict:
    """Fine-tuning on the toy cohort: sex (M vs F), the validation set also as test set."""
    keys = {
        **_toy_sets(cohort, "train", "val", "test"),
        "out_dir": str(out),
        "encoder": "tinycnn",
        "label": "sex",
        "positive": ["M"],
        "negative": ["F"],
        "epochs": 2,
        "batch_size": 4,
        "lr": 1e-3,
    }
    return keys | overrides


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """The installed command's entry point, in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "yaware.cli", *args], capture_output=True, text=True, timeout=600
    )


def with_trained_looking_norms(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """``model`` in eval mode with batch norms whose statistics and affine are not their
    initial values, so a norm left out or read from the wrong tensor changes the output."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm3d):
            shape = module.running_mean.shape
            module.running_mean.copy_(torch.rand(shape, generator=generator) * 0.4 - 0.2)
            module.running_var.copy_(torch.rand(shape, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(shape, generator=generator) + 0.5)
            module.bias.data.copy_(torch.rand(shape, generator=generator) * 0.2 - 0.1)
    return model.eval()


def zscored_representations(model: torch.nn.Module, scans: np.ndarray) -> np.ndarray:
    """What extract should write: the model's representation of the z-scored scans."""
    x = torch.from_numpy(scans)
    x = (x - x.mean(dim=(1, 2, 3, 4), keepdim=True)) / x.std(dim=(1, 2, 3, 4), keepdim=True)
    with torch.no_grad():
        return model.representation(x).numpy()


def signal_after_one_epoch(config: Path, out_dir: Path, signum: int) -> tuple[int, str]:
    """``yaware pretrain --config config`` in a child process, sent ``signum`` once its
    first epoch is written; its exit status and stderr."""
    from tests.workflow.helpers import wait_until

    command = [sys.executable, "-m", "yaware.cli", "pretrain", "--config", str(config)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_until((out_dir / "metrics.csv").exists, process, "one epoch")
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    return process.returncode, stderr
