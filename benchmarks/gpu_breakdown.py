"""Where a DenseNet121 pretraining step spends its time: the two sections of
``benchmarks.gpu_pretrain`` that say what limits the step, not only how fast it is.

- ``convolutions``: every convolution of the step timed alone (forward and backward, the
  step's precision and memory layout, cuDNN autotuned), grouped by kind. Their sum is the
  step time if everything else were free, so ``batch / sum`` bounds the step's rate, and
  the convolutions' own FLOP rate bounds the fraction of the matmul rate any step of this
  network reaches without faster convolution kernels.
- ``profile``: one profiled run of the step, device time grouped by operator kind
  (convolution, batch norm, concatenation, ...), the time of the step's marked regions
  (augmentation, loss), and the share of the wall time in which the device was busy.
"""

import time
from collections import Counter
from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import nn
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity
from torch.profiler import profile as torch_profile

from benchmarks.common import median_seconds, sync


class Reporter(Protocol):
    def add(self, section: str, row: dict[str, Any]) -> None: ...


def conv_kind(conv: nn.Conv3d) -> str:
    k = conv.kernel_size[0]
    if k == 7:
        return "stem 7x7x7"
    if k == 3:
        return f"3x3x3 {conv.in_channels}->{conv.out_channels}"
    return "1x1x1 (bottleneck and transition)"


def convolution_calls(
    model: nn.Module, views: torch.Tensor, dtype: torch.dtype | None
) -> list[tuple[nn.Conv3d, tuple[int, ...], int]]:
    """Each distinct convolution of one forward (layer and input shape), with its count."""
    seen: dict[tuple, list] = {}

    def record(conv: nn.Conv3d, args: tuple) -> None:
        shape = tuple(args[0].shape)
        spec = (conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding)
        spec += (conv.groups, shape)
        seen.setdefault(spec, [conv, shape, 0])[2] += 1

    hooks = [
        module.register_forward_pre_hook(record)
        for module in model.modules()
        if isinstance(module, nn.Conv3d)
    ]
    try:
        with torch.no_grad(), torch.autocast(views.device.type, dtype, enabled=dtype is not None):
            model(views)
    finally:
        for hook in hooks:
            hook.remove()
    return [tuple(entry) for entry in seen.values()]


def convolution_flops(conv: nn.Conv3d, out: torch.Tensor, input_grad: bool) -> float:
    """Forward, weight-gradient and (when needed) input-gradient multiply-adds, times 2."""
    per_pass = 2 * out.numel() * conv.in_channels * conv.kernel_size[0] ** 3 // conv.groups
    return per_pass * (3 if input_grad else 2)


def convolutions(
    model: nn.Module,
    views: torch.Tensor,
    dtype: torch.dtype | None,
    channels_last: bool,
    step_seconds: float,
    scans: int,
    peak: float,
    report: Reporter,
) -> None:
    """Time every distinct convolution of ``model`` on ``views`` alone; rows per kind."""
    torch.backends.cudnn.benchmark = True
    device = views.device
    layout = torch.channels_last_3d if channels_last else torch.contiguous_format
    seconds: Counter[str] = Counter()
    flops: Counter[str] = Counter()
    calls: Counter[str] = Counter()
    for conv, shape, count in convolution_calls(model, views, dtype):
        first = shape == tuple(views.shape)  # the scans themselves need no gradient
        # Inside the step every convolution but the first reads the previous layer's
        # autocast output, so its input already has the autocast type.
        x_dtype = views.dtype if first or dtype is None else dtype
        x = torch.randn(shape, device=device, dtype=x_dtype).contiguous(memory_format=layout)
        x.requires_grad_(not first)
        wanted = [conv.weight] if first else [x, conv.weight]
        with torch.autocast(device.type, dtype, enabled=dtype is not None):
            grad = torch.ones_like(conv(x))

        def forward_backward(conv=conv, x=x, grad=grad, wanted=wanted) -> None:
            with torch.autocast(device.type, dtype, enabled=dtype is not None):
                out = conv(x)
            torch.autograd.grad(out, wanted, grad)  # no accumulation into .grad

        kind = conv_kind(conv)
        seconds[kind] += count * median_seconds(forward_backward, device, repeats=5, warmup=2)
        flops[kind] += count * convolution_flops(conv, grad, input_grad=not first)
        calls[kind] += count
    seconds["all convolutions"] = sum(seconds.values())
    flops["all convolutions"] = sum(flops.values())
    calls["all convolutions"] = sum(calls.values())
    for kind, spent in seconds.most_common():
        work = flops[kind]
        report.add(
            "convolutions",
            {
                "kind": kind,
                "calls_per_step": calls[kind],
                "ms_per_step": spent * 1e3,
                "share_of_step": spent / step_seconds,
                "tflop_s": work / spent / 1e12,
                "fraction_of_matmul_rate": work / spent / peak,
                "bound_scans_s": scans / spent if kind == "all convolutions" else None,
            },
        )


