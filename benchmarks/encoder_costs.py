"""What each encoder costs to train: parameters, representation size and FLOPs per scan
and view (forward and backward, torch.utils.flop_counter) at each grid.

Counted on the meta device (shapes only, no arithmetic), so every encoder is counted at
the paper's grid in seconds on any machine; a contrastive step takes two views of each
scan, so twice these FLOPs. The baseline, in the same run: DenseNet121, the paper's
encoder. For choosing a network from another project (MedicalNet's ResNets, MONAI's deeper
DenseNets) to probe or fine-tune on CAT12 maps at scale.

    python -m benchmarks.encoder_costs [--grids 3 1.5] [--encoders densenet121 ...]
"""

import argparse

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import machine, markdown_table
from yaware.data.grid import cat12_grid
from yaware.models import ENCODERS, build_model
from yaware.models.stem import direct_stems

BASELINE = "densenet121"


def train_flops(encoder: str, shape: tuple[int, int, int], device: str = "meta") -> float:
    """FLOPs of one view of one scan of ``shape`` through ``encoder`` and back (batch 2,
    so that batch norm trains as it does), stems counted as the direct convolution."""
    with torch.device(device):
        model = build_model(encoder)
        x = torch.zeros(2, 1, *shape)
    with direct_stems(model), FlopCounterMode(display=False) as counter:
        model(x).sum().backward()
    return counter.get_total_flops() / 2


def encoder_row(encoder: str, grids: list[float], baseline: dict[float, float]) -> list[object]:
    with torch.device("meta"):
        model = build_model(encoder)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    flops = [train_flops(encoder, cat12_grid(mm).shape) for mm in grids]
    ratios = [f"{f / baseline[mm]:.2f}" for f, mm in zip(flops, grids, strict=True)]
    gflops = [f"{f / 1e9:,.0f}" if f >= 1e11 else f"{f / 1e9:.3g}" for f in flops]
    return [encoder, f"{params:.1f}", model.num_features, *gflops, *ratios]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grids", nargs="+", type=float, default=[3.0, 1.5])
    parser.add_argument("--encoders", nargs="+", default=list(ENCODERS), choices=list(ENCODERS))
    args = parser.parse_args()
    baseline = {mm: train_flops(BASELINE, cat12_grid(mm).shape) for mm in args.grids}
    shapes = {mm: "x".join(map(str, cat12_grid(mm).shape)) for mm in args.grids}
    header = [
        "encoder",
        "parameters (M)",
        "features",
        *(f"GFLOP per scan and view, {mm:g} mm ({shapes[mm]})" for mm in args.grids),
        *(f"x {BASELINE}, {mm:g} mm" for mm in args.grids),
    ]
    rows = [encoder_row(encoder, args.grids, baseline) for encoder in args.encoders]
    print(f"Machine: {machine()} (counts, not timings: the same on any machine)\n")
    print(markdown_table(header, rows))


if __name__ == "__main__":
    main()
