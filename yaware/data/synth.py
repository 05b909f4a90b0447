"""Synthetic CAT12 cohorts: modulated grey-matter maps with published effects, on disk as
CAT12 writes them.

Every scan starts from the ICBM152 2009 grey-matter template that ships inside nilearn
(no download), resampled to the CAT12 box at the configured voxel size and scaled to an
adult grey-matter volume. Per subject it then applies:

- ageing: a global decline (about -0.3 %/year in young adults, -0.8 %/year after 60) whose
  rate varies smoothly over the brain (one fixed map for every subject, SD
  ``ageing_map_sd`` %/year), plus faster regional loss in insula, frontal, superior
  parietal and cingulate cortex, the hippocampus (about -1.4 %/year in the elderly) and
  periventricular grey matter;
- diagnosis: accelerated ageing by the disease's brain-age gap (BrainAGE studies) plus
  its own regional pattern (AD: medial temporal 10-25 % lower; schizophrenia: small
  hippocampal, amygdala, thalamic, frontal and temporal deficits, Cohen's d about -0.3 to
  -0.5; bipolar disorder: smaller still);
- head size: a modulated map scales with the subject's TIV, whose spread (SD 7 %) TIV
  scaling removes; the GM fraction of TIV keeps a 3 % spread at a given age;
- sex: males about 10 % larger (a modulated map scales with local volume);
- smooth per-subject variability, so no two scans are alike;
- site: intensity scale and offset, extra smoothness, noise level, a smooth
  multiplicative bias field, and a site-specific age range (site and age confounded).

Regions are smooth bilateral blobs at published MNI coordinates (no atlas licence needed).
A few scans are planted as QC failures (heavy noise, misregistration, wrong tissue); the
truth (those failures, and each scan's brain age: its age plus its diagnosis's gap) is
written to ``truth.tsv`` beside, never into, ``participants.tsv``.

Output layout (CAT12 BIDS-like derivatives)::

    <root>/participants.tsv
    <root>/truth.tsv
    <root>/cat12/sub-<id>/ses-<ses>/anat/mri/mwp1sub-<id>_ses-<ses>_T1w.nii.gz
    <root>/cat12/sub-<id>/ses-<ses>/anat/report/cat_sub-<id>_ses-<ses>_T1w.xml
"""

import logging
import math
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import ndimage

from yaware.data.brain_effects import (
    AGEING_MAP_SD,
    AGEING_MAP_SEED,
    GM_FRACTION_SD,
    REGIONS,
    global_ageing,
    regional_log_change,
)
from yaware.data.cat12 import image_path, report_path, write_report
from yaware.data.grid import Grid, cat12_grid
from yaware.io import save_table, write_atomic

log = logging.getLogger(__name__)

PLANTED_FAILURES = ("noise", "misregistration", "wrong_tissue")


@dataclass
class CohortSpec:
    """One synthetic cohort. ``diagnosis`` None: healthy controls only (pretraining)."""

    name: str
    n_subjects: int
    n_sites: int = 3
    age_range: tuple[float, float] = (18.0, 85.0)
    age_mean: float | None = None
    age_sd: float | None = None
    diagnosis: str | None = None
    patient_fraction: float = 0.5
    female_fraction: float = 0.5
    second_session_rate: float = 0.1
    qc_failure_rate: float = 0.03
    seed: int = 0


@dataclass
class SimulationSettings:
    """Settings shared by the cohorts of one simulation."""

    voxel_mm: float = 3.0
    # SD over the brain of the voxelwise GM ageing rate around the global decline, in
    # %/year: calibrated so that the PCA + ridge age floor of the default pretraining
    # cohort is about 5 years, the published floor over the lifespan
    # (benchmarks/simulator_age_floor.py; Franke et al. 2010, NeuroImage 50:883).
    ageing_map_sd: float = AGEING_MAP_SD
    brain_age_gap: Mapping[str, float] = field(
        default_factory=lambda: {"alzheimer": 10.0, "schizophrenia": 5.5, "bipolar": 1.5}
    )
    threads: int = 1


