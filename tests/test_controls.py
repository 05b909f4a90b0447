"""The controls with known ground truth: the simulator's diagnoses and the summary's
statement of what each control expects and what a run shows."""

import numpy as np
import pandas as pd
import pytest

from yaware.data.brain_effects import regional_log_change
from yaware.evaluate.controls import NOT_SHOWN, control_section

METHODS = {"SimCLR": "simclr", "y-Aware (sigma=2)": "yaware", "y-Aware (sigma=5)": "yaware"}


@pytest.mark.parametrize("age", [25.0, 61.5, 80.0])
def test_the_positive_control_is_ageing_alone_and_the_negative_a_pattern_alone(age):
    """Beyond its brain-age gap (applied by the caller, as for every diagnosis), the
    positive control changes no region; the negative control changes AD's regions by AD's
    amounts (its gap is 0)."""
    healthy = regional_log_change(age, None)
    assert regional_log_change(age, "accelerated_ageing") == healthy
    regional = regional_log_change(age, "regional_atrophy")
    alzheimer = regional_log_change(age, "alzheimer")
    assert regional == alzheimer and regional != healthy


def _comparisons(cohort: str, rows: list[tuple]) -> pd.DataFrame:
    """Linear-probe rows (label, n_target, diff_mean, ci_low, ci_high) against SimCLR."""
    return pd.DataFrame(
        [
            {"evaluation": "linear probe", "cohort": cohort, "label": label,
             "baseline": "SimCLR", "n_target": n, "diff_mean": diff, "ci_low": low,
             "ci_high": high}
            for label, n, diff, low, high in rows
        ]
    )  # fmt: skip


def test_a_positive_control_whose_intervals_include_zero_is_said_not_shown():
    comparisons = _comparisons(
        "ageing",
        [
            ("y-Aware (sigma=2)", 25, 0.20, 0.10, 0.30),  # not at the largest N_target
            ("y-Aware (sigma=2)", 100, 0.01, -0.03, 0.05),
            ("y-Aware (sigma=5)", 100, -0.02, np.nan, np.nan),
        ],
    )
    text = control_section(comparisons, METHODS, {"ageing": "positive control"})
    assert "**ageing**, positive control" in text
    assert (
        "N_target=100" in text and "y-Aware (sigma=2) minus SimCLR: +0.010 [-0.030, +0.050]" in text
    )
    assert "y-Aware (sigma=5) minus SimCLR: -0.020 (no interval" in text
    assert f"**Not shown: {NOT_SHOWN}.**" in text


def test_a_positive_control_with_an_interval_above_zero_is_shown_and_a_negative_reported():
    comparisons = pd.concat(
        [
            _comparisons("ageing", [("y-Aware (sigma=5)", 50, 0.08, 0.02, 0.14)]),
            _comparisons("regional", [("y-Aware (sigma=5)", 50, -0.01, -0.05, 0.03)]),
        ]
    )
    controls = {"ageing": "positive control", "regional": "negative control"}
    text = control_section(comparisons, METHODS, controls)
    assert "Shown by y-Aware (sigma=5)." in text and "Not shown" not in text
    assert "**regional**, negative control" in text and "-0.010 [-0.050, +0.030]" in text


def test_no_control_no_section_and_no_pair_said_unmeasured():
    assert control_section(_comparisons("x", []), METHODS, {}) == ""
    empty = pd.DataFrame(columns=["evaluation", "cohort", "label", "baseline", "n_target"])
    text = control_section(empty, METHODS, {"ageing": "positive control"})
    assert "Not measured: this run compares no y-Aware with SimCLR." in text
