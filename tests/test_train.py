"""The engine through its public entry points: pretrain, resume, extract, finetune."""

import json
import logging
import math
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

from tests.conftest import (
    finetune_keys,
    pretrain_keys,
    run_cli,
    with_trained_looking_norms,
    write_config,
    zscored_representations,
)
from yaware.data.toy import write_toy_cohort
from yaware.evaluate.features import extract_features, load_encoder
from yaware.models import build_model, densenet121
from yaware.models import densenet as densenet_module
from yaware.models.checkpoint import read_checkpoint, save_checkpoint
from yaware.models.tinycnn import TinyCNN3D
from yaware.models.weights import load_encoder_weights
from yaware.train.config import PretrainConfig, build_config
from yaware.train.objectives import OBJECTIVES, PretrainNetwork
from yaware.train.pretrain import pretrain


@pytest.mark.parametrize("method", ["yaware", "simclr", "age_supervision", "model_genesis"])
def test_resumed_run_ends_with_identical_weights(toy_cohort, tmp_path, method):
    keys = pretrain_keys(
        toy_cohort, tmp_path / "a", epochs=3, schedule="cosine", warmup_epochs=1, method=method
    )
    straight = read_checkpoint(pretrain(build_config(PretrainConfig, keys)))
    keys["out_dir"] = str(tmp_path / "b")
    cfg = build_config(PretrainConfig, keys)
    first = read_checkpoint(pretrain(cfg, stop_after_epochs=1))
    assert first["epoch"] == 1
    resumed = read_checkpoint(pretrain(cfg, resume=True))
    assert resumed["epoch"] == 3
    for key, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    assert [r["train_loss"] for r in straight["history"]] == [
        r["train_loss"] for r in resumed["history"]
    ]
    metrics = pd.read_csv(tmp_path / "b" / "metrics.csv")
    assert list(metrics["epoch"]) == [1, 2, 3]
    assert metrics["val_loss"].notna().all()
    # Training changed the weights: the comparison above is not between two untouched nets.
    assert not torch.equal(
        first["model"]["features.conv0.weight"], resumed["model"]["features.conv0.weight"]
    )


def test_a_categorical_kernel_takes_text_categories_pooled_over_cohorts(toy_cohort, tmp_path):
    """docs/cli.md's product kernel on (age, sex), with sex written M/F as tables write it
    (it stopped: `column 'sex' has ... non-numeric values`). Two pooled cohorts, one with
    only its males and in lower case: trained on text, the run ends with the weights of the
    same run on sex coded 0/1, so a category has one code in both cohorts."""
    train = pd.read_csv(toy_cohort / "train.tsv", sep="\t", dtype={"session": str})
    males = np.flatnonzero(train["sex"] == "M")
    assert 0 < len(males) < len(train)
    scans = np.load(toy_cohort / "train.npy")
    np.save(tmp_path / "males.npy", scans[males])
    tables = {
        "text": (train, train.iloc[males].assign(sex="m")),
        "codes": (
            train.assign(sex=(train["sex"] == "M").astype(int)),
            train.iloc[males].assign(sex=1),
        ),
    }
    runs = {}
    for name, (everyone, only_males) in tables.items():
        paths = [tmp_path / f"{name}-all.tsv", tmp_path / f"{name}-males.tsv"]
        everyone.to_csv(paths[0], sep="\t", index=False)
        only_males.to_csv(paths[1], sep="\t", index=False)
        keys = pretrain_keys(toy_cohort, tmp_path / name, epochs=1, method="yaware")
        keys |= {
            "train_data": [str(toy_cohort / "train.npy"), str(tmp_path / "males.npy")],
            "train_table": [str(p) for p in paths],
            "label": ["age", "sex"],
            "kernel": ["gaussian", "categorical"],
            "sigma": [5.0, 1.0],
        }
        done = run_cli("pretrain", "--config", str(write_config(tmp_path / f"{name}.yaml", **keys)))
        assert done.returncode == 0, done.stderr
        runs[name] = read_checkpoint(tmp_path / name / "last.pt")
    for key, value in runs["codes"]["model"].items():
        assert torch.equal(value, runs["text"]["model"][key]), key
    assert runs["text"]["history"][0]["train_loss"] == runs["codes"]["history"][0]["train_loss"]


def test_resume_with_other_settings_is_refused_and_with_moved_data_goes_on(toy_cohort, tmp_path):
    """`--resume` with a setting that made the first epochs changed (here the learning rate
    and sigma) would mix two runs in one: refused, naming both, before anything is written.
    The data staged elsewhere (another path, the same scans) and more epochs go on."""
    keys = pretrain_keys(toy_cohort, tmp_path / "run", epochs=3, method="yaware", sigma=5.0)
    config = write_config(tmp_path / "pre.yaml", **keys)
    done = run_cli("pretrain", "--config", str(config), "--stop-after-epochs", "1")
    assert done.returncode == 0, done.stderr
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "run").iterdir()}
    changed = write_config(tmp_path / "changed.yaml", **keys | {"lr": 1e-2, "sigma": 2.0})
    done = run_cli("pretrain", "--config", str(changed), "--resume")
    assert done.returncode == 2
    last = tmp_path / "run" / "last.pt"
    assert (
        f"{last} was written with lr=0.001, sigma=5.0 but the config now says lr=0.01, "
        "sigma=2.0; use another out_dir, or drop --resume"
    ) in done.stderr
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "run").iterdir()} == before
    staged = tmp_path / "staged"
    shutil.copytree(toy_cohort, staged)
    files = {
        k: v.replace(str(toy_cohort), str(staged))
        for k, v in keys.items()
        if k.endswith(("_data", "_table"))
    }
    moved = write_config(tmp_path / "moved.yaml", **keys | files | {"epochs": 4})
    done = run_cli("pretrain", "--config", str(moved), "--resume")
    assert done.returncode == 0, done.stderr
    history = read_checkpoint(last)["history"]
    assert [row["epoch"] for row in history] == [1, 2, 3, 4]


