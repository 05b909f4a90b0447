"""Conversion throughput and memory: NIfTI maps to data.npy, against plain decompression.

Simulates a cohort on the CAT12 grid, runs QC (not timed), then in a fresh process per
size: converts it with ``yaware.data.convert`` (threads as given) and reports scans/s, MB/s of
compressed input, and peak RSS (VmHWM); the baseline reads and gunzips the same files.

    python -m benchmarks.conversion [--sizes 50 200] [--voxel-mm 1.5] [--threads 2]
"""

import argparse
import gzip
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import machine, markdown_table

CHILD = """
import json, sys, time
from yaware.data.convert import ConversionSettings, convert_cohort
metrics, passed, participants, out, voxel, threads = sys.argv[1:7]
start = time.perf_counter()
settings = ConversionSettings(voxel_mm=float(voxel), threads=int(threads))
convert_cohort(metrics, passed, participants, out, float(voxel), settings)
seconds = time.perf_counter() - start
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
print(json.dumps({"seconds": seconds, "peak_mb": int(status["VmHWM"].split()[0]) / 1024}))
"""


def prepare(folder: Path, n: int, voxel_mm: float) -> tuple[Path, Path, Path, list[Path]]:
    from yaware.data.grid import cat12_grid
    from yaware.data.qc import QCThresholds, apply_thresholds, passed_scans
    from yaware.data.qc_metrics import measure_cohort
    from yaware.data.synth import CohortSpec, SimulationSettings, write_cohort
    from yaware.io import save_table

    spec = CohortSpec("bench", n_subjects=n, second_session_rate=0.0, qc_failure_rate=0.0)
    write_cohort(folder, spec, SimulationSettings(voxel_mm=voxel_mm, threads=2))
    participants = folder / "participants.tsv"
    metrics = measure_cohort(participants, folder / "cat12", cat12_grid(voxel_mm), threads=2)
    save_table(folder / "metrics.tsv", metrics)
    save_table(folder / "passed.tsv", passed_scans(apply_thresholds(metrics, QCThresholds())))
    files = [Path(p) for p in metrics["path"]]
    return folder / "metrics.tsv", folder / "passed.tsv", participants, files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--voxel-mm", type=float, default=1.5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    print(f"Machine: {machine()}\n")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            folder = Path(tmp) / f"n{n}"
            metrics, passed, participants, files = prepare(folder, n, args.voxel_mm)
            megabytes = sum(f.stat().st_size for f in files) / 1e6
            start = time.perf_counter()
            for f in files:
                gzip.decompress(f.read_bytes())
            plain = time.perf_counter() - start
            done = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    CHILD,
                    str(metrics),
                    str(passed),
                    str(participants),
                    str(folder / "out"),
                    str(args.voxel_mm),
                    str(args.threads),
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            result = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append(["gunzip only (1 thread)", n, n / plain, megabytes / plain, "-"])
            rows.append(
                [
                    f"yaware convert ({args.threads} threads)",
                    n,
                    n / result["seconds"],
                    megabytes / result["seconds"],
                    result["peak_mb"],
                ]
            )
    grid = f"{args.voxel_mm} mm CAT12 grid"
    print(f"Input: simulated mwp1 maps on the {grid}, gzip level 1.\n")
    print(markdown_table(["path", "scans", "scans/s", "compressed MB/s", "peak RSS MB"], rows))


if __name__ == "__main__":
    main()
