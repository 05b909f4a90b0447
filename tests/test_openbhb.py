"""OpenBHB read as distributed: its table, its maps, its official split, the fetch (with
huggingface_hub replaced at its function boundary: no network here) and the metrics."""

import fnmatch
import shutil
from pathlib import Path

import huggingface_hub
import numpy as np
import pandas as pd
import pytest

from tests.openbhb_replica import SHAPE, make_replica
from yaware.cli import main
from yaware.data.grid import cat12_grid
from yaware.data.maps import load_map
from yaware.data.openbhb import (
    REPO_ID,
    REVISION,
    ROI_PATTERN,
    VBM_PATTERN,
    index_openbhb,
    missing_files,
    read_openbhb_table,
)
from yaware.data.openbhb_fetch import fetch_openbhb
from yaware.data.splits import SplitSettings, official_pretrain_split
from yaware.errors import DataError
from yaware.evaluate.openbhb_metrics import challenge_metrics


@pytest.fixture(scope="module")
def replica(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("openbhb")
    make_replica(root)
    return root


def test_the_index_keeps_ids_splits_and_real_file_names(replica, tmp_path):
    source = pd.read_csv(replica / "participants.tsv", sep="\t")
    indexed = index_openbhb(replica, tmp_path / "participants.tsv")
    assert indexed["participant_id"].tolist() == source["participant_id"].astype(str).tolist()
    assert (indexed["official_split"] == source["split"]).all()
    assert (indexed["site"] == source["siteXacq"].astype(str)).all()  # the challenge's site
    assert (indexed["openbhb_site"] == source["site"]).all()
    assert set(indexed["session"]) == {"1"}
    for row in indexed.itertuples():
        top = "train" if row.official_split == "train" else "val"
        expected = (
            f"{top}/derivatives/sub-{row.participant_id}/ses-1/"
            f"sub-{row.participant_id}_preproc-cat12vbm_desc-gm_T1w.npy"
        )
        assert row.path == str(replica.resolve() / expected) and Path(row.path).is_file()
        assert Path(row.roi_path).is_file() and row.roi_path.endswith("_desc-gm_ROI.npy")


def test_ids_that_pandas_wrote_as_floats_are_read_as_the_integers(replica, tmp_path):
    table = pd.read_csv(replica / "participants.tsv", sep="\t")
    ids = table["participant_id"].astype(str).tolist()
    table["participant_id"] = table["participant_id"].astype(float)  # "123456.0"
    table.to_csv(tmp_path / "participants.tsv", sep="\t", index=False)
    assert (tmp_path / "participants.tsv").read_text().splitlines()[1].startswith(f"{ids[0]}.0")
    assert read_openbhb_table(tmp_path / "participants.tsv")["participant_id"].tolist() == ids


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda t: t.drop(columns=["siteXacq"]), "siteXacq"),
        (lambda t: t.assign(split=t["split"].replace({"external_test": "val"})), "'val'"),
        (lambda t: t.assign(participant_id=["abc", *t["participant_id"][1:]]), "'abc'"),
    ],
)
def test_a_table_that_is_not_openbhbs_is_named_with_its_fault(replica, tmp_path, change, expected):
    table = change(pd.read_csv(replica / "participants.tsv", sep="\t"))
    table.to_csv(tmp_path / "participants.tsv", sep="\t", index=False)
    with pytest.raises(DataError, match=expected) as caught:
        read_openbhb_table(tmp_path / "participants.tsv")
    assert str(tmp_path / "participants.tsv") in str(caught.value)


def test_a_map_is_read_from_its_npy_and_a_wrong_shape_is_named(replica, tmp_path):
    path = Path(index_openbhb(replica, tmp_path / "p.tsv")["path"].iloc[0])
    assert load_map(path, cat12_grid(1.5)).shape == SHAPE
    np.save(tmp_path / "cut.npy", np.load(path)[:, :120])
    with pytest.raises(DataError, match=r"shape \(1, 120, 145, 121\).*\(1, 121, 145, 121\)"):
        load_map(tmp_path / "cut.npy", cat12_grid(1.5))


