"""Data-parallel training helpers: process group from torchrun's environment, gathers.

Every helper also works in a single process (no process group): ``rank()`` is 0,
``world_size()`` is 1 and ``gather`` returns its input, so the engine has one code path.
"""

import os
from typing import Any

import torch
import torch.distributed as dist


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device: str) -> torch.device | None:
    """Join the process group torchrun (or ``srun torchrun``) described in the environment.

    NCCL on GPUs (one per process, ``LOCAL_RANK``), gloo on CPUs. Returns this process's
    device, or None when the process was not launched for data parallelism.
    """
    if not launched_by_torchrun():
        return None
    use_cuda = device != "cpu" and torch.cuda.is_available()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    if use_cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def _all_gather(x: torch.Tensor) -> torch.Tensor:
    """Every rank's ``x`` concatenated in rank order (no gradient)."""
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sends each rank the gradient of its own slice.

    Every rank computes the same global loss from the gathered tensor, so the gradient of
    its slice is summed over ranks: DDP then averages parameter gradients, which gives the
    gradient of the global loss (as in SimCLR's and lightly's gather layers).
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.rows = len(x)
        return _all_gather(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        start = dist.get_rank() * ctx.rows
        return grad[start : start + ctx.rows]


def gather(x: torch.Tensor) -> torch.Tensor:
    """(N, ...) on each rank -> (world * N, ...) in rank order, gradients flowing back.

    Every rank must pass the same N (the engine's sharded sampler drops the remainder).
    """
    if world_size() == 1:
        return x
    return _GatherWithGrad.apply(x)


def gather_labels(y: torch.Tensor) -> torch.Tensor:
    """Labels of the global batch, in the same rank order as :func:`gather` (no gradient)."""
    if world_size() == 1:
        return y
    return _all_gather(y)


def mean_over_ranks(value: float, device: torch.device) -> float:
    if world_size() == 1:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return float(tensor) / world_size()


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank if ``flag`` is true on one (a stop request seen by one rank)."""
    if world_size() == 1:
        return flag
    tensor = torch.tensor([int(flag)], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor)


def all_objects(obj: Any) -> list[Any]:
    """``obj`` of every rank, in rank order."""
    if world_size() == 1:
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def shutdown() -> None:
    """Leave the process group once every rank is done: each waits for the others, then
    NCCL or gloo finishes its work before the process exits (a rank that left early could
    abort a peer still talking to it)."""
    if dist.is_available() and dist.is_initialized():
        barrier()
        dist.destroy_process_group()
