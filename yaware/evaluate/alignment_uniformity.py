"""Alignment and uniformity of a representation (Wang & Isola, ICML 2020).

On the pretraining cohorts' validation scans, each seen through two views drawn by the
pretraining's augmentation, with f the L2-normalised representation (the encoder's output,
the one the probes read):

- alignment = mean_i ||f(x_i) - f(x'_i)||^2 (lower: the views of a scan agree)
- uniformity = log mean_{i < j} exp(-2 ||f(x_i) - f(x_j)||^2), averaged over the two
  views (lower: the scans spread over the sphere)

References:
    [0] Wang & Isola, "Understanding Contrastive Representation Learning through Alignment
        and Uniformity on the Hypersphere", ICML 2020, https://arxiv.org/abs/2005.10242
"""

import numpy as np
import torch
import torch.nn.functional as F

from yaware.augment import build_policy
from yaware.data.arrays import NpyArray
from yaware.data.participants import read_table, row_positions
from yaware.evaluate.features import model_encoder
from yaware.io import save_json
from yaware.train.common import resolve_device


def alignment(f1: torch.Tensor, f2: torch.Tensor) -> float:
    """Mean squared distance between the normalised representations of paired views."""
    f1, f2 = F.normalize(f1.double(), dim=1), F.normalize(f2.double(), dim=1)
    return float((f1 - f2).square().sum(1).mean())


def uniformity(f: torch.Tensor, t: float = 2.0) -> float:
    """Log of the mean Gaussian potential between the normalised representations."""
    squared = torch.pdist(F.normalize(f.double(), dim=1)).square()
    return float(torch.logsumexp(-t * squared, dim=0) - np.log(len(squared)))


@torch.inference_mode()
def view_representations(
    model: torch.nn.Module, scans: list[tuple[NpyArray, int]], augmentation: str, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The representations of two augmented views of every scan, in batches of 8."""
    device = resolve_device("auto")
    model = model.to(device).eval()
    shape = scans[0][0].row_shape
    policy = build_policy(augmentation, shape, seed=seed)
    views: tuple[list, list] = ([], [])
    for start in range(0, len(scans), 8):
        x = torch.from_numpy(np.stack([a.row(r) for a, r in scans[start : start + 8]]))
        x = x.to(device)
        for out in views:
            out.append(model.representation(policy(x)).float().cpu())
    return torch.cat(views[0]), torch.cat(views[1])


def run_alignment_uniformity(
    inputs: dict,
    output: str,
    checkpoint: str | None,
    encoder: str,
    trust: bool,
    seed: int,
    augmentation: str,
    threads: int,
) -> None:
    """The alignment_uniformity job: one model on the pooled validation scans."""
    torch.set_num_threads(threads)
    model = model_encoder(checkpoint, encoder, trust, seed)
    scans = []
    for data, table, split in zip(
        inputs["data"], inputs["participants"], inputs["split"], strict=True
    ):
        sides = read_table(split)
        rows = row_positions(read_table(table), sides[sides["split"] == "val"], split)
        array = NpyArray(data)
        scans += [(array, int(r)) for r in np.sort(rows)]
    f1, f2 = view_representations(model, scans, augmentation, seed)
    save_json(
        output,
        {
            "alignment": alignment(f1, f2),
            "uniformity": (uniformity(f1) + uniformity(f2)) / 2,
            "n_views": len(scans),
        },
    )
