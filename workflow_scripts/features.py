"""Snakemake script: one model's representation of every scan of one cohort."""

import torch

from yaware.evaluate.features import extract_features, load_encoder
from yaware.io import save_npy
from yaware.models import build_model
from yaware.train.common import resolve_device
from yaware.workflow.logged import run_logged


def main(
    data: str,
    output: str,
    checkpoint: str | None,
    encoder: str | None,
    trust: bool,
    seed: int,
    settings: dict,
    threads: int,
) -> None:
    torch.set_num_threads(threads)
    if checkpoint:  # encoder None: the one the checkpoint records
        model, _ = load_encoder(checkpoint, encoder, trust=trust)
    else:  # the floor: a randomly initialised encoder
        torch.manual_seed(seed)
        model = build_model(encoder, "encoder")
    device = str(resolve_device("auto"))
    save_npy(output, extract_features(model, data, settings["batch_size"], device))


run_logged(
    snakemake.log[0],
    main,
    snakemake.input.data,
    snakemake.output[0],
    snakemake.input.get("checkpoint"),
    snakemake.params.encoder,
    snakemake.params.trust,
    snakemake.params.seed,
    snakemake.params.settings,
    snakemake.threads,
)
