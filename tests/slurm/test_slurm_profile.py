"""The Slurm profile against a real single-node Slurm started by tests/slurm/start-cluster.sh.

One workflow run through `--profile slurm` (the repository's own slurm/config.yaml), during
which the pretraining job is cancelled with `scancel`; it must be retried by the profile and
resume from its checkpoint. Its outputs are compared with a local run of the same config.
Then, in copies of that run, features jobs bundled into one Slurm job with docs/cluster.md's
grouping options, compared with the same features made alone and made locally; and a
bundle in which one job fails, which must keep what its other job made.
Every test run includes these tests, CI's too (`scripts/test.sh`); `-m "not slurm"` leaves
them out, `-m slurm` runs them alone. The cluster needs root and apt-get (the script
installs Debian's slurm and munge packages); without them the tests skip.
"""

import os
import shutil
import signal
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.workflow.helpers import (
    REPO,
    TINY_EXPERIMENT,
    make_workdir,
    snakemake,
    start_snakemake,
    tiny_pretraining_config,
    wait_until,
)
from yaware.models.checkpoint import read_checkpoint
from yaware.train.watch import EVENT_FILES
from yaware.workflow.launch import first_host

pytestmark = pytest.mark.slurm

HERE = Path(__file__).resolve().parent
EPOCHS = 80
EXPERIMENT = TINY_EXPERIMENT
CONFIG = tiny_pretraining_config(epochs=EPOCHS, lr=1.0e-3)
TARGET = f"results/pretrain/{EXPERIMENT}/best.pt"
FEATURES = f"results/features/{EXPERIMENT}/bhb.npy"
RANDOM_FEATURES = "results/features/random_tinycnn_seed0/bhb.npy"
# docs/cluster.md's options for bundling features jobs, two per Slurm job here.
BUNDLED = (
    "--groups",
    "features=features_batch",
    "--group-components",
    "features_batch=2",
    "--set-resource-scopes",
    "gpu=local",
    "--resources",
    "gpu=1",
    "--keep-incomplete",
)
RUN_LIMIT_S = 900  # the plugin can wait forever on a broken cluster: never let it
ON_SLURM = ("--profile", str(REPO / "slurm"), "--cores", "8")
ON_SLURM += ("--slurm-init-seconds-before-status-checks", "2")


@pytest.fixture(scope="module")
def cluster():
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("the Slurm test cluster needs root and apt-get (Debian)")
    started = subprocess.run(
        ["bash", str(HERE / "start-cluster.sh")], capture_output=True, text=True, timeout=900
    )
    assert started.returncode == 0, started.stdout + started.stderr
    yield
    subprocess.run(["bash", str(HERE / "stop-cluster.sh")], capture_output=True, timeout=120)


def _job_ids(workdir: Path, rule: str = "pretrain") -> list[int]:
    """Slurm job ids of a rule, from the profile's per-job log files."""
    return _slurm_job_ids(workdir / f"results/logs/slurm/rule_{rule}")


def _sacct(job: int) -> dict[str, str]:
    fields = ("state", "alloc", "requested", "timelimit")
    done = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-j", str(job), "-o", "State,AllocTRES,ReqTRES,Timelimit"],
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(zip(fields, done.stdout.strip().splitlines()[0].split("|"), strict=True))


def _slurm_job_ids(folder: Path) -> list[int]:
    return sorted(int(p.stem) for p in folder.rglob("*.log") if p.stem.isdigit())


@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory):
    """The workflow through the profile, its pretraining job cancelled after a few epochs."""
    workdir = make_workdir(tmp_path_factory.mktemp("slurm"), CONFIG)
    with open(workdir / "snakemake.out", "w") as log:
        process = start_snakemake(workdir, *ON_SLURM, TARGET, FEATURES, output=log)
    try:
        metrics = workdir / f"results/pretrain/{EXPERIMENT}/metrics.csv"

        def some_epochs_done() -> bool:
            return metrics.exists() and len(pd.read_csv(metrics)) >= 3

        wait_until(some_epochs_done, process, "three pretraining epochs", every=0.5)
        first_job = _job_ids(workdir)[0]
        subprocess.run(["scancel", str(first_job)], check=True)
        process.wait(timeout=RUN_LIMIT_S)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            subprocess.run(["scancel", "--user", "root"], check=False)
    output = (workdir / "snakemake.out").read_text()
    assert process.returncode == 0, output[-3000:]
    return workdir, first_job, output


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    workdir = make_workdir(tmp_path_factory.mktemp("local"), CONFIG)
    done = snakemake(workdir, "--cores", "2", TARGET, FEATURES)
    assert done.returncode == 0, done.stderr[-3000:]
    return workdir