def test_cli_pretrain_then_extract(toy_cohort, tmp_path):
    config = write_config(tmp_path / "pre.yaml", **pretrain_keys(toy_cohort, tmp_path / "run"))
    done = run_cli("pretrain", "--config", str(config))
    assert done.returncode == 0, done.stderr
    for name in ("last.pt", "best.pt", "metrics.csv", "config.yaml"):
        assert (tmp_path / "run" / name).is_file()
    assert len(pd.read_csv(tmp_path / "run" / "metrics.csv")) == 2
    out = tmp_path / "features.npy"
    done = run_cli(
        "extract",
        "--checkpoint",
        str(tmp_path / "run" / "last.pt"),
        "--data",
        str(toy_cohort / "val.npy"),
        "--out",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    features = np.load(out)
    n_val = len(pd.read_csv(toy_cohort / "val.tsv", sep="\t"))
    assert features.shape == (n_val, 128) and np.isfinite(features).all()
    # Same numbers as an independent forward pass: the checkpoint's weights loaded
    # strictly into a network built here, the scans z-scored here.
    checkpoint = read_checkpoint(tmp_path / "run" / "last.pt")
    assert checkpoint["meta"]["encoder"] == "tinycnn"
    model = build_model("tinycnn")
    model.load_state_dict(checkpoint["model"])
    expected = zscored_representations(model.eval(), np.load(toy_cohort / "val.npy"))
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(features[0], features[1])
    assert "was trained on" not in done.stderr  # the grid it was trained on
    # Another encoder asked for than the checkpoint records: named, with the fix, before
    # any tensor is compared (it said only that the shapes differ).
    out.unlink()
    done = run_cli(
        "extract",
        *("--checkpoint", str(tmp_path / "run" / "last.pt"), "--encoder", "resnet18"),
        *("--data", str(toy_cohort / "val.npy"), "--out", str(out)),
    )
    assert done.returncode == 2 and not out.exists()
    assert (
        f"{tmp_path / 'run' / 'last.pt'} holds a 'tinycnn' encoder, not the 'resnet18' asked "
        "for: ask for tinycnn (or for none: the recorded one is used)"
    ) in done.stderr
    assert "Traceback" not in done.stderr


def test_an_encoder_used_on_another_grid_is_warned_about(toy_cohort, tmp_path):
    """An encoder pretrained on 16x20x16 scans, then given 20x24x20 ones (another
    conversion.voxel_mm): it runs, and extract and finetune say so."""
    keys = pretrain_keys(toy_cohort, tmp_path / "run", epochs=1)
    done = run_cli("pretrain", "--config", str(write_config(tmp_path / "pre.yaml", **keys)))
    assert done.returncode == 0, done.stderr
    finer = tmp_path / "finer"
    write_toy_cohort(finer, n=15, shape=(20, 24, 20), seed=1)
    checkpoint = tmp_path / "run" / "last.pt"
    options = ("--checkpoint", str(checkpoint), "--out", str(tmp_path / "f.npy"))
    done = run_cli("extract", *options, "--data", str(finer / "train.npy"))
    assert done.returncode == 0, done.stderr
    warning = (
        f"{finer / 'train.npy'} holds scans of 20x24x20 voxels, but the encoder of "
        f"{checkpoint} was trained on 16x20x16"
    )
    assert warning in done.stderr and "conversion.voxel_mm" in done.stderr
    keys = finetune_keys(finer, tmp_path / "ft", pretrained=str(checkpoint), epochs=1)
    done = run_cli("finetune", "--config", str(write_config(tmp_path / "ft.yaml", **keys)))
    assert done.returncode == 0, done.stderr
    assert warning in done.stderr


def test_extract_defaults_to_densenet_for_the_released_layout(tmp_path):
    source = densenet121().eval()
    state = {f"module.{k}": v for k, v in source.state_dict().items()}
    save_checkpoint(tmp_path / "released.pth", {"epoch": 99, "model": state, "optimizer": {}})
    scans = np.random.default_rng(0).random((3, 1, 32, 32, 32), dtype=np.float32)
    np.save(tmp_path / "x.npy", scans)
    out = tmp_path / "f.npy"
    done = run_cli(
        "extract",
        "--checkpoint",
        str(tmp_path / "released.pth"),
        "--data",
        str(tmp_path / "x.npy"),
        "--out",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    assert "densenet121" in done.stdout
    x = torch.from_numpy(scans)
    x = (x - x.mean(dim=(1, 2, 3, 4), keepdim=True)) / x.std(dim=(1, 2, 3, 4), keepdim=True)
    with torch.no_grad():
        expected = source.representation(x).numpy()
    np.testing.assert_allclose(np.load(out), expected, rtol=1e-4, atol=1e-5)


def _trained_looking_tinycnn() -> torch.nn.Module:
    """A tinycnn with batch norms away from their initial values."""
    torch.manual_seed(5)
    return with_trained_looking_norms(build_model("tinycnn"), seed=5)


def _extract(checkpoint, scans: np.ndarray, tmp_path, *extra: str) -> subprocess.CompletedProcess:
    np.save(tmp_path / "x.npy", scans)
    return run_cli(
        "extract",
        *("--checkpoint", str(checkpoint), "--encoder", "tinycnn"),
        *("--data", str(tmp_path / "x.npy"), "--out", str(tmp_path / "f.npy")),
        *extra,
    )


def _stepped_adam_state() -> dict:
    """An optimizer's state dict after one step: tensors ('exp_avg', ...) that are no
    weights, which a search for the weights must pass over."""
    layer = torch.nn.Linear(3, 2)
    adam = torch.optim.Adam(layer.parameters())
    layer(torch.ones(1, 3)).sum().backward()
    adam.step()
    return adam.state_dict()


# Keys as other tools save an encoder: torch.compile, DDP around a compiled module, a
# Lightning module holding the encoder as an attribute, PyTorch's tutorial checkpoint
# ("Saving and loading a general checkpoint"), weights two keys down.
WRAPPED_LAYOUTS = {
    "pytorch_tutorial": lambda state: {
        "epoch": 3,
        "model_state_dict": state,
        "optimizer_state_dict": _stepped_adam_state(),
        "loss": 0.5,
    },
    "two_keys_down": lambda state: {"run": {"network": state, "step": 40}, "args": {"lr": 0.1}},
    "compiled": lambda state: {"model": {f"_orig_mod.{k}": v for k, v in state.items()}},
    "ddp_compiled": lambda state: {f"module._orig_mod.{k}": v for k, v in state.items()},
    "lightning": lambda state: {
        "epoch": 3,
        "state_dict": {f"net.encoder.{k}": v for k, v in state.items()},
        "hyper_parameters": {"lr": 1e-4},
    },
}


@pytest.mark.parametrize("layout", sorted(WRAPPED_LAYOUTS))
def test_extract_finds_the_encoder_under_wrapper_prefixes(tmp_path, layout):
    source = _trained_looking_tinycnn()
    save_checkpoint(tmp_path / "c.ckpt", WRAPPED_LAYOUTS[layout](source.state_dict()))
    scans = np.random.default_rng(1).random((3, 1, 24, 28, 24), dtype=np.float32)
    done = _extract(tmp_path / "c.ckpt", scans, tmp_path)
    assert done.returncode == 0, done.stderr
    expected = zscored_representations(source, scans)
    np.testing.assert_allclose(np.load(tmp_path / "f.npy"), expected, rtol=1e-4, atol=1e-5)


def test_extract_refuses_to_choose_between_two_sets_of_weights(tmp_path):
    """A self-distillation checkpoint (DINO's student and teacher) holds two encoders:
    the error names both and how to keep one; nothing is chosen silently."""
    state = _trained_looking_tinycnn().state_dict()
    checkpoint = {"epoch": 3, "student": state, "teacher": state, "optimizer": {}}
    save_checkpoint(tmp_path / "dino.pth", checkpoint)
    scans = np.random.default_rng(1).random((3, 1, 24, 28, 24), dtype=np.float32)
    done = _extract(tmp_path / "dino.pth", scans, tmp_path)
    assert done.returncode == 2, done.stderr
    assert "holds 2 sets of weights, under ['student'], ['teacher']: save the one" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "f.npy").exists()
    keep = f"torch.save(torch.load({str(tmp_path / 'dino.pth')!r})['student'], 'encoder.pt')"
    assert keep in done.stderr
    torch.save(torch.load(tmp_path / "dino.pth")["student"], tmp_path / "encoder.pt")
    assert _extract(tmp_path / "encoder.pt", scans, tmp_path).returncode == 0  # the fix works


# Whole modules saved with torch.save(model), as much research code does: pickles that
# carry code, read only with --trust-checkpoint.
MODULE_PICKLES = {
    "module": lambda model: model,
    "module_in_dict": lambda model: {"model": model, "epoch": 3},
    "data_parallel": torch.nn.DataParallel,
}


@pytest.mark.parametrize("layout", sorted(MODULE_PICKLES))
def test_extract_reads_a_whole_pickled_module_when_trusted(tmp_path, layout):
    source = _trained_looking_tinycnn()
    torch.save(MODULE_PICKLES[layout](source), tmp_path / "whole.pth")
    scans = np.random.default_rng(2).random((3, 1, 24, 28, 24), dtype=np.float32)
    refused = _extract(tmp_path / "whole.pth", scans, tmp_path)
    assert refused.returncode != 0 and "--trust-checkpoint" in refused.stderr
    assert not (tmp_path / "f.npy").exists()
    done = _extract(tmp_path / "whole.pth", scans, tmp_path, "--trust-checkpoint")
    assert done.returncode == 0, done.stderr
    expected = zscored_representations(source, scans)
    np.testing.assert_allclose(np.load(tmp_path / "f.npy"), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["encoder.safetensors", "encoder.pt"])
def test_extract_reads_safetensors_whatever_the_file_is_named(tmp_path, name):
    source = _trained_looking_tinycnn()
    tensors = {f"encoder.{k}": v.contiguous() for k, v in source.state_dict().items()}
    save_file(tensors, tmp_path / name)
    scans = np.random.default_rng(3).random((3, 1, 24, 28, 24), dtype=np.float32)
    done = _extract(tmp_path / name, scans, tmp_path)  # tensors only: no trust needed
    assert done.returncode == 0, done.stderr
    expected = zscored_representations(source, scans)
    np.testing.assert_allclose(np.load(tmp_path / "f.npy"), expected, rtol=1e-4, atol=1e-5)


def test_extract_names_a_git_lfs_pointer_and_writes_nothing(tmp_path):
    """A checkpoint cloned without Git LFS is a small text file: named as such, with the
    fix, trusted or not (before: 'holds Python objects ... pass --trust-checkpoint')."""
    pointer = tmp_path / "released.pth"
    pointer.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:9f2c\nsize 47\n")
    scans = np.random.default_rng(5).random((3, 1, 24, 28, 24), dtype=np.float32)
    for extra in ((), ("--trust-checkpoint",)):
        refused = _extract(pointer, scans, tmp_path, *extra)
        assert refused.returncode == 2, refused.stderr
        assert f"checkpoint {pointer} cannot be read: it is a Git LFS pointer" in refused.stderr
        assert "git lfs pull" in refused.stderr and "Traceback" not in refused.stderr
        assert not (tmp_path / "f.npy").exists()


def test_extract_reads_a_torchscript_archive_only_when_trusted(tmp_path):
    source = _trained_looking_tinycnn()
    scans = np.random.default_rng(4).random((3, 1, 24, 28, 24), dtype=np.float32)
    torch.jit.save(torch.jit.trace(source, torch.from_numpy(scans)), tmp_path / "scripted.pt")
    refused = _extract(tmp_path / "scripted.pt", scans, tmp_path)
    assert refused.returncode != 0
    assert "is a TorchScript archive" in refused.stderr and "--trust-checkpoint" in refused.stderr
    assert not (tmp_path / "f.npy").exists()
    done = _extract(tmp_path / "scripted.pt", scans, tmp_path, "--trust-checkpoint")
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr
    expected = zscored_representations(source, scans)
    np.testing.assert_allclose(np.load(tmp_path / "f.npy"), expected, rtol=1e-4, atol=1e-5)


def test_monai_densenet121_loads_whole_into_a_classifier_to_fine_tune():
    monai_nets = pytest.importorskip("monai.networks.nets")
    source = with_trained_looking_norms(
        monai_nets.DenseNet121(spatial_dims=3, in_channels=1, out_channels=2), seed=7
    )
    target = build_model("densenet121", "classifier")
    report = load_encoder_weights(target, source.state_dict())
    assert report.missing == []  # norm5 too: the classifier is new, as fine-tuning wants
    assert len(report.loaded) == len(source.state_dict()) - 2  # all but class_layers.out
    for key, value in target.state_dict().items():
        if key.startswith("features."):
            monai_key = re.sub(r"(denselayer\d+)\.", r"\1.layers.", key)
            assert torch.equal(value, source.state_dict()[monai_key]), key


def test_extract_of_a_fine_tuned_densenet_is_the_classifier_s_representation(tmp_path):
    """A fine-tuned DenseNet's trunk ends with norm5 (the original's classifier mode, and
    ``yaware finetune``'s checkpoints): its representation is taken after it (before: the
    encoder built without norm5 left it unused, and gave other features)."""
    torch.manual_seed(1)
    source = with_trained_looking_norms(build_model("densenet121", "classifier"), seed=8)
    meta = {"encoder": "densenet121", "mode": "classifier"}
    save_checkpoint(tmp_path / "best.pt", {"epoch": 3, "model": source.state_dict(), "meta": meta})
    scans = np.random.default_rng(8).random((3, 1, 32, 36, 32), dtype=np.float32)
    np.save(tmp_path / "x.npy", scans)
    done = run_cli(
        "extract",
        *("--checkpoint", str(tmp_path / "best.pt")),
        *("--data", str(tmp_path / "x.npy"), "--out", str(tmp_path / "f.npy")),
    )
    assert done.returncode == 0, done.stderr
    expected = zscored_representations(source, scans)
    np.testing.assert_allclose(np.load(tmp_path / "f.npy"), expected, rtol=1e-4, atol=1e-5)


def test_an_encoder_of_two_input_channels_is_named_as_such(tmp_path):
    """Grey and white matter stacked as channels: every tensor but the first convolution's
    fits, and the error says which input the checkpoint wants, not "another architecture"."""
    state = _trained_looking_tinycnn().state_dict()
    first = next(k for k, v in state.items() if v.ndim == 5)
    state[first] = state[first].repeat(1, 2, 1, 1, 1)
    save_checkpoint(tmp_path / "gm_wm.pt", {"model": state})
    scans = np.random.default_rng(5).random((3, 1, 24, 28, 24), dtype=np.float32)
    done = _extract(tmp_path / "gm_wm.pt", scans, tmp_path)
    assert done.returncode == 2
    assert f"its first convolution ({first}) takes 2 input channels; the encoders here take 1" in (
        done.stderr
    )
    assert "another architecture" not in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "f.npy").exists()


