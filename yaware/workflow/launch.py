"""Command lines that start a pretraining with one process per GPU (torchrun, srun)."""

import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path

RENDEZVOUS_PORT = 29500


def first_host(nodelist: str) -> str:
    """The first host name of a Slurm node list, as ``scontrol show hostnames`` lists it:
    ``gpu03`` of ``gpu[03-05],gpu09``, ``rack1-n01`` of ``rack[1-2]-n[01-02]``."""
    depth, end = 0, len(nodelist)
    for i, char in enumerate(nodelist):  # the first entry ends at a comma outside brackets
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            end = i
            break
    # Each bracket's first value: "03" of "[03-05]", "1" of "[1,3-4]".
    return re.sub(r"\[([^\],-]+)[^\]]*\]", r"\1", nodelist[:end].strip())


def pretrain_command(
    config: str | Path, gpus: int, nodes: int = 1, env: Mapping[str, str] = os.environ
) -> list[str]:
    """``yaware pretrain --resume`` on ``gpus`` processes in all, spread over ``nodes``.

    One node: ``torchrun --standalone``. Several (a Slurm allocation): ``srun`` starts one
    torchrun per node, which meet at the first node of the allocation.
    """
    if gpus < 1 or nodes < 1 or gpus % nodes:
        raise ValueError(f"{gpus} GPUs cannot be spread evenly over {nodes} nodes")
    task = ["-m", "yaware.cli", "pretrain", "--config", str(config), "--resume"]
    torchrun = [sys.executable, "-m", "torch.distributed.run"]
    if nodes == 1:
        return [*torchrun, "--standalone", f"--nproc-per-node={gpus}", *task]
    head = first_host(env["SLURM_JOB_NODELIST"])
    return [
        "srun",
        f"--nodes={nodes}",
        "--ntasks-per-node=1",
        *torchrun,
        f"--nnodes={nodes}",
        f"--nproc-per-node={gpus // nodes}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint={head}:{RENDEZVOUS_PORT}",
        f"--rdzv-id={env.get('SLURM_JOB_ID', 'yaware')}",
        *task,
    ]
