"""How much age the default's encoders learn under other pretraining settings: the
validation age probe of each variant, beside the floors, on a finished main job's data.

Each variant changes one setting of the pretraining a workflow job ran (its resolved
``results/pretrain/<experiment>/config.yaml``: same rows, encoder and seed) and trains
y-Aware and SimCLR again from scratch. The representation is then probed as the
workflow's ``age_site_probe`` does: a ridge from the training rows' features to the
validation rows' age (``yaware.evaluate.tasks.probe_age_and_site``). Only the validation
split is read: settings are chosen on it, never on a disease task. The floors (PCA of the
voxels, the random encoder, the constant predictor) come from the same run's tables.

    python -m benchmarks.pretrain_convergence --run DIR [--seeds 0 1] [--variants NAME ...]
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from benchmarks.common import machine, markdown_table
from yaware.data.participants import read_table, row_positions
from yaware.evaluate.features import extract_features, load_encoder
from yaware.evaluate.tasks import probe_age_and_site
from yaware.train.config import PATH_KEYS, PretrainConfig, build_config
from yaware.train.pretrain import pretrain

VARIANTS = {
    "as configured": {},
    "lr 3e-4": {"lr": 3e-4},
    "lr 3e-3": {"lr": 3.0e-3},
    "cosine, 2 warm-up epochs": {"schedule": "cosine", "warmup_epochs": 2},
    "batch 32": {"batch_size": 32},
    "temperature 0.5": {"temperature": 0.5},
    "no augmentation": {"augmentation": "none"},
    "all_tf": {"augmentation": "all_tf"},
    "30 epochs": {"epochs": 30},
}
METHODS = {"yaware": {"method": "yaware", "sigma": 5.0}, "simclr": {"method": "simclr"}}


def base_config(run: Path, experiment: str) -> dict:
    """The resolved config of a workflow pretraining job, as the engine read it, its
    paths (relative to the run's folder) made absolute."""
    keys = yaml.safe_load((run / "results" / "pretrain" / experiment / "config.yaml").read_text())

    def absolute(value):
        if isinstance(value, list):
            return [absolute(v) for v in value]
        return (
            str(run / value) if isinstance(value, str) and not Path(value).is_absolute() else value
        )

    return {k: absolute(v) if k in PATH_KEYS else v for k, v in keys.items()}


def probe(run: Path, cohort: str, features: Path) -> dict[str, float]:
    data = run / "results" / "data" / cohort / "participants.tsv"
    split = run / "results" / "splits" / cohort / "split.tsv"
    return probe_age_and_site([features], [data], [split], "age")


def train_and_probe(run: Path, cohort: str, keys: dict, scratch: Path) -> dict[str, float]:
    """One pretraining in ``scratch``; the validation age probe of its best.pt (lowest
    validation loss) and last.pt, its best epoch and last training loss."""
    start = time.perf_counter()
    pretrain(build_config(PretrainConfig, keys, source="variant"), overwrite=True)
    seconds = time.perf_counter() - start
    maes = {}
    for kept in ("best", "last"):
        model, _ = load_encoder(scratch / f"{kept}.pt")
        features = scratch / f"{kept}.npy"
        data = run / "results" / "data" / cohort / "data.npy"
        np.save(features, extract_features(model, data))
        maes[kept] = probe(run, cohort, features)["age_mae"]
    history = pd.read_csv(scratch / "metrics.csv")
    best = history.loc[history["val_loss"].idxmin()]
    by_probe = history.loc[history["val_age_mae"].idxmin()]  # the engine's per-epoch probe
    return {
        "epoch_probe": f"{by_probe['val_age_mae']:.2f} ({int(by_probe['epoch'])})",
        "age_mae": maes["best"],
        "age_mae_last": maes["last"],
        "best_epoch": int(best["epoch"]),
        "train_loss": float(history["train_loss"].iloc[-1]),
        "seconds": seconds,
    }


def _floor_row(label: str, mae: float) -> list[str]:
    return [label, "", f"{mae:.2f}", *[""] * 6]


def voxel_floors(run: Path, cohort: str, components: int = 128) -> list[list]:
    """PCA + the same ridge probe on the raw voxels (the workflow's floor) and on the
    z-scored voxels, which is what every encoder sees: each scan standardised on its own, as
    the original's Normalize does, which removes a change of the whole map's scale."""
    from sklearn.decomposition import PCA

    data = np.load(run / "results" / "data" / cohort / "data.npy", mmap_mode="r")
    voxels = np.asarray(data, dtype=np.float32).reshape(len(data), -1)
    zscored = (voxels - voxels.mean(1, keepdims=True)) / voxels.std(1, keepdims=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, x in (("raw voxels", voxels), ("z-scored voxels", zscored)):
            table = read_table(run / "results" / "data" / cohort / "participants.tsv")
            split = read_table(run / "results" / "splits" / cohort / "split.tsv")
            train = row_positions(table, split[split["split"] == "train"], "split")
            pca = PCA(n_components=min(components, len(train) - 1), random_state=0)
            pca.fit(x[train])
            path = Path(tmp) / "pca.npy"
            np.save(path, pca.transform(x).astype(np.float32))
            mae = probe(run, cohort, path)["age_mae"]
            rows.append(_floor_row(f"floor: PCA of the {name}", mae))
    return rows


def floors(run: Path) -> list[list]:
    """The floors as the run's own age_site table has them (mean over seeds)."""
    table = pd.read_csv(run / "results" / "tables" / "age_site.csv")
    rows = [
        _floor_row(f"floor: {label}", group["age_mae"].mean())
        for label, group in table[table["kind"] == "floor"].groupby("label")
    ]
    constant = table["age_mae_constant"].mean()
    return [*rows, _floor_row("floor: constant predictor", constant)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished main job's folder")
    parser.add_argument("--cohort", default="bhb")
    parser.add_argument("--experiment", default="yaware-sigma5_cutout_tinycnn_seed0")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--floors-only", action="store_true", help="the floors, no training")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = base_config(args.run, args.experiment)
    print(f"Machine: {machine()}\n\nBase: {args.run}/results/pretrain/{args.experiment}\n")
    rows = []
    variants = [] if args.floors_only else args.variants
    with tempfile.TemporaryDirectory() as tmp:
        for variant in variants:
            for method, method_keys in METHODS.items():
                results = []
                for seed in args.seeds:
                    scratch = Path(tmp) / f"{len(rows)}-{seed}"
                    keys = base | VARIANTS[variant] | method_keys
                    keys |= {"seed": seed, "out_dir": str(scratch)}
                    results.append(train_and_probe(args.run, args.cohort, keys, scratch))
                maes = [r["age_mae"] for r in results]
                spread = f"{statistics.stdev(maes):.2f}" if len(maes) > 1 else ""
                last = statistics.mean(r["age_mae_last"] for r in results)
                rows.append(
                    [
                        variant,
                        method,
                        f"{statistics.mean(maes):.2f}",
                        spread,
                        f"{last:.2f}",
                        " ".join(r["epoch_probe"] for r in results),
                        " ".join(str(r["best_epoch"]) for r in results),
                        f"{statistics.mean(r['train_loss'] for r in results):.3f}",
                        f"{statistics.mean(r['seconds'] for r in results):.0f}",
                    ]
                )
                print(" | ".join(rows[-1]), flush=True)
    header = ["variant", "method", "age MAE (best.pt)", "sd over seeds", "age MAE (last.pt)"]
    header += ["lowest epoch probe (epoch)"]
    header += ["best epoch", "last train loss", "s"]
    print(f"\nseeds {args.seeds}; validation age probe of the pretraining split\n")
    print(markdown_table(header, rows + voxel_floors(args.run, args.cohort) + floors(args.run)))


if __name__ == "__main__":
    main()