def test_a_truncated_safetensors_file_is_named_without_a_traceback(tmp_path):
    save_file(_trained_looking_tinycnn().state_dict(), tmp_path / "full.safetensors")
    data = (tmp_path / "full.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    done = _extract(tmp_path / "cut.safetensors", np.ones((2, 1, 24, 28, 24), np.float32), tmp_path)
    assert done.returncode != 0
    assert "cut.safetensors cannot be read as safetensors" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "f.npy").exists()


def test_a_checkpoint_with_nan_weights_is_refused_by_name(tmp_path):
    state = _trained_looking_tinycnn().state_dict()
    name = next(k for k in state if k.startswith("features.") and k.endswith("weight"))
    state[name].view(-1)[:2] = float("nan")
    save_checkpoint(tmp_path / "diverged.pt", {"model": state})
    done = _extract(tmp_path / "diverged.pt", np.ones((2, 1, 24, 28, 24), np.float32), tmp_path)
    assert done.returncode != 0
    assert "diverged.pt" in done.stderr and f"{name} (2 of" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "f.npy").exists()


@pytest.mark.parametrize("command", ["pretrain", "finetune"])
def test_a_diverging_run_stops_with_the_epoch_and_the_fix_and_writes_no_weights(
    toy_cohort, tmp_path, command
):
    # A learning rate of 1e20 overflows the weights within the first epoch.
    keys = pretrain_keys(toy_cohort, tmp_path / "run", lr=1e20)
    if command == "finetune":
        keys |= {"label": "sex", "positive": ["M"], "negative": ["F"], "augmentation": "none"}
    done = run_cli(command, "--config", str(write_config(tmp_path / "c.yaml", **keys)))
    assert done.returncode == 2, done.stderr
    assert (
        "epoch 1: train_loss nan" in done.stderr
        and "diverged at learning rate 1e+20" in done.stderr
    )
    assert "Lower 'lr'" in done.stderr and "No checkpoint was written" in done.stderr
    assert "Traceback" not in done.stderr
    assert not any((tmp_path / "run").glob("*.pt")) and not (tmp_path / "run/metrics.csv").exists()


