"""CPU pretraining steps with glibc's default malloc against ``yaware.train.allocator``'s settings.

Each variant runs in its own process (malloc settings are process-wide), alternating, with
the same seed: y-Aware steps (cutout views, forward, loss, backward, Adam) as the default
workflow's pretraining jobs run them (TinyCNN, 6 mm, batch 64, one thread). Reported per
variant: scans/s, user and kernel CPU seconds of the timed steps, and peak RSS.

    python -m benchmarks.cpu_allocator [--steps 10] [--repeats 3] [--threads 1]
"""

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

from benchmarks.common import machine, markdown_table
from benchmarks.training_throughput import yaware_step
from yaware.train.allocator import keep_freed_memory

VARIANTS = {"glibc default": False, "freed memory kept (yaware)": True}


def child(args: argparse.Namespace) -> None:
    """Time the steps in this process and print one JSON line."""
    torch.set_num_threads(args.threads)
    kept = keep_freed_memory() if args.keep else False
    torch.manual_seed(0)
    _, step = yaware_step(args.encoder, tuple(args.shape), args.batch, "cpu")
    step()  # warm-up
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "kept": kept,
                "scans_per_s": args.batch * args.steps / seconds,
                "user_s": after.ru_utime - before.ru_utime,
                "sys_s": after.ru_stime - before.ru_stime,
                "peak_rss_mb": after.ru_maxrss / 1024,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="tinycnn")
    parser.add_argument("--shape", type=int, nargs=3, default=[31, 37, 31])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--keep", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    print(f"Machine: {machine()}\n")
    options = ["--encoder", args.encoder, "--shape", *map(str, args.shape)]
    options += ["--batch", str(args.batch), "--steps", str(args.steps)]
    options += ["--threads", str(args.threads)]
    runs: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    for _ in range(args.repeats):  # alternate, so a slower spell of the machine hits both
        for name, keep in VARIANTS.items():
            command = [sys.executable, "-m", "benchmarks.cpu_allocator", "--child", *options]
            done = subprocess.run(
                command + ["--keep"] * keep, capture_output=True, text=True, check=True
            )
            runs[name].append(json.loads(done.stdout.splitlines()[-1]))
    rows = []
    baseline = statistics.median(r["scans_per_s"] for r in runs["glibc default"])
    for name, results in runs.items():
        rate = statistics.median(r["scans_per_s"] for r in results)
        rows.append(
            [
                name,
                rate,
                rate / baseline,
                statistics.median(r["user_s"] for r in results),
                statistics.median(r["sys_s"] for r in results),
                round(max(r["peak_rss_mb"] for r in results)),
            ]
        )
    print(
        f"{args.encoder}, {'x'.join(map(str, args.shape))}, batch {args.batch} (two views "
        f"each), {args.steps} steps, {args.threads} thread(s); median of {args.repeats} "
        "processes per variant\n"
    )
    header = ["malloc", "scans/s", "ratio", "user s", "kernel s", "peak RSS MB"]
    print(markdown_table(header, rows))
    if not all(r["kept"] for r in runs["freed memory kept (yaware)"]):
        print("\nThe C library is not glibc or refused the settings: both rows ran the same.")


if __name__ == "__main__":
    main()
