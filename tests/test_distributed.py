"""Data parallelism on the CPU: 2 gloo processes against one process on the same batch."""

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from tests.conftest import pretrain_keys, write_config
from tests.workflow.helpers import wait_until
from yaware.losses import NTXentLoss, YAwareInfoNCE
from yaware.models.checkpoint import read_checkpoint
from yaware.train import distributed
from yaware.workflow.launch import pretrain_command

BATCH, FEATURES = 12, 20
LOSSES = {
    "yaware": lambda: YAwareInfoNCE(sigma=5.0),
    "yaware_column": lambda: YAwareInfoNCE(sigma=3.0, normalisation="column"),
    "simclr": lambda: NTXentLoss(),
}


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(7)
    view1 = torch.randn(BATCH, FEATURES, generator=gen)
    view2 = view1 + 0.3 * torch.randn(BATCH, FEATURES, generator=gen)
    ages = torch.rand(BATCH, generator=gen) * 60 + 20
    return view1, view2, ages


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(FEATURES, 16), nn.ReLU(), nn.Linear(16, 8))


def _step(model: nn.Module, loss_name: str, view1, view2, ages) -> torch.Tensor:
    z1 = distributed.gather(model(view1))
    z2 = distributed.gather(model(view2))
    loss = LOSSES[loss_name]()(z1, z2, distributed.gather_labels(ages))
    loss.backward()
    return loss.detach()


def _rank_step(rank: int, world: int, loss_name: str, out: str) -> None:
    model = nn.parallel.DistributedDataParallel(_model())
    view1, view2, ages = _batch()
    rows = slice(rank * BATCH // world, (rank + 1) * BATCH // world)
    loss = _step(model, loss_name, view1[rows], view2[rows], ages[rows])
    grads = {name: p.grad for name, p in model.module.named_parameters()}
    torch.save({"loss": loss, "grads": grads}, f"{out}.{rank}")


def _worker(rank: int, world: int, init: str, loss_name: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    _rank_step(rank, world, loss_name, out)  # the DDP model is freed before the group
    distributed.shutdown()
    assert not dist.is_initialized()


@pytest.mark.parametrize("loss_name", sorted(LOSSES))
def test_global_batch_loss_and_gradients_equal_one_process(tmp_path, loss_name):
    model = _model()
    expected_loss = _step(model, loss_name, *_batch())
    expected = {name: p.grad for name, p in model.named_parameters()}
    out = str(tmp_path / "result")
    init = f"file://{tmp_path / 'rendezvous'}"
    mp.spawn(_worker, args=(2, init, loss_name, out), nprocs=2, join=True)
    for rank in range(2):
        result = torch.load(f"{out}.{rank}")
        # Every rank sees the negatives of the whole batch: the single-process loss.
        torch.testing.assert_close(result["loss"], expected_loss, rtol=1e-5, atol=1e-6)
        for name, grad in expected.items():
            torch.testing.assert_close(result["grads"][name], grad, rtol=1e-4, atol=1e-6)


def test_without_a_process_group_the_helpers_are_identities():
    x = torch.randn(3, 4, requires_grad=True)
    assert distributed.gather(x) is x
    assert distributed.world_size() == 1 and distributed.rank() == 0
    assert distributed.any_rank(True, torch.device("cpu"))
    assert distributed.all_objects({"a": 1}) == [{"a": 1}]


def _torchrun_pretraining(config: Path, *extra: str) -> list[str]:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    command = [torchrun or "torchrun", "--standalone", "--nproc-per-node", "2"]
    return [*command, "-m", "yaware.cli", "pretrain", "--config", str(config), *extra]


def _torchrun_env(config: Path) -> dict[str, str]:
    # torchrun keeps a torchelastic_* folder in the temporary directory after it exits:
    # the test's own folder, not /tmp.
    return {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(config.parent)}


def _torchrun(config: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        _torchrun_pretraining(config, *extra),
        capture_output=True,
        text=True,
        timeout=600,
        env=_torchrun_env(config),
    )


def test_torchrun_pretraining_writes_once_and_resumes_exactly(toy_cohort, tmp_path):
    keys = pretrain_keys(toy_cohort, tmp_path / "straight", epochs=3, device="cpu")
    done = _torchrun(write_config(tmp_path / "straight.yaml", **keys))
    assert done.returncode == 0, done.stderr[-3000:]
    straight = read_checkpoint(tmp_path / "straight" / "last.pt")
    assert straight["epoch"] == 3
    assert len(straight["policy_ranks"]) == 2  # each rank's augmentation stream kept
    first, second = (ranks["generator"] for ranks in straight["policy_ranks"])
    assert not torch.equal(first, second)
    metrics = pd.read_csv(tmp_path / "straight" / "metrics.csv")
    assert list(metrics["epoch"]) == [1, 2, 3]  # one writer: no duplicated rows

    # Two epochs, then the same run resumed to three: the weights of the straight run.
    keys = pretrain_keys(toy_cohort, tmp_path / "resumed", epochs=2, device="cpu")
    assert _torchrun(write_config(tmp_path / "first.yaml", **keys)).returncode == 0
    keys["epochs"] = 3
    done = _torchrun(write_config(tmp_path / "second.yaml", **keys), "--resume")
    assert done.returncode == 0, done.stderr[-3000:]
    resumed = read_checkpoint(tmp_path / "resumed" / "last.pt")
    assert resumed["epoch"] == 3
    for key, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][key]), key


