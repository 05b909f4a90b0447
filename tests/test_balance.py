"""yaware.data.balance on planted splits: a side that differs is flagged, one that does not."""

import logging

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from yaware.data.balance import split_balance


def _cohort(n: int = 120, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "participant_id": [f"s{i}" for i in range(n)],
            "age": rng.uniform(20, 80, n),
            "sex": rng.choice(["F", "M"], n),
            "site": rng.choice(["a", "b", "c"], n),
        }
    )


def test_a_test_side_of_the_oldest_subjects_is_flagged(caplog):
    table = _cohort()
    sides = pd.Series(np.where(table["age"].rank() > 90, "test", "train"))
    with caplog.at_level(logging.WARNING, logger="yaware.data.balance"):
        balance = split_balance(table, sides, cohort="planted")
    tests = balance["against_train"]["test"]
    old, young = table["age"][sides == "test"], table["age"][sides == "train"]
    assert tests["age_p"] == pytest.approx(stats.ttest_ind(young, old, equal_var=False).pvalue)
    assert tests["age_p"] < 1e-6
    assert "planted: age differs between train and test" in caplog.text
    assert balance["sides"]["test"]["n_subjects"] == 30
    assert balance["sides"]["test"]["age_mean"] == pytest.approx(old.mean())


def test_a_random_side_is_not_flagged_and_held_out_sites_never_are(caplog):
    table = _cohort(seed=3)
    random_side = np.random.default_rng(4).permutation(np.r_[np.zeros(90), np.ones(30)])
    sides = pd.Series(np.where(random_side == 1, "test", "train"))
    sides[table["site"] == "c"] = "external"  # differs in site by construction
    with caplog.at_level(logging.WARNING, logger="yaware.data.balance"):
        balance = split_balance(table, sides)
    assert balance["against_train"]["external"]["site_p"] < 1e-6
    assert balance["against_train"]["test"]["sex_p"] is not None
    assert "differs" not in caplog.text, caplog.text
