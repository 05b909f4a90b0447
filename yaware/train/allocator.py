"""glibc malloc settings for training on the CPU: freed tensor memory stays in the process.

A CPU training step allocates and frees tens to hundreds of MB of activations and
gradients. glibc serves blocks over its mmap threshold (128 KB, adapting up to 32 MB)
with ``mmap`` and hands them back with ``munmap``, and trims the top of its heap once
64 MB are free there, so every step faults in and zeroes fresh pages: on 2 cores a third
of a TinyCNN pretraining job was kernel time (``benchmarks/cpu_allocator.py``). With
both thresholds raised, the next step reuses the blocks the last one freed. The price:
the process keeps up to ``limit`` bytes it no longer uses, and its peak memory was 10-14 %
higher in that benchmark.
"""

import ctypes
import logging

log = logging.getLogger(__name__)

# From glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

KEEP_LIMIT = 1 << 30  # blocks up to 1 GiB come from the heap; 1 GiB free is kept


def keep_freed_memory(limit: int = KEEP_LIMIT) -> bool:
    """Raise glibc's mmap and trim thresholds to ``limit`` bytes for this process (and the
    DataLoader workers it forks). False, and nothing changed, where the C library is not
    glibc (macOS, musl) or refuses the values."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    kept = mallopt(M_MMAP_THRESHOLD, limit) == 1 and mallopt(M_TRIM_THRESHOLD, limit) == 1
    if kept:
        log.info("glibc malloc keeps freed blocks up to %d MiB (mallopt)", limit >> 20)
    return kept
