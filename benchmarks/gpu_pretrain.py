"""The GPU fast path of pretraining, measured against the card's own ceilings.

One run on a CUDA machine prints, each next to a baseline measured in the same run:

1. ceilings: a bf16 matrix-multiply rate and a device-to-device copy rate;
2. augmentation on the GPU (views/s, "all_tf" and "cutout") against the original's
   per-scan numpy path with 8 worker processes (what its DataLoader ran);
3. one y-Aware step of DenseNet121 (scans/s, two views each): fp32, bf16 autocast,
   bf16 + channels-last, bf16 + channels-last + torch.compile (section "compile_profile":
   with a profile of the compiled step); FLOPs per scan from torch's flop counter and the
   fraction of the measured bf16 rate; section "stem": the eager step with the direct
   7x7x7 stem against the space-to-depth stem; section "stem_pool": the network's head
   (stem, pool0, first dense block) eager, compiled, and compiled with pool0 left eager;
   section "compile_pool0": the whole compiled step with pool0 left eager (DenseNet3D's
   default) against pool0 compiled into the graph;
4. GPU memory at batch 64, with and without gradient checkpointing;
5. what limits the step (``benchmarks.gpu_breakdown``): every convolution timed alone,
   and a profile of the step's device time by operator kind;
6. the data path: scans/s the DataLoader delivers from a memory-mapped float16 array
   (pinned memory, N workers) against a raw sequential read of the same file;
7. the engine end to end (``yaware.train.pretrain.pretrain``, loader + GPU augmentation
   + step, its own metrics.csv), against the original's data-path limit; with
   ``compile: true`` in the section "engine_compile", and in "engine_compile_one_stream"
   with each batch's copy and augmentation on the step's stream instead of a side stream
   (the same-call baseline of ``yaware.train.staging``); with ``--long-scans N`` each
   engine also runs on an N-scan array, and the two epoch lengths separate what an epoch
   costs once (its first batch through the loader, the last step's wait) from the rate per
   scan, projected to an epoch of the 10,420-scan cohort (section "engine_epoch_fit");
8. "blur_forms": all_tf's Gaussian blur as sums of shifted views (``GaussianBlur.apply``)
   and as batched matrix products (``benchmarks.blur_matmul``, the GPU's form on
   2026-11-27 until this section showed pretraining slower with it), views/s and the
   eager engine end to end with each.

    python -m benchmarks.gpu_pretrain [--out results.json] [--shape 121 145 121]

Each section's numbers are appended to ``--out`` as they come, so a run cut short keeps
what it measured. Without a GPU it runs on the CPU (to check the script, not to time).
"""

import argparse
import json
import multiprocessing
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest.mock import patch

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.profiler import record_function
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode

from benchmarks import blur_matmul, gpu_breakdown
from benchmarks.augment_throughput import per_scan_view
from benchmarks.common import machine, markdown_table, median_seconds, sync
from yaware.augment import GaussianBlur, build_policy
from yaware.data.bhb10k import BHB10K
from yaware.data.dataset import ScanDataset
from yaware.losses import YAwareInfoNCE
from yaware.models import build_model
from yaware.train.common import to_device
from yaware.train.config import PretrainConfig, build_config

BHB_SCANS = sum(sessions for _, _, sessions, _ in BHB10K)  # 10,420: the paper's pretraining set


class Report:
    """Rows of named sections, appended to a JSON file after each one."""

    def __init__(self, path: Path | None) -> None:
        self.path, self.sections = path, {}

    def add(self, section: str, row: dict[str, Any]) -> None:
        self.sections.setdefault(section, []).append(row)
        print(section, json.dumps(row), flush=True)
        if self.path is not None:
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"machine": machine(), **self.sections}, indent=1))
            tmp.replace(self.path)


def ceilings(device: torch.device, report: Report) -> float:
    n = 8192 if device.type == "cuda" else 1024
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    seconds = median_seconds(lambda: a @ b, device, repeats=10, warmup=3)
    matmul = 2 * n**3 / seconds
    src = torch.randn(256 * 2**20 if device.type == "cuda" else 2**22, device=device)
    dst = torch.empty_like(src)
    seconds = median_seconds(lambda: dst.copy_(src), device, repeats=10, warmup=3)
    copy = 2 * src.numel() * 4 / seconds
    report.add(
        "ceilings",
        {"matmul_tflops": matmul / 1e12, "matmul_dtype": str(dtype), "copy_tb_s": copy / 1e12},
    )
    return matmul


