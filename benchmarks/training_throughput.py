"""Training throughput of one pretraining step, and whether the data path keeps up.

For each encoder and grid: scans/s of a y-Aware step (two views per scan: augmentation,
forward, loss, backward, Adam), FLOPs per scan (torch.utils.flop_counter, forward and
backward of both views) and the implied fraction of a peak rate, in both memory layouts
(contiguous and channels-last 3D; the one pretraining picks is marked). Then, for the CPU
default (tinycnn at 6 mm), the rate at which the DataLoader delivers scans from a
memory-mapped array next to the rate the encoder consumes them, measured in one run.

    python -m benchmarks.training_throughput [--grids 6 1.5] [--encoders tinycnn densenet121]
"""

import argparse
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import machine, markdown_table
from yaware.augment import build_policy
from yaware.data.dataset import ScanDataset
from yaware.data.grid import cat12_grid
from yaware.losses import YAwareInfoNCE
from yaware.models import build_model
from yaware.models.stem import StemConv3d, direct_stems
from yaware.train.allocator import keep_freed_memory
from yaware.train.common import memory_format


def yaware_step(
    encoder: str,
    shape: tuple[int, ...],
    batch: int,
    device: str,
    layout: torch.memory_format | None = None,
) -> tuple[torch.nn.Module, Callable[[], None]]:
    """The model and one y-Aware step on a fixed random batch: two cutout views of each
    scan, forward, loss, backward, Adam; in ``layout`` (None: the one pretraining uses)."""
    model = build_model(encoder)
    layout = layout or memory_format(model, torch.device(device))
    model = model.to(device, memory_format=layout)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    loss_fn = YAwareInfoNCE(5.0)
    policy = build_policy("cutout", shape, seed=0)
    x = torch.rand(batch, 1, *shape, device=device)
    y = torch.rand(batch, device=device) * 60 + 20

    def step() -> None:
        z = model(policy(torch.cat([x, x])).contiguous(memory_format=layout))
        loss = loss_fn(*z.chunk(2), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return model, step


def step_rate(
    encoder: str,
    shape: tuple[int, ...],
    batch: int,
    steps: int,
    device: str,
    s2d: bool = True,
    layout: torch.memory_format | None = None,
) -> tuple[float, float]:
    """(scans/s, FLOPs per scan) of full training steps; ``s2d=False``: direct stems;
    ``layout``: the memory format (None: pretraining's)."""
    model, step = yaware_step(encoder, shape, batch, device, layout)
    with direct_stems(model), FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops() / batch
    with nullcontext() if s2d else direct_stems(model):
        step()  # warm-up
        start = time.perf_counter()
        for _ in range(steps):
            step()
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    return batch * steps / seconds, flops


def measured_peak_flops(device: str) -> float:
    """A float32 (CPU) or bf16 (CUDA) matrix-multiply rate measured here, FLOP/s."""
    n = 2048 if device == "cpu" else 8192
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    repeats = 5
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    if device == "cuda":
        torch.cuda.synchronize()
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def loader_rate(shape: tuple[int, ...], n: int, batch: int, workers: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        array = np.lib.format.open_memmap(
            Path(tmp) / "x.npy", mode="w+", dtype="float32", shape=(n, 1, *shape)
        )
        array[:] = np.random.default_rng(0).random((n, 1, *shape), dtype=np.float32)
        array.flush()
        del array
        table = Path(tmp) / "p.tsv"
        pd.DataFrame({"participant_id": [f"s{i}" for i in range(n)], "age": 40.0}).to_csv(
            table, sep="\t", index=False
        )
        loader = DataLoader(
            ScanDataset(Path(tmp) / "x.npy", table, label="age"),
            batch_size=batch,
            num_workers=workers,
        )
        start = time.perf_counter()
        count = sum(len(x) for x, _ in loader)
        return count / (time.perf_counter() - start)


STEMS = {True: "space-to-depth", False: "-"}
LAYOUTS = {torch.contiguous_format: "contiguous", torch.channels_last_3d: "channels-last"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grids", type=float, nargs="+", default=[6.0, 1.5])
    parser.add_argument("--encoders", nargs="+", default=["tinycnn", "resnet18", "densenet121"])
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        keep_freed_memory()  # as the engine does (benchmarks/cpu_allocator.py compares)
    print(f"Machine: {machine()}\n")
    peak = measured_peak_flops(device)
    rows = []
    for voxel in args.grids:
        shape = cat12_grid(voxel).shape
        for encoder in args.encoders:
            batch = 16 if voxel >= 3 else 2
            model = build_model(encoder)
            engine = memory_format(model, torch.device(device))
            has_stem = any(isinstance(m, StemConv3d) for m in model.modules())
            # The direct stem in the engine's layout (baseline), then the engine's stem in
            # both layouts (the engine's choice marked).
            variants = [("direct", False, engine)] if has_stem else []
            variants += [(STEMS[has_stem], True, layout) for layout in LAYOUTS]
            for stem, s2d, layout in variants:
                rate, flops = step_rate(encoder, shape, batch, args.steps, device, s2d, layout)
                grid = "x".join(map(str, shape))
                name = LAYOUTS[layout] + (" (engine)" if layout == engine else "")
                row = [encoder, stem, name, grid, batch, rate, flops / 1e9, rate * flops / peak]
                rows.append(row)
    print(f"Measured matrix-multiply rate: {peak / 1e9:.0f} GFLOP/s ({device})\n")
    header = [
        *("encoder", "stem", "layout", "grid", "batch"),
        *("scans/s", "GFLOP/scan", "fraction of peak"),
    ]
    print(markdown_table(header, rows))
    shape = cat12_grid(6.0).shape
    consumed, _ = step_rate("tinycnn", shape, 64, args.steps, device)
    delivered = loader_rate(shape, 512, 64, workers=0)
    print("\nData path vs encoder, CPU default (tinycnn, 6 mm, batch 64, cutout):\n")
    print(
        markdown_table(
            ["loader scans/s (0 workers, mmap)", "encoder scans/s", "ratio"],
            [[delivered, consumed, f"{delivered / consumed:.1f}x"]],
        )
    )


if __name__ == "__main__":
    main()