def test_finetune_on_numeric_diagnosis_codes_with_empty_cells(toy_cohort, tmp_path):
    # A coded column (1 = patient, 0 = control) with an empty cell reads as 1.0 / 0.0 / NaN.
    for side in ("train", "val"):
        table = pd.read_csv(toy_cohort / f"{side}.tsv", sep="\t", dtype={"participant_id": str})
        table["dx"] = (table["sex"] == "M").astype(int).astype(str)
        table.loc[0, "dx"] = ""
        table.to_csv(tmp_path / f"{side}.tsv", sep="\t", index=False)
    keys = {
        "train_data": str(toy_cohort / "train.npy"),
        "train_table": str(tmp_path / "train.tsv"),
        "test_data": str(toy_cohort / "val.npy"),
        "test_table": str(tmp_path / "val.tsv"),
        "out_dir": str(tmp_path / "ft"),
        "encoder": "tinycnn",
        "label": "dx",
        "positive": [1],
        "negative": [0],
        "epochs": 1,
        "batch_size": 4,
    }
    done = run_cli("finetune", "--config", str(write_config(tmp_path / "ft.yaml", **keys)))
    assert done.returncode == 0, done.stderr
    predictions = pd.read_csv(tmp_path / "ft" / "predictions.csv", dtype={"participant_id": str})
    table = pd.read_csv(tmp_path / "val.tsv", sep="\t", dtype={"participant_id": str})
    coded = table.iloc[1:]  # the empty cell is in no class
    assert list(predictions["participant_id"]) == list(coded["participant_id"])
    assert list(predictions["label"]) == list(coded["dx"].astype(int))
    keys |= {"negative": [0, "1.0"], "out_dir": str(tmp_path / "both")}
    done = run_cli("finetune", "--config", str(write_config(tmp_path / "both.yaml", **keys)))
    assert done.returncode == 2 and "['1.0'] of column 'dx' are in both classes" in done.stderr