def _original_views(args: tuple[np.ndarray, str, int]) -> int:
    scan, policy, count = args
    rng = np.random.default_rng(count)
    for _ in range(count):
        per_scan_view(scan, policy, rng)
    return count


def original_view_rates(
    shape: tuple[int, ...], policy: str, workers: int, per_worker: int, repeats: int
) -> list[float]:
    """Views/s of the original's per-scan numpy path in ``workers`` processes, measured
    ``repeats`` times (it varied by 1.7x between runs on machines of the same kind)."""
    scan = np.random.default_rng(0).random((1, *shape), dtype=np.float32)
    rates = []
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        pool.map(_original_views, [(scan, policy, 1)] * workers)  # start-up out of the time
        for _ in range(repeats):
            start = time.perf_counter()
            done = sum(pool.map(_original_views, [(scan, policy, per_worker)] * workers))
            rates.append(done / (time.perf_counter() - start))
    return rates


def augmentation(shape, device, batch, workers, report: Report) -> dict[str, list[float]]:
    """GPU augmentation against the original's per-scan path; that path's rates by policy."""
    scans = torch.rand(batch, 1, *shape, device=device)
    original = {}
    for name in ("all_tf", "cutout"):
        policy = build_policy(name, shape, seed=0)
        seconds = median_seconds(lambda policy=policy: policy(scans), device, 10, 2)
        original[name] = original_view_rates(shape, name, workers, per_worker=8, repeats=3)
        median = float(np.median(original[name]))
        report.add(
            "augmentation",
            {
                "policy": name,
                "batch": batch,
                "yaware_views_s": batch / seconds,
                f"original_{workers}_workers_views_s": median,
                "original_each": [round(rate, 3) for rate in original[name]],
                "ratio": batch / seconds / median,
            },
        )
    return original


BLUR_FORMS = {
    "matrix products": blur_matmul.by_matrix_products,
    "shifted views (default)": GaussianBlur.apply,
}


def blur_forms(shape, device, batch, engine_data, report: Report, rounds: int = 1) -> None:
    """all_tf with each form of the blur, same call: views/s of one step's two views per
    scan, then the eager engine end to end, the forms alternated ``rounds`` times and the
    first once more (A, B, A for one round)."""
    views = torch.rand(2 * batch, 1, *shape, device=device)
    for form, apply in BLUR_FORMS.items():
        with patch.object(GaussianBlur, "apply", apply):
            policy = build_policy("all_tf", shape, seed=0)
            seconds = median_seconds(lambda p=policy, v=views: p(v.clone()), device, 6, 2)
        report.add(
            "blur_forms", {"blur": form, "views": len(views), "views_s": len(views) / seconds}
        )
    del views
    for form in [*BLUR_FORMS] * rounds + [next(iter(BLUR_FORMS))]:
        with patch.object(GaussianBlur, "apply", BLUR_FORMS[form]):
            rate = engine(*engine_data, batch, [float("nan")], Report(None))["epoch2_scans_s"]
        report.add("blur_forms", {"blur": form, "engine_eager_scans_s": rate})


