"""The GPU benchmark's breakdown sections, run on the CPU at a tiny grid through its CLI:
a GPU session has minutes, so the script must not first fail there."""

import json
import math
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.step_bounds import traffic_per_view
from yaware.models import build_model, densenet121
from yaware.models.stem import direct_stems

SHAPE = (32, 40, 32)  # DenseNet121 halves the grid five times
BATCH = 2


def run_benchmark(module: str, *options: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """``python -m benchmarks.<module> <options>`` from the repository root; must succeed."""
    done = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{module}", *options],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=Path(__file__).parents[1],
    )
    assert done.returncode == 0, done.stderr
    return done


def test_breakdown_counts_every_convolution_and_its_flops(tmp_path):
    out = tmp_path / "gpu.json"
    options = ["--out", str(out), "--shape", *map(str, SHAPE), "--batch", str(BATCH)]
    done = run_benchmark("gpu_pretrain", *options, "--sections", "convolutions", "profile", "stem")
    saved = json.loads(out.read_text())
    rows = {row["kind"]: row for row in saved["convolutions"]}
    # DenseNet121: the stem, two convolutions in each of 6 + 12 + 24 + 16 dense layers and
    # three transitions.
    assert rows["all convolutions"]["calls_per_step"] == 1 + 2 * 58 + 3
    assert rows["3x3x3 128->32"]["calls_per_step"] == 58
    assert rows["stem 7x7x7"]["calls_per_step"] == 1
    parts = [row for kind, row in rows.items() if kind != "all convolutions"]
    total_ms = rows["all convolutions"]["ms_per_step"]
    assert abs(sum(row["ms_per_step"] for row in parts) - total_ms) < 1e-6 * total_ms

    # The convolutions' FLOPs are what torch counts for a step's forward and backward
    # (the linear head adds a negligible rest).
    def flops(row: dict) -> float:
        return row["tflop_s"] * 1e12 * row["ms_per_step"] / 1e3

    model = densenet121()
    views = torch.rand(2 * BATCH, 1, *SHAPE)
    with direct_stems(model), FlopCounterMode(display=False) as counter:
        model(views).sum().backward()
    counted = counter.get_total_flops()
    assert 0.99 * counted < flops(rows["all convolutions"]) <= counted

    profile = {row["kind"]: row for row in saved["profile"]}
    assert profile["convolution"]["ms_per_step"] > 0
    assert profile["batch norm"]["ms_per_step"] > 0
    for region in ("augmentation", "loss", "optimizer step"):
        assert profile[f"of which {region} (all its operators)"]["ms_per_step"] > 0
    shares = [row["share_of_busy_time"] for row in profile.values() if row["share_of_busy_time"]]
    assert abs(sum(shares) - 1) < 1e-6
    operators = saved["operators"]
    assert 0 < len(operators) <= 12
    times = [row["ms_per_step"] for row in operators]
    assert times == sorted(times, reverse=True)
    assert any(row["kind"] == "convolution" for row in operators)

    stems = {row["stem"]: row for row in saved["stem"]}
    assert set(stems) == {"direct", "space-to-depth"}
    assert stems["direct"]["speedup_over_direct"] == 1
    ratio = stems["space-to-depth"]["scans_s"] / stems["direct"]["scans_s"]
    assert stems["space-to-depth"]["speedup_over_direct"] == ratio
    assert "| kind |" in done.stdout  # the printed tables


def test_stem_pool_section_compares_the_head_eager_compiled_and_with_an_eager_pool(tmp_path):
    out = tmp_path / "gpu.json"
    options = ["--out", str(out), "--shape", *map(str, SHAPE), "--batch", str(BATCH)]
    run_benchmark("gpu_pretrain", *options, "--sections", "stem_pool", timeout=900)
    rows = {row["variant"]: row for row in json.loads(out.read_text())["stem_pool"]}
    assert list(rows) == ["eager", "compiled", "compiled, pool0 eager"]
    assert rows["compiled"]["ms_saved_vs_compiled"] == 0
    compiled, split = rows["compiled"], rows["compiled, pool0 eager"]
    assert split["ms_saved_vs_compiled"] == compiled["ms_per_step"] - split["ms_per_step"]
    assert all(row["ms_per_step"] > 0 for row in rows.values())
    # Leaving pool0 to eager splits the compiled head in two graphs, with the same numbers.
    assert [row["compiled_graphs"] for row in rows.values()] == [0, 1, 2]
    assert rows["eager"]["max_difference_vs_eager"] == 0
    assert compiled["max_difference_vs_eager"] < 1e-4 and split["max_difference_vs_eager"] < 1e-4