def test_a_test_set_of_one_class_is_named_in_a_warning(toy_cohort, tmp_path):
    """Test rows of one class leave the AUC undefined: the run says so and which rows."""
    table = pd.read_csv(toy_cohort / "val.tsv", sep="\t", dtype={"participant_id": str})
    males = table.loc[table["sex"] == "M", ["participant_id"]]
    males.to_csv(tmp_path / "test_rows.tsv", sep="\t", index=False)
    keys = finetune_keys(toy_cohort, tmp_path / "ft", epochs=1)
    keys["test_split"] = str(tmp_path / "test_rows.tsv")
    done = run_cli("finetune", "--config", str(write_config(tmp_path / "ft.yaml", **keys)))
    assert done.returncode == 0, done.stderr
    assert (
        f"the test set ({tmp_path / 'test_rows.tsv'}) holds class [1] only: its AUC is "
        "undefined" in done.stderr
    ), done.stderr[-2000:]
    metrics = json.loads((tmp_path / "ft" / "test_metrics.json").read_text())
    assert metrics["n"] == len(males) and math.isnan(metrics["auc"])


def test_the_original_repositorys_arrays_and_metadata_csv_train(toy_cohort, tmp_path):
    """data.npy with a metadata.csv that holds a label per array row and no participant_id
    (the original's config.py: data_train, label_train, label_name): pretraining and
    fine-tuning run on it; predictions name the test array's rows."""
    for side in ("train", "val"):
        table = pd.read_csv(toy_cohort / f"{side}.tsv", sep="\t")
        metadata = pd.DataFrame({"age": table["age"], "dx": (table["sex"] == "M").astype(int)})
        metadata.to_csv(tmp_path / f"{side}_metadata.csv", index=False)
    keys = pretrain_keys(toy_cohort, tmp_path / "pre", epochs=1)
    keys |= {"train_table": str(tmp_path / "train_metadata.csv")}
    keys |= {"val_table": str(tmp_path / "val_metadata.csv")}
    done = run_cli("pretrain", "--config", str(write_config(tmp_path / "pre.yaml", **keys)))
    assert done.returncode == 0, done.stderr
    keys = finetune_keys(toy_cohort, tmp_path / "ft") | {
        "train_table": str(tmp_path / "train_metadata.csv"),
        "val_table": str(tmp_path / "val_metadata.csv"),
        "test_table": str(tmp_path / "val_metadata.csv"),
        "label": "dx",
        "positive": [],  # 0/1 codes
        "negative": [],
        "pretrained": str(tmp_path / "pre" / "best.pt"),
    }
    done = run_cli("finetune", "--config", str(write_config(tmp_path / "ft.yaml", **keys)))
    assert done.returncode == 0, done.stderr
    predictions = pd.read_csv(tmp_path / "ft" / "predictions.csv")
    metadata = pd.read_csv(tmp_path / "val_metadata.csv")
    assert list(predictions["row"]) == list(range(len(metadata)))
    assert list(predictions["label"]) == list(metadata["dx"])
    # A header in another case is named with the rename that fixes it.
    metadata.rename(columns={"age": "Age"}).to_csv(tmp_path / "val_metadata.csv", index=False)
    keys = pretrain_keys(toy_cohort, tmp_path / "again", epochs=1)
    keys |= {"val_table": str(tmp_path / "val_metadata.csv")}
    done = run_cli("pretrain", "--config", str(write_config(tmp_path / "again.yaml", **keys)))
    assert done.returncode == 2 and "rename 'Age' to 'age'" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    # A split selects rows by id: a table without ids is named as the one lacking them.
    pd.DataFrame({"participant_id": ["t000"]}).to_csv(tmp_path / "split.tsv", sep="\t")
    keys = pretrain_keys(toy_cohort, tmp_path / "split", epochs=1)
    keys |= {"train_table": str(tmp_path / "train_metadata.csv")}
    keys |= {"train_split": str(tmp_path / "split.tsv")}
    done = run_cli("pretrain", "--config", str(write_config(tmp_path / "split.yaml", **keys)))
    assert done.returncode == 2, done.stderr
    assert "the table it selects from has no 'participant_id' column" in done.stderr


