"""Training you can watch: TensorBoard event files beside metrics.csv, and each
pretraining epoch's validation age probe."""

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import RidgeCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import (
    finetune_keys,
    pretrain_keys,
    run_cli,
    write_config,
    zscored_representations,
)
from yaware.models import build_model
from yaware.models.checkpoint import read_checkpoint


def _scalars(folder) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(folder))
    events.Reload()
    return {
        tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]
    }


@pytest.fixture(scope="module")
def pretrained(toy_cohort, tmp_path_factory):
    root = tmp_path_factory.mktemp("watched")
    keys = pretrain_keys(toy_cohort, root / "run", epochs=3)
    done = run_cli("pretrain", "--config", str(write_config(root / "c.yaml", **keys)))
    assert done.returncode == 0, done.stderr
    return root / "run"


def test_pretraining_writes_each_epoch_to_tensorboard_as_to_metrics_csv(pretrained):
    metrics = pd.read_csv(pretrained / "metrics.csv")
    scalars = _scalars(pretrained)
    for column in ("train_loss", "val_loss", "val_age_mae", "lr"):
        steps, values = zip(*scalars[f"pretrain/{column}"], strict=True)
        assert list(steps) == metrics["epoch"].tolist()
        np.testing.assert_allclose(values, metrics[column], rtol=1e-6)


def test_the_epoch_age_probe_is_a_ridge_on_the_encoder_s_validation_representations(
    pretrained, toy_cohort
):
    """The last epoch's val_age_mae, recomputed here from last.pt: the encoder's
    representations of the z-scored scans, a ridge fitted on the training scans."""
    model = build_model("tinycnn")
    model.load_state_dict(read_checkpoint(pretrained / "last.pt")["model"])
    model.eval()
    sides = {}
    for side in ("train", "val"):
        x = zscored_representations(model, np.load(toy_cohort / f"{side}.npy"))
        sides[side] = (x, pd.read_csv(toy_cohort / f"{side}.tsv", sep="\t")["age"].to_numpy())
    probe = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 4, 13)))
    probe.fit(*sides["train"])
    expected = np.abs(probe.predict(sides["val"][0]) - sides["val"][1]).mean()
    recorded = pd.read_csv(pretrained / "metrics.csv")["val_age_mae"].iloc[-1]
    assert recorded == pytest.approx(expected, rel=1e-4)


def test_fine_tuning_writes_its_epochs_to_tensorboard(toy_cohort, tmp_path):
    keys = finetune_keys(toy_cohort, tmp_path / "ft")
    done = run_cli("finetune", "--config", str(write_config(tmp_path / "c.yaml", **keys)))
    assert done.returncode == 0, done.stderr
    metrics = pd.read_csv(tmp_path / "ft" / "metrics.csv")
    scalars = _scalars(tmp_path / "ft")
    steps, values = zip(*scalars["finetune/train_loss"], strict=True)
    assert list(steps) == metrics["epoch"].tolist()
    np.testing.assert_allclose(values, metrics["train_loss"], rtol=1e-6)
    assert "finetune/val_auc" in scalars
