"""Property-based tests (hypothesis) of the loss, the augmentations and the splits."""

import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from yaware.augment import POLICIES, build_policy
from yaware.data.splits import SplitSettings, evaluation_split, pretrain_split
from yaware.errors import CheckpointError, ConfigError, DataError
from yaware.evaluate.tasks import probe_age_and_site
from yaware.losses import (
    DecoupledUniformityLoss,
    ExpWInfoNCE,
    NTXentLoss,
    RankNContrastLoss,
    ThresholdInfoNCE,
    YAwareInfoNCE,
)
from yaware.models.checkpoint import read_checkpoint

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def batches(draw):
    n = draw(st.integers(2, 9))
    d = draw(st.integers(2, 16))
    seed = draw(st.integers(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)
    z1 = torch.randn(n, d, generator=gen, dtype=torch.float64)
    z2 = torch.randn(n, d, generator=gen, dtype=torch.float64)
    ages = torch.rand(n, generator=gen, dtype=torch.float64) * 70 + 10
    return z1, z2, ages, seed


LOSSES = st.sampled_from(
    [
        YAwareInfoNCE(5.0),
        YAwareInfoNCE(2.0, kernel="cauchy"),
        ExpWInfoNCE(8.0),
        ThresholdInfoNCE(5.0),
        DecoupledUniformityLoss(5.0),
        NTXentLoss(0.1),
    ]
)


@FAST
@given(batch=batches(), loss=LOSSES)
def test_loss_invariances(batch, loss):
    z1, z2, ages, seed = batch
    value = loss(z1, z2, ages)
    perm = torch.randperm(len(ages), generator=torch.Generator().manual_seed(seed))
    assert torch.allclose(value, loss(z1[perm], z2[perm], ages[perm]), atol=1e-9)  # batch order
    assert torch.allclose(value, loss(z2, z1, ages), atol=1e-9)  # view order
    assert torch.allclose(value, loss(3.7 * z1, 0.2 * z2, ages), atol=1e-9)  # scale of z
    assert torch.isfinite(value)


@FAST
@given(batch=batches(), scale=st.floats(0.1, 10.0), shift=st.floats(-50.0, 50.0))
def test_rank_n_contrast_reads_only_the_ranks_of_label_distances(batch, scale, shift):
    z1, z2, ages, seed = batch
    loss = RankNContrastLoss(2.0)
    value = loss(z1, z2, ages)
    perm = torch.randperm(len(ages), generator=torch.Generator().manual_seed(seed))
    assert torch.allclose(value, loss(z1[perm], z2[perm], ages[perm]), atol=1e-9)
    assert torch.allclose(value, loss(z2, z1, ages), atol=1e-9)
    assert torch.allclose(value, loss(z1, z2, scale * ages + shift), atol=1e-9)
    assert torch.isfinite(value)


@FAST
@given(
    batch=batches(),
    loss=st.sampled_from([YAwareInfoNCE(5.0), ExpWInfoNCE(5.0), NTXentLoss(0.1)]),
)
def test_positives_pulled_together_lower_the_loss(batch, loss):
    # Same vectors in both configurations, so every anchor's denominator is the same set;
    # only which one is its positive changes: its own pair (cosine 1) or another scan's.
    z1, _, _, _ = batch
    ages = torch.arange(len(z1), dtype=torch.float64) * 100  # kernel ~0 between scans
    shifted = torch.roll(torch.arange(len(z1)), 1)
    assert loss(z1, z1.clone(), ages) <= loss(z1, z1[shifted], ages) + 1e-9


@FAST
@given(
    policy=st.sampled_from(POLICIES),
    shape=st.tuples(st.integers(4, 12), st.integers(4, 12), st.integers(4, 12)),
    n=st.integers(1, 4),
    seed=st.integers(0, 2**31 - 1),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_augmentations_keep_shape_and_dtype_and_replay_from_a_seed(policy, shape, n, seed, dtype):
    x = torch.rand(n, 1, *shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    out = build_policy(policy, shape, seed=seed)(x)
    assert out.shape == x.shape and out.dtype == dtype and torch.isfinite(out).all()
    assert torch.equal(out, build_policy(policy, shape, seed=seed)(x))


@st.composite
def cohorts(draw):
    n_subjects = draw(st.integers(12, 60))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    rows = []
    for s in range(n_subjects):
        for session in range(1, int(rng.integers(1, 4)) + 1):
            rows.append(
                {
                    "participant_id": f"s{s}",
                    "session": str(session),
                    "site": f"site{rng.integers(3)}",
                    "sex": rng.choice(["F", "M"]),
                    "age": float(rng.uniform(10, 90)),
                    "dx": int(s % 2),
                }
            )
    return pd.DataFrame(rows)


@FAST
@given(table=cohorts(), fraction=st.floats(0.1, 0.5))
def test_splits_never_put_a_subject_on_two_sides(table, fraction):
    split = pretrain_split(table, SplitSettings(val_fraction=fraction))
    assert (split.groupby("participant_id")["split"].nunique() == 1).all()
    assert set(split["split"]) == {"train", "val"}
    evaluation, draws = evaluation_split(
        table,
        table["dx"].to_numpy(),
        SplitSettings(test_fraction=fraction, n_target=[4], repeats=2),
        "c",
    )
    test = set(evaluation.loc[evaluation["split"] == "test", "participant_id"])
    assert test and test.isdisjoint(draws["participant_id"])
    assert evaluation["participant_id"].is_unique


@FAST
@given(table=cohorts(), patients=st.integers(2, 8), fraction=st.floats(0.1, 0.5))
def test_the_test_set_and_every_draw_hold_both_classes(table, patients, fraction):
    """However rare a class (2 subjects and up), the test AUC and each draw's probe are
    defined: a stratified fold alone can leave a class out of either side."""
    subjects = table["participant_id"].unique()
    dx = table["participant_id"].isin(subjects[:patients]).astype(int).to_numpy()
    evaluation, draws = evaluation_split(
        table, dx, SplitSettings(test_fraction=fraction, n_target=[4], repeats=2), "c"
    )
    label = dict(zip(table["participant_id"], dx, strict=False))
    test = evaluation.loc[evaluation["split"] == "test", "participant_id"]
    assert {label[s] for s in test} == {0, 1}
    for _, draw in draws.groupby(["n_target", "repeat"]):
        assert {label[s] for s in draw["participant_id"]} == {0, 1}


def test_a_class_of_one_subject_is_refused_with_its_name():
    table = pd.DataFrame(
        {"participant_id": [f"s{i}" for i in range(12)], "session": "1", "age": 50.0}
    )
    dx = np.array([1] + [0] * 11)
    with pytest.raises(DataError, match=r"c's task: 1 subject of class \['AD'\]"):
        evaluation_split(table, dx, SplitSettings(n_target=[4]), "c", classes=(["CN"], ["AD"]))


def test_draws_from_a_small_unbalanced_pool_keep_both_classes():
    # Found by hypothesis: a class with one subject in the pool made the stratified split fail.
    table = pd.DataFrame(
        {
            "participant_id": [f"s{i}" for i in range(12)],
            "session": "1",
            "site": "a",
            "sex": "F",
            "age": 50.0,
            "dx": [1, 1, 1] + [0] * 9,
        }
    )
    _, draws = evaluation_split(
        table,
        table["dx"].to_numpy(),
        SplitSettings(test_fraction=0.25, n_target=[4, 8], repeats=3),
        "c",
    )
    labels = dict(zip(table["participant_id"], table["dx"], strict=True))
    for (n_target, _), draw in draws.groupby(["n_target", "repeat"]):
        assert len(draw) == n_target and {labels[s] for s in draw["participant_id"]} == {0, 1}


def test_held_out_sites_with_one_class_are_refused():
    """An external AUC needs both classes among the sites held out whole."""
    table = pd.DataFrame(
        {
            "participant_id": [f"s{i}" for i in range(40)],
            "session": "1",
            "site": ["a"] * 30 + ["b"] * 10,
            "sex": "F",
            "age": 50.0,
        }
    )
    dx = np.r_[np.arange(30) % 2, np.zeros(10, int)]  # site b: controls only
    settings = SplitSettings(n_target=[4], repeats=1, external_sites=["b"])
    with pytest.raises(ConfigError, match=r"sites \['b'\] of c hold only class \[0\]"):
        evaluation_split(table, dx, settings, "c")
    dx[-1] = 1
    split, _ = evaluation_split(table, dx, settings, "c")
    assert (split["split"] == "external").sum() == 10


def test_a_subject_is_evaluated_on_its_first_session_by_number():
    """Sessions 2 and 10 (or M06 and M12): the first is the smaller number, where a text
    sort would take 10."""
    n = 24
    rows = []
    for i in range(n):
        later, first = ("10", "2") if i % 2 else ("M12", "M06")
        for session in (later, first):  # the later session listed first
            rows.append({"participant_id": f"s{i}", "session": session, "site": "a", "sex": "F"})
    table = pd.DataFrame(rows).assign(age=50.0)
    dx = np.repeat(np.arange(n) % 2, 2)
    split, draws = evaluation_split(table, dx, SplitSettings(n_target=[4], repeats=1), "c")
    expected = ["2" if i % 2 else "M06" for i in range(n)]
    assert list(split["session"]) == expected
    assert set(draws["session"]) <= {"2", "M06"}


def test_held_out_sites_match_a_numeric_site_column_or_are_refused_by_name():
    """Sites coded as numbers, read as floats because one row has none: "3" finds 3.0. A
    table with no site column, or a site it lacks, is refused with what it has."""
    n = 40
    table = pd.DataFrame(
        {
            "participant_id": [f"s{i}" for i in range(n)],
            "session": "1",
            "site": [float(1 + i % 4) for i in range(n - 1)] + [np.nan],
            "sex": "F",
            "age": 50.0,
        }
    )
    dx = (np.arange(n) // 4) % 2  # both classes at every site
    settings = SplitSettings(n_target=[4], repeats=1, external_sites=["3"])
    split, _ = evaluation_split(table, dx, settings, "c")
    external = split.loc[split["split"] == "external", "participant_id"]
    assert list(external) == [f"s{i}" for i in range(2, n, 4)]
    settings.external_sites = ["7"]
    with pytest.raises(ConfigError, match=r"\['7'\] not among c's sites \['1.0', '2.0', '3.0'"):
        evaluation_split(table, dx, settings, "c")
    with pytest.raises(ConfigError, match="c's table has no 'site' column"):
        evaluation_split(table.drop(columns="site"), dx, settings, "c")


def test_the_site_probe_leaves_out_scans_of_no_known_site(tmp_path):
    """A missing site is no site: the probe is fitted and scored on the others (before, a
    NaN among the site names stopped np.unique with a TypeError)."""
    rng = np.random.default_rng(0)
    n = 60
    sites = np.array([f"s{i % 3}" for i in range(n)], dtype=object)
    features = rng.normal(size=(n, 6)) + 3.0 * (np.arange(n) % 3)[:, None]  # sites apart
    table = pd.DataFrame(
        {"participant_id": [f"p{i}" for i in range(n)], "age": rng.uniform(20, 80, n)}
    )
    table["site"] = sites
    table.loc[[0, 1, 40], "site"] = ""  # read back as missing
    table.to_csv(tmp_path / "participants.tsv", sep="\t", index=False)
    np.save(tmp_path / "features.npy", features)
    split = table[["participant_id"]].assign(split=np.where(np.arange(n) < 45, "train", "val"))
    split.to_csv(tmp_path / "split.tsv", sep="\t", index=False)
    paths = [tmp_path / "features.npy"], [tmp_path / "participants.tsv"], [tmp_path / "split.tsv"]
    result = probe_age_and_site(*paths, label="age")
    assert result["site_chance"] == pytest.approx(1 / 3)  # three sites, no "n/a" class
    assert result["site_balanced_accuracy"] > 0.9
    assert result["n_train"] == 45 and result["n_val"] == 15


@settings(max_examples=200, deadline=None)
@given(
    content=st.one_of(
        st.binary(min_size=1, max_size=400),
        st.text(min_size=1, max_size=200).map(str.encode),
        # a pickle stream's first opcodes, then anything
        st.binary(max_size=200).map(lambda tail: b"\x80\x02" + tail),
    ),
    trust=st.booleans(),
)
def test_any_bytes_that_are_no_checkpoint_give_an_error_naming_the_file(
    tmp_path_factory, content, trust
):
    """Whatever a file named .pt holds, reading it ends in a CheckpointError that names it
    (a KeyError or struct.error from inside torch.load for some bytes), unless the bytes
    are a well-formed pickle stream: then it reads what pickle itself reads of them."""
    path = tmp_path_factory.mktemp("bytes") / "model.pt"
    path.write_bytes(content)
    try:
        value = read_checkpoint(path, trust=trust)
    except CheckpointError as err:
        assert str(path) in str(err)
        return
    assert repr(value) == repr(pickle.loads(content))
