"""NIfTI to one array: the QC-passing scans of a cohort streamed into ``data.npy`` (an
array cohort's passing rows, read through a memory map, the same way).

Output in ``out_dir``: ``data.npy`` of shape (N, 1, X, Y, Z) written through a memory map
(peak memory independent of N), ``participants.tsv`` with rows aligned to the array, and
``manifest.json`` (shape, dtype, grid, each source with the SHA-256 of its voxels and of a
NIfTI file's bytes, the settings).
Optional TIV scaling to 1500 ml (x 1500 / TIV) and resampling to a coarser grid. The
array is written under a temporary name and renamed last: a killed job leaves nothing
that looks finished, and a rerun writes the same bytes.
"""

import hashlib
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from yaware.data.arrays import NpyRowWriter
from yaware.data.grid import Grid, cat12_grid
from yaware.data.maps import check_values, load_map, open_map_array
from yaware.data.participants import ID_COLUMN, read_table
from yaware.errors import DataError
from yaware.io import atomic_path, make_folder, save_json, save_table

log = logging.getLogger(__name__)

TIV_REFERENCE_ML = 1500.0
CHANGED_SINCE_QC = (
    "the map passed QC, so it changed or went since: rerun QC (snakemake --forcerun qc_metrics)"
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


def voxels_sha256(data: np.ndarray) -> str:
    """SHA-256 of a map's voxels as float32, in the grid's orientation, and of its shape: the
    same for a map saved as .nii or .nii.gz, with another header, or as an array's row."""
    digest = hashlib.sha256(repr(tuple(data.shape)).encode())
    digest.update(np.ascontiguousarray(data, dtype=np.float32).data)
    return digest.hexdigest()


def sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


REDO_QC_THRESHOLDS = "rerun the QC thresholds (snakemake --forcerun qc)"


def passed_rows(
    passed: pd.DataFrame, metrics: pd.DataFrame, source: str | os.PathLike
) -> np.ndarray:
    """The metrics rows that ``passed`` names, after checking that they name the same
    scans there (a pass list from another QC run, or edited, would convert other maps)."""
    rows = pd.to_numeric(passed["row"], errors="coerce")
    if rows.isna().any() or not rows.between(0, len(metrics) - 1).all():
        raise DataError(
            f"{source}: its rows are not rows of the cohort's {len(metrics)} QC metrics; "
            f"{REDO_QC_THRESHOLDS}"
        )
    rows = rows.astype(int).to_numpy()
    keys = ["participant_id", "session", "run"]
    listed = passed[keys].fillna("").astype(str).to_numpy()
    measured = metrics.iloc[rows][keys].fillna("").astype(str).to_numpy()
    wrong = np.flatnonzero((listed != measured).any(axis=1))
    if len(wrong):
        first = wrong[0]
        raise DataError(
            f"{source}: row {rows[first]} names {_scan_name(listed[first])} where the QC "
            f"metrics have {_scan_name(measured[first])} (the pass list of another QC run, "
            f"or edited); {REDO_QC_THRESHOLDS}"
        )
    return rows


def _scan_name(ids: Sequence[str]) -> str:
    subject, session, run = ids
    return subject + (f" ses-{session}" if session else "") + (f" run-{run}" if run else "")


def scan_voxels(path: str, source: Grid) -> np.ndarray:
    """A map that passed QC (NIfTI, or .npy), loaded and checked again."""
    try:
        return load_map(path, source)
    except DataError as err:  # it passed QC: the file changed or went since
        raise DataError(f"{path}: {err}; {CHANGED_SINCE_QC}") from err


def row_voxels(maps: np.ndarray, row: int, path: str) -> np.ndarray:
    """Map ``row`` of an array cohort's ``maps`` (see ``qc.open_map_array``), as float32,
    checked again as ``scan_voxels`` checks a NIfTI map."""
    data = np.asarray(maps[row], dtype=np.float32)
    try:
        check_values(data)
    except DataError as err:
        raise DataError(f"{path}, map {row}: {err}; {CHANGED_SINCE_QC}") from err
    return data


def prepare_voxels(
    data: np.ndarray,
    path: str,
    tiv: float,
    source: Grid,
    target: Grid,
    settings: ConversionSettings,
) -> np.ndarray:
    """A checked map as it goes into the array: TIV-scaled, resampled and cast; ``path``
    names it in an error."""
    if settings.tiv_scaling:
        data = data * np.float32(TIV_REFERENCE_ML / tiv)
    data = resample(data, source, target)
    if settings.dtype == "float16" and np.abs(data).max() > FLOAT16_MAX:
        raise DataError(
            f"{path}: values up to {np.abs(data).max():.3g} overflow float16; use float32"
        )
    return data.astype(settings.dtype)


def convert_cohort(
    metrics_table: str | os.PathLike,
    passed_table: str | os.PathLike,
    participants: str | os.PathLike,
    out_dir: str | os.PathLike,
    source_voxel_mm: float,
    settings: ConversionSettings,
    array: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """Write the cohort's array, aligned table and manifest; returns the aligned table.

    ``metrics_table`` (QC's measurements: each scan's path and TIV) and ``participants``
    have a row per scan; ``passed_table`` names the rows that pass QC. ``array``: an array
    cohort's maps (``maps.open_map_array``), map i for row i, read instead of each path.
    """
    metrics = read_table(metrics_table)
    table = read_table(participants)
    if len(metrics) != len(table):
        raise DataError(
            f"{metrics_table} has {len(metrics)} rows but {participants} has {len(table)}; "
            "rerun QC (snakemake --forcerun qc_metrics)"
        )
    passing = passed_rows(read_table(passed_table), metrics, passed_table)
    if len(passing) == 0:
        raise _none_passed(metrics, passed_table)
    source, target = cat12_grid(source_voxel_mm), cat12_grid(settings.voxel_mm)
    maps = None if array is None else open_map_array(array, source, len(metrics))
    out = Path(out_dir)
    make_folder(out)
    shape = (len(passing), 1, *target.shape)
    checksums = _write_array(
        out / "data.npy", shape, metrics, passing, maps, source, target, settings
    )
    aligned = table.iloc[passing].reset_index(drop=True)
    for column in (ID_COLUMN, "session", "tiv"):  # as QC read them
        aligned[column] = metrics[column].iloc[passing].to_numpy()
    save_table(out / "participants.tsv", aligned)
    sources = [
        {
            "row": k,
            "participant_id": aligned[ID_COLUMN].iloc[k],
            "session": aligned["session"].iloc[k],
            "path": metrics["path"].iloc[i],
            **({} if maps is None else {"map": int(i)}),
            **checksums[k],
        }
        for k, i in enumerate(passing)
    ]
    save_json(
        out / "manifest.json",
        {
            "shape": list(shape),
            "dtype": settings.dtype,
            "grid": {"voxel_mm": target.voxel_mm, "shape": list(target.shape)}
            | {"affine": target.affine.tolist()},
            "source_grid_voxel_mm": source.voxel_mm,
            "settings": asdict(settings),
            "tiv_reference_ml": TIV_REFERENCE_ML if settings.tiv_scaling else None,
            "sources": sources,
        },
    )
    return aligned


def _none_passed(metrics: pd.DataFrame, passed_table: str | os.PathLike) -> DataError:
    """The error of a cohort none of whose scans passed QC, with the commonest reasons."""
    problems = metrics["problem"].dropna().astype(str).value_counts()
    # A scan without a problem failed a threshold (or lacked the TIV its scaling needs).
    failed_thresholds = int(metrics["problem"].isna().sum())
    counts = [*problems.items(), ("a QC threshold or the TIV check", failed_thresholds)]
    counts = sorted(((n, reason) for reason, n in counts if n), key=lambda c: -c[0])
    shown = "; ".join(f"{n} x {reason}" for n, reason in counts[:3])
    return DataError(
        f"{Path(passed_table).with_name('qc.tsv')}: none of its {len(metrics)} scans passed "
        f"QC ({shown}{'; ...' if len(counts) > 3 else ''}); see its 'reason' column"
    )


def _write_array(
    target_path: Path,
    shape: tuple[int, ...],
    metrics: pd.DataFrame,
    passing: np.ndarray,
    maps: np.ndarray | None,
    source: Grid,
    target: Grid,
    settings: ConversionSettings,
) -> list[dict[str, str]]:
    """Stream the passing scans into ``target_path`` (atomically); returns each row's
    hashes: the SHA-256 of its voxels and, for a NIfTI map, of its file's bytes."""
    for stale in target_path.parent.glob(f".{target_path.name}.*.tmp"):  # a killed conversion
        log.info("removing %s, left by an interrupted conversion", stale)
        stale.unlink()
    with atomic_path(target_path) as tmp:
        writer = NpyRowWriter(tmp, shape, settings.dtype)

        def write(k: int) -> dict[str, str]:
            row = metrics.iloc[passing[k]]
            if maps is None:
                data, name = scan_voxels(row["path"], source), row["path"]
                try:
                    hashes = {"sha256": sha256(name)}
                except OSError as err:
                    raise DataError(f"{name}: {err.strerror}; {CHANGED_SINCE_QC}") from err
            else:
                m = passing[k]
                data, name = row_voxels(maps, m, row["path"]), f"{row['path']}, map {m}"
                hashes = {}
            writer.write(k, prepare_voxels(data, name, float(row["tiv"]), source, target, settings))
            return hashes | {"voxels_sha256": voxels_sha256(data)}

        try:
            with ThreadPoolExecutor(max(1, settings.threads)) as pool:
                return list(pool.map(write, range(len(passing))))
        finally:
            writer.close()


def run_convert(
    metrics: str,
    passed: str,
    participants: str,
    array: str | None,
    data: str,
    cohort: dict,
    settings: dict,
    threads: int,
) -> None:
    """The convert job: one cohort's QC-passing maps streamed into ``data``'s folder."""
    conversion = ConversionSettings(
        voxel_mm=settings["voxel_mm"],
        dtype=settings["dtype"],
        tiv_scaling=settings["tiv_scaling"],
        threads=threads,
    )
    out = Path(data).parent
    convert_cohort(metrics, passed, participants, out, cohort["voxel_mm"], conversion, array)
