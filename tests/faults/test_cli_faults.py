"""The CLI never destroys a user's file, and says what a user got wrong: each case
through the ``yaware`` command, as a cluster user runs it from a Slurm script."""

import hashlib
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import yaml

from tests.conftest import (
    finetune_keys,
    pretrain_keys,
    run_cli,
    signal_after_one_epoch,
    write_config,
)
from yaware.models.checkpoint import read_checkpoint
from yaware.run_folder import LOCK_NAME, locked_folder
from yaware.train.config import PretrainConfig, build_config
from yaware.train.pretrain import pretrain


def _md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def finished_run(toy_cohort, tmp_path_factory):
    """A finished two-epoch pretraining: its folder and config file."""
    root = tmp_path_factory.mktemp("finished")
    keys = pretrain_keys(toy_cohort, root / "run")
    pretrain(build_config(PretrainConfig, keys))
    return root / "run", write_config(root / "run.yaml", **keys)


def _copy_of(run, tmp_path):
    """A copy of the finished run (folder and config) to do harm to."""
    folder, config = run
    copy = tmp_path / "run"
    copy.mkdir()
    for path in folder.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    keys = yaml.safe_load(config.read_text()) | {"out_dir": str(copy)}
    return copy, write_config(tmp_path / "run.yaml", **keys)


@pytest.mark.parametrize("alias", ["same", "relative", "link"])
def test_extract_refuses_an_output_that_is_its_input(finished_run, toy_cohort, tmp_path, alias):
    data = tmp_path / "scans.npy"
    data.write_bytes((toy_cohort / "val.npy").read_bytes())
    before = _md5(data)
    out = {
        "same": str(data),
        "relative": str(tmp_path / "sub" / ".." / "scans.npy"),
        "link": str(tmp_path / "link.npy"),
    }[alias]
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.npy").symlink_to(data)
    checkpoint = str(finished_run[0] / "best.pt")
    done = run_cli("extract", "--checkpoint", checkpoint, "--data", str(data), "--out", out)
    assert done.returncode == 2
    assert f"the output {out} is the input --data {data}: writing it would destroy" in done.stderr
    assert _md5(data) == before and "Traceback" not in done.stderr
    # Even with --overwrite: an input is never an output.
    done = run_cli(
        "extract", "--checkpoint", checkpoint, "--data", str(data), "--out", out, "--overwrite"
    )
    assert done.returncode == 2 and _md5(data) == before


def test_extract_replaces_an_existing_output_only_when_told(finished_run, toy_cohort, tmp_path):
    out = tmp_path / "features.npy"
    out.write_bytes(b"a file the user made")
    options = (
        "--checkpoint",
        str(finished_run[0] / "best.pt"),
        "--data",
        str(toy_cohort / "val.npy"),
    )
    done = run_cli("extract", *options, "--out", str(out))
    assert done.returncode == 2 and f"{out} exist(s) already" in done.stderr
    assert "--overwrite" in done.stderr and out.read_bytes() == b"a file the user made"
    done = run_cli("extract", *options, "--out", str(out), "--overwrite")
    assert done.returncode == 0, done.stderr
    assert np.load(out).shape[1] == 128


def test_pretrain_refuses_a_folder_that_holds_a_run(finished_run, tmp_path):
    """Without --resume it started over silently, overwriting last.pt and best.pt."""
    run, config = _copy_of(finished_run, tmp_path)
    before = {name: _md5(run / name) for name in ("last.pt", "best.pt", "metrics.csv")}
    done = run_cli("pretrain", "--config", str(config))
    assert done.returncode == 2
    held = "last.pt, best.pt, .best.pt, metrics.csv"
    assert f"{run} holds a run ({held}): pass --resume" in done.stderr
    assert "--overwrite to start it over" in done.stderr and "Traceback" not in done.stderr
    assert {name: _md5(run / name) for name in before} == before
    done = run_cli("pretrain", "--config", str(config), "--overwrite")
    assert done.returncode == 0, done.stderr
    assert read_checkpoint(run / "last.pt")["epoch"] == 2
    assert not (run / LOCK_NAME).exists()  # released at the end


def test_resume_with_fewer_epochs_than_done_is_refused_and_the_records_stay(finished_run, tmp_path):
    run, config = _copy_of(finished_run, tmp_path)
    keys = yaml.safe_load(config.read_text()) | {"epochs": 1}
    shorter = write_config(tmp_path / "shorter.yaml", **keys)
    recorded = (run / "config.yaml").read_text()
    done = run_cli("pretrain", "--config", str(shorter), "--resume")
    assert done.returncode == 2
    assert f"{run / 'last.pt'} holds epoch 2, past epochs: 1: the run is already past" in (
        done.stderr
    )
    assert (run / "config.yaml").read_text() == recorded  # still says epochs: 2
    assert read_checkpoint(run / "last.pt")["epoch"] == 2