def test_job_startup_times_every_script_over_the_default_dag():
    done = run_benchmark("job_startup", "--repeats", "1")
    rows = {
        cells[0]: cells[1:]
        for line in done.stdout.splitlines()
        if line.startswith("| ") and not line.startswith("| script")
        for cells in [[c.strip() for c in line.strip("|").split("|")]]
    }
    scripts = {p.stem for p in (Path(__file__).parents[1] / "workflow_scripts").glob("*.py")}
    assert set(rows) == scripts | {"all jobs"}
    assert int(rows["all jobs"][0]) == sum(
        int(row[0]) for name, row in rows.items() if name != "all jobs"
    )
    # One pretraining job per method, sigma and seed of the default config.
    config = yaml.safe_load((Path(__file__).parents[1] / "config/config.yaml").read_text())
    pretraining = config["pretraining"]
    methods = pretraining["methods"].values()
    experiments = sum(len(m.get("sigma", [None])) for m in methods) * len(pretraining["seeds"])
    assert int(rows["pretrain"][0]) == experiments > 0
    assert rows["pretrain"][2] == "yes" and rows["qc"][2] == "no"
    assert float(rows["all jobs"][3]) > 0


def test_cpu_allocator_compares_both_malloc_settings_in_one_run():
    options = ["--steps", "1", "--repeats", "1", "--batch", "4", "--shape", "16", "20", "16"]
    done = run_benchmark("cpu_allocator", *options)
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")][1:]
    assert [row.split("|")[1].strip() for row in rows] == [
        "glibc default",
        "freed memory kept (yaware)",
    ]
    (rate, ratio), (baseline, itself) = (
        [float(cell) for cell in row.split("|")[2:4]] for row in reversed(rows)
    )
    assert rate > 0 and baseline > 0 and itself == 1
    # The comparison: the kept setting's rate over the baseline's, as printed (rounded).
    assert ratio == pytest.approx(rate / baseline, rel=0.02)
    assert "refused the settings" not in done.stdout  # glibc here: the settings took


def test_data_memory_measures_a_pretraining_epoch_beside_the_readers():
    done = run_benchmark("data_memory", "--sizes-gb", "0.03", "--pretrain")
    rows = [line.split("|")[1:-1] for line in done.stdout.splitlines() if line.startswith("| ")]
    rows = {cells[0].strip(): [c.strip() for c in cells[1:]] for cells in rows[1:]}
    assert set(rows) == {"yaware", "np.load (original)", "pretrain() (yaware)"}
    scans = {row[2] for row in rows.values()}
    assert len(scans) == 1 and int(scans.pop()) > 0  # each reader went over every scan
    assert int(rows["pretrain() (yaware)"][3]) > 0


def test_augment_throughput_runs_under_either_malloc_setting():
    options = ["--shape", "16", "20", "16", "--batch", "2", "--policies", "cutout"]
    for setting, named in (("default", "glibc default"), ("kept", "freed memory kept")):
        done = run_benchmark("augment_throughput", "--malloc", setting, *options)
        assert f"malloc: {named}" in done.stdout
        assert "| cutout | 16x20x16 | 2 |" in done.stdout


