"""Snakemake script: fine-tune (or train from scratch) on one draw of one task."""

from pathlib import Path

import torch

from yaware.data.participants import read_table
from yaware.data.splits import task_pool, training_draw
from yaware.io import save_table
from yaware.models.checkpoint import encoder_name_of, read_checkpoint
from yaware.train.config import FinetuneConfig, build_config
from yaware.train.finetune import finetune
from yaware.workflow.logged import run_logged


def main(
    inputs: dict,
    outputs: dict,
    cohort: str,
    n_target: int,
    repeat: int,
    split_seed: int,
    task: dict,
    encoder: str | None,
    trust: bool,
    settings: dict,
    seed: int,
    threads: int,
) -> None:
    torch.set_num_threads(threads)
    out = Path(outputs["metrics"]).parent
    # The draw is made here, as the draws job makes it for the probes (the same rows), so
    # that adding an N_target or a repeat reruns no fine-tuning already done.
    split = read_table(inputs["split"])
    chosen = training_draw(
        task_pool(inputs["participants"], split, task), n_target, repeat, split_seed, cohort
    )
    save_table(out / "train_rows.tsv", chosen)
    save_table(
        out / "test_rows.tsv", split.loc[split["split"] == "test", ["participant_id", "session"]]
    )
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
    external = split.loc[split["split"] == "external", ["participant_id", "session"]]
    if len(external):  # splits.external_sites
        save_table(out / "external_rows.tsv", external)
        keys["external_split"] = str(out / "external_rows.tsv")
    if inputs.get("checkpoint"):
        keys |= {"pretrained": inputs["checkpoint"], "trust_checkpoint": trust}
        if encoder is None:  # the one the checkpoint records
            checkpoint = read_checkpoint(inputs["checkpoint"], trust)
            keys["encoder"] = encoder_name_of(checkpoint, source=inputs["checkpoint"])
    finetune(build_config(FinetuneConfig, keys, source="workflow config (fine_tuning)"))


run_logged(
    snakemake.log[0],
    main,
    dict(snakemake.input.items()),
    dict(snakemake.output.items()),
    snakemake.wildcards.cohort,
    int(snakemake.wildcards.n_target),
    int(snakemake.wildcards.repeat),
    snakemake.params.split_seed,
    snakemake.params.task,
    snakemake.params.encoder,
    snakemake.params.trust,
    snakemake.params.settings,
    snakemake.params.seed,
    snakemake.threads,
)
