"""Augmentation throughput: yaware's batched path against a per-scan numpy/scipy path.

The per-scan path does what the original code's augmentations.py does for each view, one
scan at a time with numpy and scipy.ndimage. Both paths run on the same random volumes on
one CPU core by default; views per second, higher is better.

``--malloc kept`` runs both paths with ``yaware.train.allocator``'s settings (what the CPU engine
uses: freed memory is reused instead of faulted in afresh); the default is glibc's own.

    python benchmarks/augment_throughput.py [--shape 121 145 121] [--batch 8] [--threads 1]
        [--malloc default|kept]
"""

import argparse
import math

import numpy as np
import scipy.ndimage as ndi
import torch

from benchmarks.common import machine, markdown_table, mean_time
from yaware.augment import build_policy
from yaware.train.allocator import keep_freed_memory


def per_scan_view(scan: np.ndarray, policy: str, rng: np.random.Generator) -> np.ndarray:
    """One view of one (1, X, Y, Z) scan, as the original's augmentations.py computes it.

    Same operations and libraries: numpy z-scoring, flip on a random axis of the 4-D array,
    scipy gaussian_filter (reflect), float64 noise drawn for two components, cutout and
    crop boxes over all four axes, and the crop resized with order-1 zoom (what
    skimage.transform.resize runs underneath).
    """
    x = (scan - np.mean(scan)) / (np.std(scan) + 1e-8)
    shape = np.array(x.shape)
    p = 0.5 if policy == "all_tf" else 1.0
    if policy == "all_tf":
        if rng.random() < p:
            x = np.flip(x, axis=rng.integers(x.ndim))
        if rng.random() < p:
            x = ndi.gaussian_filter(x, rng.uniform(0.1, 1.0))
        if rng.random() < p:
            x = x + rng.normal(0, rng.uniform(0.1, 1.0), [2, *x.shape])[0]
    if policy in ("all_tf", "cutout") and rng.random() < p:
        patch = np.ceil(shape / 4).astype(int)
        corner = [rng.integers(0, s - q + 1) for s, q in zip(shape, patch, strict=True)]
        x = np.copy(x)
        x[tuple(slice(c, c + q) for c, q in zip(corner, patch, strict=True))] = 0
    if policy in ("all_tf", "crop") and rng.random() < p:
        crop = np.ceil(0.75 * shape).astype(int)
        corner = [rng.integers(0, s - q + 1) for s, q in zip(shape, crop, strict=True)]
        box = x[tuple(slice(c, c + q) for c, q in zip(corner, crop, strict=True))]
        x = ndi.zoom(box, shape / crop, order=1, mode="nearest", grid_mode=True)
    return x


def run(shape: tuple[int, int, int], batch: int, policies: list[str]) -> list[list[object]]:
    gen = torch.Generator().manual_seed(0)
    scans = torch.rand(batch, 1, *shape, generator=gen)
    rng = np.random.default_rng(0)
    rows = []
    arrays = scans.numpy()
    for name in policies:
        policy = build_policy(name, shape, seed=0)
        # Random draws differ between calls: average several runs rather than keep the best.
        batched = mean_time(lambda policy=policy: policy(scans), repeats=3)
        per_scan = mean_time(
            lambda name=name: [per_scan_view(a, name, rng) for a in arrays], repeats=2
        )
        fast, slow = batch / batched, batch / per_scan
        rows.append([name, "x".join(map(str, shape)), batch, slow, fast, f"{fast / slow:.1f}x"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(121, 145, 121))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--policies", nargs="+", default=["all_tf", "cutout", "crop"])
    parser.add_argument("--malloc", choices=["default", "kept"], default="default")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    kept = args.malloc == "kept" and keep_freed_memory()
    print(f"Machine: {machine()}; malloc: {'freed memory kept' if kept else 'glibc default'}\n")
    rows = run(tuple(args.shape), args.batch, args.policies)
    header = ["policy", "grid", "batch", "original per-scan views/s", "yaware views/s", "ratio"]
    print(markdown_table(header, rows))
    if math.prod(args.shape) >= 121 * 145 * 121:
        print("\nTarget: ratio >= 10x on one core (issue 2).")


if __name__ == "__main__":
    main()
