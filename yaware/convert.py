"""NIfTI to one array: the QC-passing scans of a cohort streamed into ``data.npy``.

Output in ``out_dir``: ``data.npy`` of shape (N, 1, X, Y, Z) written through a memory map
(peak memory independent of N), ``participants.tsv`` with rows aligned to the array, and
``manifest.json`` (shape, dtype, grid, each source file with its SHA-256, the settings).
Optional TIV scaling to 1500 ml (x 1500 / TIV) and resampling to a coarser grid. The
array is written under a temporary name and renamed last: a killed job leaves nothing
that looks finished, and a rerun writes the same bytes.
"""

import hashlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from yaware.arrays import NpyRowWriter
from yaware.errors import DataError
from yaware.grid import Grid, cat12_grid
from yaware.io import atomic_path, make_folder, save_json, save_table
from yaware.participants import ID_COLUMN, read_table
from yaware.qc import load_map

log = logging.getLogger(__name__)

TIV_REFERENCE_ML = 1500.0
CHANGED_SINCE_QC = (
    "the map passed QC, so it changed or went since: rerun QC (snakemake --forcerun qc)"
)
FLOAT16_MAX = float(np.finfo(np.float16).max)


@dataclass
class ConversionSettings:
    voxel_mm: float = 1.5  # output grid; the source grid is the cohort's
    dtype: str = "float32"
    tiv_scaling: bool = True
    threads: int = 1


def resample(data: np.ndarray, source: Grid, target: Grid) -> np.ndarray:
    """Resample a map onto ``target`` (trilinear), smoothing first when downsampling."""
    if source.matches(target.shape, target.affine):
        return data
    ratio = target.voxel_mm / source.voxel_mm
    if ratio > 1:
        # Gaussian anti-aliasing: bring the resolution to the target's (FWHM = voxel size).
        sigma = np.sqrt(ratio**2 - 1) / 2.355
        data = ndimage.gaussian_filter(data, sigma)
    mapping = np.linalg.inv(source.affine) @ target.affine
    return ndimage.affine_transform(
        data, mapping[:3, :3], offset=mapping[:3, 3], output_shape=target.shape, order=1
    ).astype(np.float32)


def sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def prepare_scan(
    path: str, tiv: float, source: Grid, target: Grid, settings: ConversionSettings
) -> np.ndarray:
    """One scan as it goes into the array: loaded, checked, TIV-scaled, resampled, cast."""
    try:
        data = load_map(path, source)
    except DataError as err:  # it passed QC: the file changed or went since
        raise DataError(f"{path}: {err}; {CHANGED_SINCE_QC}") from err
    if settings.tiv_scaling:
        data = data * np.float32(TIV_REFERENCE_ML / tiv)
    data = resample(data, source, target)
    if settings.dtype == "float16" and np.abs(data).max() > FLOAT16_MAX:
        raise DataError(
            f"{path}: values up to {np.abs(data).max():.3g} overflow float16; use float32"
        )
    return data.astype(settings.dtype)


def convert_cohort(
    qc_table: str | os.PathLike,
    participants: str | os.PathLike,
    out_dir: str | os.PathLike,
    source_voxel_mm: float,
    settings: ConversionSettings,
) -> pd.DataFrame:
    """Write the cohort's array, aligned table and manifest; returns the aligned table."""
    qc = read_table(qc_table)
    table = read_table(participants)
    if len(qc) != len(table):
        raise DataError(
            f"{qc_table} has {len(qc)} rows but {participants} has {len(table)}; rerun QC"
        )
    passing = np.flatnonzero(qc["qc"].to_numpy() == 1)
    if len(passing) == 0:
        reasons = qc["reason"].astype(str).value_counts().head(3)
        shown = "; ".join(f"{count} x {reason}" for reason, count in reasons.items())
        raise DataError(
            f"{qc_table}: none of its {len(qc)} scans passed QC ({shown}"
            f"{'; ...' if qc['reason'].nunique() > 3 else ''}); see its 'reason' column"
        )
    source, target = cat12_grid(source_voxel_mm), cat12_grid(settings.voxel_mm)
    out = Path(out_dir)
    make_folder(out)
    shape = (len(passing), 1, *target.shape)
    for stale in out.glob(".data.npy.*.tmp"):  # left by a conversion killed half way
        log.info("removing %s, left by an interrupted conversion", stale)
        stale.unlink()
    with atomic_path(out / "data.npy") as tmp:
        writer = NpyRowWriter(tmp, shape, settings.dtype)

        def write(k: int) -> str:
            row = qc.iloc[passing[k]]
            writer.write(k, prepare_scan(row["path"], float(row["tiv"]), source, target, settings))
            try:
                return sha256(row["path"])
            except OSError as err:
                raise DataError(f"{row['path']}: {err.strerror}; {CHANGED_SINCE_QC}") from err

        try:
            with ThreadPoolExecutor(max(1, settings.threads)) as pool:
                checksums = list(pool.map(write, range(len(passing))))
        finally:
            writer.close()
    aligned = table.iloc[passing].reset_index(drop=True)
    aligned[ID_COLUMN] = qc["participant_id"].iloc[passing].to_numpy()
    aligned["session"] = qc["session"].iloc[passing].to_numpy()
    aligned["tiv"] = qc["tiv"].iloc[passing].to_numpy()
    save_table(out / "participants.tsv", aligned)
    save_json(
        out / "manifest.json",
        {
            "shape": list(shape),
            "dtype": settings.dtype,
            "grid": {
                "voxel_mm": target.voxel_mm,
                "shape": list(target.shape),
                "affine": target.affine.tolist(),
            },
            "source_grid_voxel_mm": source.voxel_mm,
            "settings": asdict(settings),
            "tiv_reference_ml": TIV_REFERENCE_ML if settings.tiv_scaling else None,
            "sources": [
                {
                    "row": k,
                    "participant_id": aligned[ID_COLUMN].iloc[k],
                    "session": aligned["session"].iloc[k],
                    "path": qc["path"].iloc[i],
                    "sha256": checksums[k],
                }
                for k, i in enumerate(passing)
            ],
        },
    )
    return aligned