@cache
def _templates(voxel_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """The ICBM152 GM and WM probability maps on the CAT12 box, float32."""
    from nilearn import datasets, image

    grid = cat12_grid(voxel_mm)
    maps = []
    for loader in (datasets.load_mni152_gm_template, datasets.load_mni152_wm_template):
        resampled = image.resample_img(
            loader(resolution=1),
            target_affine=grid.affine,
            target_shape=grid.shape,
            interpolation="continuous",
            force_resample=True,
            copy_header=True,
        )
        maps.append(np.clip(resampled.get_fdata(dtype=np.float32), 0, 1))
    return maps[0], maps[1]


@cache
def _region_blobs(voxel_mm: float) -> dict[str, np.ndarray]:
    world = cat12_grid(voxel_mm).world_coordinates().astype(np.float32)
    blobs = {}
    for name, ((x, y, z), width) in REGIONS.items():
        total = np.zeros(world.shape[1:], np.float32)
        for side in (-1.0, 1.0):
            centre = np.array([side * abs(x), y, z], np.float32)[:, None, None, None]
            total += np.exp(-((world - centre) ** 2).sum(0) / (2 * width**2))
        blobs[name] = np.clip(total, 0, 1)
    return blobs


@cache
def ageing_map(voxel_mm: float) -> np.ndarray:
    """Where grey matter ages faster (positive) or slower than the global decline: a
    smooth field of unit SD, the same for every subject and cohort."""
    shape = cat12_grid(voxel_mm).shape
    return _smooth_field(np.random.default_rng(AGEING_MAP_SEED), shape, 18.0 / voxel_mm)


def _smooth_field(rng: np.random.Generator, shape: tuple[int, ...], scale: float = 6) -> np.ndarray:
    """A smooth random field of unit SD: white noise blurred over about ``scale`` voxels."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), scale / 2)
    return field / max(float(field.std()), 1e-12)


def _bias_field(rng: np.random.Generator, grid: Grid, amplitude: float) -> np.ndarray:
    world = grid.world_coordinates() / 100.0
    terms = [world[0], world[1], world[2], world[0] * world[1], world[1] ** 2, world[2] ** 2]
    weights = rng.normal(0, 1, len(terms))
    field = sum(w * t for w, t in zip(weights, terms, strict=True))
    return (1 + amplitude * field / np.abs(field).max()).astype(np.float32)


@dataclass
class _Site:
    name: str
    scale: float
    offset: float
    smooth_mm: float
    noise: float
    bias: np.ndarray
    age_range: tuple[float, float]


def _make_sites(spec: CohortSpec, grid: Grid, rng: np.random.Generator) -> list[_Site]:
    low, high = spec.age_range
    sites = []
    for s in range(spec.n_sites):
        width = (high - low) * rng.uniform(0.4, 1.0)
        start = rng.uniform(low, high - width)
        sites.append(
            _Site(
                name=f"{spec.name}-site{s + 1}",
                scale=float(rng.normal(1.0, 0.06)),
                offset=float(rng.normal(0.0, 0.01)),
                smooth_mm=float(rng.uniform(0.0, 3.0)),
                noise=float(rng.uniform(0.01, 0.03)),
                bias=_bias_field(rng, grid, float(rng.uniform(0.02, 0.08))),
                age_range=(start, start + width),
            )
        )
    return sites


def simulate_subjects(spec: CohortSpec, settings: SimulationSettings) -> pd.DataFrame:
    """The cohort's table of scans (one row per session), with the hidden simulation inputs."""
    rng = np.random.default_rng([spec.seed, spec.n_subjects, len(spec.name)])
    grid = cat12_grid(settings.voxel_mm)
    sites = _make_sites(spec, grid, rng)
    rows = []
    prefix = "".join(c for c in spec.name if c.isalnum())
    for i in range(spec.n_subjects):
        site = int(rng.integers(spec.n_sites))
        patient = spec.diagnosis is not None and rng.random() < spec.patient_fraction
        if spec.age_mean is not None:
            age = float(np.clip(rng.normal(spec.age_mean, spec.age_sd or 5.0), *spec.age_range))
        else:
            age = float(rng.uniform(*sites[site].age_range))
        sex = "F" if rng.random() < spec.female_fraction else "M"
        sessions = 2 if rng.random() < spec.second_session_rate else 1
        subject_seed = int(rng.integers(2**62))
        for session in range(1, sessions + 1):
            rows.append(
                {
                    "participant_id": f"{prefix}{i + 1:05d}",
                    "session": str(session),
                    "study": spec.name,
                    "site": sites[site].name,
                    "sex": sex,
                    "age": round(age + (session - 1) * float(rng.uniform(1.0, 3.0)), 2),
                    "diagnosis": spec.diagnosis if patient else "control",
                    "_site_index": site,
                    "_subject_seed": subject_seed,
                    "_tiv_factor": float(rng.normal(1.0, 0.07)),
                }
            )
    table = pd.DataFrame(rows)
    n_failures = round(spec.qc_failure_rate * len(table))
    failing = rng.choice(len(table), size=n_failures, replace=False)
    table["planted_failure"] = ""
    for k, row in enumerate(failing):
        table.loc[row, "planted_failure"] = PLANTED_FAILURES[k % len(PLANTED_FAILURES)]
    table.attrs["sites"] = sites
    return table


def _brain_age(age: float, diagnosis: str, settings: SimulationSettings) -> float:
    """A scan's age plus its diagnosis's brain-age gap (none for a control)."""
    return age + float(settings.brain_age_gap.get(diagnosis, 0.0))


def simulate_scan(
    row: Mapping[str, Any], sites: Sequence[_Site], settings: SimulationSettings
) -> tuple[np.ndarray, dict[str, float]]:
    """One modulated GM map (float32, CAT12 box) and its CAT12 report values."""
    gm, wm = _templates(settings.voxel_mm)
    blobs = _region_blobs(settings.voxel_mm)
    site = sites[int(row["_site_index"])]
    subject = np.random.default_rng(int(row["_subject_seed"]))
    scan_rng = np.random.default_rng([int(row["_subject_seed"]), int(row["session"])])
    diagnosis = None if row["diagnosis"] == "control" else str(row["diagnosis"])
    brain_age = _brain_age(float(row["age"]), str(row["diagnosis"]), settings)
    log_change = np.zeros(gm.shape, np.float32)
    for region, value in regional_log_change(brain_age, diagnosis).items():
        log_change += value * blobs[region]
    ageing_rate = settings.ageing_map_sd / 100 * ageing_map(settings.voxel_mm)
    log_change -= ageing_rate * (brain_age - 20.0)
    # Stable over sessions of a subject: global size and the smooth anatomy field.
    # Two scales of smooth anatomy variation: inter-subject correlations of the maps end
    # near those of real CAT12 maps (r about 0.85-0.95) rather than near 1.
    anatomy = 0.10 * _smooth_field(subject, gm.shape) + 0.12 * _smooth_field(subject, gm.shape, 3)
    head = float(row["_tiv_factor"]) * subject.normal(1.0, GM_FRACTION_SD)
    individual = head * np.clip(1.0 + anatomy, 0.3, None)
    sex_scale = 1.10 if row["sex"] == "M" else 1.0
    tissue = wm if row["planted_failure"] == "wrong_tissue" else gm
    scan = 0.72 * tissue * global_ageing(brain_age) * sex_scale * individual * np.exp(log_change)
    if row["planted_failure"] == "misregistration":
        scan = _misregister(scan, scan_rng, settings.voxel_mm)
    if site.smooth_mm > 0:
        scan = ndimage.gaussian_filter(scan, site.smooth_mm / 2.355 / settings.voxel_mm)
    noise = site.noise * (8.0 if row["planted_failure"] == "noise" else 1.0)
    scan = scan * site.bias * site.scale + site.offset * (tissue > 0.1)
    scan = scan + scan_rng.normal(0, noise, scan.shape).astype(np.float32) * (gm > 0.05)
    scan = np.clip(scan, 0, None).astype(np.float32)
    gm_ml = float(scan.sum() * settings.voxel_mm**3 / 1000)
    tiv = 1450.0 * sex_scale * float(row["_tiv_factor"])
    report = _report_values(scan_rng, gm_ml, tiv, brain_age, row["planted_failure"])
    return scan, report


def _misregister(scan: np.ndarray, rng: np.random.Generator, voxel_mm: float) -> np.ndarray:
    angle = math.radians(rng.uniform(12, 20)) * rng.choice([-1, 1])
    rotation = np.array(
        [[1, 0, 0], [0, math.cos(angle), -math.sin(angle)], [0, math.sin(angle), math.cos(angle)]]
    )
    shift_mm = rng.uniform(12, 18) * rng.choice([-1, 1], size=3)
    centre = (np.array(scan.shape) - 1) / 2
    offset = centre - rotation @ centre + shift_mm / voxel_mm
    return ndimage.affine_transform(scan, rotation, offset=offset, order=1)


def _report_values(
    rng: np.random.Generator, gm_ml: float, tiv: float, brain_age: float, failure: str
) -> dict[str, float]:
    """CAT12 quality marks (0.5 best .. 10.5) and volumes consistent with the scan."""
    ncr = rng.uniform(5.5, 8.0) if failure == "noise" else rng.uniform(1.5, 3.2)
    rms = rng.uniform(1.2, 2.6)
    icr = rng.uniform(1.5, 3.0)
    iqr = ((ncr**8 + rms**8) / 2) ** (1 / 8)
    wm_ml = tiv * (0.30 - 0.0005 * max(0.0, brain_age - 40))
    csf_ml = max(50.0, tiv - gm_ml - wm_ml)
    return {
        "NCR": ncr,
        "ICR": icr,
        "res_RMS": rms,
        "IQR": iqr,
        "vol_TIV": gm_ml + wm_ml + csf_ml,
        "vol_CSF": csf_ml,
        "vol_GM": gm_ml,
        "vol_WM": wm_ml,
    }


def write_cohort(root: str | Path, spec: CohortSpec, settings: SimulationSettings) -> pd.DataFrame:
    """Simulate a cohort and write it as CAT12 output; returns its participants table."""
    root = Path(root)
    table = simulate_subjects(spec, settings)
    sites = table.attrs["sites"]
    grid = cat12_grid(settings.voxel_mm)
    _templates(settings.voxel_mm)  # load once before the threads start

    def write_one(row: dict[str, Any]) -> float:
        scan, report = simulate_scan(row, sites, settings)
        subject, session = row["participant_id"], row["session"]
        image = nib.Nifti1Image(scan, grid.affine)
        image.header.set_xyzt_units("mm")
        nii = image_path(root / "cat12", subject, session)
        write_atomic(nii, lambda handle: handle.write(_nifti_bytes(image)))
        write_report(report_path(root / "cat12", subject, session), report)
        return report["vol_TIV"]

    records = table.to_dict("records")
    with ThreadPoolExecutor(max(1, settings.threads)) as pool:
        tivs = list(pool.map(write_one, records))
    table["tiv"] = np.round(tivs, 4)  # as written in the report
    table["brain_age"] = [  # what simulate_scan aged each scan by
        _brain_age(age, diagnosis, settings)
        for age, diagnosis in zip(table["age"], table["diagnosis"], strict=True)
    ]
    hidden = ["planted_failure", "brain_age"]
    save_table(root / "truth.tsv", table[["participant_id", "session", *hidden]])
    public = [c for c in table.columns if not c.startswith("_") and c not in hidden]
    save_table(root / "participants.tsv", table[public])
    log.info("%s: %d scans of %d subjects", spec.name, len(table), spec.n_subjects)
    return table[public]


def _nifti_bytes(image: nib.Nifti1Image) -> bytes:
    import gzip

    return gzip.compress(image.to_bytes(), compresslevel=1)


def run_synth_cohort(
    participants: str,
    name: str,
    spec: dict,
    voxel_mm: float,
    seed: int,
    brain_age_gap: dict,
    threads: int,
) -> None:
    """The synth_cohort job: one synthetic cohort, written beside ``participants``."""
    fields = {k: tuple(v) if k == "age_range" else v for k, v in spec.items() if k != "role"}
    settings = SimulationSettings(voxel_mm=voxel_mm, brain_age_gap=brain_age_gap, threads=threads)
    write_cohort(Path(participants).parent, CohortSpec(name=name, seed=seed, **fields), settings)