def test_toy_data_refuses_to_overwrite_a_cohort(tmp_path):
    done = run_cli("toy-data", "--out", str(tmp_path), "--n", "10", "--shape", "8", "8", "8")
    assert done.returncode == 0, done.stderr
    before = {p.name: _md5(p) for p in tmp_path.iterdir()}
    again = ("toy-data", "--out", str(tmp_path), "--n", "12", "--shape", "8", "8", "8")
    done = run_cli(*again)
    assert done.returncode == 2 and "train.npy" in done.stderr and "--overwrite" in done.stderr
    assert {p.name: _md5(p) for p in tmp_path.iterdir()} == before
    done = run_cli(*again, "--overwrite")
    assert done.returncode == 0 and np.load(tmp_path / "train.npy").shape[0] == 10  # 80 % of 12


@pytest.mark.parametrize("command", ["pretrain", "finetune"])
def test_a_second_run_into_a_held_folder_is_refused_naming_the_first(toy_cohort, tmp_path, command):
    """Two runs into one out_dir both exited 0 and the folder held a mix of both."""
    make_keys = pretrain_keys if command == "pretrain" else finetune_keys
    keys = make_keys(toy_cohort, tmp_path / "run", epochs=1)
    config = write_config(tmp_path / "c.yaml", **keys)
    with locked_folder(tmp_path / "run", "pretrain"):  # this process is the first run
        done = run_cli(command, "--config", str(config))
        assert done.returncode == 2
        assert f"{tmp_path / 'run'} is in use by yaware pretrain (pid {os.getpid()} on " in (
            done.stderr
        )
        assert "wait for that run to end, or give this one another out_dir" in done.stderr
        assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [LOCK_NAME]
    done = run_cli(command, "--config", str(config))  # the lock went with its holder
    assert done.returncode == 0, done.stderr


def test_ctrl_c_saves_mid_run_prints_the_resume_line_and_exits_130(toy_cohort, tmp_path):
    keys = pretrain_keys(toy_cohort, tmp_path / "run", epochs=40, batch_size=4)
    config = write_config(tmp_path / "c.yaml", **keys)
    status, stderr = signal_after_one_epoch(config, tmp_path / "run", signal.SIGINT)
    assert status == 130, stderr
    assert "resume from" in stderr and "with --resume" in stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    saved = read_checkpoint(tmp_path / "run" / "last.pt")
    assert 1 <= saved["epoch"] < 40
    assert not (tmp_path / "run" / LOCK_NAME).exists()


