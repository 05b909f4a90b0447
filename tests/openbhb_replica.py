"""A synthetic replica of an OpenBHB copy, at the real layout, names and shapes.

Integer ids, ``sub-<int>/ses-1`` folders under ``train/derivatives`` and ``val/derivatives``,
OpenBHB's file names, a VBM map of (1, 121, 145, 121) float32 and ROI volumes of (1, 284)
per subject, and the participants.tsv columns of the distributed table. The maps are
smooth grey-matter densities that thin with age, with a gain per site.
"""

from pathlib import Path

import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter

from yaware.data.openbhb import ROI_SUFFIX, VBM_SUFFIX, subject_file

SHAPE = (121, 145, 121)
# (split, number of subjects, sites): internal_test shares the training sites,
# external_test has its own.
SPLITS = (("train", 24, (1, 2, 3)), ("internal_test", 6, (1, 2, 3)), ("external_test", 6, (7, 8)))


def _template(rng: np.random.Generator) -> np.ndarray:
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in SHAPE], indexing="ij"))
    inside = (grid[0] / 0.8) ** 2 + (grid[1] / 0.85) ** 2 + (grid[2] / 0.75) ** 2 < 1
    texture = gaussian_filter(rng.standard_normal(SHAPE), 3) * 8
    return (inside * np.clip(0.6 + texture, 0.05, 1.0)).astype(np.float32)


def make_replica(root: Path, seed: int = 0, roi: bool = True) -> pd.DataFrame:
    """Write the replica under ``root``; returns its participants table."""
    rng = np.random.default_rng(seed)
    template = _template(rng)
    rows = []
    for split, n, sites in SPLITS:
        for k in range(n):
            rows.append(
                {
                    "participant_id": int(rng.integers(10**5, 10**9)),
                    "study": int(rng.integers(0, 10)),
                    "sex": "male" if k % 2 else "female",
                    "age": float(np.round(rng.uniform(8, 86), 2)),
                    "site": sites[k % len(sites)],
                    "diagnosis": "control",
                    "tiv": float(np.round(rng.normal(1500, 120), 1)),
                    "magnetic_field_strength": 3.0,
                    "acquisition_setting": 1,
                    "siteXacq": sites[k % len(sites)] * 10 + 1,
                    "split": split,
                }
            )
    table = pd.DataFrame(rows)
    for row in table.itertuples():
        vbm = subject_file(root, str(row.participant_id), row.split, VBM_SUFFIX)
        vbm.parent.mkdir(parents=True, exist_ok=True)
        gain = 1 + 0.05 * (row.siteXacq % 7)
        thinning = 1.1 - 0.006 * row.age
        noise = rng.normal(0, 0.02, SHAPE).astype(np.float32)
        density = np.clip(template * thinning * gain + noise * (template > 0), 0, 1.4)
        np.save(vbm, density[None].astype(np.float32))
        if roi:
            volumes = rng.normal(5 - 0.02 * row.age, 0.3, (1, 284)).astype(np.float32)
            np.save(subject_file(root, str(row.participant_id), row.split, ROI_SUFFIX), volumes)
    table.to_csv(root / "participants.tsv", sep="\t", index=False)
    return table
