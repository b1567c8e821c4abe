"""Query record writes off the queries' paths: one thread, in submission order.

A sync query's record is written while it runs (its INSERT, its chunk total)
and after its last row went to the client (its end).  None of these writes
should make the client wait, nor cost the event loop a thread hand-off each
(``asyncio.to_thread`` wakes the loop again when the write is done).  A
:class:`RecordWriter` takes them on a queue and runs them one after another
in a thread of its own, so that a query's writes land in the order they were
made without anyone awaiting them.

Readers inside the czar that must see every record up to now
(``information_schema.queries``, ``SHOW PROCESSLIST``) call :meth:`flush`
first; a record read from outside may lag the client's answer by the time
the queue takes to drain (normally well under a millisecond).
"""

from __future__ import annotations

import concurrent.futures
import queue
import threading
from collections.abc import Callable
from typing import Any

_Item = tuple["concurrent.futures.Future[Any]", Callable[[], Any]]


class RecordWriter:
    """Runs submitted writes in order in one daemon thread (started on first use)."""

    def __init__(self, name: str = "skyshard-records") -> None:
        self.name = name
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        """Queue ``func(*args, **kwargs)``; its future holds its result or its exception."""
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the record writer is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
        self._queue.put((future, lambda: func(*args, **kwargs)))
        return future

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every write submitted before this call has run (blocking)."""
        with self._lock:
            if self._thread is None or self._closed:
                return
        self.submit(lambda: None).result(timeout)

    def close(self) -> None:
        """Run what is queued, then stop the thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        if thread is not None:
            self._queue.put(None)
            thread.join()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            future, call = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(call())
            except BaseException as exc:  # the submitter decides what a failed write means
                future.set_exception(exc)