def test_a_tilde_and_variables_in_config_paths_are_expanded(toy_cohort, tmp_path):
    """out_dir: ~/runs/x made a folder named '~' in the working directory."""
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    keys = pretrain_keys(toy_cohort, tmp_path, epochs=1)
    keys |= {"out_dir": "~/runs/x", "train_data": "$TOY/train.npy", "val_data": "${TOY}/val.npy"}
    write_config(home / "c.yaml", **keys)
    env = os.environ | {"HOME": str(home), "TOY": str(toy_cohort)}
    done = subprocess.run(
        [sys.executable, "-m", "yaware.cli", "pretrain", "--config", "~/c.yaml"],
        capture_output=True, text=True, timeout=600, cwd=work, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (home / "runs" / "x" / "best.pt").is_file()
    assert list(work.iterdir()) == []
    recorded = yaml.safe_load((home / "runs" / "x" / "config.yaml").read_text())
    assert recorded["train_data"] == str(toy_cohort / "train.npy")


@pytest.mark.parametrize("command", ["extract", "finetune"])
def test_a_checkpoint_that_is_a_run_folder_names_the_files_in_it(
    finished_run, toy_cohort, tmp_path, command
):
    folder = finished_run[0]
    if command == "extract":
        out = str(tmp_path / "f.npy")
        done = run_cli(
            "extract",
            "--checkpoint",
            str(folder),
            "--data",
            str(toy_cohort / "val.npy"),
            "--out",
            out,
        )
    else:
        keys = finetune_keys(toy_cohort, tmp_path / "tuned", pretrained=str(folder))
        done = run_cli("finetune", "--config", str(write_config(tmp_path / "c.yaml", **keys)))
    assert done.returncode == 2
    assert f"{folder}' is a folder" in done.stderr or f"{folder} is a folder" in done.stderr
    assert f"give a file in it: {folder / 'best.pt'} or {folder / 'last.pt'}" in done.stderr
    assert "does not exist" not in done.stderr


def test_a_channels_last_array_gets_the_line_that_moves_its_channel(finished_run, tmp_path):
    rng = np.random.default_rng(0)
    scans = rng.random((3, 16, 20, 16, 1), dtype=np.float32)
    np.save(tmp_path / "last.npy", scans)
    done = run_cli(
        "extract",
        *("--checkpoint", str(finished_run[0] / "best.pt"), "--data", str(tmp_path / "last.npy")),
        *("--out", str(tmp_path / "f.npy")),
    )
    assert done.returncode == 2
    assert "the channel last (N, X, Y, Z, 1); the encoders take it first" in done.stderr
    assert "np.save(path, np.moveaxis(np.load(path), -1, 1))" in done.stderr
    assert "[:, :1]" not in done.stderr
    moved = np.moveaxis(scans, -1, 1)  # the advice works
    np.save(tmp_path / "first.npy", moved)
    done = run_cli(
        "extract",
        *("--checkpoint", str(finished_run[0] / "best.pt"), "--data", str(tmp_path / "first.npy")),
        *("--out", str(tmp_path / "f.npy")),
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("schedule", ["cosine", "none"])
def test_a_warmup_as_long_as_the_run_is_refused(toy_cohort, tmp_path, schedule):
    keys = pretrain_keys(toy_cohort, tmp_path / "run", epochs=3, warmup_epochs=3, schedule=schedule)
    done = run_cli("pretrain", "--config", str(write_config(tmp_path / "c.yaml", **keys)))
    assert done.returncode == 2
    assert "warmup_epochs 3 >= epochs 3: the learning rate would never reach lr" in done.stderr
    assert not (tmp_path / "run").exists()


def _pretrain_warnings(tmp_path, keys) -> tuple[str, dict]:
    done = run_cli("pretrain", "--config", str(write_config(tmp_path / "c.yaml", **keys)))
    assert done.returncode == 0, done.stderr
    return done.stderr, read_checkpoint(tmp_path / "run" / "best.pt")["meta"]


def test_a_batch_larger_than_the_training_set_is_warned_and_recorded(toy_cohort, tmp_path):
    keys = pretrain_keys(toy_cohort, tmp_path / "run", epochs=1, batch_size=64)
    stderr, meta = _pretrain_warnings(tmp_path, keys)
    assert "batch_size 64 is larger than the 24 training scans" in stderr
    assert meta["effective_batch_size"] == 24


def test_a_validation_set_of_one_scan_is_warned_with_how_best_was_chosen(toy_cohort, tmp_path):
    table = (toy_cohort / "val.tsv").read_text().splitlines()
    (tmp_path / "one.tsv").write_text("\n".join(table[:2]) + "\n")
    np.save(tmp_path / "one.npy", np.load(toy_cohort / "val.npy")[:1])
    keys = pretrain_keys(toy_cohort, tmp_path / "run", epochs=1)
    keys |= {"val_data": str(tmp_path / "one.npy"), "val_table": str(tmp_path / "one.tsv")}
    stderr, meta = _pretrain_warnings(tmp_path, keys)
    assert (
        "the validation set holds 1 scan; a contrastive loss needs two: best.pt is chosen on "
        "the training loss" in stderr
    )
    assert meta["best_chosen_on"] == "training loss"


def test_the_training_files_given_as_validation_are_warned_about(toy_cohort, tmp_path):
    keys = pretrain_keys(toy_cohort, tmp_path / "run", epochs=1)
    keys |= {"val_data": keys["train_data"], "val_table": keys["train_table"]}
    stderr, meta = _pretrain_warnings(tmp_path, keys)
    assert "24 of the 24 validation scans are training scans" in stderr
    assert "best.pt is chosen on a loss of scans it trained on" in stderr
    assert "24 of 24 validation scans are training scans" in meta["best_chosen_on"]


@pytest.mark.parametrize(
    ("ages", "message"),
    [
        ("equal", "every training scan has age 40: yaware then learns nothing from it"),
        ("months", "age ranges from"),
    ],
)
def test_implausible_labels_are_warned_about(toy_cohort, tmp_path, ages, message):
    import pandas as pd

    for side in ("train", "val"):
        table = pd.read_csv(toy_cohort / f"{side}.tsv", sep="\t")
        table["age"] = 40.0 if ages == "equal" else table["age"] * 12
        table.to_csv(tmp_path / f"{side}.tsv", sep="\t", index=False)
    keys = pretrain_keys(toy_cohort, tmp_path / "run", epochs=1)
    keys |= {"train_table": str(tmp_path / "train.tsv"), "val_table": str(tmp_path / "val.tsv")}
    stderr, _ = _pretrain_warnings(tmp_path, keys)
    assert message in stderr
    if ages == "months":
        assert "not plausible ages in years (0 to 120); a typo, or another unit" in stderr
