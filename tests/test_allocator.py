"""CPU training keeps freed tensor memory in the process instead of unmapping it each step."""

import ctypes
import subprocess
import sys

import pytest

from tests.conftest import pretrain_keys, run_cli, write_config

MALLOC_LINE = "glibc malloc keeps freed blocks up to 1024 MiB"


def _glibc_with_mallinfo2() -> bool:
    try:
        ctypes.CDLL(None).mallinfo2  # noqa: B018 (glibc >= 2.33)
    except (OSError, AttributeError):
        return False
    return True


PROBE = """
import ctypes
import torch
from yaware.train.allocator import keep_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split())]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
SIZE = 64 << 20

def allocate_and_free():
    before = libc.mallinfo2().hblkhd
    block = torch.empty(SIZE // 4)
    mapped = libc.mallinfo2().hblkhd - before
    del block
    return mapped, libc.mallinfo2().fordblks  # bytes in mmapped blocks; free bytes kept

print(*allocate_and_free(), keep_freed_memory(), *allocate_and_free())
"""


@pytest.mark.skipif(not _glibc_with_mallinfo2(), reason="needs glibc >= 2.33 (mallinfo2)")
def test_after_the_call_a_64_mb_tensor_comes_from_the_heap_and_its_memory_stays():
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    mapped_before, _, kept, mapped_after, free_after = done.stdout.split()
    size = 64 << 20
    assert int(mapped_before) >= size  # glibc's default: a block this size is mmapped
    assert kept == "True"
    assert int(mapped_after) == 0
    assert int(free_after) >= size  # freed into the heap, ready for the next step


@pytest.mark.skipif(not _glibc_with_mallinfo2(), reason="needs glibc")
def test_cli_pretraining_on_the_cpu_keeps_freed_memory(toy_cohort, tmp_path):
    config = write_config(
        tmp_path / "pre.yaml", **pretrain_keys(toy_cohort, tmp_path / "run", epochs=1)
    )
    done = run_cli("-v", "pretrain", "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert MALLOC_LINE in done.stderr
