"""The simulator's age signal against a published method-free floor.

Not speed: the age MAE (years) of PCA of the voxels plus the workflow's ridge probe on the
default pretraining cohort, as simulated for each value of ``ageing_map_sd`` (the SD over
the brain of the voxelwise GM ageing rate, %/year). Real CAT12 GM maps give about 5 years
over the lifespan with PCA and a kernel regression (Franke et al. 2010, NeuroImage 50:883,
ages 19-86: 4.61); 3.7-4.7 years in UK Biobank's narrower ages (Baecker et al. 2021, Hum
Brain Mapp). The simulator's default is the value whose floor is closest to 5 years. No
encoder is trained: the calibration uses a method-free floor only.

Each scan is simulated on the configured grid, TIV-scaled and resampled to the training
grid as the conversion does (planted QC failures left out), split by subject with 15 %
for validation. Both floors are printed: on the raw voxels (the workflow's) and on each
scan z-scored on its own, which is what every encoder sees.

    python -m benchmarks.simulator_age_floor [--values 0 0.06 0.12 0.2] [--seeds 0 1]
"""

import argparse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import yaml

from benchmarks.common import machine, markdown_table

REPO = Path(__file__).resolve().parents[1]
PUBLISHED_FLOOR = 5.0
DEFAULT_VALUES = [0.0, 0.06, 0.09, 0.12, 0.15, 0.2]


def simulate(spec: dict, ageing_map_sd: float, synth_mm: float, train_mm: float, seed: int):
    """Voxels (scans x voxels) on the training grid and the ages, one session per subject."""
    from yaware.data.convert import ConversionSettings, prepare_voxels
    from yaware.data.grid import cat12_grid
    from yaware.data.synth import CohortSpec, SimulationSettings, simulate_scan, simulate_subjects

    cohort = CohortSpec(name="bhb", seed=seed, **{k: v for k, v in spec.items() if k != "role"})
    cohort.age_range = tuple(cohort.age_range)
    settings = SimulationSettings(voxel_mm=synth_mm, ageing_map_sd=ageing_map_sd)
    table = simulate_subjects(cohort, settings)
    table = table[(table["session"] == "1") & (table["planted_failure"] == "")]
    source, target = cat12_grid(synth_mm), cat12_grid(train_mm)
    conversion = ConversionSettings(voxel_mm=train_mm)

    def one(row: dict) -> np.ndarray:
        scan, report = simulate_scan(row, table.attrs["sites"], settings)
        return prepare_voxels(scan, "", report["vol_TIV"], source, target, conversion).ravel()

    with ThreadPoolExecutor(2) as pool:
        voxels = np.stack(list(pool.map(one, table.to_dict("records"))))
    return voxels, table["age"].to_numpy(float)


def floors(voxels: np.ndarray, age: np.ndarray, seed: int) -> dict[str, float]:
    """PCA (128 components, grey-matter voxels) + the workflow's ridge age probe."""
    from sklearn.decomposition import PCA

    from yaware.evaluate.probes import age_probe

    order = np.random.default_rng(seed).permutation(len(age))
    val, train = order[: int(0.15 * len(age))], order[int(0.15 * len(age)) :]
    mask = voxels[train].mean(0) > 0.1 * voxels[train].mean(0).max()
    grey = voxels[:, mask]
    zscored = (grey - grey.mean(1, keepdims=True)) / grey.std(1, keepdims=True)
    result = {}
    for name, x in (("raw", grey), ("z-scored", zscored)):
        pca = PCA(n_components=128, random_state=0).fit(x[train])
        result[name] = age_probe(
            pca.transform(x[train]), age[train], pca.transform(x[val]), age[val]
        )
    return {
        "raw": result["raw"]["age_mae"],
        "z-scored": result["z-scored"]["age_mae"],
        "constant": result["raw"]["age_mae_constant"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--values", type=float, nargs="+", default=[0.0, 0.06, 0.09, 0.12, 0.15, 0.2]
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--config", default=str(REPO / "config" / "config.yaml"))
    args = parser.parse_args()
    config = yaml.safe_load(Path(args.config).read_text())
    spec = next(c for c in config["synthetic"]["cohorts"].values() if c["role"] == "pretrain")
    synth_mm, train_mm = config["synthetic"]["voxel_mm"], config["conversion"]["voxel_mm"]
    print(f"Machine: {machine()}\nCohort: {spec}; {synth_mm} mm simulated, {train_mm} mm trained\n")
    rows = []
    for value in args.values:
        runs = [floors(*simulate(spec, value, synth_mm, train_mm, s), s) for s in args.seeds]
        cells = [value]
        for key in ("raw", "z-scored", "constant"):
            values = np.array([r[key] for r in runs])
            cells.append(f"{values.mean():.2f} ({values.min():.2f}-{values.max():.2f})")
        rows.append(cells)
    header = ["ageing_map_sd (%/year)", "floor: PCA raw voxels", "floor: PCA z-scored", "constant"]
    print(markdown_table(header, rows))
    print(
        f"\nseeds {args.seeds}: mean (min-max); published method-free floor {PUBLISHED_FLOOR} years"
    )


if __name__ == "__main__":
    main()
