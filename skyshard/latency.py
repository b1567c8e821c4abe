"""Interpreter settings for the latency of the long-running servers (czar and worker).

Both are asyncio servers whose event loop every client shares, with helper
threads (MariaDB calls, result encoding, record writes) beside it.  Two
CPython defaults let one busy query stall everybody else's, measured with
point lookups while full scans ran (B5 in ``bench/``):

* **The cyclic garbage collector** stops the whole process, and its oldest
  generation walks every tracked container object, the imported modules'
  functions and classes (sqlglot's, grpc's) as much as the requests in
  flight.  In the czar (about 90,000 objects after start-up) one full
  collection took 14-77 ms.  :func:`gc.freeze` moves what start-up created
  to the permanent generation, so a full collection walks only the objects
  made since (a few thousand).  Frozen objects are still freed by reference
  counting; only reference cycles among them are never collected, which is
  why this is done once, after start-up, and not for what requests create.
* **The GIL switch interval** (5 ms): a thread that wants the GIL while
  another runs Python waits up to that long, and a lookup's callbacks on
  the event loop waited behind a scan's threads (merging, loading result
  blocks).  0.5 ms cut the lookups' p99 during scans from 14-17 ms to
  11-13 ms on the benchmark's 2-core machine, at no measurable cost to the
  scans.
"""

from __future__ import annotations

import gc
import logging
import sys

log = logging.getLogger("skyshard.latency")

SWITCH_INTERVAL = 0.0005  # seconds a thread holds the GIL before another that waits may take it


def tune_for_latency() -> None:
    """Shorter GIL turns, and no full collection walks start-up's objects again; call once
    the server is up (its modules imported, its caches loaded)."""
    sys.setswitchinterval(SWITCH_INTERVAL)
    gc.collect()
    gc.freeze()
    log.debug("%d objects moved to the permanent generation", gc.get_freeze_count())