def make_step(
    shape,
    device,
    batch,
    precision,
    channels_last,
    compiled,
    checkpointing=False,
    s2d=True,
    eager_stem=None,
):
    model = build_model("densenet121", memory_efficient=checkpointing).to(device)
    model.features.conv0.space_to_depth = s2d  # False: the direct 7x7x7 stem (baseline)
    if eager_stem is not None:  # the stem's norm, ReLU and max-pool outside the compiled graph
        model.eager_stem_devices = (device.type,) if eager_stem else ()
    if channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    if compiled:
        model.before_compile()  # as pretraining does
    forward = torch.compile(model) if compiled else model
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=5e-5)
    loss_fn = YAwareInfoNCE(5.0)
    policy = build_policy("all_tf", shape, seed=0)
    x = torch.rand(batch, 1, *shape, device=device)
    y = torch.rand(batch, device=device) * 60 + 20
    dtype = torch.bfloat16 if precision == "bf16" else None

    def step() -> None:
        with record_function("augmentation"):  # regions named in a profile
            views = policy(torch.cat([x, x]))
            if channels_last:
                views = views.contiguous(memory_format=torch.channels_last_3d)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            z = forward(views)
        with record_function("loss"):
            loss = loss_fn(*z.float().chunk(2), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def flops_per_scan(shape, device) -> float:
    """The network's own FLOPs: the direct stem, not the zero taps of space-to-depth."""
    step = make_step(shape, device, 2, "fp32", False, False, s2d=False)
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops() / 2


EAGER_VARIANTS = [("fp32", False, False), ("bf16", False, False), ("bf16", True, False)]
COMPILED_VARIANTS = [("bf16", True, True)]


def training(shape, device, batch, peak, flops, report: Report, variants, profiled=False) -> float:
    """scans/s of each (precision, channels_last, compiled) variant; the best rate.
    ``profiled``: also the breakdown of each variant's device time (sections
    "profile_compiled" and "operators_compiled" for compiled variants)."""
    torch.backends.cudnn.benchmark = True
    best = 0.0
    for precision, channels_last, compiled in variants:
        step = make_step(shape, device, batch, precision, channels_last, compiled)
        start = time.perf_counter()
        step()
        first = time.perf_counter() - start
        seconds = median_seconds(step, device, repeats=8, warmup=2)
        rate = batch / seconds
        best = max(best, rate)
        report.add(
            "training",
            {
                "precision": precision,
                "channels_last": channels_last,
                "compile": compiled,
                "batch": batch,
                "first_step_s": first,
                "scans_s": rate,
                "gflop_per_scan": flops / 1e9,
                "fraction_of_bf16_matmul": rate * flops / peak,
            },
        )
        if profiled:
            label = "_compiled" if compiled else "_eager"
            gpu_breakdown.profile(step, device, steps=3, report=report, label=label)
        del step
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return best


def stem(shape, device, batch, peak, flops, report: Report) -> None:
    """The eager step with the direct 7x7x7 stem against the space-to-depth stem."""
    torch.backends.cudnn.benchmark = True
    cuda = device.type == "cuda"
    precision = "bf16" if cuda else "fp32"
    rates = {}
    for name, s2d in (("direct", False), ("space-to-depth", True)):
        step = make_step(shape, device, batch, precision, cuda, False, s2d=s2d)
        rates[name] = batch / median_seconds(step, device, repeats=8, warmup=2)
        report.add(
            "stem",
            {
                "stem": name,
                "precision": precision,
                "channels_last": cuda,
                "batch": batch,
                "scans_s": rates[name],
                "fraction_of_bf16_matmul": rates[name] * flops / peak,
                "speedup_over_direct": rates[name] / rates["direct"],
            },
        )
        del step
        if cuda:
            torch.cuda.empty_cache()


STEM_POOL_VARIANTS = (
    ("eager", False, False),
    ("compiled", True, False),
    ("compiled, pool0 eager", True, True),
)


def stem_pool(shape, device, batch, report: Report) -> None:
    """The stem's max-pool under torch.compile, on the network's head only (stem, pool0 and
    the first dense block, forward and backward; a compile of seconds, not minutes).

    In the compiled step inductor fuses pool0 with the first block's concatenation into a
    reduction kernel that took 31 ms on an H200, where the eager max-pool takes 7 ms. The
    third variant leaves pool0 to eager (a graph break) to measure what that would save.
    (In this head built as nn.Sequential, the break also leaves norm0 and relu0 eager:
    torch.compile cannot resume inside the Sequential's loop. DenseNet3D now does the same
    on CUDA; section "compile_pool0" times the whole step.)
    """
    cuda = device.type == "cuda"
    dtype = torch.bfloat16 if cuda else None
    times, outputs = {}, {}
    for name, compiled, eager_pool in STEM_POOL_VARIANTS:
        torch.manual_seed(0)
        features = build_model("densenet121").features
        if eager_pool:
            features.pool0.forward = torch.compiler.disable(features.pool0.forward)
        head = nn.Sequential(
            features.conv0, features.norm0, features.relu0, features.pool0, features.denseblock1
        ).to(device)
        views = torch.rand(2 * batch, 1, *shape, device=device)
        if cuda:
            head = head.to(memory_format=torch.channels_last_3d)
            views = views.contiguous(memory_format=torch.channels_last_3d)
        forward = torch.compile(head) if compiled else head

        def step(forward=forward, views=views) -> None:
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                out = forward(views)
            out.float().square().mean().backward()

        graphs_before = torch._dynamo.utils.counters["stats"]["unique_graphs"]
        start = time.perf_counter()
        step()
        first = time.perf_counter() - start
        graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"] - graphs_before
        times[name] = median_seconds(step, device, repeats=8, warmup=2)
        with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            outputs[name] = forward(views).float()
        difference = (outputs[name] - outputs["eager"]).abs().max() / outputs["eager"].abs().max()
        report.add(
            "stem_pool",
            {
                "variant": name,
                "batch": batch,
                "compiled_graphs": graphs,
                "first_call_s": first,
                "ms_per_step": times[name] * 1e3,
                "ms_saved_vs_compiled": (
                    (times["compiled"] - times[name]) * 1e3 if "compiled" in times else None
                ),
                "max_difference_vs_eager": float(difference),  # relative to the largest value
            },
        )
        del head, forward, views, step
        if cuda:
            torch.cuda.empty_cache()


def compile_pool0(shape, device, batch, peak, flops, report: Report) -> None:
    """The whole compiled step (bf16, channels-last) with the stem's norm, ReLU and max-pool
    left out of the graph, as DenseNet3D runs it on CUDA (on the CPU too here, to check the
    script), against all of them compiled (the baseline)."""
    torch.backends.cudnn.benchmark = True
    cuda = device.type == "cuda"
    precision = "bf16" if cuda else "fp32"
    rates = {}
    for name, eager_stem in (("stem tail eager (yaware)", True), ("all compiled", False)):
        torch._dynamo.reset()
        step = make_step(shape, device, batch, precision, cuda, True, eager_stem=eager_stem)
        start = time.perf_counter()
        step()
        first = time.perf_counter() - start
        rates[name] = batch / median_seconds(step, device, repeats=8, warmup=2)
        report.add(
            "compile_pool0",
            {
                "variant": name,
                "precision": precision,
                "channels_last": cuda,
                "batch": batch,
                "first_step_s": first,
                "scans_s": rates[name],
                "fraction_of_bf16_matmul": rates[name] * flops / peak,
            },
        )
        del step
        if cuda:
            torch.cuda.empty_cache()
    eager_pool, baseline = rates.values()
    report.add("compile_pool0", {"variant": "ratio", "scans_s": eager_pool / baseline})


def memory(shape, device, batch, report: Report) -> None:
    for checkpointing in (False, True):
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        try:
            step = make_step(shape, device, batch, "bf16", True, False, checkpointing)
            seconds = median_seconds(step, device, repeats=3, warmup=1)
            peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else 0.0
            row = {"scans_s": batch / seconds, "peak_gib": peak}
        except torch.OutOfMemoryError:
            row = {"scans_s": None, "peak_gib": "out of memory"}
        report.add("memory", {"batch": batch, "gradient_checkpointing": checkpointing, **row})
        step = None  # free this model before the next one's peak is measured


def breakdown(shape, device, batch, peak, report: Report, chosen: Callable[[str], bool]) -> None:
    """What limits the eager step (bf16, channels-last on CUDA; fp32 on the CPU)."""
    cuda = device.type == "cuda"
    precision, dtype = ("bf16", torch.bfloat16) if cuda else ("fp32", None)
    step = make_step(shape, device, batch, precision, cuda, False)
    step_seconds = median_seconds(step, device, repeats=5, warmup=2)
    if chosen("convolutions"):
        model = build_model("densenet121").to(device)
        views = torch.rand(2 * batch, 1, *shape, device=device)
        if cuda:
            model = model.to(memory_format=torch.channels_last_3d)
            views = views.contiguous(memory_format=torch.channels_last_3d)
        gpu_breakdown.convolutions(model, views, dtype, cuda, step_seconds, batch, peak, report)
        del model, views
    if chosen("profile"):
        gpu_breakdown.profile(step, device, steps=3, report=report)
    del step
    if cuda:
        torch.cuda.empty_cache()


def write_cohort(root: Path, shape, n: int) -> tuple[Path, Path]:
    array = np.lib.format.open_memmap(
        root / "x.npy", mode="w+", dtype="float16", shape=(n, 1, *shape)
    )
    rng = np.random.default_rng(0)
    for i in range(n):
        array[i] = rng.random((1, *shape), dtype=np.float32)
    array.flush()
    del array
    table = root / "participants.tsv"
    pd.DataFrame(
        {"participant_id": [f"sub-{i:05d}" for i in range(n)], "age": rng.uniform(20, 80, n)}
    ).to_csv(table, sep="\t", index=False)
    return root / "x.npy", table


def data_path(array: Path, table: Path, device, batch, workers, report: Report) -> None:
    start = time.perf_counter()
    size = 0
    with open(array, "rb") as handle:
        while chunk := handle.read(64 * 2**20):
            size += len(chunk)
    raw_seconds = time.perf_counter() - start
    dataset = ScanDataset(array, table, label="age")
    dataset.compact = device.type == "cuda"  # as the engine does: float16 rows stay float16
    loader = DataLoader(
        dataset,
        batch_size=batch,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=True,
    )
    next(iter(loader))  # start the workers
    start = time.perf_counter()
    count = 0
    for x, _ in loader:
        to_device(x, device)
        count += len(x)
    sync(device)
    rate = count / (time.perf_counter() - start)
    report.add(
        "data_path",
        {
            "workers": workers,
            "loader_scans_s": rate,
            "raw_read_scans_s": len(dataset) / raw_seconds,
            "raw_read_gb_s": size / raw_seconds / 1e9,
            "note": "file in the page cache (just written)",
        },
    )


def engine(
    array, table, workers, batch, original_all_tf, report: Report, compiled=False, side_stream=True
) -> dict[str, Any]:
    """``pretrain()`` for 2 epochs; epoch 2's row (after any compilation) from metrics.csv.

    ``side_stream=False`` queues each batch's copy and augmentation on the step's own stream
    (the engine before yaware.train.staging), the same-call baseline of the side stream.
    """
    from yaware.train import pretrain as pretrain_module

    with (
        tempfile.TemporaryDirectory() as out,
        patch.object(pretrain_module, "SIDE_STREAM", side_stream),
    ):
        cfg = build_config(
            PretrainConfig,
            {
                "out_dir": out,
                "train_data": str(array),
                "train_table": str(table),
                "encoder": "densenet121",
                "batch_size": batch,
                "epochs": 2,
                "num_workers": workers,
                "augmentation": "all_tf",
                "compile": compiled,
            },
        )
        pretrain_module.pretrain(cfg)
        metrics = pd.read_csv(Path(out) / "metrics.csv")
    seconds, rate = (float(metrics[key].iloc[-1]) for key in ("seconds", "scans_per_s"))
    row = {
        "batch": batch,
        "workers": workers,
        "compile": compiled,
        "side_stream": side_stream,
        "scans": round(seconds * rate),  # trained per epoch: metrics.csv gives scans / seconds
        "epoch2_seconds": seconds,
        "epoch2_scans_s": rate,
        **against_original(rate, original_all_tf),
    }
    report.add("engine", row)
    return row


def against_original(rate: float, original_all_tf) -> dict[str, Any]:
    """``rate`` (scans/s) over the original's data path (median and range of its runs)."""
    original_scans = np.asarray(original_all_tf) / 2  # two views per scan
    return {
        "original_data_path_scans_s": float(np.median(original_scans)),
        "ratio": rate / float(np.median(original_scans)),
        "ratio_range": f"{rate / original_scans.max():.3g}-{rate / original_scans.min():.3g}",
    }


def epoch_fit(short: dict, long: dict, original_all_tf, cohort: int = BHB_SCANS) -> dict:
    """Epoch 2 of two lengths as ``seconds = once + scans / rate``: what an epoch costs
    once, the steady rate per scan, and the rate of an epoch of ``cohort`` scans."""
    seconds_per_scan = (long["epoch2_seconds"] - short["epoch2_seconds"]) / (
        long["scans"] - short["scans"]
    )
    once = short["epoch2_seconds"] - short["scans"] * seconds_per_scan
    projected = cohort / (once + cohort * seconds_per_scan)
    return {
        "compile": short["compile"],
        "side_stream": short["side_stream"],
        "epochs_of": f"{short['scans']} and {long['scans']} scans",
        "seconds_once_per_epoch": once,
        "steady_scans_s": 1 / seconds_per_scan,
        f"scans_s_epoch_of_{cohort}": projected,
        **against_original(projected, original_all_tf),
    }


def summary(report: Report, machine_name: str | None = None) -> None:
    print(f"\nMachine: {machine_name or machine()}\n")
    for section, rows in report.sections.items():
        print(f"### {section}\n")
        header = list(dict.fromkeys(key for row in rows for key in row))
        print(markdown_table(header, [[row.get(k) for k in header] for row in rows]))
        print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(121, 145, 121))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--memory-batch", type=int, default=64)
    parser.add_argument("--scans", type=int, default=384, help="scans in the engine's array")
    parser.add_argument(
        "--long-scans",
        type=int,
        default=0,
        help="engines: also an epoch of this many scans, to separate per-epoch from per-scan cost",
    )
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument(
        "--blur-rounds", type=int, default=1, help="blur_forms: engine runs of each form, A B A"
    )
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--render", type=Path, help="print the tables of a saved --out file")
    parser.add_argument(
        "--sections",
        nargs="+",
        default=["all"],
        choices=[
            "all",
            "augmentation",
            "training",
            "stem",
            "memory",
            "convolutions",
            "profile",
            "data",
            "engine",
            "compile",
            "compile_profile",
            "engine_compile",
            "engine_compile_one_stream",
            "blur_forms",
            "stem_pool",
            "compile_pool0",
        ],
    )
    args = parser.parse_args()
    if args.render:
        saved = json.loads(args.render.read_text())
        report = Report(None)
        report.sections = {k: v for k, v in saved.items() if k != "machine"}
        summary(report, saved["machine"])
        return
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    shape = tuple(args.shape)
    report = Report(args.out)
    wanted = set(args.sections)

    def chosen(name: str) -> bool:
        return "all" in wanted or name in wanted

    peak = ceilings(device, report)
    original = {"all_tf": [float("nan")]}
    engines = ("engine", "engine_compile", "engine_compile_one_stream")
    if chosen("augmentation") or any(map(chosen, engines)):
        original = augmentation(shape, device, args.batch, args.workers, report)
    needs_flops = any(
        map(chosen, ("training", "compile", "compile_profile", "stem", "compile_pool0"))
    )
    flops = flops_per_scan(shape, device) if needs_flops else 0.0
    if chosen("stem"):
        stem(shape, device, args.batch, peak, flops, report)
    if chosen("training"):
        training(shape, device, args.batch, peak, flops, report, EAGER_VARIANTS)
    if chosen("memory"):
        memory(shape, device, args.memory_batch, report)
    if chosen("convolutions") or chosen("profile"):
        breakdown(shape, device, args.batch, peak, report, chosen)
    with tempfile.TemporaryDirectory() as tmp:
        if chosen("data") or chosen("blur_forms") or any(map(chosen, engines)):
            array, table = write_cohort(Path(tmp), shape, args.scans)
            arrays = [(array, table)]
        if chosen("data"):
            data_path(array, table, device, args.batch, args.workers, report)
        if args.long_scans and any(map(chosen, engines)):
            (Path(tmp) / "long").mkdir()
            arrays.append(write_cohort(Path(tmp) / "long", shape, args.long_scans))

        def engines_at_each_length(**variant) -> None:
            rows = [
                engine(*data, args.workers, args.batch, original["all_tf"], report, **variant)
                for data in arrays
            ]
            if len(rows) == 2:
                report.add("engine_epoch_fit", epoch_fit(*rows, original["all_tf"]))

        if chosen("engine"):
            engines_at_each_length()
        if chosen("blur_forms"):
            engine_data = (array, table, args.workers)
            blur_forms(shape, device, args.batch, engine_data, report, args.blur_rounds)
        if not args.no_compile and chosen("stem_pool"):
            stem_pool(shape, device, args.batch, report)
        if not args.no_compile:  # last: compiling takes minutes
            if chosen("compile") or chosen("compile_profile"):
                profiled = chosen("compile_profile")
                variants = COMPILED_VARIANTS
                training(shape, device, args.batch, peak, flops, report, variants, profiled)
            if chosen("compile_pool0"):
                compile_pool0(shape, device, args.batch, peak, flops, report)
            for side_stream in (True, False):  # the second compiles from inductor's cache
                if chosen("engine_compile" if side_stream else "engine_compile_one_stream"):
                    engines_at_each_length(compiled=True, side_stream=side_stream)
    summary(report)


if __name__ == "__main__":
    main()
