"""Paired differences between methods: pairing, the per-seed t interval, q-values."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from yaware.evaluate.comparisons import paired_differences, with_q_values


def _rows(
    label, method, auc, seeds=(0, 1), repeats=3, task="AD vs CTL", n_target=50, cohort="adni"
):
    """auc: a function of (seed, repeat)."""
    return pd.DataFrame(
        [
            {
                "label": label,
                "method": method,
                "seed": seed,
                "cohort": cohort,
                "task": task,
                "n_target": n_target,
                "repeat": repeat,
                "auc": auc(seed, repeat),
            }
            for seed in seeds
            for repeat in range(repeats)
        ]
    )


def _draw_effect(seed, repeat):
    """A baseline whose draws differ much more than its seeds."""
    return 0.6 + 0.1 * repeat + 0.01 * seed


def test_a_constant_gain_on_every_draw_is_found_with_no_spread():
    frame = pd.concat(
        [
            _rows("SimCLR", "simclr", _draw_effect),
            _rows("y-Aware", "yaware", lambda s, r: _draw_effect(s, r) + 0.05),
        ]
    )
    table = paired_differences(frame, "auc", ["simclr"], "linear probe")
    assert len(table) == 1
    row = table.iloc[0]
    assert (row["label"], row["baseline"]) == ("y-Aware", "SimCLR")
    assert (row["n_pairs"], row["n_seeds"]) == (6, 2)
    assert row["diff_mean"] == pytest.approx(0.05)
    # Pairing on the draw removes the draws' spread (0.1 per draw) entirely.
    assert row["diff_sd"] == pytest.approx(0.0, abs=1e-12)
    assert row["p_better"] == 1.0
    # The two seeds' means are equal: a t has no spread to estimate (rounding error would
    # make its p 0), so there is no interval and no p-value.
    assert np.isnan(row["ci_low"]) and np.isnan(row["p_value"])


def test_two_cohorts_of_one_task_are_compared_apart():
    """ADNI and OASIS both hold 'AD vs CN': pooled, each label would have two rows per seed
    and draw. Each cohort gets its own row, with its own difference."""
    frame = pd.concat(
        [_rows("SimCLR", "simclr", _draw_effect, cohort=cohort) for cohort in ("adni", "oasis")]
        + [
            _rows("y-Aware", "yaware", lambda s, r, g=gain: _draw_effect(s, r) + g, cohort=c)
            for c, gain in (("adni", 0.05), ("oasis", -0.02))
        ]
    )
    table = paired_differences(frame, "auc", ["simclr"], "linear probe")
    assert table[["cohort", "task"]].values.tolist() == [
        ["adni", "AD vs CTL"],
        ["oasis", "AD vs CTL"],
    ]
    assert table["diff_mean"].tolist() == pytest.approx([0.05, -0.02])
    assert (table["n_pairs"] == 6).all()


def test_the_interval_is_a_t_over_the_per_seed_means():
    rng = np.random.default_rng(3)
    noise = rng.normal(0, 0.03, size=(3, 4))
    frame = pd.concat(
        [
            _rows("SimCLR", "simclr", _draw_effect, seeds=(0, 1, 2), repeats=4),
            _rows(
                "y-Aware",
                "yaware",
                lambda s, r: _draw_effect(s, r) + 0.02 + noise[s, r],
                seeds=(0, 1, 2),
                repeats=4,
            ),
        ]
    )
    row = paired_differences(frame, "auc", ["simclr"], "linear probe", confidence=0.9).iloc[0]
    per_seed = 0.02 + noise.mean(axis=1)
    expected = stats.ttest_1samp(per_seed, 0.0)
    low, high = expected.confidence_interval(0.9)
    assert row["diff_mean"] == pytest.approx(per_seed.mean())
    assert row["diff_sd"] == pytest.approx(np.std(0.02 + noise, ddof=1))
    assert (row["ci_low"], row["ci_high"]) == (pytest.approx(low), pytest.approx(high))
    assert row["p_value"] == pytest.approx(expected.pvalue)
    assert row["p_better"] == pytest.approx(np.mean(0.02 + noise > 0))


def test_seeds_pair_by_number_and_a_single_seed_side_pairs_with_every_seed():
    baseline = _rows("SimCLR", "simclr", lambda s, r: 0.5 + 0.1 * s, seeds=(0, 1, 2), repeats=2)
    frame = pd.concat(
        [
            baseline,
            # seeds 1 and 2 only: seed 0 of the baseline has no partner and is left out
            _rows("y-Aware", "yaware", lambda s, r: 0.55 + 0.1 * s, seeds=(1, 2), repeats=2),
            # a floor with one seed (seed 7): compared with each of the baseline's seeds
            _rows("PCA", "pca", lambda s, r: 0.6, seeds=(7,), repeats=2),
        ]
    )
    table = paired_differences(frame, "auc", ["simclr"], "linear probe").set_index("label")
    assert (table.loc["y-Aware", "n_pairs"], table.loc["y-Aware", "n_seeds"]) == (4, 2)
    assert table.loc["y-Aware", "diff_mean"] == pytest.approx(0.05)
    assert (table.loc["PCA", "n_pairs"], table.loc["PCA", "n_seeds"]) == (6, 3)
    assert table.loc["PCA", "diff_mean"] == pytest.approx(0.6 - 0.6)  # 0.5, 0.6, 0.7
    assert table.loc["PCA", "p_better"] == pytest.approx(0.5)  # one win, one tie, one loss


def test_training_from_scratch_has_no_seed_and_one_seed_gives_no_interval():
    tuned = _rows("fine-tuned SimCLR", "simclr", lambda s, r: 0.7, seeds=(0,), repeats=2)
    scratch = _rows("Fully supervised", "scratch", lambda s, r: 0.6, seeds=(0,), repeats=2)
    scratch["seed"] = None
    table = paired_differences(pd.concat([tuned, scratch]), "auc", ["scratch"], "fine-tuning")
    row = table.iloc[0]
    assert (row["label"], row["baseline"]) == ("fine-tuned SimCLR", "Fully supervised")
    assert row["n_pairs"] == 2
    assert row["diff_mean"] == pytest.approx(0.1)
    assert np.isnan(row["ci_low"]) and np.isnan(row["p_value"])


def test_labels_are_compared_within_their_task_and_n_target_only():
    frame = pd.concat(
        [
            _rows("SimCLR", "simclr", lambda s, r: 0.6, task="AD vs CTL"),
            _rows("SimCLR", "simclr", lambda s, r: 0.5, task="BD vs CTL"),
            _rows("y-Aware", "yaware", lambda s, r: 0.7, task="AD vs CTL"),
            _rows("y-Aware", "yaware", lambda s, r: 0.4, task="BD vs CTL", n_target=100),
        ]
    )
    table = paired_differences(frame, "auc", ["simclr"], "linear probe")
    assert table[["task", "n_target"]].values.tolist() == [["AD vs CTL", 50]]
    assert table["diff_mean"].tolist() == [pytest.approx(0.1)]


def test_a_baseline_absent_from_the_results_gives_no_rows():
    frame = _rows("y-Aware", "yaware", lambda s, r: 0.7)
    assert paired_differences(frame, "auc", ["simclr"], "linear probe").empty


def test_a_label_with_two_rows_for_one_draw_is_refused():
    frame = pd.concat(
        [_rows("SimCLR", "simclr", lambda s, r: 0.6), _rows("y-Aware", "yaware", lambda s, r: 0.7)]
    )
    frame = pd.concat([frame, frame[frame["label"] == "y-Aware"].head(1)])
    with pytest.raises(ValueError, match="'y-Aware' has more than one row"):
        paired_differences(frame, "auc", ["simclr"], "linear probe")


def test_q_values_are_benjamini_hochberg_over_the_tested_rows():
    table = pd.DataFrame({"p_value": [0.01, np.nan, 0.04, 0.03]})
    q = with_q_values(table)["q_value"]
    assert np.isnan(q[1])
    # BH by hand: sorted p 0.01, 0.03, 0.04 over m = 3 tests.
    assert q[[0, 3, 2]].tolist() == pytest.approx([0.03, 0.04, 0.04])


def test_two_baselines_are_compared_once_the_later_minus_the_earlier():
    frame = pd.concat(
        [
            _rows("fine-tuned SimCLR", "simclr", lambda s, r: 0.7, seeds=(0,)),
            _rows("fine-tuned y-Aware", "yaware", lambda s, r: 0.75, seeds=(0,)),
            _rows("Fully supervised", "scratch", lambda s, r: 0.6, seeds=(0,)),
        ]
    )
    table = paired_differences(frame, "auc", ["scratch", "simclr"], "fine-tuning")
    pairs = list(zip(table["label"], table["baseline"], strict=True))
    assert pairs == [
        ("fine-tuned SimCLR", "Fully supervised"),
        ("fine-tuned y-Aware", "Fully supervised"),
        ("fine-tuned y-Aware", "fine-tuned SimCLR"),
    ]
    assert table["diff_mean"].tolist() == pytest.approx([0.1, 0.15, 0.05])


def test_a_tie_within_rounding_error_counts_half():
    assert 0.1 + 0.2 != 0.3  # but for the last bit
    frame = pd.concat(
        [
            _rows("SimCLR", "simclr", lambda s, r: 0.3, seeds=(0,), repeats=2),
            _rows(
                "y-Aware",
                "yaware",
                lambda s, r: 0.1 + 0.2 if r == 0 else 0.4,
                seeds=(0,),
                repeats=2,
            ),
        ]
    )
    row = paired_differences(frame, "auc", ["simclr"], "linear probe").iloc[0]
    assert row["p_better"] == pytest.approx(0.75)  # a tie and a win


def test_q_values_are_computed_when_an_evaluation_has_no_rows():
    """With fine-tuning switched off its table is empty; the linear probe's tested rows
    still get their q-values (the concatenation must not leave p-values as objects)."""
    from yaware.evaluate.tables import compare

    linear = pd.concat(
        [
            _rows("y-Aware", "yaware", lambda seed, repeat: 0.70 + 0.01 * repeat),
            _rows("SimCLR", "simclr", lambda seed, repeat: 0.60 + 0.03 * seed),
        ],
        ignore_index=True,
    )
    no_fine_tuning = pd.DataFrame(columns=linear.columns)
    table = compare(linear, no_fine_tuning, {"baselines": ["simclr"], "confidence": 0.95})
    assert len(table) == 1 and table["p_value"].dtype == float
    assert table["q_value"].iloc[0] == pytest.approx(table["p_value"].iloc[0])
    assert 0 < table["p_value"].iloc[0] < 1