def _result_files(workdir: Path) -> set[str]:
    """The result files by name; a TensorBoard event file by its folder, since its name
    holds the host, the time and the pid (and a resumed run writes a second one)."""
    root = workdir / "results"
    return {
        str(p.parent.relative_to(root) / EVENT_FILES)
        if p.match(EVENT_FILES)
        else str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and p.relative_to(root).parts[:2] != ("logs", "slurm")
    }


def test_outputs_match_a_local_run(slurm_run, local_run):
    workdir, _, _ = slurm_run
    assert _result_files(workdir) == _result_files(local_run)
    for table in ("data/bhb/participants.tsv", "splits/bhb/split.tsv"):
        assert (workdir / "results" / table).read_bytes() == (
            local_run / "results" / table
        ).read_bytes(), table
    on_slurm = np.load(workdir / "results/data/bhb/data.npy", mmap_mode="r")
    local = np.load(local_run / "results/data/bhb/data.npy", mmap_mode="r")
    assert np.array_equal(on_slurm, local)
    metrics = pd.read_csv(workdir / f"results/pretrain/{EXPERIMENT}/metrics.csv")
    assert list(metrics["epoch"]) == list(range(1, EPOCHS + 1))


def test_gpu_rules_went_through_sbatch_with_the_profiles_gpu_request(slurm_run):
    workdir, _, output = slurm_run
    jobs = _job_ids(workdir)
    assert len(jobs) == 2, jobs  # the cancelled one and its retry
    for job in jobs:
        accounting = _sacct(job)
        assert "gres/gpu=1" in accounting["alloc"], accounting
        assert "cpu=8" in accounting["alloc"], accounting  # cpus_per_gpu: 8
    # mem_mb grows with the attempt: 24000 * attempt.
    assert "mem=24000M" in _sacct(jobs[0])["alloc"]
    assert "mem=48000M" in _sacct(jobs[1])["alloc"]
    assert "SLURM jobid" in output
    (features,) = _job_ids(workdir, "features")
    assert "gres/gpu=1" in _sacct(features)["alloc"]
    assert "mem=8000M" in _sacct(features)["alloc"]


def test_a_cancelled_job_is_retried_and_resumes_from_its_checkpoint(slurm_run):
    workdir, first_job, _ = slurm_run
    assert _sacct(first_job)["state"].startswith("CANCELLED")
    retry = _job_ids(workdir)[-1]
    assert _sacct(retry)["state"] == "COMPLETED"
    log = (workdir / f"results/logs/pretrain/{EXPERIMENT}.log").read_text()
    assert "resuming from" in log
    resumed_at = [line for line in log.splitlines() if "resuming results" in line]
    assert resumed_at, log[-2000:]
    epoch = int(resumed_at[-1].split(" at epoch ")[1].split()[0])
    assert 3 <= epoch < EPOCHS  # not started over
    final = read_checkpoint(workdir / f"results/pretrain/{EXPERIMENT}/last.pt")
    assert final["epoch"] == EPOCHS
    assert (workdir / TARGET).is_file()


