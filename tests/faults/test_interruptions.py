"""Interruptions: SIGTERM and SIGKILL lose nothing done before, and reruns agree."""

import os
import signal
import subprocess
import time

import pandas as pd
import torch

from tests.conftest import pretrain_keys, run_cli, signal_after_one_epoch, write_config
from tests.workflow.helpers import (
    TINY_EXPERIMENT,
    make_workdir,
    snakemake,
    snakemake_command,
    start_snakemake,
    tiny_pretraining_config,
    wait_until,
)
from yaware.models.checkpoint import read_checkpoint
from yaware.train.config import PretrainConfig, build_config
from yaware.train.pretrain import pretrain


def test_sigterm_saves_mid_epoch_and_resume_matches_an_uninterrupted_run(toy_cohort, tmp_path):
    keys = pretrain_keys(
        toy_cohort, tmp_path / "straight", epochs=40, batch_size=4, augmentation="all_tf"
    )
    straight = read_checkpoint(pretrain(build_config(PretrainConfig, keys)))
    keys["out_dir"] = str(tmp_path / "stopped")
    config = write_config(tmp_path / "stopped.yaml", **keys)
    status, stderr = signal_after_one_epoch(config, tmp_path / "stopped", signal.SIGTERM)
    assert status == 143, stderr
    assert "resume" in stderr and "Traceback" not in stderr
    saved = read_checkpoint(tmp_path / "stopped" / "last.pt")
    assert 1 <= saved["epoch"] < 40
    done = run_cli("pretrain", "--config", str(config), "--resume")
    assert done.returncode == 0, done.stderr
    resumed = read_checkpoint(tmp_path / "stopped" / "last.pt")
    assert resumed["epoch"] == 40
    for key, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][key]), key


TINY = tiny_pretraining_config(epochs=60, lr=1.0e-3)
CHECKPOINT = f"results/pretrain/{TINY_EXPERIMENT}"


def test_sigkill_of_the_workflow_then_rerun_resumes_and_matches(tmp_path):
    reference = make_workdir(tmp_path / "reference", TINY)
    done = snakemake(reference, "--cores", "2", f"{CHECKPOINT}/best.pt")
    assert done.returncode == 0, done.stderr[-2000:]
    workdir = make_workdir(tmp_path / "killed", TINY)
    process = start_snakemake(workdir, "--cores", "2", f"{CHECKPOINT}/best.pt")
    wait_until((workdir / CHECKPOINT / "metrics.csv").exists, process, "one epoch")
    time.sleep(1.0)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    killed_at = read_checkpoint(workdir / CHECKPOINT / "last.pt")["epoch"]
    assert 1 <= killed_at < 60
    # The user's recovery after a kill: release the stale lock, rerun what was incomplete.
    assert snakemake(workdir, "--unlock").returncode == 0
    rerun = snakemake(workdir, "--cores", "2", "--rerun-incomplete", f"{CHECKPOINT}/best.pt")
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    log = (workdir / "results/logs/pretrain/yaware-sigma5_cutout_tinycnn_seed0.log").read_text()
    assert "resuming from" in log
    final = read_checkpoint(workdir / CHECKPOINT / "last.pt")
    expected = read_checkpoint(reference / CHECKPOINT / "last.pt")
    assert final["epoch"] == 60
    for key, value in expected["model"].items():
        assert torch.equal(value, final["model"][key]), key


def test_a_second_run_on_the_same_directory_is_refused(tmp_path):
    workdir = make_workdir(tmp_path, TINY)
    command = snakemake_command(workdir, "--cores", "1", "data")
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until((workdir / ".snakemake" / "locks").exists, first, "the lock folder")
        deadline = time.monotonic() + 60
        while not any((workdir / ".snakemake" / "locks").iterdir()):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        second = snakemake(workdir, "--cores", "1", "data")
        assert second.returncode != 0
        assert "LockException" in second.stderr or "cannot be locked" in second.stderr
    finally:
        first.wait(timeout=300)
    assert first.returncode == 0