def test_the_official_split_is_kept_and_validation_drawn_from_train_only(replica, tmp_path):
    table = index_openbhb(replica, tmp_path / "p.tsv")
    split = official_pretrain_split(table, SplitSettings(val_fraction=0.25))
    official = table["official_split"]
    assert set(split.loc[official == "train", "split"]) == {"train", "val"}
    assert (split.loc[official != "train", "split"] == official[official != "train"]).all()


def _fake_hub(source: Path, calls: list, fail: Exception | None = None):
    """hf_hub_download as the hub's: the file of ``source`` written under local_dir."""

    def download(repo_id, filename, repo_type, revision, local_dir):
        calls.append(
            {"repo_id": repo_id, "filename": filename, "repo_type": repo_type}
            | {"revision": revision}
        )
        if fail is not None:
            raise fail
        target = Path(local_dir) / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / filename, target)
        return str(target)

    return download


def test_the_fetch_asks_for_the_table_and_the_vbm_maps_only(replica, tmp_path, monkeypatch):
    calls: list[dict] = []
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", _fake_hub(replica, calls))
    root = tmp_path / "copy"
    assert main(["openbhb-download", "--root", str(root)]) == 0
    names = [call["filename"] for call in calls]
    assert names[0] == "participants.tsv"
    assert all(fnmatch.fnmatch(name, VBM_PATTERN) for name in names[1:])
    assert len(names) - 1 == len(pd.read_csv(replica / "participants.tsv", sep="\t"))
    assert {(c["repo_id"], c["repo_type"], c["revision"]) for c in calls} == {
        (REPO_ID, "dataset", REVISION)
    }
    assert missing_files(root) == []
    # A second fetch asks for nothing, and a file already there is never fetched again.
    mine = root / names[1]
    np.save(mine, np.ones((1, *SHAPE), np.float32))
    calls.clear()
    (root / names[2]).unlink()
    assert fetch_openbhb(root) == [names[2]] and [c["filename"] for c in calls] == [names[2]]
    assert np.load(mine).min() == 1.0
    calls.clear()
    fetched = fetch_openbhb(root, roi=True)
    assert fetched and all(fnmatch.fnmatch(name, ROI_PATTERN) for name in fetched)


def test_offline_the_fetch_names_the_command_not_a_traceback(
    replica, tmp_path, monkeypatch, capsys
):
    calls: list[dict] = []
    offline = ConnectionError("Failed to resolve 'huggingface.co'")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", _fake_hub(replica, calls, offline))
    assert main(["openbhb-download", "--root", str(tmp_path / "copy")]) == 2
    error = capsys.readouterr().err
    assert "participants.tsv" in error and "ConnectionError" in error
    assert f"yaware openbhb-download --root {tmp_path / 'copy'}" in error
    assert "Traceback" not in error
    assert not (tmp_path / "copy" / "participants.tsv").exists()


def test_challenge_metrics_follow_their_definitions():
    rng = np.random.default_rng(0)
    n = 90
    sides = np.array(
        ["train"] * 50 + ["val"] * 10 + ["internal_test"] * 15 + ["external_test"] * 15
    )
    age = rng.uniform(10, 80, n)
    site = np.where(sides == "external_test", "9", np.array(["1", "2", "3"])[np.arange(n) % 3])
    x = np.c_[age + rng.normal(0, 2, n), (site == "1") * 3.0, rng.normal(0, 1, (n, 3))]
    ids = [str(i) for i in range(n)]
    table = pd.DataFrame({"participant_id": ids, "session": "1", "age": age, "site": site})
    split = pd.DataFrame({"participant_id": ids, "session": "1", "split": sides})
    result = challenge_metrics(x, table, split, "age", "test")
    assert (result["n_train"], result["n_internal"], result["n_external"]) == (60, 15, 15)
    assert 0 < result["mae_internal"] < 4 and 0 < result["mae_external"] < 4
    assert 1 / 3 < result["site_bacc"] <= 1  # site 1 is plain in the representation
    assert result["score"] == pytest.approx(result["site_bacc"] ** 0.3 * result["mae_external"])