def _conv_size(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def test_step_bounds_counts_the_traffic_of_every_batch_norm_and_pool():
    """The bound's traffic against DenseNet121's layer sizes worked out from its definition:
    a 7x7x7 stride-2 stem (64 channels), a 3x3x3 stride-2 max-pool, dense blocks of 6, 12,
    24, 16 layers (growth 32, bottleneck 128) and transitions that halve channels and grid."""
    shape = (64, 76, 64)
    grid = [_conv_size(s, 7, 2, 3) for s in shape]
    pooled = [_conv_size(s, 3, 2, 1) for s in grid]
    norm_elements = 64 * math.prod(grid)  # the stem's norm
    pool_elements = 64 * (math.prod(grid) + math.prod(pooled))
    channels, grid = 64, pooled
    for block, layers in enumerate((6, 12, 24, 16)):
        voxels = math.prod(grid)
        norm_elements += sum((channels + 32 * i) * voxels + 128 * voxels for i in range(layers))
        channels += 32 * layers
        if block < 3:  # transition: norm over the block's output, then 2x2x2 average pool
            norm_elements += channels * voxels
            channels //= 2
            pool_elements += channels * (voxels + math.prod(s // 2 for s in grid))
            grid = [s // 2 for s in grid]
    counted = traffic_per_view(shape)
    assert counted["batch norm + ReLU"] == norm_elements * 8  # 3 passes forward, 5 backward
    assert counted["pooling"] == pool_elements * 2


def test_step_bounds_prints_the_bound_against_the_measured_step():
    done = run_benchmark("step_bounds", "--baselines", "10")
    rows = [line.split("|")[1:-1] for line in done.stdout.splitlines() if line.startswith("| ")]
    ms = {cells[0].strip(): float(cells[2]) for cells in rows[1:]}
    parts = [v for k, v in ms.items() if k.startswith(("convolutions", "batch norm", "pooling"))]
    assert ms["lower bound of the step"] == pytest.approx(sum(parts), abs=0.15)
    assert ms["20x a baseline of 10 scans/s needs"] == pytest.approx(32 / 200 * 1e3)
    assert ms["measured step (fastest in --step)"] > ms["lower bound of the step"]


def test_blur_forms_section_times_both_forms_alone_and_in_the_engine(tmp_path):
    out = tmp_path / "gpu.json"
    options = ["--out", str(out), "--shape", *map(str, SHAPE), "--batch", str(BATCH)]
    run_benchmark(
        *("gpu_pretrain", *options, "--scans", "8", "--workers", "0"),
        *("--sections", "blur_forms", "--blur-rounds", "2"),
    )
    rows = json.loads(out.read_text())["blur_forms"]
    alone = [row for row in rows if "views_s" in row]
    in_engine = [row for row in rows if "engine_eager_scans_s" in row]
    forms = ["matrix products", "shifted views (default)"]
    assert [row["blur"] for row in alone] == forms
    assert all(row["views"] == 2 * BATCH and row["views_s"] > 0 for row in alone)
    assert [row["blur"] for row in in_engine] == [*forms, *forms, forms[0]]  # A, B, A, B, A
    assert all(row["engine_eager_scans_s"] > 0 for row in in_engine)


def test_engine_at_two_epoch_lengths_separates_the_cost_once_per_epoch(tmp_path):
    out = tmp_path / "gpu.json"
    options = ["--out", str(out), "--shape", *map(str, SHAPE), "--batch", str(BATCH)]
    done = run_benchmark(
        *("gpu_pretrain", *options, "--workers", "1", "--sections", "engine"),
        *("--scans", "4", "--long-scans", "8"),
    )
    saved = json.loads(out.read_text())
    short, long = saved["engine"]
    assert (short["scans"], long["scans"]) == (4, 8)
    assert all(
        row["epoch2_scans_s"] * row["epoch2_seconds"] == pytest.approx(row["scans"])
        for row in (short, long)
    )
    [fit] = saved["engine_epoch_fit"]
    once, rate = fit["seconds_once_per_epoch"], fit["steady_scans_s"]
    for row in (short, long):  # the line passes through both measurements
        assert once + row["scans"] / rate == pytest.approx(row["epoch2_seconds"])
    projected = fit["scans_s_epoch_of_10420"]
    assert projected == pytest.approx(10420 / (once + 10420 / rate))
    original = statistics.median(saved["augmentation"][0]["original_each"]) / 2
    assert fit["ratio"] == pytest.approx(projected / original, rel=1e-3)
    assert "### engine_epoch_fit" in done.stdout


def _checkout_with_rule_renamed(folder: Path, old: str, new: str) -> Path:
    """A copy of the workflow (rules, scripts, package, config) whose rule ``old`` and its
    script are called ``new``, as an older or newer checkout would have them."""
    repo = Path(__file__).parents[1]
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for part in ("rules", "workflow_scripts", "yaware", "config", "report", "envs"):
        shutil.copytree(repo / part, folder / part, ignore=skip)
    shutil.copy(repo / "Snakefile", folder / "Snakefile")
    (folder / "workflow_scripts" / f"{old}.py").rename(folder / "workflow_scripts" / f"{new}.py")
    for rules in (folder / "rules").glob("*.smk"):
        text = rules.read_text()
        for before, after in [
            (f"rule {old}:", f"rule {new}:"),
            (f'code_version("{old}")', f'code_version("{new}")'),
            (f"workflow_scripts/{old}.py", f"workflow_scripts/{new}.py"),
        ]:
            text = text.replace(before, after)
        rules.write_text(text)
    return folder


def test_job_startup_compares_a_checkout_whose_rules_differ(tmp_path):
    """--compare dry-runs the other checkout's own rules: a rule may be new, gone or split
    (before, a script missing there stopped the benchmark with FileNotFoundError)."""
    other = _checkout_with_rule_renamed(tmp_path / "other", "figure_sigma", "figure_sigma_old")
    done = run_benchmark("job_startup", "--repeats", "1", "--compare", str(other))
    rows = {
        cells[0]: cells[1:]
        for line in done.stdout.splitlines()
        if line.startswith("| ") and not line.startswith("| script")
        for cells in [[c.strip() for c in line.strip("|").split("|")]]
    }
    # jobs, start-up, torch, job-seconds here; then jobs, start-up, job-seconds there
    assert rows["figure_sigma"][0] == "1" and rows["figure_sigma"][4:] == ["", "", ""]
    assert rows["figure_sigma_old"][:4] == ["", "", "", ""] and rows["figure_sigma_old"][4] == "1"
    assert rows["tables"][0] == rows["tables"][4] == "1"
    assert rows["all jobs"][0] == rows["all jobs"][4]  # the same DAG under other names
    assert "ratio of job-seconds" in done.stdout


def test_pretrain_methods_runs_the_compared_checkouts_own_package(tmp_path):
    """--compare runs `yaware pretrain` from the other checkout: there, a training loop
    that records a fixed scans/s puts that number in the compared column of every method.
    (A timed version, a Model Genesis slowed by a sleep against a SimCLR not, failed in
    CI when the other worker's test slowed SimCLR 2.1x: speed lives in benchmarks.)"""
    other = tmp_path / "other"
    shutil.copytree(
        Path(__file__).parents[1] / "yaware",
        other / "yaware",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    loop = other / "yaware" / "train" / "pretrain.py"
    text = loop.read_text()
    measured = '"scans_per_s": per_rank * distributed.world_size() / max(seconds, 1e-9),'
    assert measured in text
    loop.write_text(text.replace(measured, '"scans_per_s": 4321.0,'))
    options = ["--n", "20", "--shape", "16", "20", "16", "--batch", "4", "--epochs", "2"]
    options += ["--repeats", "1", "--methods", "simclr", "model_genesis"]
    done = run_benchmark("pretrain_methods", *options, "--compare", str(other))
    rows = {
        cells[0]: [float(c) for c in cells[1:]]
        for line in done.stdout.splitlines()
        if line.startswith("| ") and not line.startswith("| method")
        for cells in [[c.strip() for c in line.strip("|").split("|")]]
    }
    assert set(rows) == {"simclr", "model_genesis"}
    # scans/s, process s here; scans/s, process s there; ratio of scans/s
    for here, here_s, there, there_s, ratio in rows.values():
        assert there == 4321.0 and 0 < here != 4321.0
        assert here_s > 0 and there_s > 0
        assert ratio == pytest.approx(here / there, abs=0.006)


def test_encoder_costs_counts_on_the_meta_device_what_a_real_pass_counts():
    """The table's FLOPs, counted on shapes alone, are those of a real forward and backward
    on the CPU; parameters and features are the built model's; the ratio is to DenseNet121
    in the same run."""
    encoders = ["densenet121", "tinycnn", "medicalnet_resnet10"]
    done = run_benchmark("encoder_costs", "--grids", "6", "--encoders", *encoders)
    lines = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    assert "GFLOP per scan and view, 6 mm (31x37x31)" in lines[0]
    cells = [[c.strip() for c in line.split("|")[1:-1]] for line in lines[1:]]
    rows = {row[0]: row[1:] for row in cells}
    assert list(rows) == encoders
    baseline = float(rows["densenet121"][2])
    for name in encoders:
        params, features, gflops, ratio = rows[name]
        model = build_model(name)
        x = torch.zeros(2, 1, 31, 37, 31)
        with direct_stems(model), FlopCounterMode(display=False) as counter:
            model(x).sum().backward()
        assert float(gflops) == pytest.approx(counter.get_total_flops() / 2 / 1e9, rel=5e-3)
        millions = sum(p.numel() for p in model.parameters()) / 1e6
        assert float(params) == pytest.approx(millions, abs=0.05)
        assert int(features) == model.num_features
        assert float(ratio) == pytest.approx(float(gflops) / baseline, abs=0.01)


def test_simulator_age_floor_finds_more_age_where_the_ageing_map_is_stronger(tmp_path):
    """The calibration benchmark on a 200-subject cohort: the PCA floor falls as the
    voxelwise ageing rate spreads, on raw and z-scored voxels, and stays under the constant."""
    config = yaml.safe_load((Path(__file__).parents[1] / "config/config.yaml").read_text())
    cohorts = config["synthetic"]["cohorts"]
    cohorts["bhb"] = cohorts["bhb"] | {"n_subjects": 200}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    done = run_benchmark(
        "simulator_age_floor",
        "--values",
        "0",
        "0.3",
        "--seeds",
        "0",
        "--config",
        str(tmp_path / "c.yaml"),
    )
    rows = {
        float(cells[0]): [float(c.split()[0]) for c in cells[1:]]
        for line in done.stdout.splitlines()
        if line.startswith("| 0")
        for cells in [[c.strip() for c in line.strip("|").split("|")]]
    }
    (raw_off, z_off, constant), (raw_on, z_on, _) = rows[0.0], rows[0.3]
    assert raw_on < raw_off - 1 and z_on < z_off - 1
    assert max(raw_on, z_on) < constant
