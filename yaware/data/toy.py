"""A small generated cohort for demos and tests: smooth volumes whose anatomy ages.

Not a realistic brain (see :mod:`yaware.data.synth` for CAT12-like cohorts): each scan is a
smooth random field inside an ellipsoid "brain" whose intensity falls and whose central
"ventricle" grows with age, plus per-site scale and noise. Enough for the contrastive
losses to find an age axis.
"""

from pathlib import Path

import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter

from yaware.io import save_npy, save_table


def toy_scans(
    n: int, shape: tuple[int, int, int], seed: int = 0
) -> tuple[np.ndarray, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij"))
    radius = np.sqrt((grid**2).sum(0))
    brain = radius < 0.85
    ages = rng.uniform(18, 85, n)
    sites = rng.integers(0, 3, n)
    sexes = rng.choice(["F", "M"], n)
    scans = np.empty((n, 1, *shape), np.float32)
    for i in range(n):
        ageing = (ages[i] - 18) / 67
        field = gaussian_filter(rng.normal(size=shape), 1.5) * 4
        ventricle = radius < 0.15 + 0.25 * ageing
        tissue = (0.8 - 0.35 * ageing + 0.1 * field) * brain * ~ventricle
        scale = 1.0 + 0.1 * sites[i]
        scans[i, 0] = np.clip(tissue * scale + rng.normal(0, 0.03, shape), 0, None)
    table = pd.DataFrame(
        {
            "participant_id": [f"toy{i:04d}" for i in range(n)],
            "session": "1",
            "age": ages.round(1),
            "sex": sexes,
            "site": [f"site{s}" for s in sites],
        }
    )
    return scans, table


TOY_FILES = ("train.npy", "train.tsv", "val.npy", "val.tsv")


def write_toy_cohort(out: str | Path, n: int, shape: tuple[int, int, int], seed: int = 0) -> None:
    """``train.npy``/``train.tsv`` (80 %) and ``val.npy``/``val.tsv`` (20 %) in ``out``."""
    scans, table = toy_scans(n, shape, seed)
    n_train = round(0.8 * n)
    out = Path(out)
    for name, rows in (("train", slice(0, n_train)), ("val", slice(n_train, n))):
        save_npy(out / f"{name}.npy", scans[rows])
        save_table(out / f"{name}.tsv", table.iloc[rows])