@pytest.mark.parametrize("pretrained", [True, False])
def test_finetune_from_pretrained_and_from_scratch(toy_cohort, tmp_path, pretrained):
    checkpoint = None
    if pretrained:
        checkpoint = pretrain(
            build_config(PretrainConfig, pretrain_keys(toy_cohort, tmp_path / "pre", epochs=1))
        )
    # A learning rate too small to move a weight measurably: the fine-tuned network's
    # weights are then those it started from.
    keys = finetune_keys(toy_cohort, tmp_path / "ft", lr=1e-12)
    if checkpoint:
        keys["pretrained"] = str(checkpoint)
    done = run_cli("finetune", "--config", str(write_config(tmp_path / "ft.yaml", **keys)))
    assert done.returncode == 0, done.stderr
    metrics = pd.read_csv(tmp_path / "ft" / "metrics.csv")
    assert len(metrics) == 2 and metrics["val_auc"].between(0, 1).all()
    predictions = pd.read_csv(tmp_path / "ft" / "predictions.csv")
    table = pd.read_csv(toy_cohort / "val.tsv", sep="\t")
    assert list(predictions["participant_id"]) == list(table["participant_id"])
    assert (predictions["label"] == (table["sex"] == "M").astype(int)).all()
    assert predictions["prob_positive"].between(0, 1).all()
    test_metrics = json.loads((tmp_path / "ft" / "test_metrics.json").read_text())
    assert test_metrics["n"] == len(table) and 0 <= test_metrics["auc"] <= 1
    # TinyCNN trains in channels-last on the CPU; its weights are saved contiguous.
    best = read_checkpoint(tmp_path / "ft" / "best.pt")
    save_file(best["model"], tmp_path / "ft.safetensors")  # refuses strided tensors
    meta = best["meta"]
    assert meta["pretrained"] == (str(checkpoint) if pretrained else None)
    if pretrained:  # every encoder weight is the checkpoint's, not a fresh draw
        started = read_checkpoint(checkpoint)["model"]
        weights = [k for k, v in started.items() if k.startswith("features.") and v.ndim > 1]
        assert weights and meta["loaded"] >= len(weights)
        for key in weights:
            torch.testing.assert_close(best["model"][key], started[key], rtol=0, atol=1e-8)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"sigmaa": 2.0}, "unknown key 'sigmaa'; did you mean 'sigma'"),
        ({"sigma": 0.0}, "sigma must be > 0"),
        ({"sigma": "five"}, "sigma 'five' is no bandwidth rule; give a number"),
        ({"encoder": "vit"}, "encoder must be one of"),
        # YAML's .nan passes every bound (NaN compares false) and .inf passes lr > 0.
        ({"lr": math.nan}, "lr: .nan: not a finite number"),
        ({"sigma": [2.0, math.inf]}, "sigma[1]: .inf: not a finite number"),
        (
            {"train_table": "/nonexistent/participants.tsv"},
            "train_table '/nonexistent/participants.tsv' does not exist",
        ),
    ],
)
def test_config_errors_stop_before_any_work(toy_cohort, tmp_path, override, message):
    keys = pretrain_keys(toy_cohort, tmp_path / "run") | override
    done = run_cli("pretrain", "--config", str(write_config(tmp_path / "bad.yaml", **keys)))
    assert done.returncode == 2
    assert message in done.stderr and "bad.yaml" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", ["pretrain", "finetune"])
def test_bf16_on_the_cpu_is_refused_before_any_output(toy_cohort, tmp_path, command):
    """torch's bf16 3D convolution backward on the CPU can return NaN weight gradients for
    2-voxel-wide feature maps (docs/reliability.md): refused with the fix, nothing written."""
    make_keys = pretrain_keys if command == "pretrain" else finetune_keys
    keys = make_keys(toy_cohort, tmp_path / "run", precision="bf16", device="cpu")
    done = run_cli(command, "--config", str(write_config(tmp_path / "bf16.yaml", **keys)))
    assert done.returncode == 2, done.stderr
    assert "precision: bf16 is refused on the CPU" in done.stderr
    assert "Use precision: auto (fp32 on the CPU) or fp32" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "run").exists()
    # fp32, the CPU's default, trains the same configuration.
    keys |= {"precision": "auto", "epochs": 1}
    done = run_cli(command, "--config", str(write_config(tmp_path / "auto.yaml", **keys)))
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("command", ["pretrain", "finetune", "extract"])
def test_scans_too_small_for_the_encoder_are_refused_before_any_output(
    toy_cohort, tmp_path, command
):
    """DenseNet121 needs 29 voxels per axis; the toy scans have 16x20x16. Before, torch
    raised from its last average pool, deep in the forward pass."""
    if command == "extract":
        state = {f"module.{k}": v for k, v in densenet121().state_dict().items()}
        save_checkpoint(tmp_path / "released.pth", {"model": state})
        out = tmp_path / "run" / "features.npy"
        options = ("--checkpoint", str(tmp_path / "released.pth"), "--out", str(out))
        done = run_cli(command, *options, "--data", str(toy_cohort / "val.npy"))
        array = toy_cohort / "val.npy"
    else:
        make_keys = pretrain_keys if command == "pretrain" else finetune_keys
        keys = make_keys(toy_cohort, tmp_path / "run", encoder="densenet121")
        done = run_cli(command, "--config", str(write_config(tmp_path / "c.yaml", **keys)))
        array = toy_cohort / "train.npy"
    assert done.returncode == 2, done.stderr
    assert f"{array}: scans of 16x20x16 voxels are too small for encoder densenet121" in (
        done.stderr
    )
    assert "at least 29 voxels along each axis" in done.stderr
    assert "resnet18 or tinycnn" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", ["pretrain", "finetune", "extract"])
def test_arrays_of_several_channels_are_refused_before_any_output(toy_cohort, tmp_path, command):
    """Grey and white matter stacked as two channels: the encoders take one. Before, torch
    raised from the first convolution."""
    for side in ("train", "val"):
        one = np.load(toy_cohort / f"{side}.npy")
        np.save(tmp_path / f"{side}.npy", np.concatenate([one, one], axis=1))
        shutil.copy(toy_cohort / f"{side}.tsv", tmp_path / f"{side}.tsv")
    if command == "extract":
        array = tmp_path / "val.npy"
        save_checkpoint(tmp_path / "c.pt", {"model": build_model("tinycnn").state_dict()})
        options = ("--checkpoint", str(tmp_path / "c.pt"), "--encoder", "tinycnn")
        done = run_cli(command, *options, "--data", str(array), "--out", str(tmp_path / "run"))
    else:
        make_keys = pretrain_keys if command == "pretrain" else finetune_keys
        keys = make_keys(tmp_path, tmp_path / "run")
        done = run_cli(command, "--config", str(write_config(tmp_path / "c.yaml", **keys)))
        array = tmp_path / "train.npy"
    assert done.returncode == 2, done.stderr
    assert f"{array}: scans of 2 channels; the encoders take one" in done.stderr
    assert "np.load(path)[:, :1]" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "run").exists()


