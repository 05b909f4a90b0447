"""Snakemake script: one pretraining experiment on the pretraining cohort's training rows."""

import logging
import subprocess
import time
from pathlib import Path

import pandas as pd
import torch
import yaml

from yaware.checkpoint import read_checkpoint
from yaware.config import PretrainConfig, build_config, to_dict
from yaware.errors import CheckpointError, YAwareError
from yaware.experiments import UNREAD_SETTINGS
from yaware.io import save_table, write_atomic
from yaware.launch import pretrain_command
from yaware.loss_curve import loss_curve
from yaware.participants import read_table
from yaware.train.pretrain import pretrain
from yaware.workflow import run_logged


class TrainingFailed(YAwareError):
    """The data-parallel launch failed; the processes' output is in the rule's log."""


# A checkpoint left by an earlier run is resumed only if it was made with these unchanged.
MUST_MATCH = (
    "method",
    "sigma",
    "kernel",
    "temperature",
    "augmentation",
    "encoder",
    "batch_size",
    "lr",
    "weight_decay",
    "schedule",
    "warmup_epochs",
    "seed",
    "label",
    "normalisation",
)


def main(
    inputs: dict,
    outputs: dict,
    experiment: dict,
    settings: dict,
    threads: int,
    gpus: int,
    nodes: int,
    log_path: str,
) -> None:
    torch.set_num_threads(threads)
    out = Path(outputs["best"]).parent
    rows: dict[str, list[str]] = {"train": [], "val": []}
    for k, path in enumerate(inputs["split"]):  # one split table per pooled cohort
        split = read_table(path)
        for side, files in rows.items():
            files.append(str(out / f"{side}_rows_{k}.tsv"))
            save_table(files[-1], split.loc[split["split"] == side, ["participant_id", "session"]])
    keys = {
        "train_data": inputs["data"],
        "train_table": inputs["participants"],
        "train_split": rows["train"],
        "val_split": rows["val"],
        "out_dir": str(out),
        "label": settings["label"],
        "method": experiment["method"],
        "temperature": settings["temperature"],
        "kernel": settings["kernel"],
        "augmentation": experiment["augmentation"],
        "encoder": experiment["encoder"],
        "seed": experiment["seed"],
        "memory_efficient": settings["memory_efficient"],
        **{
            k: settings[k]
            for k in (
                "batch_size",
                "epochs",
                "lr",
                "weight_decay",
                "schedule",
                "warmup_epochs",
                "num_workers",
                "sync_batchnorm",
                "compile",
            )
        },
    }
    if experiment["sigma"] is not None:
        keys["sigma"] = float(experiment["sigma"])
    cfg = build_config(PretrainConfig, keys, source="workflow config (pretraining)")
    _discard_stale_checkpoint(out / "last.pt", cfg)
    if gpus > 1:  # one process per GPU, the global batch split between them
        launch = out / "launch.yaml"
        write_atomic(launch, lambda h: h.write(yaml.safe_dump(to_dict(cfg)).encode()))
        command = pretrain_command(launch, gpus, nodes)
        logging.info("launching %s", " ".join(command))
        with open(log_path, "a") as log:
            done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False)
        if done.returncode != 0:
            raise TrainingFailed(
                f"{gpus} pretraining processes exited with status {done.returncode}; "
                f"their output is in {log_path}"
            )
    else:
        pretrain(cfg, resume=True)
    metrics = pd.read_csv(out / "metrics.csv")
    loss_curve(metrics, outputs["curve"], out.name)


def _discard_stale_checkpoint(last: Path, cfg: PretrainConfig) -> None:
    if not last.exists():
        return
    try:
        checkpoint = read_checkpoint(last)
    except CheckpointError as err:
        # A retry would fail on it forever; kept aside for inspection, the run starts over.
        kept = last.with_name(f"last.unreadable-{time.strftime('%Y%m%d-%H%M%S')}.pt")
        last.rename(kept)
        logging.warning("%s; moved to %s, starting over", err, kept)
        return
    recorded = checkpoint.get("meta", {}).get("config", {})
    current = to_dict(cfg)
    # A setting the method never reads (SimCLR's kernel) cannot make its checkpoint stale.
    must_match = [k for k in MUST_MATCH if k not in UNREAD_SETTINGS[cfg.method]]
    changed = [k for k in must_match if recorded.get(k) != current.get(k)]
    if checkpoint.get("epoch", 0) > cfg.epochs:  # trained past the new end: not this run
        changed.append("epochs")
    if changed:
        logging.info("%s was made with other settings (%s): starting over", last, changed)
        last.unlink()
    else:
        logging.info("resuming from %s", last)


run_logged(
    snakemake.log[0],
    main,
    {k: list(v) for k, v in snakemake.input.items()},
    dict(snakemake.output.items()),
    snakemake.params.experiment,
    snakemake.params.settings,
    snakemake.threads,
    int(snakemake.resources.get("gpu", 1)),
    int(snakemake.resources.get("nodes", 1)),
    snakemake.log[0],
)
