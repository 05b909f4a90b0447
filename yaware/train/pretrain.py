"""The pretraining engine: the objective of ``cfg.method`` (:mod:`yaware.train.objectives`:
y-Aware, SimCLR, Age supervision, Model Genesis) trained on one or several GPUs or the CPU.

Writes into ``out_dir``: ``last.pt`` (every epoch), ``best.pt`` (lowest validation loss,
or training loss without validation), ``metrics.csv`` and the resolved ``config.yaml``.
``best.pt`` is published from ``.best.pt``, which a workflow manager does not know of: when
Snakemake deletes a failed job's outputs before its retry, the best weights survive.
All writes are atomic. ``resume=True`` continues from ``last.pt``; a run stopped by
SIGTERM saves a mid-epoch checkpoint first. On the CPU with a fixed seed a resumed run
ends with the same weights as an uninterrupted one.
"""

import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn
from torch.utils.data import Dataset
from tqdm import tqdm

from yaware import __version__
from yaware.augment import AugmentationPolicy, build_policy
from yaware.augment.genesis import GenesisCorruption
from yaware.data.grid import check_fits_encoder
from yaware.errors import ConfigError, DataError
from yaware.io import publish, write_atomic
from yaware.models import build_encoder
from yaware.models.checkpoint import portable_state_dict, read_checkpoint, save_checkpoint
from yaware.run_folder import locked_folder
from yaware.train import distributed
from yaware.train.allocator import keep_freed_memory
from yaware.train.common import (
    Interrupted,
    StopRequest,
    autocast_dtype,
    lr_factor,
    make_loader,
    memory_format,
    require_compiler,
    require_finite_losses,
    resolve_device,
    rng_state,
    seed_everything,
    write_history,
)
from yaware.train.config import PretrainConfig, as_list, to_dict
from yaware.train.objectives import OBJECTIVES, Objective, PretrainNetwork
from yaware.train.pretrain_checks import check_out_dir, check_resume_epochs, check_sets
from yaware.train.pretrain_data import label_stats, pretraining_sets, with_rule_bandwidth
from yaware.train.resume import check_resumable, restore
from yaware.train.staging import staged
from yaware.train.watch import EventLog, validation_age_mae

log = logging.getLogger(__name__)

BEST_KEPT = ".best.pt"

# Fixed so that every epoch's validation loss sees the same views.
VALIDATION_SEED_OFFSET = 7919

# Steps between updates of the progress bar's running loss (each one waits for the GPU).
PROGRESS_EVERY = 25
# Steps between asking every rank whether one was told to stop. The question is an
# all-reduce read back on the host, so it makes the host wait for the device; asked each
# step, the GPUs would idle while the host queues the next step's augmentation. Every few
# steps (and at each epoch's end) is soon enough for a Slurm grace period.
STOP_CHECK_EVERY = 8
# Copy and augment each batch on a second CUDA stream (yaware.train.staging); off only for
# the GPU benchmark's same-call baseline.
SIDE_STREAM = True


def _rank_seed(seed: int) -> int:
    """Each rank draws its own views; rank 0 draws exactly what a single process would."""
    return seed + 1_000_003 * distributed.rank()


def _wrap(network: PretrainNetwork, cfg: PretrainConfig, device: torch.device) -> nn.Module:
    """DistributedDataParallel under torchrun (BatchNorm synchronised on request)."""
    if distributed.world_size() == 1:
        return network
    if cfg.batch_size % distributed.world_size():
        raise ConfigError(
            f"batch_size {cfg.batch_size} (the global batch) must be a multiple of the "
            f"{distributed.world_size()} processes"
        )
    if cfg.sync_batchnorm:
        if device.type != "cuda":
            raise ConfigError("sync_batchnorm needs GPUs (torch's SyncBatchNorm runs on CUDA)")
        network = nn.SyncBatchNorm.convert_sync_batchnorm(network)
    return nn.parallel.DistributedDataParallel(
        network,
        device_ids=[device.index] if device.type == "cuda" else None,
        # The projection head is unused when the method trains its own head.
        find_unused_parameters=OBJECTIVES[cfg.method].own_head,
    )