def test_odd_global_batch_is_refused_under_torchrun(toy_cohort, tmp_path):
    keys = pretrain_keys(toy_cohort, tmp_path / "run", batch_size=7, device="cpu")
    done = _torchrun(write_config(tmp_path / "odd.yaml", **keys))
    assert done.returncode != 0
    assert "multiple of the 2 processes" in done.stderr


def test_sync_batchnorm_without_gpus_is_refused_with_the_reason(toy_cohort, tmp_path):
    keys = pretrain_keys(toy_cohort, tmp_path / "run", sync_batchnorm=True, device="cpu")
    done = _torchrun(write_config(tmp_path / "sync.yaml", **keys))
    assert done.returncode != 0
    assert "sync_batchnorm needs GPUs" in done.stderr
    assert not (tmp_path / "run" / "last.pt").exists()


def test_sigterm_under_torchrun_stops_every_rank_and_resume_matches(toy_cohort, tmp_path):
    """Slurm's time limit signals every task: the ranks agree on one step to stop at (they
    ask each other every few steps and at each epoch's end), rank 0 saves it, and the
    resumed run ends with the weights of an uninterrupted one."""
    keys = pretrain_keys(toy_cohort, tmp_path / "straight", epochs=30, batch_size=2, device="cpu")
    done = _torchrun(write_config(tmp_path / "straight.yaml", **keys))
    assert done.returncode == 0, done.stderr[-3000:]
    straight = read_checkpoint(tmp_path / "straight" / "last.pt")
    keys["out_dir"] = str(tmp_path / "stopped")
    config = write_config(tmp_path / "stopped.yaml", **keys)
    process = subprocess.Popen(
        _torchrun_pretraining(config),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_torchrun_env(config),
        start_new_session=True,
    )
    wait_until((tmp_path / "stopped" / "metrics.csv").exists, process, "one epoch")
    os.killpg(process.pid, signal.SIGTERM)  # as Slurm signals every process of the step
    _, stderr = process.communicate(timeout=120)
    assert process.returncode != 0
    assert "resume from" in stderr, stderr[-3000:]
    saved = read_checkpoint(tmp_path / "stopped" / "last.pt")
    assert 1 <= saved["epoch"] < 30
    # 12 steps per epoch (24 scans, 2 per step): the ranks asked at step 8 and at the end.
    assert saved["step"] in (8, 12), saved["step"]
    done = _torchrun(config, "--resume")
    assert done.returncode == 0, done.stderr[-3000:]
    resumed = read_checkpoint(tmp_path / "stopped" / "last.pt")
    assert resumed["epoch"] == 30
    for key, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][key]), key


@pytest.mark.parametrize(
    ("nodelist", "head"),
    [("gpu[03-05],gpu09", "gpu03"), ("n[1,3-4]", "n1"), ("rack[1-2]-n[01-02],x9", "rack1-n01")],
)
def test_several_nodes_start_one_torchrun_per_node_meeting_at_the_first(nodelist, head):
    """The command a multi-node pretraining job runs, from the allocation's node list (a
    pure function: tests/slurm checks the node list's first host against Slurm's own)."""
    env = {"SLURM_JOB_NODELIST": nodelist, "SLURM_JOB_ID": "77"}
    command = pretrain_command("run.yaml", gpus=8, nodes=4, env=env)
    assert command[:3] == ["srun", "--nodes=4", "--ntasks-per-node=1"]
    assert "--nnodes=4" in command and "--nproc-per-node=2" in command
    assert f"--rdzv-endpoint={head}:29500" in command and "--rdzv-id=77" in command
    assert command[-4:] == ["pretrain", "--config", "run.yaml", "--resume"]
    single = pretrain_command("run.yaml", gpus=2, nodes=1, env={})
    assert "--standalone" in single and "--nproc-per-node=2" in single and "srun" not in single
    with pytest.raises(ValueError, match="evenly"):
        pretrain_command("run.yaml", gpus=3, nodes=2, env=env)
