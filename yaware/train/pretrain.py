"""Contrastive pretraining: two augmented views per scan, y-Aware InfoNCE or NT-Xent.

Writes into ``out_dir``: ``last.pt`` (every epoch), ``best.pt`` (lowest validation loss,
or training loss without validation), ``metrics.csv`` and the resolved ``config.yaml``.
``best.pt`` is published from ``.best.pt``, which a workflow manager does not know of: when
Snakemake deletes a failed job's outputs before its retry, the best weights survive.
All writes are atomic. ``resume=True`` continues from ``last.pt``; a run stopped by
SIGTERM saves a mid-epoch checkpoint first. On the CPU with a fixed seed a resumed run
ends with the same weights as an uninterrupted one.
"""

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import nn
from torch.utils.data import ConcatDataset, Dataset
from tqdm import tqdm

from yaware import __version__
from yaware.augment import AugmentationPolicy, build_policy
from yaware.augment.genesis import GenesisCorruption, min_max
from yaware.data.dataset import ScanDataset
from yaware.data.grid import check_fits_encoder
from yaware.data.participants import category_codes, read_table
from yaware.errors import CheckpointError, ConfigError, DataError
from yaware.io import make_folder, publish, write_atomic
from yaware.losses import NTXentLoss, YAwareInfoNCE
from yaware.models import DENSENETS, build_model
from yaware.models.base import Backbone3D
from yaware.models.checkpoint import portable_state_dict, read_checkpoint, save_checkpoint
from yaware.models.heads import AgeHead, GenesisDecoder
from yaware.train import distributed
from yaware.train.allocator import keep_freed_memory
from yaware.train.common import (
    Interrupted,
    StopRequest,
    autocast,
    autocast_dtype,
    lr_factor,
    make_loader,
    memory_format,
    require_compiler,
    require_finite_losses,
    resolve_device,
    restore_rng,
    rng_state,
    seed_everything,
    split_indices,
    to_device,
    write_history,
)
from yaware.train.config import PretrainConfig, as_list, to_dict
from yaware.train.staging import staged
from yaware.workflow.experiments import UNREAD_SETTINGS

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


def build_loss(cfg: PretrainConfig) -> nn.Module:
    if cfg.method == "simclr":
        return NTXentLoss(cfg.temperature)
    return YAwareInfoNCE(
        cfg.sigma, cfg.temperature, cfg.kernel, cfg.normalisation, method=cfg.loss_variant
    )


def build_encoder(name: str, mode: str = "encoder", memory_efficient: bool = False) -> nn.Module:
    wanted = memory_efficient and name in DENSENETS
    kwargs = {"memory_efficient": True} if wanted else {}
    return build_model(name, mode, **kwargs)


def _datasets(cfg: PretrainConfig) -> tuple[Dataset, Dataset | None, tuple[int, ...]]:
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


def build_extras(method: str, model: nn.Module) -> nn.ModuleDict:
    """Modules a comparison method trains beside the backbone and then discards."""
    if method == "age_supervision":
        return nn.ModuleDict({"age_head": AgeHead(model.num_features)})
    if method == "model_genesis":
        return nn.ModuleDict({"decoder": GenesisDecoder(model.num_features)})
    return nn.ModuleDict()


def _label_stats(dataset: Dataset) -> tuple[float, float]:
    parts = dataset.datasets if isinstance(dataset, ConcatDataset) else [dataset]
    labels = np.concatenate(
        [np.asarray(p.labels)[p.indices].reshape(len(p.indices), -1)[:, 0] for p in parts]
    )
    return float(labels.mean()), float(max(labels.std(), 1e-6))


class _Network(nn.Module):
    """The backbone with the method's extra modules, one forward per method.

    One module so that DistributedDataParallel can wrap every trained parameter at once.
    """

    def __init__(self, method: str, model: nn.Module, extras: nn.ModuleDict) -> None:
        super().__init__()
        self.method, self.model, self.extras = method, model, extras

    def forward(self, x: torch.Tensor, out_shape: tuple[int, ...] | None = None) -> torch.Tensor:
        if self.method == "age_supervision":
            return self.extras["age_head"](self.model.representation(x))
        if self.method == "model_genesis":
            return self.extras["decoder"](self.model.feature_map(x), out_shape)
        return self.model(x)