def test_the_first_host_is_the_one_slurm_itself_lists_first(cluster):
    """The pure parser of yaware.workflow.launch against Slurm's own expansion."""
    for nodelist in ("gpu[03-05],gpu09", "n[1,3-4]", "rack[1-2]-n[01-02],x9", "solo"):
        done = subprocess.run(
            ["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        assert first_host(nodelist) == done.stdout.split()[0], nodelist


@pytest.fixture(scope="module")
def bundled_run(slurm_run, local_run, tmp_path_factory):
    """A copy of the Slurm run whose two features jobs (one remade) run as one Slurm job,
    and a copy of the local run that makes the second of them locally."""
    workdir = tmp_path_factory.mktemp("bundled") / "run"
    shutil.copytree(slurm_run[0], workdir, symlinks=True)
    made_alone = (workdir / FEATURES).read_bytes()
    (workdir / FEATURES).unlink()
    # BUNDLED after the targets, which its lists would otherwise take in
    done = snakemake(workdir, *ON_SLURM, FEATURES, RANDOM_FEATURES, *BUNDLED, timeout=RUN_LIMIT_S)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    local = tmp_path_factory.mktemp("local-copy") / "run"
    shutil.copytree(local_run, local, symlinks=True)
    made_locally = snakemake(local, "--cores", "2", RANDOM_FEATURES)
    assert made_locally.returncode == 0, made_locally.stderr[-3000:]
    return workdir, made_alone, (local / RANDOM_FEATURES).read_bytes()


def test_bundled_features_jobs_run_as_one_slurm_job_on_one_gpu(slurm_run, bundled_run):
    workdir = bundled_run[0]
    # The plugin names the folder after the group and its jobs' rule.
    (group_job,) = _slurm_job_ids(workdir / "results/logs/slurm/group_features_batch_features")
    # No features job of its own: the one in rule_features is the earlier run's.
    assert _job_ids(workdir, "features") == _job_ids(slurm_run[0], "features")
    accounting = _sacct(group_job)
    assert accounting["state"] == "COMPLETED", accounting
    # gpu scoped local with a pool of 1: the two jobs run one after the other inside the
    # Slurm job, which asks for one GPU, one job's CPUs and memory, and both runtimes.
    assert "gres/gpu=1" in accounting["alloc"], accounting
    assert "cpu=4," in accounting["alloc"], accounting  # cpus_per_gpu: 4
    assert "mem=8000M" in accounting["alloc"], accounting
    assert accounting["timelimit"] == "08:00:00", accounting  # 2 x 240 min


def test_bundled_features_equal_those_made_alone_and_locally(bundled_run):
    workdir, made_alone, made_locally = bundled_run
    assert (workdir / FEATURES).read_bytes() == made_alone
    assert (workdir / RANDOM_FEATURES).read_bytes() == made_locally
    assert not np.array_equal(np.load(workdir / FEATURES), np.load(workdir / RANDOM_FEATURES))


# The pretrained weights again, as an external model: a second features job of them.
EXTERNAL = "weights_copy"
EXTERNAL_FEATURES = f"results/features/{EXTERNAL}/bhb.npy"


@pytest.fixture(scope="module")
def failed_bundle(slurm_run, tmp_path_factory):
    """A copy of the Slurm run whose pretrained checkpoint became a Git LFS pointer, after
    a copy of the weights went in as an external model: in the bundle, the copy's features
    job succeeds and the pointer's fails. Then the checkpoint comes back and the same
    command runs again.

    The bundle runs its jobs one at a time. Snakemake's default (ILP) scheduler breaks the
    tie between two features jobs at random (the order varied between runs), so the run
    asks for the greedy one, which takes the job with the larger inputs first: the copy's
    5 MB of weights before the pointer's 70 bytes."""
    workdir = tmp_path_factory.mktemp("failed-bundle") / "run"
    shutil.copytree(slurm_run[0], workdir, symlinks=True)
    (workdir / FEATURES).unlink()
    best = workdir / TARGET
    weights, stat = best.read_bytes(), best.stat()
    (workdir / "models").mkdir()
    (workdir / "models" / "copy.pt").write_bytes(weights)
    external = workdir / "external.yaml"
    external.write_text(
        yaml.safe_dump({"external_models": {EXTERNAL: {"checkpoint": "models/copy.pt"}}})
    )
    best.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:9f2c\nsize 47\n")
    os.utime(best, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    command = (
        *ON_SLURM,
        FEATURES,
        EXTERNAL_FEATURES,
        *BUNDLED,
        "--retries",
        "0",
        "--scheduler",
        "greedy",
        "--configfile",
        str(external),
    )
    failed = snakemake(workdir, *command, timeout=RUN_LIMIT_S)
    after_failure = {
        "returncode": failed.returncode,
        "features": (workdir / FEATURES).exists(),
        "copy": (workdir / EXTERNAL_FEATURES).read_bytes()
        if (workdir / EXTERNAL_FEATURES).exists()
        else None,
        "log": (workdir / f"results/logs/features/{EXPERIMENT}/bhb.log").read_text(),
        "bundle_log": "\n".join(
            path.read_text()
            for path in (workdir / "results/logs/slurm").glob("group_features_batch*/*.log")
        ),
    }
    copy_made_at = (
        (workdir / EXTERNAL_FEATURES).stat().st_mtime_ns if after_failure["copy"] else None
    )
    best.write_bytes(weights)
    os.utime(best, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    again = snakemake(workdir, *command, timeout=RUN_LIMIT_S)
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    return workdir, after_failure, copy_made_at


def test_a_failed_job_in_a_bundle_keeps_what_the_bundle_made(failed_bundle, bundled_run):
    workdir, after_failure, copy_made_at = failed_bundle
    assert after_failure["returncode"] != 0
    assert "Git LFS pointer" in after_failure["log"] and not after_failure["features"]
    # The copy's job ran first and finished inside the bundle that then failed.
    assert f"model={EXTERNAL}" in after_failure["bundle_log"]
    assert "Finished jobid" in after_failure["bundle_log"]
    # --keep-incomplete: Snakemake would otherwise delete the finished job's output of a
    # failed group. The same weights give the same features as the job made alone.
    assert after_failure["copy"] == bundled_run[1], "the copy's features are gone"
    # The rerun makes only the failed job: the kept features are not made again.
    assert (workdir / EXTERNAL_FEATURES).stat().st_mtime_ns == copy_made_at
    assert (workdir / FEATURES).read_bytes() == bundled_run[1]
