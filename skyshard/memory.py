"""Process-wide malloc tuning for processes that churn through large buffers.

The ingest allocates and frees buffers of tens of MiB per input block (numpy
arrays, joined gRPC payloads).  glibc serves allocations above its mmap
threshold (at most 32 MiB even after its dynamic adjustment) with fresh
``mmap`` calls and returns them with ``munmap`` on free, so every block pays
page faults on memory the kernel must zero again: in the ingest benchmark
(1M rows) that was 1.4 s of system time against 1.2 s of user time for the
partitioner.  Raising the mmap and trim thresholds keeps freed memory in the
heap for the next block instead (0.4 s of system time).  Arrow's own
allocator (mimalloc) likewise hands freed pages back to the kernel, so Arrow
is switched to the system allocator, which then follows the same thresholds
(partitioner system time in the ingest benchmark: about 2 s -> 1 s).  The
price is that the process keeps its peak heap until it exits.
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger("skyshard.memory")

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_done = False


def keep_freed_memory(threshold: int = 1 << 30) -> bool:
    """Ask glibc to keep freed blocks below ``threshold`` bytes for reuse; False if not glibc."""
    global _done
    if _done:
        return True
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own symbols: libc's, without a library search
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(_M_MMAP_THRESHOLD, threshold)) and bool(mallopt(_M_TRIM_THRESHOLD, 2 * threshold - 1))
    if not ok:
        log.debug("mallopt refused the thresholds")
        return False
    try:
        import pyarrow as pa

        pa.set_memory_pool(pa.system_memory_pool())
    except ImportError:
        pass
    _done = True
    return True