def test_every_command_has_help():
    for command in ("pretrain", "finetune", "extract", "toy-data"):
        done = run_cli(command, "--help")
        assert done.returncode == 0 and "usage: yaware" in done.stdout


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["extract", "--batch-size", "0"], "argument --batch-size: must be at least 1, got 0"),
        (["extract", "--batch-size", "two"], "argument --batch-size: 'two' is not an integer"),
        (["pretrain", "--stop-after-epochs", "0"], "--stop-after-epochs: must be at least 1"),
        (["toy-data", "--n", "2"], "argument --n: must be at least 3, got 2"),
        (["toy-data", "--shape", "0", "4", "4"], "argument --shape: must be at least 1, got 0"),
    ],
    ids=["batch_zero", "batch_text", "stop_zero", "toy_n", "toy_shape"],
)
def test_out_of_range_options_are_named_before_any_work(tmp_path, argv, message):
    """Before: a batch size of 0 ended in range()'s ValueError, --n 2 wrote an empty val set."""
    required = {
        "extract": ["--checkpoint", "c.pt", "--data", "x.npy", "--out", str(tmp_path / "f")],
        "pretrain": ["--config", "c.yaml"],
        "toy-data": ["--out", str(tmp_path / "toy")],
    }[argv[0]]
    done = run_cli(*argv, *required)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not list(tmp_path.iterdir())


def test_pretraining_pools_several_cohorts(toy_cohort, tmp_path):
    keys = pretrain_keys(toy_cohort, tmp_path / "pooled", epochs=1, batch_size=4)
    keys |= {
        "train_data": [str(toy_cohort / "train.npy"), str(toy_cohort / "val.npy")],
        "train_table": [str(toy_cohort / "train.tsv"), str(toy_cohort / "val.tsv")],
    }
    keys.pop("val_data"), keys.pop("val_table")
    done = run_cli("pretrain", "--config", str(write_config(tmp_path / "pool.yaml", **keys)))
    assert done.returncode == 0, done.stderr
    metrics = pd.read_csv(tmp_path / "pooled" / "metrics.csv")
    n_scans = sum(len(pd.read_csv(toy_cohort / f"{s}.tsv", sep="\t")) for s in ("train", "val"))
    # drop_last: every full batch of the pooled set is one step of 4 scans.
    assert metrics["scans_per_s"].iloc[0] * metrics["seconds"].iloc[0] == pytest.approx(
        n_scans // 4 * 4
    )


@pytest.mark.parametrize("method", ["age_supervision", "model_genesis"])
def test_comparison_methods_train_and_load_into_the_probe_stage(toy_cohort, tmp_path, method):
    keys = pretrain_keys(toy_cohort, tmp_path / method, epochs=1, method=method)
    done = run_cli("pretrain", "--config", str(write_config(tmp_path / "m.yaml", **keys)))
    assert done.returncode == 0, done.stderr
    checkpoint = read_checkpoint(tmp_path / method / "best.pt")
    assert checkpoint["meta"]["method"] == method and checkpoint["extras"]
    assert np.isfinite(pd.read_csv(tmp_path / method / "metrics.csv")["train_loss"]).all()
    model, _ = load_encoder(tmp_path / method / "best.pt")
    features = extract_features(model, toy_cohort / "val.npy")
    assert features.shape[1] == 128 and np.isfinite(features).all()
    trained = checkpoint["model"]["features.conv0.weight"]
    assert torch.equal(model.state_dict()["features.conv0.weight"], trained)


def test_outputs_deleted_before_a_retry_come_back_from_the_kept_checkpoints(toy_cohort, tmp_path):
    """Snakemake deletes a failed job's declared outputs (best.pt, metrics.csv) before its
    retry; the retry resumes from last.pt and must publish both again."""
    keys = pretrain_keys(toy_cohort, tmp_path / "run", epochs=3)
    cfg = build_config(PretrainConfig, keys)
    pretrain(cfg, stop_after_epochs=2)
    best_before = read_checkpoint(tmp_path / "run" / "best.pt")
    (tmp_path / "run" / "best.pt").unlink()
    (tmp_path / "run" / "metrics.csv").unlink()
    pretrain(cfg, resume=True)
    best = read_checkpoint(tmp_path / "run" / "best.pt")
    history = [row["val_loss"] for row in read_checkpoint(tmp_path / "run" / "last.pt")["history"]]
    assert best["epoch"] == 1 + history.index(min(history))
    if best["epoch"] <= 2:  # the best epoch came before the deletion: its weights survived
        for key, value in best_before["model"].items():
            assert torch.equal(value, best["model"][key]), key
    assert list(pd.read_csv(tmp_path / "run" / "metrics.csv")["epoch"]) == [1, 2, 3]


def test_finished_run_republishes_a_deleted_best(toy_cohort, tmp_path):
    cfg = build_config(PretrainConfig, pretrain_keys(toy_cohort, tmp_path / "run"))
    pretrain(cfg)
    kept = read_checkpoint(tmp_path / "run" / "best.pt")
    (tmp_path / "run" / "best.pt").unlink()
    pretrain(cfg, resume=True)  # nothing left to train: only the outputs are restored
    again = read_checkpoint(tmp_path / "run" / "best.pt")
    assert again["epoch"] == kept["epoch"]
    for key, value in kept["model"].items():
        assert torch.equal(value, again["model"][key]), key


