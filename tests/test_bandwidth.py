"""Bandwidth rules (Scott, Silverman) against scipy's, and a sigma given as a rule through
``yaware pretrain``."""

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy.stats import gaussian_kde

from tests.conftest import pretrain_keys, run_cli, write_config
from yaware.losses.bandwidth import rule_bandwidth


@pytest.mark.parametrize("rule", ["scott", "silverman"])
@pytest.mark.parametrize("dims", [1, 2])
def test_rules_match_scipys_factor_times_each_dimensions_sd(rule, dims):
    rng = np.random.default_rng(dims)
    labels = rng.normal([50, 1.7][:dims], [15, 0.1][:dims], size=(40, dims))
    factor = gaussian_kde(labels.T, bw_method=rule).factor
    expected = labels.std(axis=0, ddof=1) * factor
    got = rule_bandwidth(labels if dims > 1 else labels[:, 0], rule)
    assert len(got) == dims and np.allclose(got, expected, rtol=1e-12)


def test_labels_that_do_not_vary_are_named():
    with pytest.raises(Exception, match="vary in every dimension"):
        rule_bandwidth(np.full(10, 40.0), "scott")


def test_pretrain_resolves_a_rule_on_its_training_labels(toy_cohort, tmp_path):
    keys = pretrain_keys(toy_cohort, tmp_path / "run", epochs=1, sigma="silverman")
    done = run_cli("pretrain", "--config", str(write_config(tmp_path / "c.yaml", **keys)))
    assert done.returncode == 0, done.stderr
    ages = pd.read_csv(keys["train_table"], sep="\t")["age"].to_numpy()
    recorded = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["sigma"]
    assert recorded == pytest.approx(rule_bandwidth(ages, "silverman")[0], rel=1e-12)
    keys = pretrain_keys(toy_cohort, tmp_path / "bad", sigma="scot")
    done = run_cli("pretrain", "--config", str(write_config(tmp_path / "bad.yaml", **keys)))
    assert done.returncode == 2 and "sigma 'scot' is no bandwidth rule" in done.stderr
    assert not (tmp_path / "bad").exists()