class _Objective:
    """One batch's loss for the configured method.

    - ``yaware`` / ``simclr``: two views of each scan projected at once, contrastive loss
      over the global batch (projections and labels gathered from every rank);
    - ``age_supervision``: one view, L1 loss of the predicted standardised age;
    - ``model_genesis``: a min-max scaled scan corrupted, restored by the decoder, MSE.
    """

    def __init__(
        self,
        cfg: PretrainConfig,
        network: nn.Module,
        device: torch.device,
        age_stats: tuple[float, float],
        layout: torch.memory_format,
        amp: torch.dtype | None,
    ) -> None:
        self.method, self.network, self.device, self.layout = cfg.method, network, device, layout
        # Compiled once per (train/eval mode, batch shape); the weights stay the network's.
        if cfg.compile:
            for module in network.modules():
                if isinstance(module, Backbone3D):
                    module.before_compile()
        self.forward = torch.compile(network) if cfg.compile else network
        self.amp = amp
        self.age_mean, self.age_std = age_stats
        self.contrastive = build_loss(cfg) if cfg.method in ("yaware", "simclr") else None

    def train(self, mode: bool = True) -> None:
        self.network.train(mode)

    def prepare(self, batch: Any, policy: AugmentationPolicy) -> tuple[torch.Tensor, ...]:
        """The batch on the device as the network's input: (views or scans, labels).

        Staged on a side CUDA stream by the training loop (:mod:`yaware.train.staging`).
        """
        x, y = batch
        x = to_device(x, self.device)
        y = y.to(self.device, non_blocking=True)
        if self.contrastive is not None:
            return self._layout(policy(torch.cat([x, x]))), y  # both views, drawn apart
        if self.method == "age_supervision":
            return self._layout(policy(x)), y
        return min_max(policy(x)), y  # Model Genesis corrupts it in loss()

    def loss(
        self, inputs: torch.Tensor, y: torch.Tensor, corruption: GenesisCorruption | None
    ) -> torch.Tensor:
        if self.contrastive is not None:
            with autocast(self.device, self.amp):
                z = self.forward(inputs)
            z1, z2 = z.float().chunk(2)
            z1, z2 = distributed.gather(z1), distributed.gather(z2)
            return self.contrastive(z1, z2, distributed.gather_labels(y))
        if self.method == "age_supervision":
            with autocast(self.device, self.amp):
                predicted = self.forward(inputs)
            return F.l1_loss(predicted.float(), (y - self.age_mean) / self.age_std)
        corrupted = corruption(inputs)
        with autocast(self.device, self.amp):
            restored = self.forward(self._layout(corrupted), inputs.shape[2:])
        return F.mse_loss(restored.float(), inputs)

    def _layout(self, views: torch.Tensor) -> torch.Tensor:
        return views.contiguous(memory_format=self.layout)


def _wrap(network: _Network, cfg: PretrainConfig, device: torch.device) -> nn.Module:
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
        find_unused_parameters=cfg.method in ("age_supervision", "model_genesis"),
    )


