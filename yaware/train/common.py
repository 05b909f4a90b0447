"""Pieces shared by the pretraining and fine-tuning loops."""

import contextlib
import logging
import math
import os
import random
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from yaware.data.dataset import EpochSampler, ScanDataset
from yaware.data.participants import read_table, row_positions
from yaware.errors import ConfigError, DivergedError
from yaware.io import save_table
from yaware.train import distributed
from yaware.train.config import TrainingOptions

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: 'cuda' was asked for but no GPU is visible; use 'auto'")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def require_compiler(device: torch.device) -> None:
    """torch.compile builds its kernels with the host's compiler: C++ on the CPU, C for
    Triton's launchers on CUDA. Missing, it fails only at the first step, deep in inductor."""
    if device.type == "cpu":
        needed, candidates = "a C++ compiler", (os.environ.get("CXX"), "g++", "c++", "clang++")
    else:
        needed, candidates = "a C compiler", (os.environ.get("CC"), "gcc", "cc", "clang")
    if not any(shutil.which(name) for name in candidates if name):
        raise ConfigError(
            f"compile: true needs {needed} for torch.compile on {device.type} and none is on "
            "PATH; install one (e.g. gcc/g++) or set compile: false"
        )


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 autocast on CUDA by default, fp32 on the CPU; ``bf16`` on the CPU is refused.

    On the CPU, torch's bf16 3D convolution backward (oneDNN) can fill weight gradients with
    NaN when a feature map is 2 voxels wide along an axis (TinyCNN's last layer on the
    default grid): it reads memory it did not write. Measured with torch 2.13.0 on an AMD
    EPYC with avx512_bf16, where bf16 ran the TinyCNN step 1.2-1.4x faster; the training
    diverged within 1-4 epochs (docs/reliability.md has the reproduction).
    """
    if precision == "bf16" and device.type == "cpu":
        raise ConfigError(
            "precision: bf16 is refused on the CPU: torch's bf16 3D convolution backward "
            "there can return NaN weight gradients for small feature maps, and the training "
            "then diverges. Use precision: auto (fp32 on the CPU) or fp32, or train on a GPU"
        )
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def split_indices(table: pd.DataFrame, split: str | None, source: str) -> np.ndarray | None:
    """Rows of ``table`` listed in the split table ``split`` (None: all rows), sorted."""
    if split is None:
        return None
    return np.sort(row_positions(table, read_table(split), f"split {split} (for {source})"))


def memory_format(model: torch.nn.Module, device: torch.device) -> torch.memory_format:
    """The layout a run keeps its network and batches in: channels-last 3D on CUDA (tensor
    cores want it), and on the CPU for encoders that declare ``channels_last_on_cpu``
    (oneDNN's kernels for few channels: see benchmarks/RESULTS.md, "Training throughput")."""
    if device.type == "cuda" or getattr(model, "channels_last_on_cpu", False):
        layout = torch.channels_last_3d
    else:
        layout = torch.contiguous_format
    log.info("memory layout of the network and its batches on %s: %s", device.type, layout)
    return layout


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A batch of scans on ``device`` as float32 (float16 rows travel as they are stored)."""
    return x.to(device, non_blocking=True).float()


def make_loader(
    dataset: Dataset, options: TrainingOptions, shuffle: bool, device: torch.device
) -> tuple[DataLoader, EpochSampler]:
    parts = dataset.datasets if isinstance(dataset, ConcatDataset) else [dataset]
    for part in parts:
        if isinstance(part, ScanDataset):
            part.compact = device.type == "cuda"
    # Under data parallelism batch_size is the global batch: each rank loads its share.
    world = distributed.world_size()
    batch_size = max(1, options.batch_size // world)
    sampler = EpochSampler(len(dataset), options.seed, shuffle, distributed.rank(), world)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=options.num_workers,
        drop_last=shuffle and len(sampler) >= batch_size,
        pin_memory=device.type == "cuda",
        persistent_workers=options.num_workers > 0,
    )
    return loader, sampler


def effective_batch(options: TrainingOptions, n_train: int) -> dict[str, int]:
    """The batch each step trains on (the whole set when it is smaller than
    ``batch_size``), warned about then; what a checkpoint's meta records."""
    batch = min(options.batch_size, n_train)
    if options.batch_size > n_train:
        log.warning(
            "batch_size %d is larger than the %d training scans: each step trains on all of "
            "them (effective batch %d, recorded in the checkpoint's meta)",
            options.batch_size,
            n_train,
            batch,
        )
    return {"effective_batch_size": batch}


def lr_factor(options: TrainingOptions, step: int, steps_per_epoch: int) -> float:
    """Linear warm-up then, with ``schedule: cosine``, cosine decay to zero."""
    warmup = options.warmup_epochs * steps_per_epoch
    if step < warmup:
        return (step + 1) / warmup
    if options.schedule == "cosine":
        total = max(1, options.epochs * steps_per_epoch - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / total)))
    return 1.0


class StopRequest:
    """Turns SIGTERM (Slurm's time limit, scancel) and a first SIGINT (Ctrl-C) into a flag
    the loop checks per step; a second Ctrl-C stops at once, without saving."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.requested = False
        self.signum = 0

    def _handle(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and self.requested:
            raise KeyboardInterrupt
        hint = " (Ctrl-C again to quit without saving)" if signum == signal.SIGINT else ""
        log.warning("signal %d received: saving a checkpoint after this step%s", signum, hint)
        self.requested, self.signum = True, signum

    @contextlib.contextmanager
    def installed(self) -> Iterator["StopRequest"]:
        try:
            previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        except ValueError:  # not the main thread: leave signals alone
            yield self
            return
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


class Interrupted(Exception):
    """Raised after a checkpoint was saved on a signal; the CLI exits with 128 + its
    number (143 for SIGTERM, 130 for Ctrl-C)."""

    def __init__(self, message: str, signum: int = signal.SIGTERM) -> None:
        super().__init__(message)
        self.signum = signum


def require_finite_losses(row: dict[str, Any], lr: float, kept: str) -> None:
    """Stop a run whose epoch ended with a NaN or infinite loss, before it saves weights.

    One non-finite step poisons the weights and the optimizer's moments, so every later
    epoch would be NaN too, and the probes downstream would fail far from the cause.
    """
    losses = {k: v for k, v in row.items() if k.endswith("loss") and v is not None}
    bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
    if bad:
        raise DivergedError(
            f"epoch {row['epoch']}: {', '.join(f'{k} {v}' for k, v in bad.items())}: the "
            f"training diverged at learning rate {lr:g}. {kept} Lower 'lr' (or raise the "
            "temperature) and run again."
        )


def write_history(path: Path, history: list[dict[str, Any]]) -> None:
    save_table(path, pd.DataFrame(history))


def rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state()}


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
