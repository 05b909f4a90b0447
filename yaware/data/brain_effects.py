"""The published effects the simulator applies: where the regions are, how grey matter
ages, and each diagnosis's regional pattern (yaware.data.synth uses them)."""

import math

# Bilateral region centres (MNI mm, left hemisphere; mirrored on x) and blob widths (mm).
REGIONS: dict[str, tuple[tuple[float, float, float], float]] = {
    "hippocampus": ((-26.0, -22.0, -14.0), 7.0),
    "amygdala": ((-23.0, -4.0, -20.0), 6.0),
    "parahippocampal": ((-24.0, -32.0, -16.0), 7.0),
    "temporal": ((-55.0, -20.0, -10.0), 12.0),
    "insula": ((-38.0, 4.0, 2.0), 9.0),
    "frontal": ((-28.0, 40.0, 30.0), 14.0),
    "parietal": ((-26.0, -60.0, 56.0), 12.0),
    "cingulate": ((-5.0, 24.0, 28.0), 9.0),
    "precuneus": ((-6.0, -56.0, 34.0), 10.0),
    "thalamus": ((-12.0, -18.0, 8.0), 7.0),
    "periventricular": ((-14.0, 8.0, 12.0), 8.0),
}

# Extra regional ageing in %/year, over the global decline (from age 30; hippocampus
# accelerates after 60).
REGIONAL_AGEING = {
    "insula": 0.30,
    "frontal": 0.30,
    "parietal": 0.25,
    "cingulate": 0.25,
    "periventricular": 0.30,
    "hippocampus": 0.10,
}
HIPPOCAMPAL_ELDERLY_EXTRA = 0.50  # %/year after 60: about -1.4 %/year in total

# Regional GM change (fraction) of each diagnosis, beyond its accelerated ageing.
# AD: medial temporal 10-25 % lower, milder posterior cingulate/precuneus loss.
# SCZ: ENIGMA Cohen's d x the regional between-subject SD of these maps (about 7 %).
# BD: about half of SCZ.
DISEASE_PATTERNS: dict[str, dict[str, float]] = {
    "alzheimer": {
        "hippocampus": -0.18,
        "amygdala": -0.15,
        "parahippocampal": -0.12,
        "temporal": -0.05,
        "precuneus": -0.05,
        "cingulate": -0.03,
    },
    "schizophrenia": {
        "hippocampus": -0.032,
        "amygdala": -0.022,
        "thalamus": -0.022,
        "frontal": -0.030,
        "temporal": -0.030,
        "insula": -0.020,
    },
    "bipolar": {
        "hippocampus": -0.015,
        "frontal": -0.012,
        "insula": -0.012,
        "thalamus": -0.010,
    },
}

# Controls with known ground truth (yaware.workflow.plan.CONTROLS): accelerated ageing
# alone (its gap, no pattern; positive), AD's regional pattern alone (no gap; negative).
DISEASE_PATTERNS["accelerated_ageing"] = {}
DISEASE_PATTERNS["regional_atrophy"] = dict(DISEASE_PATTERNS["alzheimer"])

AGEING_MAP_SD = 0.12
AGEING_MAP_SEED = 20260  # the one population ageing map, shared by every cohort
GM_FRACTION_SD = 0.03


def global_ageing(age: float) -> float:
    """Relative global GM volume: -0.3 %/year from 20, another -0.5 %/year after 55."""
    return math.exp(-0.003 * (age - 20.0) - 0.005 * max(0.0, age - 55.0))


def regional_log_change(age: float, diagnosis: str | None) -> dict[str, float]:
    """Log GM change per region for one subject (ageing beyond the global decline, disease)."""
    change = {r: -rate / 100 * max(0.0, age - 30.0) for r, rate in REGIONAL_AGEING.items()}
    change["hippocampus"] -= HIPPOCAMPAL_ELDERLY_EXTRA / 100 * max(0.0, age - 60.0)
    for region, effect in DISEASE_PATTERNS.get(diagnosis or "", {}).items():
        change[region] = change.get(region, 0.0) + math.log1p(effect)
    return change