def test_an_unreadable_last_checkpoint_is_kept_aside_and_the_rerun_starts_over(tmp_path):
    config = tiny_pretraining_config(epochs=2, lr=1.0e-3)
    workdir = make_workdir(tmp_path, config)
    target = f"{CHECKPOINT}/best.pt"
    assert snakemake(workdir, "--cores", "2", target).returncode == 0
    last = workdir / CHECKPOINT / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])  # e.g. copied half way from another disk
    (workdir / target).unlink()  # the rule must run again
    rerun = snakemake(workdir, "--cores", "2", target)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    kept = list((workdir / CHECKPOINT).glob("last.unreadable-*.pt"))
    assert len(kept) == 1 and kept[0].stat().st_size == 1000
    log = (workdir / f"results/logs/pretrain/{TINY_EXPERIMENT}.log").read_text()
    assert "cannot be read" in log and "starting over" in log
    assert read_checkpoint(last)["epoch"] == 2


def test_more_epochs_with_a_new_kernel_resumes_simclr_and_restarts_y_aware(tmp_path):
    """A checkpoint is resumed only if the settings its method reads are unchanged: SimCLR
    reads no kernel, so after `epochs: 3, kernel: cauchy` it trains on from epoch 2, where
    y-Aware, whose loss the kernel changes, starts over."""
    methods = {"simclr": {}, "yaware": {"sigma": [5.0]}}
    names = {"simclr": "simclr_cutout_tinycnn_seed0", "yaware": TINY_EXPERIMENT}
    targets = [f"results/pretrain/{name}/best.pt" for name in names.values()]
    workdir = make_workdir(tmp_path, tiny_pretraining_config(epochs=2, methods=methods))
    assert snakemake(workdir, "--cores", "2", *targets).returncode == 0

    def history(method: str) -> pd.DataFrame:
        return pd.read_csv(workdir / f"results/pretrain/{names[method]}/metrics.csv")

    before = {method: history(method) for method in names}
    make_workdir(workdir, tiny_pretraining_config(epochs=3, methods=methods, kernel="cauchy"))
    rerun = snakemake(workdir, "--cores", "2", *targets)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    logs = workdir / "results/logs/pretrain"
    simclr = (logs / f"{names['simclr']}.log").read_text()
    yaware = (logs / f"{names['yaware']}.log").read_text()
    assert "resuming from" in simclr and "starting over" not in simclr
    assert "made by another job (changed: params.settings.kernel); starting over" in yaware
    after = {method: history(method) for method in names}
    assert list(after["simclr"]["epoch"]) == list(after["yaware"]["epoch"]) == [1, 2, 3]
    kept = ["epoch", "train_loss", "val_loss"]
    pd.testing.assert_frame_equal(after["simclr"][kept].head(2), before["simclr"][kept])
    assert after["yaware"]["train_loss"].iloc[0] != before["yaware"]["train_loss"].iloc[0]


def test_more_epochs_under_a_cosine_schedule_train_again(tmp_path):
    """A cosine schedule spreads its decay over all epochs, so a longer run is not this
    run continued: `epochs: 3` retrains the 2-epoch run instead of training on from it."""
    config = tiny_pretraining_config(epochs=2, schedule="cosine")
    workdir = make_workdir(tmp_path, config)
    target = f"results/pretrain/{TINY_EXPERIMENT}/best.pt"
    assert snakemake(workdir, "--cores", "2", target).returncode == 0
    metrics = workdir / f"results/pretrain/{TINY_EXPERIMENT}/metrics.csv"
    before = pd.read_csv(metrics)
    make_workdir(workdir, tiny_pretraining_config(epochs=3, schedule="cosine"))
    rerun = snakemake(workdir, "--cores", "2", target)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    log = (workdir / f"results/logs/pretrain/{TINY_EXPERIMENT}.log").read_text()
    assert "made by another job (changed: params.settings.epochs); starting over" in log
    after = pd.read_csv(metrics)
    assert list(after["epoch"]) == [1, 2, 3]
    # Epoch 1 ran again, under the slower decay of three epochs.
    assert after["train_loss"].iloc[0] != before["train_loss"].iloc[0]