OPERATOR_KINDS = (  # first match wins; lower-cased operator names
    ("convolution", ("conv",)),
    ("batch norm", ("batch_norm", "batchnorm")),
    ("concatenation", ("aten::cat",)),
    ("relu", ("relu", "threshold_backward")),
    ("pooling", ("pool",)),
    ("optimizer", ("_foreach", "adam")),
    ("copies and casts", ("copy_", "_to_copy", "clone", "contiguous")),
)


TOP_OPERATORS = 12  # rows of the "operators" section: the operators that took longest

# Ranges of the profiled step: its own record_function marks and the optimizer's.
REGIONS = {"augmentation": "augmentation", "loss": "loss", "Optimizer.step#": "optimizer step"}


def region_of(key: str) -> str | None:
    return next((name for prefix, name in REGIONS.items() if key.startswith(prefix)), None)


def operator_kind(name: str) -> str:
    for kind, needles in OPERATOR_KINDS:
        if any(needle in name.lower() for needle in needles):
            return kind
    return "other (augmentation, loss, elementwise)"


def _device_time(event: Any) -> float:
    return getattr(event, "self_device_time_total", None) or getattr(
        event, "self_cuda_time_total", 0.0
    )


def profile(
    step: Callable[[], None],
    device: torch.device,
    steps: int,
    report: Reporter,
    label: str = "",
) -> None:
    """Device time (CPU time without a GPU) per operator kind over ``steps`` profiled steps,
    in the sections "profile" and "operators" (``label`` appended to their names)."""
    step()
    sync(device)
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with torch_profile(activities=activities) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            step()
        sync(device)
        wall = (time.perf_counter() - start) / steps
    by_kind: Counter[str] = Counter()
    by_operator: Counter[str] = Counter()
    calls: Counter[str] = Counter()
    regions: dict[str, float] = {}
    kernels = 0.0
    for event in prof.key_averages():
        if region := region_of(event.key):  # a range: the total time of its operators
            regions[region] = (
                event.device_time_total if device.type == "cuda" else event.cpu_time_total
            )
            continue
        if device.type == "cuda":
            if event.device_type == DeviceType.CUDA:
                kernels += _device_time(event)  # the kernels themselves
            else:
                by_kind[operator_kind(event.key)] += _device_time(event)  # by launching op
                by_operator[event.key] += _device_time(event)
                calls[event.key] += event.count
        elif event.key.startswith("aten::"):
            by_kind[operator_kind(event.key)] += event.self_cpu_time_total
            by_operator[event.key] += event.self_cpu_time_total
            calls[event.key] += event.count
    attributed = sum(by_kind.values())
    busy = kernels if device.type == "cuda" else attributed
    for name, micros in by_operator.most_common(TOP_OPERATORS):
        report.add(
            f"operators{label}",
            {
                "operator": name,
                "kind": operator_kind(name),
                "ms_per_step": micros / steps / 1e3,
                "calls_per_step": calls[name] / steps,
                "share_of_busy_time": micros / max(attributed, 1e-9),
            },
        )
    for kind, micros in by_kind.most_common():
        report.add(
            f"profile{label}",
            {
                "kind": kind,
                "ms_per_step": micros / steps / 1e3,
                "share_of_busy_time": micros / max(attributed, 1e-9),
            },
        )
    for region, micros in regions.items():
        report.add(
            f"profile{label}",
            {
                "kind": f"of which {region} (all its operators)",
                "ms_per_step": micros / steps / 1e3,
                "share_of_busy_time": None,
            },
        )
    report.add(
        f"profile{label}",
        {
            "kind": "step wall time (profiler on)",
            "ms_per_step": wall * 1e3,
            "share_of_busy_time": None,
            "device_busy_share_of_wall": busy / steps / 1e6 / wall,
            "attributed_share_of_kernel_time": attributed / max(busy, 1e-9),
        },
    )
