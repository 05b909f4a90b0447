"""Encoder representations of every scan of an array, in the array's row order."""

import os

import numpy as np
import torch
from torch import nn

from yaware.augment.transforms import ZScore
from yaware.data.arrays import NpyArray
from yaware.data.grid import check_fits_encoder
from yaware.errors import CheckpointError
from yaware.io import save_npy
from yaware.models import DENSENETS, build_model
from yaware.models.checkpoint import read_checkpoint
from yaware.models.weights import (
    encoder_of_weights,
    holds_final_norm,
    load_encoder_weights,
    recorded_encoder,
    state_dict_of,
    trained_shape_of,
    warn_if_trained_on_another_grid,
)
from yaware.train.common import resolve_device


def load_encoder(
    checkpoint_path: str | os.PathLike, encoder: str | None = None, trust: bool = False
) -> tuple[nn.Module, str]:
    """An encoder with the checkpoint's backbone weights; the name defaults to the recorded
    one, else the one its layer names are those of, else densenet121. A DenseNet whose trunk
    ends with ``features.norm5`` (a fine-tuned classifier's, MONAI's) keeps that batch norm,
    so the representation is the one the network that wrote it computed."""
    checkpoint = read_checkpoint(checkpoint_path, trust=trust)
    recorded = recorded_encoder(checkpoint)
    if encoder and recorded and encoder != recorded:
        raise CheckpointError(
            f"{checkpoint_path} holds a {recorded!r} encoder, not the {encoder!r} asked for: "
            f"ask for {recorded} (or for none: the recorded one is used)"
        )
    state = state_dict_of(checkpoint, str(checkpoint_path))
    name = encoder or recorded or encoder_of_weights(state, source=str(checkpoint_path))
    options = {"final_norm": True} if name in DENSENETS and holds_final_norm(state) else {}
    model = build_model(name, "encoder", **options)
    model.trained_on = (str(checkpoint_path), trained_shape_of(checkpoint))
    load_encoder_weights(model, state, source=str(checkpoint_path))
    return model, name


@torch.inference_mode()
def extract_features(
    model: nn.Module, array_path: str | os.PathLike, batch_size: int = 8, device: str = "cpu"
) -> np.ndarray:
    """Representations (N, F) of the z-scored scans, in the array's row order."""
    array = NpyArray(array_path)
    check_fits_encoder(getattr(model, "encoder_name", ""), array.row_shape, str(array_path))
    shape = array.row_shape[-3:]
    if hasattr(model, "trained_on"):  # set by load_encoder
        checkpoint_path, trained = model.trained_on
        warn_if_trained_on_another_grid(trained, shape, checkpoint_path, str(array_path))
    model = model.to(device).eval()
    zscore = ZScore()
    out = np.empty((len(array), model.num_features), dtype=np.float32)
    for start in range(0, len(array), batch_size):
        rows = range(start, min(start + batch_size, len(array)))
        x = torch.from_numpy(array.rows(rows)).to(device)
        out[start : start + len(rows)] = (
            model.representation(zscore.apply(x, {})).float().cpu().numpy()
        )
    return out


def model_encoder(checkpoint: str | None, encoder: str | None, trust: bool, seed: int) -> nn.Module:
    """A model's encoder: its checkpoint's (encoder None: the one it records), or, without
    one, the random encoder floor initialised from ``seed``."""
    if checkpoint:
        return load_encoder(checkpoint, encoder, trust=trust)[0]
    torch.manual_seed(seed)
    return build_model(encoder, "encoder")


def run_features(
    data: str,
    output: str,
    checkpoint: str | None,
    encoder: str | None,
    trust: bool,
    seed: int,
    settings: dict,
    threads: int,
) -> None:
    """The features job: one model's representation of every scan of one cohort. Without a
    checkpoint, the floor: an encoder initialised at random from ``seed``."""
    torch.set_num_threads(threads)
    model = model_encoder(checkpoint, encoder, trust, seed)
    device = str(resolve_device("auto"))
    save_npy(output, extract_features(model, data, settings["batch_size"], device))
