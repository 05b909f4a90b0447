"""Outputs that cannot be written: the run stops naming the file, and leaves nothing partial.

A real write failure, not a mock: the process runs under a file-size limit (RLIMIT_FSIZE,
with SIGXFSZ ignored), so every write past the limit fails with EFBIG, as it fails with
ENOSPC on a full disk or EDQUOT over a cluster quota.
"""

import os
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import finetune_keys, pretrain_keys, run_cli, write_config
from tests.workflow.helpers import make_workdir, snakemake, snakemake_command
from yaware.models import build_model
from yaware.models.checkpoint import save_checkpoint

LIMIT_BYTES = 20_000  # config.yaml fits, a tinycnn checkpoint (about 5 MB) does not


def _limited() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT_BYTES, LIMIT_BYTES))


def _cli_with_a_file_size_limit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "yaware.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=_limited,
    )


def test_a_checkpoint_that_cannot_be_written_stops_pretraining_by_name(toy_cohort, tmp_path):
    run = tmp_path / "run"
    config = write_config(tmp_path / "pre.yaml", **pretrain_keys(toy_cohort, run, epochs=1))
    done = _cli_with_a_file_size_limit("pretrain", "--config", str(config))
    assert done.returncode == 2, done.stderr
    assert f"writing {run / 'last.pt'} failed" in done.stderr
    assert "GB free there" in done.stderr and "Traceback" not in done.stderr
    assert (run / "config.yaml").is_file()  # written before, under the limit
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml"]  # no .tmp, no .pt


def test_features_that_cannot_be_written_leave_no_partial_array(tmp_path):
    # The representation of 6000 scans is 3 MB: past the limit.
    scans = np.random.default_rng(0).random((6000, 1, 4, 4, 4), dtype=np.float32)
    np.save(tmp_path / "x.npy", scans)
    save_checkpoint(tmp_path / "c.pt", {"model": build_model("tinycnn").state_dict()})
    out = tmp_path / "out" / "features.npy"
    done = _cli_with_a_file_size_limit(
        "extract",
        *("--checkpoint", str(tmp_path / "c.pt"), "--encoder", "tinycnn"),
        *("--data", str(tmp_path / "x.npy"), "--out", str(out), "--batch-size", "500"),
    )
    assert done.returncode == 2, done.stderr
    assert f"writing {out} failed" in done.stderr and "Traceback" not in done.stderr
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_an_output_path_that_names_a_folder_or_runs_through_a_file_is_named(toy_cohort, tmp_path):
    """`extract --out` naming a folder, or a path under a file: refused before any work,
    naming the part of the path to change. The same for pretraining's out_dir."""
    save_checkpoint(tmp_path / "c.pt", {"model": build_model("tinycnn").state_dict()})
    (tmp_path / "features").mkdir()
    np.save(tmp_path / "x.npy", np.zeros((2, 1, 8, 8, 8), np.float32))
    for out, message in (
        (tmp_path / "features", f"{tmp_path / 'features'} is a folder; give the output a file"),
        (
            tmp_path / "x.npy" / "f.npy",
            f"cannot write {tmp_path / 'x.npy' / 'f.npy'}: {tmp_path / 'x.npy'} is a file",
        ),
    ):
        done = run_cli(
            "extract",
            *("--checkpoint", str(tmp_path / "c.pt"), "--encoder", "tinycnn"),
            *("--data", str(toy_cohort / "missing.npy"), "--out", str(out)),
        )
        # The data path does not exist: an error about it would mean the work had begun.
        assert done.returncode == 2 and message in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    assert not any((tmp_path / "features").iterdir())
    run = tmp_path / "x.npy" / "run"
    config = write_config(tmp_path / "pre.yaml", **pretrain_keys(toy_cohort, run, epochs=1))
    done = run_cli("pretrain", "--config", str(config))
    assert done.returncode == 2, done.stderr
    assert f"cannot make the folder {run}: {tmp_path / 'x.npy'} is a file" in done.stderr
    assert "Traceback" not in done.stderr
    config = write_config(tmp_path / "ft.yaml", **finetune_keys(toy_cohort, run, epochs=1))
    done = run_cli("finetune", "--config", str(config))
    assert done.returncode == 2, done.stderr
    assert f"cannot make the folder {run}: {tmp_path / 'x.npy'} is a file" in done.stderr


CONVERSION = {
    "synthetic": {
        "voxel_mm": 6.0,
        "cohorts": {"bhb": {"role": "pretrain", "n_subjects": 40, "n_sites": 2}},
    },
    "qc": {"corr_voxel_mm": 6.0},
    "conversion": {"voxel_mm": 6.0},
}
# 40 scans at 6 mm make a 5.7 MB array: past a 2 MB file-size limit and a 3 MB disk.
FAILURES = {
    "file_size_limit": "[Errno 27] File too large",
    "full_disk": "[Errno 28] No space left on device",
}


