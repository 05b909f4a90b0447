"""Planning cost: wall time of `snakemake -n` for the default config and for BHB-10K.

The BHB-10K config has 13 cohorts and 10,420 scans (placeholder tables, no images): per-scan
work happens inside per-cohort jobs, so planning does not grow with the scan count.

    python -m benchmarks.workflow_dryrun [--repeats 3]
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks.common import machine, markdown_table
from yaware.data.bhb10k import write_placeholder_cohorts

REPO = Path(__file__).resolve().parents[1]


def dry_run(workdir: Path, extra: list[str]) -> float:
    """Seconds of one dry run (targets first: `-q` takes an optional value)."""
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir)]
    start = time.perf_counter()
    subprocess.run([*command, *extra, "-n", "-q"], capture_output=True, text=True, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"Machine: {machine()}\n")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "bhb10k"
        (big / "config").mkdir(parents=True)
        cohorts = write_placeholder_cohorts(big / "tables")
        (big / "config" / "config.yaml").write_text(
            yaml.safe_dump({"synthetic": {"cohorts": {}}, "cohorts": cohorts})
        )
        default = Path(tmp) / "default"
        (default / "config").mkdir(parents=True)
        (default / "config" / "config.yaml").write_text(
            (REPO / "config" / "config.yaml").read_text()
        )
        for label, workdir, extra in [
            ("default config (synthetic)", default, []),
            ("BHB-10K: 13 cohorts, 10,420 scans", big, ["data"]),
            ("BHB-10K with --profile slurm", big, ["data", "--profile", str(REPO / "slurm")]),
        ]:
            if "slurm" in label and not (REPO / "slurm" / "config.yaml").exists():
                continue
            times = [dry_run(workdir, extra) for _ in range(args.repeats)]
            rows.append([label, min(times), sum(times) / len(times)])
    print(markdown_table(["config", "best s", "mean s"], rows))
    print("\nTarget: under 10 s for BHB-10K (issue 3).")


if __name__ == "__main__":
    main()
