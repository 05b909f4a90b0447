"""The simulator's ageing and head size: where grey matter ages, and what TIV scaling removes."""

import dataclasses

import numpy as np
import pytest

from yaware.data.brain_effects import global_ageing, regional_log_change
from yaware.data.synth import (
    CohortSpec,
    SimulationSettings,
    _region_blobs,
    ageing_map,
    simulate_scan,
    simulate_subjects,
)

VOXEL_MM = 6.0


def _one_subject_at(ages: tuple[float, float], settings: SimulationSettings):
    """One healthy subject's map at two ages, with no site noise, offset or blur."""
    spec = CohortSpec("ageing", n_subjects=1, n_sites=1, qc_failure_rate=0.0)
    table = simulate_subjects(spec, settings)
    sites = [
        dataclasses.replace(s, noise=0.0, offset=0.0, smooth_mm=0.0) for s in table.attrs["sites"]
    ]
    row = table.iloc[0].to_dict()
    return [simulate_scan(row | {"age": age}, sites, settings)[0] for age in ages]


@pytest.mark.parametrize("sd", [0.0, 0.12, 0.3])
def test_grey_matter_ages_at_the_rate_of_the_ageing_map(sd):
    """Forty years on, a voxel's log change is the global decline, the regional ageing and
    minus the map times sd %/year times forty: nothing else moves with age."""
    settings = SimulationSettings(voxel_mm=VOXEL_MM, ageing_map_sd=sd)
    young, old = _one_subject_at((30.0, 70.0), settings)
    grey = (young > 0.05) & (old > 0.05)
    expected = np.full(young.shape, np.log(global_ageing(70.0) / global_ageing(30.0)))
    blobs = _region_blobs(VOXEL_MM)
    for region, value in regional_log_change(70.0, None).items():
        expected += (value - regional_log_change(30.0, None)[region]) * blobs[region]
    expected -= sd / 100 * ageing_map(VOXEL_MM) * 40.0
    measured = np.log(old[grey] / young[grey])
    np.testing.assert_allclose(measured, expected[grey], atol=1e-4)


def test_a_map_scales_with_tiv_so_tiv_scaling_leaves_the_grey_matter_fraction():
    """Women of one age at one site: grey-matter volume follows TIV (r > 0.8), and the GM
    fraction of TIV varies by a few per cent, not by the 7 % spread of head sizes."""
    spec = CohortSpec(
        "heads", n_subjects=80, n_sites=1, age_range=(40.0, 41.0), female_fraction=1.0,
        second_session_rate=0.0, qc_failure_rate=0.0,
    )  # fmt: skip
    settings = SimulationSettings(voxel_mm=VOXEL_MM)
    table = simulate_subjects(spec, settings)
    reports = [
        simulate_scan(row, table.attrs["sites"], settings)[1] for row in table.to_dict("records")
    ]
    gm = np.array([r["vol_GM"] for r in reports])
    tiv = np.array([r["vol_TIV"] for r in reports])
    assert np.corrcoef(gm, tiv)[0, 1] > 0.8
    fraction = gm / tiv
    assert fraction.std() / fraction.mean() < 0.045
    assert (tiv.std() / tiv.mean()) > 0.05  # head sizes do vary
