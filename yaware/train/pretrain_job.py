"""The pretrain job of the workflow: one experiment's checkpoints kept or discarded, its
rows written, the engine (:mod:`yaware.train.pretrain`) run in this process or in one
process per GPU, and the loss curve drawn."""

import logging
import subprocess
import time
from pathlib import Path

import pandas as pd
import torch
import yaml

from yaware.data.participants import read_table
from yaware.errors import CheckpointError, YAwareError
from yaware.evaluate.loss_curve import loss_curve
from yaware.io import save_table, write_atomic
from yaware.models.checkpoint import read_checkpoint
from yaware.train.config import PretrainConfig, build_config, to_dict
from yaware.train.pretrain import BEST_KEPT, pretrain
from yaware.workflow.job_record import job_identity, keep_if_same_job
from yaware.workflow.launch import pretrain_command
from yaware.workflow.rule_params import JobSettings


class TrainingFailed(YAwareError):
    """The data-parallel launch failed; the processes' output is in the rule's log."""


def run_pretrain(
    inputs: dict,
    outputs: dict,
    params: dict,
    threads: int,
    gpus: int,
    nodes: int,
    log_path: str,
) -> None:
    """The pretrain job: one experiment on the pretraining cohorts' training rows, resumed
    from the checkpoints this same job left (a rerun for other data or settings starts
    over); with several GPUs, one process per GPU."""
    torch.set_num_threads(threads)
    experiment, settings = params["experiment"], params["settings"]
    out = Path(outputs["best"]).parent
    # Before anything is written there: a rerun for changed data or settings starts over.
    _discard_stale_checkpoint(out, _job(params, inputs), settings["epochs"])
    rows: dict[str, list[str]] = {"train": [], "val": []}
    for k, path in enumerate(inputs["split"]):  # one split table per pooled cohort
        split = read_table(path)
        for side, files in rows.items():
            files.append(str(out / f"{side}_rows_{k}.tsv"))
            save_table(files[-1], split.loc[split["split"] == side, ["participant_id", "session"]])
    cfg = _pretrain_config(inputs, rows, out, experiment, settings)
    if gpus > 1:  # one process per GPU, the global batch split between them
        _launch(cfg, out, gpus, nodes, log_path)
    else:
        pretrain(cfg, resume=True)
    metrics = pd.read_csv(out / "metrics.csv")
    loss_curve(metrics, outputs["curve"], out.name)


def _pretrain_config(
    inputs: dict, rows: dict, out: Path, experiment: dict, settings: dict
) -> PretrainConfig:
    """The engine's config of one experiment: its rows, method, sigma and settings."""
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
    if isinstance(experiment["sigma"], str):  # a bandwidth rule, resolved by the engine
        keys["sigma"] = experiment["sigma"]
    elif experiment["sigma"] is not None:
        keys["sigma"] = float(experiment["sigma"])
    elif experiment["method"] == "decoupled_uniformity":
        keys["sigma"] = None  # no kernel prior
    if "prior_lambda" in settings:
        keys["prior_lambda"] = settings["prior_lambda"]
    return build_config(PretrainConfig, keys, source="workflow config (pretraining)")


def _launch(cfg: PretrainConfig, out: Path, gpus: int, nodes: int, log_path: str) -> None:
    """Data-parallel pretraining: ``gpus`` processes per node, their output in the log."""
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


def _job(params: dict, inputs: dict) -> dict:
    """What a kept checkpoint must have been made by to be resumed. Without a cosine
    schedule the learning rate does not depend on the number of epochs, so a run of more
    epochs passes through this one's checkpoints: a finished run is then trained on, not
    trained again."""
    settings = params["settings"]
    if settings["schedule"] != "cosine":
        settings = JobSettings(settings, (*settings.unrecorded, "epochs"))
    files = [path for paths in inputs.values() for path in paths]
    return job_identity(params | {"settings": settings}, files)


def _discard_stale_checkpoint(out: Path, job: dict, epochs: int) -> None:
    """Keep the checkpoints only if this job left them, and only if they can be read."""
    if not keep_if_same_job(out, job, ("last.pt", BEST_KEPT)):
        return
    last = out / "last.pt"
    if not last.exists():
        return
    try:
        trained = read_checkpoint(last).get("epoch", 0)
    except CheckpointError as err:
        # A retry would fail on it forever; kept aside for inspection, the run starts over.
        kept = last.with_name(f"last.unreadable-{time.strftime('%Y%m%d-%H%M%S')}.pt")
        last.rename(kept)
        logging.warning("%s; moved to %s, starting over", err, kept)
        return
    if trained > epochs:  # trained past the new end: not a checkpoint of this run
        logging.info("%s holds epoch %d, past epochs: %d; starting over", last, trained, epochs)
        last.unlink()
        (out / BEST_KEPT).unlink(missing_ok=True)
        return
    logging.info("resuming from %s", last)