@dataclass
class _Run:
    """What one pretraining trains and keeps: the network's parts, their optimiser and
    schedule, the augmentation and corruption streams, and the history so far."""

    cfg: PretrainConfig
    model: nn.Module
    extras: nn.ModuleDict
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    policy: AugmentationPolicy
    corruption: GenesisCorruption | None
    meta: dict[str, Any]
    last: Path
    layout: torch.memory_format = torch.contiguous_format
    state: dict[str, Any] = field(
        default_factory=lambda: {
            "epoch": 0,
            "step": 0,
            "partial": None,
            "history": [],
            "best": None,
        }
    )

    def save(self, epoch: int, step: int, partial: dict | None) -> dict[str, Any] | None:
        """Rank 0 writes last.pt with every rank's augmentation state; the others wait."""
        policy_states = distributed.all_objects(self.policy.state_dict())
        corruption = self.corruption.state_dict() if self.corruption else None
        corruption_states = distributed.all_objects(corruption)
        if not distributed.is_main():
            distributed.barrier()
            return None
        payload = {
            "epoch": epoch,
            "step": step,
            "partial": partial,
            "model": portable_state_dict(self.model),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "policy": policy_states[0],
            "policy_ranks": policy_states,
            "extras": portable_state_dict(self.extras),
            "corruption": corruption_states[0],
            "corruption_ranks": corruption_states,
            "rng": rng_state(),
            "history": self.state["history"],
            "best": self.state["best"],
            "meta": self.meta,
        }
        save_checkpoint(self.last, payload)
        distributed.barrier()
        return payload


