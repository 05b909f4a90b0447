"""Fine-tuning: a classifier from pretrained encoder weights (or from scratch).

Cross-entropy with optional balanced class weights, validation ROC AUC and balanced
accuracy per epoch, the best epoch (by validation AUC) kept, and the test set's
predictions written as ``predictions.csv`` with ``test_metrics.json``.
"""

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml
from torch import nn
from tqdm import tqdm

from yaware import __version__
from yaware.augment import build_policy
from yaware.data.dataset import ScanDataset
from yaware.data.grid import check_fits_encoder
from yaware.data.labels import binary_labels
from yaware.data.participants import ID_COLUMN, read_table
from yaware.data.splits import task_pool, training_draw
from yaware.errors import ConfigError, DataError
from yaware.evaluate.probes import scores
from yaware.io import save_json, save_table, write_atomic
from yaware.models import build_encoder
from yaware.models.checkpoint import portable_state_dict, read_checkpoint, save_checkpoint
from yaware.models.weights import (
    encoder_name_of,
    load_encoder_weights,
    recorded_encoder,
    state_dict_of,
    trained_shape_of,
    warn_if_trained_on_another_grid,
)
from yaware.run_folder import locked_folder
from yaware.train.allocator import keep_freed_memory
from yaware.train.common import (
    autocast,
    autocast_dtype,
    effective_batch,
    lr_factor,
    make_loader,
    memory_format,
    require_finite_losses,
    resolve_device,
    seed_everything,
    split_indices,
    to_device,
    write_history,
)
from yaware.train.config import FinetuneConfig, build_config, to_dict
from yaware.train.staging import staged
from yaware.train.watch import EventLog

log = logging.getLogger(__name__)


def _task_dataset(
    cfg: FinetuneConfig, array: str, table_path: str, split: str | None
) -> ScanDataset:
    table = read_table(table_path)
    labels, in_task = binary_labels(table, cfg.label, cfg.positive, cfg.negative, table_path)
    dataset = ScanDataset(array, table_path, labels=labels)
    rows = split_indices(dataset.table, split, table_path)
    rows = np.arange(len(table)) if rows is None else rows
    dataset.indices = rows[in_task[rows]]
    if len(dataset) == 0:
        raise DataError(f"{split or table_path}: no row of this task; check label values")
    return dataset


def _split_datasets(cfg: FinetuneConfig) -> dict[str, ScanDataset]:
    sets = {"train": _task_dataset(cfg, cfg.train_data, cfg.train_table, cfg.train_split)}
    for name in ("val", "test"):
        array = getattr(cfg, f"{name}_data") or (
            cfg.train_data if getattr(cfg, f"{name}_split") else None
        )
        table = getattr(cfg, f"{name}_table") or cfg.train_table
        if array:
            sets[name] = _task_dataset(cfg, array, table, getattr(cfg, f"{name}_split"))
    if cfg.external_split:
        array, table = cfg.test_data or cfg.train_data, cfg.test_table or cfg.train_table
        sets["external"] = _task_dataset(cfg, array, table, cfg.external_split)
    classes = set(sets["train"].labels[sets["train"].indices].tolist())
    if classes != {0, 1}:
        raise DataError(f"{cfg.train_table}: the training rows hold only class {classes}")
    return sets


def _class_weights(cfg: FinetuneConfig, dataset: ScanDataset) -> torch.Tensor | None:
    if cfg.class_weights == "none":
        return None
    counts = np.bincount(dataset.labels[dataset.indices].astype(int), minlength=2)
    return torch.tensor(counts.sum() / (2.0 * counts), dtype=torch.float32)


def _initial_weights(
    cfg: FinetuneConfig, model: nn.Module, shape: tuple[int, ...]
) -> dict[str, Any]:
    if not cfg.pretrained:
        return {"pretrained": None}
    checkpoint = read_checkpoint(cfg.pretrained, trust=cfg.trust_checkpoint)
    recorded = recorded_encoder(checkpoint) or cfg.encoder
    if recorded != cfg.encoder:
        raise ConfigError(
            f"{cfg.pretrained} holds a {recorded!r} encoder but the config asks for "
            f"{cfg.encoder!r}; set encoder: {recorded}"
        )
    report = load_encoder_weights(
        model, state_dict_of(checkpoint, cfg.pretrained), source=cfg.pretrained
    )
    warn_if_trained_on_another_grid(
        trained_shape_of(checkpoint), shape, cfg.pretrained, cfg.train_data
    )
    return {"pretrained": cfg.pretrained, "loaded": len(report.loaded), "missing": report.missing}


