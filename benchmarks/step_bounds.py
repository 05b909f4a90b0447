"""How fast a DenseNet121 pretraining step could run on a GPU: a lower bound on its time.

    python -m benchmarks.step_bounds [--ceilings benchmarks/gpu/h200-2026-11-26-b.json]
        [--step benchmarks/gpu/h200-2026-11-26-e.json] [--baselines 9.2 11.3]

The bound adds two parts that no step of this network avoids:
- the convolutions, each with its fastest kernel and nothing else running: measured on the
  GPU (``gpu_pretrain --sections convolutions``, read from the ``--ceilings`` file);
- the memory traffic of the layers between them, at the device's measured copy bandwidth
  (the same file): every batch norm with its ReLU fused reads its input twice and writes
  it once forward (statistics, then the normalised values), and reads the output
  gradient and the input twice and writes the input gradient backward (the two sums,
  then the gradient); each pooling reads its input and writes its output, and the
  reverse backward. Concatenations cost nothing here: a compiler can read the pieces
  where they lie.

Everything else a real step does (augmentation, loss, optimizer, casts, kernel launches)
only adds time. The sizes come from one forward pass on torch's meta device (shapes, no
arithmetic), so this runs anywhere in a second. It prints the bound, the measured step
and the step time that 20x each baseline rate (the original's data path) would need.
"""

import argparse
import json
from pathlib import Path

import torch
from torch import nn

from benchmarks.common import markdown_table
from yaware.models import densenet121

HERE = Path(__file__).resolve().parent
# Passes (forward, backward) over a batch norm's input: statistics, normalise (read,
# write); the two sums (reads of the gradient and the input), the input gradient (two
# reads, one write).
BATCH_NORM_PASSES = (3, 5)
# Passes over a pooling's input and over its output: forward reads the input and writes
# the output, backward reads the output's gradient and writes the input's.
POOL_PASSES = (1, 1)


def traffic_per_view(shape: tuple[int, int, int]) -> dict[str, float]:
    """Elements read and written per view and training step, by layer kind (see module doc)."""
    model = densenet121().to("meta")
    counts = {"batch norm + ReLU": 0.0, "pooling": 0.0}

    def batch_norm(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
        counts["batch norm + ReLU"] += args[0].numel() * sum(BATCH_NORM_PASSES)

    def pooling(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
        counts["pooling"] += (args[0].numel() + out.numel()) * sum(POOL_PASSES)

    for module in model.modules():
        if isinstance(module, nn.BatchNorm3d):
            module.register_forward_hook(batch_norm)
        elif isinstance(module, nn.MaxPool3d | nn.AvgPool3d):
            module.register_forward_hook(pooling)
    with torch.no_grad():
        model(torch.empty(1, 1, *shape, device="meta"))
    return counts


def _rows(path: Path, section: str) -> list[dict]:
    return json.loads(path.read_text())[section]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(121, 145, 121))
    parser.add_argument("--batch", type=int, default=32, help="scans per step (2 views each)")
    parser.add_argument("--bytes", type=int, default=2, help="per activation (2: bf16)")
    parser.add_argument("--ceilings", type=Path, default=HERE / "gpu/h200-2026-11-26-b.json")
    parser.add_argument("--step", type=Path, default=HERE / "gpu/h200-2026-11-26-e.json")
    parser.add_argument("--baselines", type=float, nargs="+", default=(9.2, 11.3))
    args = parser.parse_args()

    bandwidth = _rows(args.ceilings, "ceilings")[0]["copy_tb_s"] * 1e12
    convolutions = next(
        row for row in _rows(args.ceilings, "convolutions") if row["kind"] == "all convolutions"
    )
    saved = json.loads(args.step.read_text())
    measured = max(
        row["scans_s"]
        for name, rows in saved.items()
        if name != "machine"
        for row in rows
        if "scans_s" in row
    )
    views = 2 * args.batch
    rows = [["convolutions alone (measured)", "", f"{convolutions['ms_per_step']:.1f}"]]
    bound_ms = convolutions["ms_per_step"]
    for kind, elements in traffic_per_view(tuple(args.shape)).items():
        gigabytes = elements * views * args.bytes / 1e9
        ms = gigabytes * 1e9 / bandwidth * 1e3
        bound_ms += ms
        rows.append([f"{kind} at {bandwidth / 1e12:.2f} TB/s", f"{gigabytes:.1f}", f"{ms:.1f}"])
    rows.append(["lower bound of the step", "", f"{bound_ms:.1f}"])
    rows.append(["measured step (fastest in --step)", "", f"{args.batch / measured * 1e3:.1f}"])
    for baseline in args.baselines:
        need = args.batch / (20 * baseline) * 1e3
        rows.append([f"20x a baseline of {baseline:g} scans/s needs", "", f"{need:.1f}"])
    print(f"DenseNet121, {'x'.join(map(str, args.shape))}, {args.batch} scans per step\n")
    print(markdown_table(["part", "GB per step", "ms per step"], rows))
    print(
        f"\nBound: {args.batch / bound_ms * 1e3:.0f} scans/s; measured: {measured:.1f} scans/s"
        f" ({bound_ms / (args.batch / measured * 1e3):.0%} of the bound's speed)."
    )


if __name__ == "__main__":
    main()