def pretrain(
    cfg: PretrainConfig,
    resume: bool = False,
    stop_after_epochs: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Run (or resume) a pretraining; returns the path of ``last.pt``.

    A folder that holds a run is refused unless ``resume`` (go on from its ``last.pt``) or
    ``overwrite`` (start over). The folder is locked for the run's length (rank 0).
    ``stop_after_epochs`` ends this invocation after that many epochs in total, leaving a
    checkpoint to resume from (used to split long runs and to test resumption).
    """
    out = Path(cfg.out_dir)
    device = distributed.init_from_env(cfg.device) or resolve_device(cfg.device)
    if device.type == "cpu":
        keep_freed_memory()
    if cfg.compile:
        require_compiler(device)
    amp = autocast_dtype(cfg.precision, device)  # refuses bf16 on the CPU before any output
    # Unusable inputs stop the run before it writes anything.
    train_set, val_set, shape = pretraining_sets(cfg)
    cfg = with_rule_bandwidth(cfg, train_set)
    check_fits_encoder(cfg.encoder, shape, as_list(cfg.train_data)[0])
    if len(train_set) < 2:
        raise DataError(f"{cfg.train_table}: at least 2 training scans are needed")
    notes = check_sets(cfg, train_set, val_set) if distributed.is_main() else {}
    lock = locked_folder(out, "pretrain") if distributed.is_main() else contextlib.nullcontext()
    with lock:
        last = out / "last.pt"
        kept = read_checkpoint(last) if resume and last.is_file() else None
        if kept is not None:
            check_resumable(last, kept, cfg)
            check_resume_epochs(last, kept, cfg.epochs)
        if distributed.is_main():
            check_out_dir(out, resume, overwrite)
            write_atomic(
                out / "config.yaml", lambda h: h.write(yaml.safe_dump(to_dict(cfg)).encode())
            )
        run, objective, loader, sampler = _build(cfg, device, amp, train_set, shape, last)
        run.meta |= notes
        if kept is not None:
            run.state = restore(kept, run)
            log.info("resuming %s at epoch %d step %d", last, run.state["epoch"], run.state["step"])
        end = cfg.epochs if stop_after_epochs is None else min(cfg.epochs, stop_after_epochs)
        _train(run, objective, loader, sampler, (train_set, val_set), shape, device, end)
    return last


def _train(
    run: _Run, objective: Objective, loader, sampler, sets: tuple, shape, device, end: int
) -> None:
    """The epochs from where the run is to ``end``, each with its validation loss and age
    probe, then the files a workflow manager's retry may have removed."""
    cfg, out = run.cfg, run.last.parent
    main = distributed.is_main()  # rank 0 writes every file
    fresh = run.state["epoch"] == 0 and run.state["step"] == 0
    events = EventLog(out, "pretrain", fresh) if main else None
    with StopRequest().installed() as stop:
        for epoch in range(run.state["epoch"], end):
            row = _train_epoch(run, objective, loader, sampler, epoch, stop, device)
            row["val_loss"] = _validate(objective, sets[1], shape, cfg, device)
            # Every method's representation probed for the proxy label, SimCLR's too.
            row["val_age_mae"] = (
                validation_age_mae(run.model, *sets, device, run.layout) if main else None
            )
            row = {key: row[key] for key in HISTORY_COLUMNS}
            _end_epoch(run, row, epoch, out)
            if events:
                events.add(row)
    if events:
        events.close()
    if main and not (out / "best.pt").exists() and (out / BEST_KEPT).exists():
        publish(out / BEST_KEPT, out / "best.pt")  # removed by a workflow manager's retry
    if main and not (out / "metrics.csv").exists() and run.state["history"]:
        write_history(out / "metrics.csv", run.state["history"])
    distributed.barrier()


HISTORY_COLUMNS = ("epoch", "train_loss", "val_loss", "val_age_mae", "lr", "seconds", "scans_per_s")


def _build(
    cfg: PretrainConfig,
    device: torch.device,
    amp: torch.dtype | None,
    train_set: Dataset,
    shape: tuple[int, ...],
    last: Path,
) -> tuple[_Run, Objective, Any, Any]:
    """The network, optimiser, loader, augmentation and objective, made in a fixed order
    from the seed: a run and its resumption draw the same initial weights and views."""
    objective_class = OBJECTIVES[cfg.method]
    seed_everything(cfg.seed)
    model = build_encoder(cfg.encoder, "encoder", cfg.memory_efficient)
    layout = memory_format(model, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    model = model.to(device, memory_format=layout)
    extras = objective_class.extras(model).to(device, memory_format=layout)
    parameters = [*model.parameters(), *extras.parameters()]
    optimizer = torch.optim.Adam(parameters, lr=cfg.lr, weight_decay=cfg.weight_decay)
    loader, sampler = make_loader(train_set, cfg, shuffle=True, device=device)
    steps_per_epoch = max(1, len(loader))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(cfg, step, steps_per_epoch)
    )
    seed = _rank_seed(cfg.seed)
    policy = build_policy(_augmentation(cfg), shape, seed=seed)
    corruption = objective_class.corruption(shape, seed)
    network = _wrap(PretrainNetwork(objective_class, model, extras), cfg, device)
    objective = objective_class(cfg, network, device, label_stats(train_set), layout, amp)
    meta = {
        "encoder": cfg.encoder,
        "mode": "encoder",
        "input_shape": list(shape),
        "method": cfg.method,
        "yaware_version": __version__,
        "config": to_dict(cfg),
    }
    run = _Run(cfg, model, extras, optimizer, scheduler, policy, corruption, meta, last, layout)
    return run, objective, loader, sampler


def _augmentation(cfg: PretrainConfig) -> str:
    """The augmentation the method trains on: none for one that corrupts its own inputs."""
    return cfg.augmentation if OBJECTIVES[cfg.method].augmented else "none"


def _train_epoch(
    run: _Run, objective: Objective, loader, sampler, epoch: int, stop, device: torch.device
) -> dict[str, Any]:
    """One epoch's steps (from where a stopped run left off); saves mid-epoch and raises
    Interrupted when any rank was told to stop."""
    cfg, state, optimizer, scheduler = run.cfg, run.state, run.optimizer, run.scheduler
    steps_per_epoch = max(1, len(loader))
    single = distributed.world_size() == 1  # asking the other ranks costs nothing then
    skip_steps = state["step"] if epoch == state["epoch"] else 0
    partial = (state["partial"] if skip_steps else None) or {"loss": 0.0, "seconds": 0.0}
    sampler.set_epoch(epoch, skip=skip_steps * loader.batch_size)
    objective.train()
    start = time.perf_counter()
    bar = tqdm(
        loader,
        desc=f"epoch {epoch + 1}/{cfg.epochs}",
        leave=False,
        initial=skip_steps,
        total=steps_per_epoch,
        mininterval=5,
        disable=not distributed.is_main(),
    )
    # Summed on the device: reading the loss each step would make the host wait for the
    # GPU instead of queueing the next step's work.
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    batches = staged(bar, lambda b: objective.prepare(b, run.policy), device, SIDE_STREAM)
    for step, (inputs, y) in enumerate(batches, start=skip_steps):
        loss = objective.loss(inputs, y, run.corruption)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        loss_sum += loss.detach()
        if (step + 1) % PROGRESS_EVERY == 0:
            mean = (partial["loss"] + float(loss_sum)) / (step + 1)
            bar.set_postfix(loss=f"{mean:.3f}", refresh=False)
        check = single or (step + 1) % STOP_CHECK_EVERY == 0 or step + 1 == steps_per_epoch
        if check and distributed.any_rank(stop.requested, device):  # all ranks at once
            partial["loss"] += float(loss_sum)
            partial["seconds"] += time.perf_counter() - start
            run.save(epoch, step + 1, partial)
            raise Interrupted(
                f"stopped by signal; resume from {run.last} with --resume", stop.signum or 15
            )
    partial["loss"] += float(loss_sum)
    seconds = partial["seconds"] + time.perf_counter() - start
    # Scans one epoch trains on, over every rank: fewer than the batch size times the
    # steps when the cohort is smaller than one batch (the batch is then the cohort).
    per_rank = len(loader) * loader.batch_size if loader.drop_last else len(sampler)
    return {
        "epoch": epoch + 1,
        "train_loss": distributed.mean_over_ranks(partial["loss"] / steps_per_epoch, device),
        "lr": optimizer.param_groups[0]["lr"],
        "seconds": seconds,
        "scans_per_s": per_rank * distributed.world_size() / max(seconds, 1e-9),
    }


def _end_epoch(run: _Run, row: dict[str, Any], epoch: int, out: Path) -> None:
    """Refuse a diverged epoch; save last.pt, publish best.pt when it improved, write the
    history."""
    kept = f"{run.last} keeps epoch {epoch} (resume from it with --resume)."
    require_finite_losses(row, run.cfg.lr, kept if epoch else "No checkpoint was written.")
    state = run.state
    state["history"].append(row)
    score = row["val_loss"] if row["val_loss"] is not None else row["train_loss"]
    improved = state["best"] is None or score < state["best"]
    if improved:
        state["best"] = score
    payload = run.save(epoch + 1, 0, None)
    if distributed.is_main():
        if improved:
            save_checkpoint(out / BEST_KEPT, payload)
            publish(out / BEST_KEPT, out / "best.pt")
        write_history(out / "metrics.csv", state["history"])
        log.info("epoch %d: %s", epoch + 1, row)


@torch.no_grad()
def _validate(
    objective: Objective,
    dataset: Dataset | None,
    shape: tuple[int, ...],
    cfg: PretrainConfig,
    device: torch.device,
) -> float | None:
    if dataset is None or len(dataset) < 2:
        return None
    seed = _rank_seed(cfg.seed + VALIDATION_SEED_OFFSET)
    policy = build_policy(_augmentation(cfg), shape, seed=seed)
    corruption = OBJECTIVES[cfg.method].corruption(shape, seed)
    loader, _ = make_loader(dataset, cfg, shuffle=False, device=device)
    objective.train(False)
    total, count = 0.0, 0
    for batch in loader:
        if len(batch[0]) < 2:  # a contrastive loss needs two scans
            continue
        inputs, y = objective.prepare(batch, policy)
        total += float(objective.loss(inputs, y, corruption)) * len(batch[0])
        count += len(batch[0])
    return distributed.mean_over_ranks(total / count, device) if count else None
