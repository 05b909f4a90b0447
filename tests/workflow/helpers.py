"""Running the real workflow in a scratch working directory."""

import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def make_workdir(path: Path, config: dict) -> Path:
    """A working directory whose config/config.yaml is ``config`` (as in .test/ folders)."""
    (path / "config").mkdir(parents=True, exist_ok=True)
    (path / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    return path


def snakemake_command(workdir: Path, *args: str, snakefile: Path = REPO / "Snakefile") -> list[str]:
    return [sys.executable, "-m", "snakemake", "-s", str(snakefile), "-d", str(workdir), *args]


def snakemake(
    workdir: Path, *args: str, timeout: int = 900, snakefile: Path = REPO / "Snakefile"
) -> subprocess.CompletedProcess:
    command = snakemake_command(workdir, snakefile=snakefile)
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=timeout, cwd=workdir
    )


def planned_jobs(workdir: Path, *args: str, snakefile: Path = REPO / "Snakefile") -> dict[str, int]:
    """Job counts per rule of a dry run (from Snakemake's job stats table)."""
    done = snakemake(workdir, "-n", *args, snakefile=snakefile)
    assert done.returncode == 0, done.stdout + done.stderr
    counts: dict[str, int] = {}
    lines = done.stdout.splitlines()
    if "Nothing to be done" in done.stdout + done.stderr:
        return counts
    start = next(i for i, line in enumerate(lines) if line.startswith("Job stats:"))
    for line in lines[start + 3 :]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        counts[parts[0]] = int(parts[1])
    counts.pop("total", None)
    return counts


def start_snakemake(workdir: Path, *args: str, output=subprocess.DEVNULL) -> subprocess.Popen:
    """Snakemake in the background, in its own process group (to kill it with its jobs)."""
    return subprocess.Popen(
        snakemake_command(workdir, *args),
        cwd=workdir,
        stdout=output,
        stderr=subprocess.STDOUT if output is not subprocess.DEVNULL else subprocess.DEVNULL,
        start_new_session=True,
    )


def wait_until(
    condition, process: subprocess.Popen, what: str, timeout: float = 300.0, every: float = 0.01
) -> None:
    """Poll ``condition()`` while ``process`` runs; fail if it ends or time runs out first."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"the run ended before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every)


TINY_EXPERIMENT = "yaware-sigma5_cutout_tinycnn_seed0"


def tiny_pretraining_config(epochs: int, **pretraining) -> dict:
    """One small healthy cohort at 6 mm and one y-Aware experiment (``TINY_EXPERIMENT``)."""
    return {
        "synthetic": {
            "voxel_mm": 6.0,
            "cohorts": {"bhb": {"role": "pretrain", "n_subjects": 40, "n_sites": 2}},
        },
        "qc": {"corr_voxel_mm": 6.0},
        "conversion": {"voxel_mm": 6.0},
        "pretraining": {
            "methods": {"yaware": {"sigma": [5.0]}},
            "encoder": "tinycnn",
            "epochs": epochs,
            "batch_size": 8,
            **pretraining,
        },
    }


# A small simulated AD cohort at 6 mm: the evaluation cohort of the tiny configs.
TINY_AD_COHORT = {
    "role": "evaluate",
    "n_subjects": 44,
    "n_sites": 2,
    "diagnosis": "alzheimer",
    "age_mean": 75,
    "age_sd": 6,
    "age_range": [55, 95],
}
