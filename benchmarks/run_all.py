"""Run every benchmark and write their tables to benchmarks/RESULTS.md.

    python -m benchmarks.run_all [--quick]

Each benchmark runs in its own process; the file records the date, the machine and the
exact command of each table. ``--quick`` uses smaller sizes (a smoke run, not results).
"""

import argparse
import datetime
import subprocess
import sys
from pathlib import Path

from benchmarks.common import machine
from yaware.io import write_atomic

HERE = Path(__file__).resolve().parent

BENCHMARKS = [
    (
        "Augmentation throughput (one core)",
        "benchmarks.augment_throughput",
        [],
        ["--shape", "61", "73", "61"],
    ),
    (
        "Training throughput",
        "benchmarks.training_throughput",
        [],
        ["--grids", "6", "--encoders", "tinycnn"],
    ),
    ("Peak memory of one epoch", "benchmarks.data_memory", [], ["--sizes-gb", "0.05", "0.1"]),
    ("Conversion", "benchmarks.conversion", [], ["--sizes", "10", "20", "--voxel-mm", "3"]),
    ("Workflow planning", "benchmarks.workflow_dryrun", [], ["--repeats", "1"]),
    ("Job start-up", "benchmarks.job_startup", [], ["--repeats", "1"]),
    ("CPU allocator", "benchmarks.cpu_allocator", [], ["--steps", "3", "--repeats", "1"]),
    (
        "Pretraining epochs per method",
        "benchmarks.pretrain_methods",
        [],
        ["--n", "128", "--epochs", "2", "--repeats", "1"],
    ),
    ("DenseNet121 step on a GPU: lower bound", "benchmarks.step_bounds", [], []),
    ("Encoder costs", "benchmarks.encoder_costs", [], ["--grids", "6"]),
    (
        "The simulator's age signal against a published floor",
        "benchmarks.simulator_age_floor",
        [],
        ["--values", "0.12", "--seeds", "0"],
    ),
]


def pipeline_stages(results: Path) -> str:
    """Seconds per stage from the rules' benchmark files of the last `bash scripts/main.sh`."""
    files = sorted((results / "benchmarks").rglob("*.tsv"))
    if not files:
        return "No run found: `bash scripts/main.sh` first writes results/benchmarks/."
    rows: dict[str, list[float]] = {}
    for path in files:
        stage = path.relative_to(results / "benchmarks").parts[0]
        seconds = float(path.read_text().splitlines()[1].split("\t")[0])
        rows.setdefault(stage, []).append(seconds)
    lines = ["| stage | jobs | seconds (sum) | seconds (max job) |", "|---|---|---|---|"]
    for stage, seconds in sorted(rows.items(), key=lambda item: -sum(item[1])):
        lines.append(f"| {stage} | {len(seconds)} | {sum(seconds):.0f} | {max(seconds):.0f} |")
    return "From `results/benchmarks/*/*.tsv`.\n\n" + "\n".join(lines)


def gpu_section(quick: bool) -> list[str]:
    """The CUDA benchmark where a GPU is visible; else the tables saved by earlier GPU runs."""
    import torch

    if torch.cuda.is_available():
        out = HERE / "gpu" / f"{torch.cuda.get_device_name().split()[-1].lower()}-latest.json"
        options = ["--out", str(out)] + (["--shape", "61", "73", "61", "--no-compile"] * quick)
        command = [sys.executable, "-m", "benchmarks.gpu_pretrain", *options]
        done = subprocess.run(command, capture_output=True, text=True, cwd=HERE.parent)
        body = done.stdout.split("Machine:", 1)[-1] if done.returncode == 0 else done.stderr
        return ["", "## GPU pretraining", "", "`python -m benchmarks.gpu_pretrain`", "", body]
    lines = ["", "## GPU pretraining (saved runs; no GPU on this machine)"]
    for saved in sorted((HERE / "gpu").glob("*.json")):
        command = [sys.executable, "-m", "benchmarks.gpu_pretrain", "--render", str(saved)]
        done = subprocess.run(command, capture_output=True, text=True, cwd=HERE.parent)
        lines += ["", f"### {saved.name}", "", done.stdout.strip()]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(HERE / "RESULTS.md"))
    args = parser.parse_args()
    sections = [
        "# Benchmark results",
        "",
        f"Written by `python -m benchmarks.run_all{' --quick' if args.quick else ''}` on "
        f"{datetime.date.today().isoformat()}. Machine: {machine()}.",
    ]
    for title, module, full, quick in BENCHMARKS:
        options = quick if args.quick else full
        command = [sys.executable, "-m", module, *options]
        print(f"running {module} {' '.join(options)}", file=sys.stderr)
        done = subprocess.run(command, capture_output=True, text=True, cwd=HERE.parent)
        body = (
            done.stdout.strip()
            if done.returncode == 0
            else f"FAILED:\n\n```\n{done.stderr[-2000:]}\n```"
        )
        sections += [
            "",
            f"## {title}",
            "",
            f"`python -m {module} {' '.join(options)}`".replace(" `", "`"),
            "",
            body,
        ]
    sections += gpu_section(args.quick)
    sections += [
        "",
        "## Default pipeline, stage by stage",
        "",
        pipeline_stages(HERE.parent / "results"),
    ]
    text = "\n".join(sections) + "\n"
    write_atomic(args.out, lambda handle: handle.write(text.encode()))
    print(text)


if __name__ == "__main__":
    main()
