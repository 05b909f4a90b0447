"""Peak resident memory of one epoch over arrays of growing size, and read throughput.

Each measurement runs in a fresh process and reads its own high-water mark (VmHWM), plus
the DataLoader workers' peaks when there are workers. ``yaware`` reads the memory-mapped
array row by row through ScanDataset and a DataLoader; the baseline loads the whole array
into RAM with np.load, as the original code does.

``--pretrain`` adds one epoch of ``pretrain()`` itself (TinyCNN, batch 8, cutout, on the
CPU: with its allocator settings, ``yaware.train.allocator``), whose peak must not grow with N
either.

    python benchmarks/data_memory.py [--sizes-gb 0.5 2] [--dtype float32] [--dir /tmp] [--pretrain]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import machine, markdown_table

SCAN = (1, 121, 145, 121)

CHILD = """
import json, resource, sys, time
import numpy as np
from torch.utils.data import DataLoader
from yaware.data.dataset import ScanDataset
array, table, mode, workers = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
start = time.perf_counter()
n = 0
if mode == "yaware":
    loader = DataLoader(ScanDataset(array, table, label="age"), batch_size=8, num_workers=workers)
    for x, _ in loader:
        n += len(x)
elif mode == "pretrain()":
    import tempfile
    from yaware.train.config import PretrainConfig, build_config
    from yaware.train.pretrain import pretrain
    with tempfile.TemporaryDirectory() as out:
        keys = {"train_data": array, "train_table": table, "out_dir": out, "epochs": 1,
                "encoder": "tinycnn", "augmentation": "cutout", "batch_size": 8,
                "num_workers": workers}
        pretrain(build_config(PretrainConfig, keys))
    n = len(ScanDataset(array, table))
else:
    data = np.load(array)
    for i in range(len(data)):
        x = data[i].astype(np.float32)
        n += 1
seconds = time.perf_counter() - start
# VmHWM belongs to this process image; ru_maxrss would carry the parent's peak across exec.
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
peak_kb = int(status["VmHWM"].split()[0])
workers_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss if workers else 0
print(json.dumps({"scans": n, "seconds": seconds, "peak_mb": (peak_kb + workers_kb) / 1024}))
"""


def make_array(folder: Path, size_gb: float, dtype: str) -> tuple[Path, Path]:
    itemsize = np.dtype(dtype).itemsize
    n = max(1, int(size_gb * 1e9 / (np.prod(SCAN) * itemsize)))
    path = folder / f"x_{size_gb}gb_{dtype}.npy"
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(n, *SCAN))
    rng = np.random.default_rng(0)
    for i in range(n):
        arr[i] = rng.random(SCAN, dtype=np.float32)
    arr.flush()
    del arr
    # Written back to disk like a finished conversion: freshly written dirty pages would
    # otherwise be charged to the reader's resident memory.
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())
    table = folder / f"p_{n}.tsv"
    pd.DataFrame({"participant_id": [f"s{i}" for i in range(n)], "age": 40.0}).to_csv(
        table, sep="\t", index=False
    )
    return path, table


def measure(array: Path, table: Path, mode: str, workers: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(array), str(table), mode, str(workers)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-gb", type=float, nargs="+", default=[0.5, 2.0])
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16"])
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--dir", default=None, help="folder for the temporary arrays")
    parser.add_argument("--pretrain", action="store_true", help="add a pretrain() epoch")
    args = parser.parse_args()
    print(f"Machine: {machine()}\n")
    rows = []
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for size in args.sizes_gb:
            start = time.perf_counter()
            array, table = make_array(Path(tmp), size, args.dtype)
            print(f"wrote {array.name} in {time.perf_counter() - start:.0f} s", file=sys.stderr)
            file_gb = array.stat().st_size / 1e9
            modes = ["yaware", "np.load (original)"] + ["pretrain() (yaware)"] * args.pretrain
            for mode in modes:
                result = measure(array, table, mode.split()[0], args.workers)
                rows.append(
                    [
                        mode,
                        args.dtype,
                        f"{file_gb:.2f}",
                        result["scans"],
                        round(result["peak_mb"]),
                        result["scans"] / result["seconds"],
                    ]
                )
            array.unlink()
    header = ["reader", "dtype", "array GB", "scans", "peak RSS MB", "scans/s"]
    print(markdown_table(header, rows))


if __name__ == "__main__":
    main()