@pytest.mark.parametrize("failure", sorted(FAILURES))
def test_a_conversion_that_cannot_reserve_its_array_stops_before_writing(tmp_path, failure):
    workdir = make_workdir(tmp_path / "work", CONVERSION)
    assert snakemake(workdir, "--cores", "2", "results/qc/bhb/qc.tsv").returncode == 0
    out = workdir / "results/data/bhb"
    command = snakemake_command(workdir, "--cores", "2", "results/data/bhb/data.npy")
    listing = tmp_path / "listing.txt"
    if failure == "full_disk":
        # A real 3 MB file system in a user and mount namespace (no root needed); it exists
        # only inside, so its content is listed from there.
        out.mkdir(parents=True)
        script = (
            f"mount -t tmpfs -o size=3m tmpfs {out} || exit 99; {shlex.join(command)}; "
            f"rc=$?; ls -A {out} > {listing}; exit $rc"
        )
        command = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script]
        if shutil.which("unshare") is None:
            pytest.skip("unshare (util-linux) is not installed")
        done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=workdir)
        if done.returncode == 99 or "unshare failed" in done.stderr:
            pytest.skip(f"no user namespaces with tmpfs mounts here: {done.stderr[-300:]}")
    else:

        def limited() -> None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (2_000_000, 2_000_000))

        done = subprocess.run(
            command, capture_output=True, text=True, timeout=600, cwd=workdir, preexec_fn=limited
        )
        listing.write_text("\n".join(p.name for p in out.iterdir()) if out.exists() else "")
    assert done.returncode != 0, done.stderr[-2000:]
    log = (workdir / "results/logs/convert/bhb.log").read_text()
    assert f"writing results/data/bhb/data.npy failed ({FAILURES[failure]})" in log, log
    assert "Traceback" not in log
    assert listing.read_text().split() == []  # no array, no temporary file


def _extract_args(folder, out) -> list[str]:
    np.save(folder / "x.npy", np.zeros((2, 1, 8, 8, 8), np.float32))
    save_checkpoint(folder / "c.pt", {"model": build_model("tinycnn").state_dict()})
    return [
        *("extract", "--checkpoint", str(folder / "c.pt"), "--encoder", "tinycnn"),
        *("--data", str(folder / "x.npy"), "--out", str(out)),
    ]


def test_a_read_only_output_folder_is_named_as_such(toy_cohort, tmp_path):
    """A real read-only mount (a bind mount remounted read-only, in a user and mount
    namespace): `extract` and `pretrain` say the folder is on a read-only file system, not
    that the disk may be full, and write nothing there."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed")
    out = tmp_path / "out"
    out.mkdir()
    extract = [sys.executable, "-m", "yaware.cli", *_extract_args(tmp_path, out / "f.npy")]
    config = write_config(tmp_path / "pre.yaml", **pretrain_keys(toy_cohort, out / "run", epochs=1))
    pretrain = [sys.executable, "-m", "yaware.cli", "pretrain", "--config", str(config)]
    script = (
        f"mount --bind {out} {out} && mount -o remount,ro,bind {out} || exit 99; "
        f"{shlex.join(extract)} 2> {tmp_path / 'extract.err'}; echo $? > {tmp_path / 'rc'}; "
        f"{shlex.join(pretrain)} 2> {tmp_path / 'pretrain.err'}; echo $? >> {tmp_path / 'rc'}"
    )
    command = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if done.returncode == 99 or "unshare failed" in done.stderr:
        pytest.skip(f"no user namespaces with bind mounts here: {done.stderr[-300:]}")
    assert (tmp_path / "rc").read_text().split() == ["2", "2"], done.stderr
    for name, target in (("extract", out / "f.npy"), ("pretrain", out / "run")):
        stderr = (tmp_path / f"{name}.err").read_text()
        assert f"writing {target} failed ([Errno 30] Read-only file system" in stderr, stderr
        assert f"{out} is on a read-only file system (mounted read-only)" in stderr
        assert "disk is full" not in stderr and "Traceback" not in stderr
    assert list(out.iterdir()) == []


def test_a_folder_the_user_may_not_write_in_is_named_with_its_owner(tmp_path):
    """`extract` run as another user (nobody, by setpriv) into a folder of root's: the error
    names the folder, its owner and mode, not a full disk."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    # A folder every user can read (pytest's own is its owner's only).
    shared = Path(tempfile.mkdtemp(prefix="yaware-perm-"))
    try:
        shared.chmod(0o755)
        out = shared / "out"
        out.mkdir(mode=0o755)
        owner = out.owner()
        args = _extract_args(shared, out / "f.npy")
        environment = os.environ | {"HOME": str(shared), "TMPDIR": str(shared)}
        probe = subprocess.run(
            [*nobody, sys.executable, "-c", "import yaware.cli"],
            capture_output=True,
            text=True,
            timeout=300,
            env=environment,
        )
        if probe.returncode != 0:
            pytest.skip(f"another user cannot run this checkout here: {probe.stderr[-300:]}")
        done = subprocess.run(
            [*nobody, sys.executable, "-m", "yaware.cli", *args],
            capture_output=True,
            text=True,
            timeout=600,
            env=environment,
        )
        if owner == "nobody":
            pytest.skip("the tests run as nobody")
        assert done.returncode == 2, done.stderr
        assert f"writing {out / 'f.npy'} failed ([Errno 13] Permission denied" in done.stderr
        assert (
            f"you may not write in {out} (owner {owner}, mode drwxr-xr-x): ask for write "
            "access there, or write the outputs elsewhere. Nothing partial was left."
        ) in done.stderr
        assert "Traceback" not in done.stderr and list(out.iterdir()) == []
    finally:
        shutil.rmtree(shared)
