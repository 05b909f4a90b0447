"""Pretraining epochs of each method, through `yaware pretrain`, as a workflow job runs them.

One process per (method, repeat): the command-line entry point on a synthetic cohort of
the default grid (TinyCNN, 31x37x31, batch 64, one thread), for ``--epochs`` epochs.
Reported per method: the median scans/s of the epochs after the first (from the run's
metrics.csv: training steps, with the augmentations or Model Genesis's corruptions) and
the process's wall seconds (start-up, validation and checkpoints included). Baseline in
the same run: with ``--compare DIR``, the same runs from another checkout's ``yaware``
(e.g. ``git worktree add /tmp/before HEAD~1``), alternating with this one's.

    python -m benchmarks.pretrain_methods [--epochs 3] [--repeats 2] [--compare DIR]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

from benchmarks.common import machine, markdown_table
from yaware.data.toy import write_toy_cohort

REPO = Path(__file__).resolve().parents[1]
METHODS = {
    "yaware": {"sigma": 5.0, "augmentation": "cutout"},
    "simclr": {"augmentation": "cutout"},
    "age_supervision": {"augmentation": "cutout"},
    "model_genesis": {"augmentation": "none"},
}


def run_once(checkout: Path, cohort: Path, out: Path, method: str, args) -> dict[str, float]:
    """One `yaware pretrain` run of ``checkout``'s package; its scans/s and wall seconds."""
    keys = {
        "train_data": str(cohort / "train.npy"),
        "train_table": str(cohort / "train.tsv"),
        "val_data": str(cohort / "val.npy"),
        "val_table": str(cohort / "val.tsv"),
        "out_dir": str(out),
        "method": method,
        "encoder": "tinycnn",
        "batch_size": args.batch,
        "epochs": args.epochs,
        "lr": 1e-3,
        **METHODS[method],
    }
    config = out.with_suffix(".yaml")
    config.write_text(yaml.safe_dump(keys))
    env = os.environ | {"PYTHONPATH": str(checkout), "OMP_NUM_THREADS": str(args.threads)}
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "yaware.cli", "pretrain", "--config", str(config)],
        cwd=checkout,
        env=env,
        check=True,
        capture_output=True,
    )
    wall = time.perf_counter() - start
    rates = pd.read_csv(out / "metrics.csv")["scans_per_s"].iloc[1:]
    return {"scans_per_s": float(rates.median()), "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--n", type=int, default=320, help="scans of the synthetic cohort")
    parser.add_argument("--shape", type=int, nargs=3, default=[31, 37, 31])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--compare", type=Path, help="another checkout to measure alongside")
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the first epoch is left out as warm-up")
    checkouts = {"this": REPO} | ({"compared": args.compare.resolve()} if args.compare else {})
    runs: dict[tuple[str, str], list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        cohort = Path(tmp) / "cohort"
        write_toy_cohort(cohort, n=args.n, shape=tuple(args.shape), seed=0)
        for repeat in range(args.repeats):  # alternate, so a slower spell hits both
            for method in args.methods:
                for name, checkout in checkouts.items():
                    out = Path(tmp) / f"{name}-{method}-{repeat}"
                    result = run_once(checkout, cohort, out, method, args)
                    runs.setdefault((name, method), []).append(result)
    print(f"Machine: {machine()}\n")
    header = ["method", "scans/s", "process s"]
    if args.compare:
        header += ["compared: scans/s", "compared: process s", "scans/s ratio"]
    rows = []
    for method in args.methods:
        row: list[object] = [method]
        rates = {}
        for name in checkouts:
            results = runs[(name, method)]
            rates[name] = statistics.median(r["scans_per_s"] for r in results)
            row += [f"{rates[name]:.1f}", f"{statistics.median(r['wall_s'] for r in results):.1f}"]
        if args.compare:
            row.append(f"{rates['this'] / rates['compared']:.2f}")
        rows.append(row)
    print(markdown_table(header, rows))
    shape = "x".join(map(str, args.shape))
    print(
        f"\nTinyCNN, {shape}, {args.n} synthetic scans (80 % trained on), batch {args.batch}, "
        f"{args.epochs} epochs, {args.threads} thread(s); median of {args.repeats} runs"
        + (f"; compared checkout: {args.compare}" if args.compare else "")
    )


if __name__ == "__main__":
    main()