@torch.no_grad()
def predict(
    model: nn.Module,
    dataset: ScanDataset,
    cfg: FinetuneConfig,
    device: torch.device,
    layout: torch.memory_format = torch.contiguous_format,
) -> np.ndarray:
    """Probability of the positive class for each scan of ``dataset``, in its order."""
    policy = build_policy("none", dataset.shape, seed=0)
    loader, _ = make_loader(dataset, cfg, shuffle=False, device=device)
    model.eval()
    probs = []
    for x, _ in loader:
        scans = policy(to_device(x, device)).contiguous(memory_format=layout)
        with autocast(device, autocast_dtype(cfg.precision, device)):
            logits = model(scans)
        probs.append(torch.softmax(logits.float(), dim=1)[:, 1].cpu())
    return torch.cat(probs).numpy()


def finetune(cfg: FinetuneConfig) -> Path:
    """Train the classifier; returns the path of the kept checkpoint (``best.pt``)."""
    out = Path(cfg.out_dir)
    device = resolve_device(cfg.device)
    amp = autocast_dtype(cfg.precision, device)  # refuses bf16 on the CPU before any output
    # Unusable inputs stop the run before it writes anything.
    sets = _split_datasets(cfg)
    check_fits_encoder(cfg.encoder, sets["train"].shape, cfg.train_data)
    with locked_folder(out, "finetune"):  # a second run into it is refused
        return _train_classifier(cfg, sets, device, amp)