def pretrain(
    cfg: PretrainConfig, resume: bool = False, stop_after_epochs: int | None = None
) -> Path:
    """Run (or resume) a pretraining; returns the path of ``last.pt``.

    ``stop_after_epochs`` ends this invocation after that many epochs in total, leaving a
    checkpoint to resume from (used to split long runs and to test resumption).
    """
    out = Path(cfg.out_dir)
    device = distributed.init_from_env(cfg.device) or resolve_device(cfg.device)
    if device.type == "cpu":
        keep_freed_memory()
    main = distributed.is_main()  # rank 0 writes every file
    if cfg.compile:
        require_compiler(device)
    amp = autocast_dtype(cfg.precision, device)  # refuses bf16 on the CPU before any output
    # Unusable inputs stop the run before it writes anything.
    train_set, val_set, shape = _datasets(cfg)
    check_fits_encoder(cfg.encoder, shape, as_list(cfg.train_data)[0])
    if len(train_set) < 2:
        raise DataError(f"{cfg.train_table}: at least 2 training scans are needed")
    last = out / "last.pt"
    kept = read_checkpoint(last) if resume and last.is_file() else None
    if kept is not None:
        _check_resumable(last, kept, cfg)
    if main:
        make_folder(out)
        write_atomic(out / "config.yaml", lambda h: h.write(yaml.safe_dump(to_dict(cfg)).encode()))
    seed_everything(cfg.seed)
    model = build_encoder(cfg.encoder, "encoder", cfg.memory_efficient)
    layout = memory_format(model, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    model = model.to(device, memory_format=layout)
    extras = build_extras(cfg.method, model).to(device, memory_format=layout)
    parameters = [*model.parameters(), *extras.parameters()]
    optimizer = torch.optim.Adam(parameters, lr=cfg.lr, weight_decay=cfg.weight_decay)
    loader, sampler = make_loader(train_set, cfg, shuffle=True, device=device)
    steps_per_epoch = max(1, len(loader))
    single = distributed.world_size() == 1  # asking the other ranks costs nothing then
    # Scans one epoch trains on, over every rank: fewer than the batch size times the
    # steps when the cohort is smaller than one batch (the batch is then the cohort).
    per_rank = len(loader) * loader.batch_size if loader.drop_last else len(sampler)
    scans_per_epoch = per_rank * distributed.world_size()
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(cfg, step, steps_per_epoch)
    )
    # Model Genesis learns from its own corruptions, not from the contrastive augmentations.
    augmentation = "none" if cfg.method == "model_genesis" else cfg.augmentation
    seed = _rank_seed(cfg.seed)
    policy = build_policy(augmentation, shape, seed=seed)
    corruption = GenesisCorruption(shape, seed=seed) if cfg.method == "model_genesis" else None
    network = _wrap(_Network(cfg.method, model, extras), cfg, device)
    objective = _Objective(cfg, network, device, _label_stats(train_set), layout, amp)
    state: dict[str, Any] = {"epoch": 0, "step": 0, "partial": None, "history": [], "best": None}
    if kept is not None:
        state = _restore(kept, model, extras, optimizer, scheduler, policy, corruption)
        log.info("resuming %s at epoch %d step %d", last, state["epoch"], state["step"])
    meta = {
        "encoder": cfg.encoder,
        "mode": "encoder",
        "input_shape": list(shape),
        "method": cfg.method,
        "yaware_version": __version__,
        "config": to_dict(cfg),
    }

    def save(epoch: int, step: int, partial: dict | None) -> dict[str, Any] | None:
        """Rank 0 writes last.pt with every rank's augmentation state; the others wait."""
        policy_states = distributed.all_objects(policy.state_dict())
        corruption_states = distributed.all_objects(corruption.state_dict() if corruption else None)
        if not main:
            distributed.barrier()
            return None
        payload = {
            "epoch": epoch,
            "step": step,
            "partial": partial,
            "model": portable_state_dict(model),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "policy": policy_states[0],
            "policy_ranks": policy_states,
            "extras": portable_state_dict(extras),
            "corruption": corruption_states[0],
            "corruption_ranks": corruption_states,
            "rng": rng_state(),
            "history": state["history"],
            "best": state["best"],
            "meta": meta,
        }
        save_checkpoint(last, payload)
        distributed.barrier()
        return payload

    end = cfg.epochs if stop_after_epochs is None else min(cfg.epochs, stop_after_epochs)
    with StopRequest().installed() as stop:
        for epoch in range(state["epoch"], end):
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
                disable=not main,
            )
            # Summed on the device: reading the loss each step would make the host wait
            # for the GPU instead of queueing the next step's work.
            loss_sum = torch.zeros((), dtype=torch.float64, device=device)
            batches = staged(bar, lambda b: objective.prepare(b, policy), device, SIDE_STREAM)
            for step, (inputs, y) in enumerate(batches, start=skip_steps):
                loss = objective.loss(inputs, y, corruption)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                loss_sum += loss.detach()
                if (step + 1) % PROGRESS_EVERY == 0:
                    mean = (partial["loss"] + float(loss_sum)) / (step + 1)
                    bar.set_postfix(loss=f"{mean:.3f}", refresh=False)
                check = single or (step + 1) % STOP_CHECK_EVERY == 0
                check = check or step + 1 == steps_per_epoch
                if check and distributed.any_rank(stop.requested, device):  # all ranks at once
                    partial["loss"] += float(loss_sum)
                    partial["seconds"] += time.perf_counter() - start
                    save(epoch, step + 1, partial)
                    raise Interrupted(f"stopped by signal; resume from {last} with --resume")
            partial["loss"] += float(loss_sum)
            seconds = partial["seconds"] + time.perf_counter() - start
            train_loss = distributed.mean_over_ranks(partial["loss"] / steps_per_epoch, device)
            row = {
                "epoch": epoch + 1,
                "train_loss": train_loss,
                "val_loss": _validate(objective, val_set, shape, cfg, device),
                "lr": optimizer.param_groups[0]["lr"],
                "seconds": seconds,
                "scans_per_s": scans_per_epoch / max(seconds, 1e-9),
            }
            require_finite_losses(
                row,
                cfg.lr,
                f"{last} keeps epoch {epoch} (resume from it with --resume)."
                if epoch
                else "No checkpoint was written.",
            )
            state["history"].append(row)
            score = row["val_loss"] if row["val_loss"] is not None else row["train_loss"]
            improved = state["best"] is None or score < state["best"]
            if improved:
                state["best"] = score
            payload = save(epoch + 1, 0, None)
            if main:
                if improved:
                    save_checkpoint(out / BEST_KEPT, payload)
                    publish(out / BEST_KEPT, out / "best.pt")
                write_history(out / "metrics.csv", state["history"])
                log.info("epoch %d: %s", epoch + 1, row)
    if main and not (out / "best.pt").exists() and (out / BEST_KEPT).exists():
        publish(out / BEST_KEPT, out / "best.pt")  # removed by a workflow manager's retry
    if main and not (out / "metrics.csv").exists() and state["history"]:
        write_history(out / "metrics.csv", state["history"])
    distributed.barrier()
    return last