@pytest.mark.parametrize("method", ["yaware", "model_genesis"])
def test_channels_last_on_the_cpu_trains_the_same_network(
    toy_cohort, tmp_path, monkeypatch, caplog, method
):
    """TinyCNN (and Model Genesis's decoder with it) trains in channels-last 3D on the CPU,
    where it runs faster: the same losses as the contiguous layout, to rounding."""
    runs = {}
    for channels_last in (True, False):
        monkeypatch.setattr(TinyCNN3D, "channels_last_on_cpu", channels_last)
        keys = pretrain_keys(toy_cohort, tmp_path / str(channels_last), method=method)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="yaware"):
            runs[channels_last] = read_checkpoint(pretrain(build_config(PretrainConfig, keys)))
        layout = "channels_last_3d" if channels_last else "contiguous_format"
        assert f"batches on cpu: torch.{layout}" in caplog.text
    for run in runs.values():  # saved contiguous whatever the layout (portable)
        save_file(run["model"], tmp_path / "model.safetensors")
        save_file(run["extras"], tmp_path / "extras.safetensors")
    # Rounding, not 1e-6: torch's CPU BatchNorm backward in channels-last 3D loses more
    # to cancellation (a relative error of 1e-3 to 4e-3 against float64 where the
    # contiguous kernel has 8e-5, for inputs whose mean is 30x their spread), and Adam's
    # first steps, about lr * sign(gradient), carry that into the losses (Model Genesis's
    # decoder: 1.8e-4 relative after 2 epochs). A layout mix-up moves them by 1e-1.
    for name in ("train_loss", "val_loss"):
        np.testing.assert_allclose(
            [row[name] for row in runs[True]["history"]],
            [row[name] for row in runs[False]["history"]],
            rtol=1e-3,
        )


def test_compiled_pretraining_prepares_the_backbone(toy_cohort, tmp_path, monkeypatch):
    """``compile: true`` lets the backbone set up what stays out of the graph (DenseNet's
    stem tail on CUDA) before torch.compile; without it nothing is set up."""
    monkeypatch.setattr(densenet_module, "_eager_stem_tail", None)
    for compiled in (False, True):
        keys = pretrain_keys(toy_cohort, tmp_path, encoder="densenet121", compile=compiled)
        objective = OBJECTIVES["yaware"]
        network = PretrainNetwork(objective, densenet121(), torch.nn.ModuleDict())
        cfg = build_config(PretrainConfig, keys)
        objective(cfg, network, torch.device("cpu"), (50.0, 10.0), torch.contiguous_format, None)
        assert (densenet_module._eager_stem_tail is not None) == compiled


def test_compiled_pretraining_trains_the_same_network(toy_cohort, tmp_path):
    """``compile: true`` runs the step through torch.compile: the same losses as eager to
    rounding, and a checkpoint whose keys and encoder are the plain network's."""
    runs = {}
    for compiled in (False, True):
        out = tmp_path / str(compiled)
        keys = pretrain_keys(toy_cohort, out, augmentation="cutout", compile=compiled)
        torch._dynamo.reset()
        before = torch._dynamo.utils.counters["stats"]["unique_graphs"]
        runs[compiled] = read_checkpoint(pretrain(build_config(PretrainConfig, keys)))
        graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"] - before
        assert (graphs > 0) == compiled
    eager, compiled = runs[False], runs[True]
    assert compiled["meta"]["config"]["compile"] is True
    assert list(compiled["model"]) == list(eager["model"])  # no torch.compile prefixes
    # Epoch 2's losses match only if epoch 1's updates reached the compiled graph.
    for name in ("train_loss", "val_loss"):
        np.testing.assert_allclose(
            [row[name] for row in compiled["history"]],
            [row[name] for row in eager["history"]],
            rtol=1e-3,
        )
    model, name = load_encoder(tmp_path / "True" / "last.pt")
    assert name == "tinycnn"
    assert torch.equal(
        model.state_dict()["features.conv0.weight"], compiled["model"]["features.conv0.weight"]
    )


def test_compile_without_a_compiler_stops_before_any_work(toy_cohort, tmp_path):
    keys = pretrain_keys(toy_cohort, tmp_path / "run", compile=True)
    config = write_config(tmp_path / "c.yaml", **keys)
    done = subprocess.run(
        [sys.executable, "-m", "yaware.cli", "pretrain", "--config", str(config)],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": str(tmp_path / "empty"), "CXX": ""},
        timeout=300,
    )
    assert done.returncode == 2, done.stderr
    assert "compile: true needs a C++ compiler" in done.stderr
    assert "compile: false" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("n", "batch_size", "scans"), [(6, 16, 6), (6, 4, 4), (12, 4, 12)])
def test_scans_per_second_counts_the_scans_an_epoch_trains_on(tmp_path, n, batch_size, scans):
    # A cohort smaller than the batch trains on one batch of the cohort; otherwise the
    # last partial batch is dropped.
    table = pd.DataFrame(
        {"participant_id": [f"s{i}" for i in range(n)], "age": 20.0 + np.arange(n)}
    )
    table.to_csv(tmp_path / "p.tsv", sep="\t", index=False)
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((n, 1, 12, 14, 12), np.float32))
    keys = {
        "train_data": str(tmp_path / "x.npy"),
        "train_table": str(tmp_path / "p.tsv"),
        "out_dir": str(tmp_path / "run"),
        "encoder": "tinycnn",
        "epochs": 1,
        "batch_size": batch_size,
    }
    done = run_cli("pretrain", "--config", str(write_config(tmp_path / "c.yaml", **keys)))
    assert done.returncode == 0, done.stderr
    row = pd.read_csv(tmp_path / "run" / "metrics.csv").iloc[0]
    assert row["scans_per_s"] * row["seconds"] == pytest.approx(scans)


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_outputs_get_the_mode_of_the_users_umask(toy_cohort, tmp_path, umask):
    # Written through a private temporary file, outputs must not stay private (0600):
    # on a shared cluster folder the group reads the results.
    config = write_config(tmp_path / "pre.yaml", **pretrain_keys(toy_cohort, tmp_path / "run"))
    done = subprocess.run(
        [sys.executable, "-m", "yaware.cli", "pretrain", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=lambda: os.umask(umask),
    )
    assert done.returncode == 0, done.stderr
    for name in ("config.yaml", "last.pt", "best.pt", "metrics.csv"):
        assert (tmp_path / "run" / name).stat().st_mode & 0o777 == 0o666 & ~umask, name