def _train_classifier(
    cfg: FinetuneConfig, sets: dict[str, ScanDataset], device: torch.device, amp
) -> Path:
    """The epochs, each saving last.pt and best.pt, then the test predictions."""
    out = Path(cfg.out_dir)
    write_atomic(out / "config.yaml", lambda h: h.write(yaml.safe_dump(to_dict(cfg)).encode()))
    model, origin, layout = _classifier(cfg, sets["train"].shape, device)
    loss_fn = _loss(cfg, sets["train"], device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loader, sampler = make_loader(sets["train"], cfg, shuffle=True, device=device)
    steps = max(1, len(loader))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(cfg, s, steps))
    policy = build_policy(cfg.augmentation, sets["train"].shape, seed=cfg.seed)
    meta = {"encoder": cfg.encoder, "mode": "classifier", "yaware_version": __version__}
    meta |= {"config": to_dict(cfg), **origin, **effective_batch(cfg, len(sets["train"]))}
    history: list[dict[str, Any]] = []
    events = EventLog(out, "finetune", fresh=True)  # TensorBoard, beside metrics.csv
    best_score = -np.inf  # the kept epoch's

    def prepare(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Views and labels on the device, outside autocast (the views stay float32)."""
        views = policy(to_device(batch[0], device)).contiguous(memory_format=layout)
        return views, batch[1].to(device, non_blocking=True).long()

    def train_step(views: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with autocast(device, amp):
            logits = model(views)
        loss = loss_fn(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        return loss.detach()

    for epoch in range(cfg.epochs):
        sampler.set_epoch(epoch)
        model.train()
        start = time.perf_counter()
        # Summed on the device: reading each step's loss would make the host wait for it.
        total = torch.zeros((), dtype=torch.float64, device=device)
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, mininterval=5)
        for views, y in staged(bar, prepare, device):
            total += train_step(views, y)
        row = _epoch_row(epoch, float(total) / steps, start, out, cfg)
        row |= _validation_scores(model, sets.get("val"), cfg, device, layout)
        history.append(row)
        payload = {"epoch": epoch + 1, "model": portable_state_dict(model)}
        payload |= {"optimizer": optimizer.state_dict(), "meta": meta}
        save_checkpoint(out / "last.pt", payload)
        # Without a validation set the last epoch is kept (training loss would pick the
        # most overfitted epoch); with one, the best validation AUC.
        score = row.get("val_auc", float(epoch))
        score = float(epoch) if np.isnan(score) else score
        if score > best_score:
            best_score = score
            save_checkpoint(out / "best.pt", payload)
        write_history(out / "metrics.csv", history)
        events.add(row)
    events.close()
    if "test" in sets:
        _write_test_predictions(out, sets["test"], sets.get("external"), cfg, device, layout)
    return out / "best.pt"


def _classifier(
    cfg: FinetuneConfig, shape: tuple[int, ...], device: torch.device
) -> tuple[nn.Module, dict[str, Any], torch.memory_format]:
    """The classifier from the seed, with the pretrained weights it starts from, on the
    device; where its weights came from, and its memory layout."""
    if device.type == "cpu":
        keep_freed_memory()
    seed_everything(cfg.seed)
    model = build_encoder(cfg.encoder, "classifier", cfg.memory_efficient)
    origin = _initial_weights(cfg, model, shape[-3:])
    layout = memory_format(model, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    model.to(device, memory_format=layout)
    return model, origin, layout


def _loss(cfg: FinetuneConfig, train: ScanDataset, device: torch.device) -> nn.Module:
    weights = _class_weights(cfg, train)
    return nn.CrossEntropyLoss(weight=None if weights is None else weights.to(device))


def _validation_scores(
    model: nn.Module,
    val: ScanDataset | None,
    cfg: FinetuneConfig,
    device: torch.device,
    layout: torch.memory_format,
) -> dict[str, float]:
    """The epoch's validation AUC and balanced accuracy; none without a validation set."""
    if val is None:
        return {}
    probs = predict(model, val, cfg, device, layout)
    return {f"val_{k}": v for k, v in scores(val.labels[val.indices], probs).items()}


def _epoch_row(
    epoch: int, train_loss: float, start: float, out: Path, cfg: FinetuneConfig
) -> dict[str, Any]:
    """An epoch's row of metrics.csv, refused when its loss is not finite."""
    row: dict[str, Any] = {
        "epoch": epoch + 1,
        "train_loss": train_loss,
        "seconds": time.perf_counter() - start,
    }
    kept = f"{out / 'last.pt'} keeps epoch {epoch}." if epoch else "No checkpoint was written."
    require_finite_losses(row, cfg.lr, kept)
    return row


def _write_test_predictions(
    out: Path,
    test: ScanDataset,
    external: ScanDataset | None,
    cfg: FinetuneConfig,
    device: torch.device,
    layout: torch.memory_format,
) -> None:
    """predictions.csv and test_metrics.json of the kept model (and the external sites')."""
    model = build_encoder(cfg.encoder, "classifier").to(device, memory_format=layout)
    model.load_state_dict(read_checkpoint(out / "best.pt")["model"])
    metrics: dict[str, Any] = {}
    for name, dataset in (("", test), ("external_", external)):
        if dataset is None:
            continue
        probs = predict(model, dataset, cfg, device, layout)
        labels = dataset.labels[dataset.indices]
        if len(np.unique(labels)) < 2:
            source = cfg.external_split if name else cfg.test_split or cfg.test_data
            log.warning(
                "the %stest set (%s) holds class %s only: its AUC is undefined (NaN in "
                "test_metrics.json); choose test rows of both classes",
                name.replace("_", " "),
                source,
                np.unique(labels).tolist(),
            )
        rows = dataset.table.iloc[dataset.indices]
        keep = [c for c in (ID_COLUMN, "session") if c in rows.columns]
        # A table without ids (the original's metadata.csv): rows named by array row.
        named = rows[keep] if keep else pd.DataFrame({"row": dataset.indices})
        table = named.reset_index(drop=True).assign(
            label=labels, prob_positive=probs, prediction=(probs >= 0.5).astype(int)
        )
        save_table(out / f"{name}predictions.csv", pd.DataFrame(table))
        metrics |= {f"{name}{key}": value for key, value in scores(labels, probs).items()}
        metrics["n_external" if name else "n"] = len(labels)
    save_json(out / "test_metrics.json", {"n": metrics.pop("n"), **metrics})


def run_finetune(
    inputs: dict,
    outputs: dict,
    n_target: int,
    repeat: int,
    task: dict,
    encoder: str | None,
    trust: bool,
    settings: dict,
    seed: int,
    split_seed: int,
    cohort: str,
    threads: int,
) -> None:
    """The finetune job: one start (a checkpoint, or none: from scratch) trained on one draw,
    tested on the split's test rows (and its external sites). The job makes its draw with
    the draws job's function, so a new N_target reruns no fine-tuning done."""
    torch.set_num_threads(threads)
    out = Path(outputs["metrics"]).parent
    split = read_table(inputs["split"])
    pool = task_pool(inputs["participants"], split, task)
    chosen = training_draw(pool, n_target, repeat, split_seed, cohort)
    save_table(out / "train_rows.tsv", chosen)
    test = split.loc[split["split"] == "test", [ID_COLUMN, "session"]]
    save_table(out / "test_rows.tsv", test)
    keys = {
        "train_data": inputs["data"],
        "train_table": inputs["participants"],
        "train_split": str(out / "train_rows.tsv"),
        "test_data": inputs["data"],
        "test_table": inputs["participants"],
        "test_split": str(out / "test_rows.tsv"),
        "out_dir": str(out),
        "label": task["label"],
        "positive": [str(v) for v in task["positive"]],
        "negative": [str(v) for v in task["negative"]],
        "encoder": encoder,
        "seed": seed,
        **{k: settings[k] for k in ("epochs", "batch_size", "lr", "weight_decay", "augmentation")},
    }
    external = split.loc[split["split"] == "external", [ID_COLUMN, "session"]]
    if len(external):  # splits.external_sites
        save_table(out / "external_rows.tsv", external)
        keys["external_split"] = str(out / "external_rows.tsv")
    if inputs.get("checkpoint"):
        keys |= {"pretrained": inputs["checkpoint"], "trust_checkpoint": trust}
        if encoder is None:  # the one the checkpoint records
            checkpoint = read_checkpoint(inputs["checkpoint"], trust)
            keys["encoder"] = encoder_name_of(checkpoint, source=inputs["checkpoint"])
    finetune(build_config(FinetuneConfig, keys, source="workflow config (fine_tuning)"))