@torch.no_grad()
def _validate(
    objective: _Objective,
    dataset: Dataset | None,
    shape: tuple[int, ...],
    cfg: PretrainConfig,
    device: torch.device,
) -> float | None:
    if dataset is None or len(dataset) < 2:
        return None
    seed = _rank_seed(cfg.seed + VALIDATION_SEED_OFFSET)
    augmentation = "none" if cfg.method == "model_genesis" else cfg.augmentation
    policy = build_policy(augmentation, shape, seed=seed)
    corruption = GenesisCorruption(shape, seed=seed) if cfg.method == "model_genesis" else None
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


def _check_resumable(path: Path, checkpoint: dict[str, Any], cfg: PretrainConfig) -> None:
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


def _restore(
    checkpoint: dict[str, Any],
    model: nn.Module,
    extras: nn.ModuleDict,
    optimizer,
    scheduler,
    policy,
    corruption: GenesisCorruption | None,
) -> dict[str, Any]:
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    policy.load_state_dict(_rank_state(checkpoint, "policy"))
    extras.load_state_dict(checkpoint.get("extras") or {})
    if corruption is not None:
        corruption.load_state_dict(_rank_state(checkpoint, "corruption"))
    restore_rng(checkpoint["rng"])
    return {key: checkpoint[key] for key in ("epoch", "step", "partial", "history", "best")}


def _rank_state(checkpoint: dict[str, Any], key: str) -> Any:
    """This rank's saved stream of ``key`` when the run had as many ranks, else rank 0's."""
    states = checkpoint.get(f"{key}_ranks") or [checkpoint[key]]
    if len(states) == distributed.world_size():
        return states[distributed.rank()]
    return checkpoint[key]
